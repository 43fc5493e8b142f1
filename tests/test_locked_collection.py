"""A collection another process holds: every funnel command refuses it in one line naming that process,
without touching the engine's files (a Qdrant Edge load of a held shard deletes the holder's payload
tracker journals, and the holder's next write then fails); the holder goes on writing.

Real engine, real ``funnel`` commands; the holder is a real second process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import REPO_ROOT, assert_cli_error, topic_records, write_jsonl

from cli import main
from retriever.errors import CollectionLockedError
from retriever.ingest.indexer import index_corpus
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.edge.locks import HOLDER_FILE

# Holds collection "topics" open: deletes "glacier" (a write: the shard now has tracker journals), says
# "ready", then on each stdin line deletes that document and flushes.
HOLDER = """
import sys
from retriever.store.edge.catalog import EdgeCatalog
coll = EdgeCatalog(sys.argv[1]).open("topics")
coll.delete_documents(["glacier"])
coll.flush()
print("ready", flush=True)
for line in sys.stdin:
    coll.delete_documents([line.strip()])
    coll.flush()
    print("count", coll.count(), flush=True)
coll.close()
"""


@pytest.fixture
def data(tmp_path, embedder):
    data = tmp_path / "data"
    index_corpus(EdgeCatalog(data), "topics", [write_jsonl(tmp_path / "c.jsonl", topic_records())], embedder)
    return data


def _journals(data) -> dict[str, int]:
    shard = data / "collections" / "topics" / "shard"
    return {str(p.relative_to(shard)): p.stat().st_size for p in shard.rglob("tracker_journal.dat")}


def test_commands_name_the_holder_and_leave_its_files_alone(data):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(data)], cwd=REPO_ROOT, text=True,
                              env=os.environ | {"PYTHONPATH": str(REPO_ROOT)}, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "ready", holder.stderr.read()
        journals = _journals(data)
        assert journals  # the files a load from here would delete
        expected = (f"collection 'topics' is in use by another process: pid {holder.pid} (python -c …, since ")
        results = [CliRunner().invoke(main, ["--data-dir", str(data), *args]) for args in (
            ["info", "topics"], ["docs", "-c", "topics"], ["delete", "-c", "topics", "violin"],
            ["search", "a string instrument", "-c", "topics", "--mode", "dense"], ["drop", "topics", "--yes"])]
        assert _journals(data) == journals  # nothing deleted under the holder
        with pytest.raises(CollectionLockedError, match=f"pid {holder.pid}"):
            EdgeCatalog(data).open("topics")
        holder.stdin.write("violin\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "count 10", holder.stderr.read()  # its write still works
        for result in results:
            assert_cli_error(result, expected)
            assert "wait for it to finish or stop it (the embedded engine opens a collection in one process at a " \
                   "time, and has no read-only open)" in result.stderr
    finally:
        holder.stdin.close()
        assert holder.wait(60) == 0, holder.stderr.read()
    with EdgeCatalog(data).open("topics") as coll:  # the holder is gone: open again, its write kept
        assert coll.count() == 10 and not {"violin", "glacier"} & set(coll.document_counts())


def test_a_second_open_in_one_process_is_refused_before_the_engine(data):
    catalog = EdgeCatalog(data)
    with catalog.open("topics") as coll:
        coll.delete_documents(["glacier"])
        coll.flush()  # a write: the shard now has tracker journals
        with pytest.raises(CollectionLockedError, match="already open in this process"):
            catalog.open("topics")
        coll.delete_documents(["violin"])
        coll.flush()  # failed ("Tracker journal … is shorter than expected") when the engine had been asked
        assert coll.count() == 10
    assert (data / "collections" / "topics" / HOLDER_FILE).exists()  # left in place, unlocked
    with catalog.open("topics") as coll:
        assert coll.count() == 10

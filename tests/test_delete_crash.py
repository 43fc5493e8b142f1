"""kill -9 during ``funnel delete`` of several documents (by ids, and by ``--filter``): once reopened, the
collection holds every document to be deleted, whole, or none of them, never a subset, and every other
document as it was; it opens, lists and takes the delete again.

The delete runs in a real process on the real engine (the collection indexed with the real model), killed
from outside with SIGKILL: the child imports everything first, says ``ready``, and runs ``funnel delete``
(the CLI's own ``main``) when told to. Measured by one run that is not killed, the command takes ~0.5-1 s
on 2 cores: opening the collection, then the delete itself (one engine operation,
``delete_points_by_filter``: 1-2 ms), then the flush (most of the rest). So half the kills land at a
uniformly drawn moment of the whole command (x 1.2: some once it has finished), and half in the engine
operation itself: the child's test-side wrapper of the store's one update call says ``op`` just before it
starts, and the parent kills it 0 to 2x the operation's measured duration later; the wrapper waits 50 ms
after each operation, so that a delete made of several engine operations (one per document, say) would be
killed between two of them and leave a subset (checked: it does, 48-49 of 50 left). The same over HTTP:
``funnel serve`` killed 0-3 ms after its engine operation for ``POST …/documents/delete`` starts.
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO_ROOT, TOPIC_DOCS, write_jsonl

from cli import main
from retriever.ingest.indexer import index_corpus
from retriever.service.client import FunnelClient
from retriever.store.edge.catalog import EdgeCatalog

NAME = "crash"
DOCS = 150
TRIALS = 8
FILTER = '{"metadata.group": "doomed"}'

CHILD = """
import sys, time
from cli import main
import retriever.cli.display, retriever.cli.search, retriever.ingest.documents, retriever.store.edge.catalog
from retriever.store.edge.collection import EdgeCollection

update, times = EdgeCollection._update, []

def announced(self, *args, **kwargs):  # says when the engine operation starts (the parent may kill then)
    print("op", flush=True)
    times.append(time.perf_counter())
    result = update(self, *args, **kwargs)
    times.append(time.perf_counter())
    time.sleep(0.05)  # a kill meant for this operation lands before a next one would start
    return result

EdgeCollection._update = announced
print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
main(sys.argv[1:], standalone_mode=False)
print("done", time.perf_counter() - start, times[1] - times[0], flush=True)
"""


def records() -> list[dict]:
    """150 documents of 3-6 topic sentences each (several 24-token chunks apiece), every third one doomed."""
    rng = random.Random(9)
    texts = [text for _, _, text in TOPIC_DOCS]
    return [{"_id": f"d{i:03d}", "text": " ".join(rng.choice(texts) for _ in range(rng.randint(3, 6))),
             "metadata": {"group": "doomed" if i % 3 == 0 else "kept"}} for i in range(DOCS)]


DOOMED = {r["_id"] for r in records() if r["metadata"]["group"] == "doomed"}


def stored(data: Path) -> dict[str, list[dict]]:
    """Every stored payload, by document id, in chunk order (the collection opened, which recovers, and closed)."""
    with EdgeCatalog(data).open(NAME) as coll:
        by_doc: dict[str, list[dict]] = {}
        for batch in coll.points():
            for payload in batch.payloads:
                by_doc.setdefault(payload["doc_id"], []).append(payload)
    return {doc: sorted(chunks, key=lambda p: p["chunk"]) for doc, chunks in by_doc.items()}


def delete_args(data: Path, by: str) -> list[str]:
    what = ["--filter", FILTER] if by == "filter" else sorted(DOOMED)
    return ["--data-dir", str(data), "delete", "-c", NAME, *what]


@pytest.fixture(scope="module")
def original(tmp_path_factory, embedder) -> tuple[Path, dict[str, list[dict]]]:
    """The collection, indexed once (copied for each trial), and what it stores."""
    root = tmp_path_factory.mktemp("delete-crash")
    data = root / "data"
    index_corpus(EdgeCatalog(data), NAME, [write_jsonl(root / "c.jsonl", records())], embedder,
                 chunk_size=24, chunk_overlap=4)
    before = stored(data)
    assert len(before) == DOCS and sum(len(v) for v in before.values()) > 3 * DOCS  # several chunks a document
    return data, before


def run_child(data: Path, by: str, kill_after: float | None, at_op: bool = False) -> tuple[str, tuple[float, float]]:
    """Run the delete in a child process; kill it ``kill_after`` s after telling it to start (``at_op``: after
    it says its engine operation starts; None: let it finish). Returns how it ended ("killed" or "finished")
    and, when it finished, the command's duration and its engine operation's."""
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *delete_args(data, by)], cwd=REPO_ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=30)[1][-2000:]
        proc.stdin.write("go\n")
        proc.stdin.flush()
        if kill_after is not None:
            if at_op:
                assert proc.stdout.readline().strip() == "op", proc.communicate(timeout=30)[1][-2000:]
            time.sleep(kill_after)
            os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    if proc.returncode == -signal.SIGKILL:
        return "killed", (0.0, 0.0)
    assert proc.returncode == 0, err[-2000:]
    (line,) = [x for x in out.splitlines() if x.startswith("done ")]
    return "finished", (float(line.split()[1]), float(line.split()[2]))


def check_whole(data: Path, before: dict[str, list[dict]]) -> str:
    """The collection reopened: all of the doomed documents, whole, or none; the others untouched. Returns
    "all" or "none"."""
    after = stored(data)
    left = DOOMED & set(after)
    assert left in (set(), DOOMED), f"{len(left)} of {len(DOOMED)} documents to delete left: a subset"
    assert after == {d: v for d, v in before.items() if d in set(after)}  # every stored document whole, unchanged
    assert set(before) - DOOMED <= set(after)
    listed = CliRunner().invoke(main, ["--data-dir", str(data), "docs", "-c", NAME, "--limit", "1000", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["total"] == len(after)
    return "all" if left else "none"


@pytest.mark.timeout(420)
@pytest.mark.parametrize("by", ["ids", "filter"])
def test_kill_9_during_a_multi_document_delete_leaves_all_or_none(original, tmp_path, by):
    data, before = original
    probe = tmp_path / "probe"
    shutil.copytree(data, probe)
    ended, (duration, op) = run_child(probe, by, None)
    assert ended == "finished" and duration > op > 0
    assert check_whole(probe, before) == "none"  # an unkilled run deletes them all

    rng = random.Random(f"{by}-23")
    seen: Counter[tuple[str, str, str]] = Counter()
    for trial in range(TRIALS):
        copy = tmp_path / f"trial-{trial}"
        shutil.copytree(data, copy)
        at_op = trial % 2 == 1
        ended, _ = run_child(copy, by, rng.uniform(0, 2 * op if at_op else 1.2 * duration), at_op)
        seen[("in the operation" if at_op else "anywhere", ended, check_whole(copy, before))] += 1
        # the collection takes the delete again: afterwards none of them, the others whole
        again = CliRunner().invoke(main, delete_args(copy, by) + (["--missing-ok"] if by == "ids" else []))
        assert again.exit_code == 0, again.output
        assert check_whole(copy, before) == "none"
        shutil.rmtree(copy)
    print(f"{by}: command {duration * 1000:.0f} ms, engine operation {op * 1000:.1f} ms; "
          f"(where, how it ended, doomed documents left): {dict(seen)}")
    assert not any(ended == "finished" and left == "all" for _, ended, left in seen)  # a finished delete deleted


SERVE = """
import sys, time
from retriever.store.edge.collection import EdgeCollection

update = EdgeCollection._update

def announced(self, *args, **kwargs):  # says when an engine operation starts (the parent may kill then)
    sys.stdout.buffer.write(b"op\\n")
    sys.stdout.buffer.flush()
    result = update(self, *args, **kwargs)
    time.sleep(0.05)  # a kill meant for this operation lands before a next one would start
    return result

EdgeCollection._update = announced
from cli import main
sys.exit(main(sys.argv[1:]))
"""
# The request, from another process: the test's own process then only waits for "op" and kills, with no
# thread of its own holding the GIL in between (a switch interval is 5 ms, several times the operation).
POST = """
import json, sys, httpx
try:
    r = httpx.post(sys.argv[1], json=json.loads(sys.argv[3]), headers={"X-API-Key": sys.argv[2]}, timeout=120)
    print(r.status_code)
except httpx.TransportError as exc:
    print("unreachable", type(exc).__name__)
"""
KEY = "delete-crash-key-0123"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("by", ["ids", "filter"])
def test_kill_9_of_funnel_serve_during_a_multi_document_delete_leaves_all_or_none(original, tmp_path, by):
    data, before = original
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT), "FUNNEL_API_KEY": KEY}
    proc = subprocess.Popen([sys.executable, "-c", SERVE, "--data-dir", str(copy), "serve", "-c", NAME, "--port", "0",
                             "--device", "cpu"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.fileno()
    body = {"filter": json.loads(FILTER)} if by == "filter" else {"doc_ids": sorted(DOOMED)}
    post = None
    try:
        seen: list[str] = []
        while not (match := re.search(r"on (http://127\.0\.0\.1:\d+)", seen[-1] if seen else "")):
            seen.append(proc.stderr.readline().decode())
            assert seen[-1] and len(seen) < 50, seen
        FunnelClient(match.group(1), api_key=KEY, timeout=120).wait_ready(90)
        while select.select([out], [], [], 0)[0]:  # any engine operation of the start-up is not the delete's
            assert os.read(out, 4096), "the server closed its output"
        post = subprocess.Popen([sys.executable, "-c", POST, f"{match.group(1)}/collections/{NAME}/documents/delete",
                                 KEY, json.dumps(body)], stdout=subprocess.PIPE, text=True)
        assert select.select([out], [], [], 60)[0], "no engine operation within 60 s of the request"
        assert os.read(out, 3) == b"op\n"
        time.sleep(random.Random(f"serve-{by}").uniform(0, 0.003))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        answer = post.communicate(timeout=60)[0]
    finally:
        for child in (proc, post):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert answer.startswith("unreachable"), answer  # killed before it answered
    left = check_whole(copy, before)
    print(f"{by} over HTTP: killed in the engine operation, doomed documents left: {left}")

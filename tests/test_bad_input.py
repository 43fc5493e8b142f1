"""No input can break a collection: each case of issue 9, through the real CLI and the Python API.

Each refused input must give exit code 1, ONE line on stderr, no traceback, and leave the
collection as it was: it still opens, holds the same points and answers a probe query with the
same exact-search hits. The model is the real MiniLM, loaded once per session and handed to the CLI
(``funnel index`` would otherwise load it again for every run); the engine is the real Qdrant Edge.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import REPO_ROOT, TOPIC_DOCS, topic_records, write_jsonl
from conftest import assert_cli_error as one_error_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main
from retriever import Retriever
from retriever.errors import CollectionLockedError, CorpusError
from retriever.ingest.indexer import index_corpus
from retriever.store.base import CollectionExistsError
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.edge.collection import SHARD_DIR
from retriever.store.limits import MAX_METADATA_DEPTH, MIN_FREE_BYTES
from retriever.store.spec import CollectionSpec

PROBE = "How does a volcano erupt with lava?"
N_DOCS = len(TOPIC_DOCS)


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def cli_model(embedder, monkeypatch):
    """``funnel index`` in-process with the session's real model instead of loading it again."""
    import retriever.encoding.embedder

    monkeypatch.setattr(retriever.encoding.embedder, "Embedder", lambda *args, **kwargs: embedder)
    return embedder


def invoke(data_dir: Path, *args: object, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), *map(str, args)], input=input)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.output
    return result


def state(data_dir: Path, name: str, embedder) -> tuple[int, list[tuple[str, float]]]:
    """(points, exact-search hits for the probe): what must not change when an input is refused."""
    with Retriever(EdgeCatalog(data_dir).open(name), embedder) as r:
        hits = r.search(PROBE, k=5, exact=True)
        return r.collection.count(), [(h.id, round(h.score, 5)) for h in hits]


def leftovers(data_dir: Path) -> list[str]:
    """Hidden temporary entries (creation, drop, spool) left in the data directory."""
    found = [p.name for p in data_dir.glob(".spool~*")]
    root = data_dir / "collections"
    if root.is_dir():
        found += [p.name for p in root.iterdir() if p.name.startswith((".tmp~", ".drop~", ".probe~"))]
    return found


@pytest.fixture
def topics(tmp_path, cli_model) -> tuple[Path, tuple]:
    """A data dir with the topic corpus indexed as ``topics`` through the CLI, and its state."""
    data = tmp_path / "data"
    corpus = write_jsonl(tmp_path / "topics.jsonl", topic_records())
    ok(invoke(data, "index", corpus, "-c", "topics", "--no-progress"))
    return data, state(data, "topics", cli_model)


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


# --- 1. limits: deep metadata and friends never reach the engine ------------------------------


@pytest.mark.parametrize("depth", [MAX_METADATA_DEPTH + 1, 200, 100_000])
def test_deep_metadata_refused_collection_intact(depth, topics, tmp_path, cli_model):
    data, before = topics
    bad = tmp_path / "deep.jsonl"
    bad.write_text('{"_id": "fine", "text": "A harmless record about gardens."}\n'
                   f'{{"_id": "deep", "text": "nested", "metadata": {nested(depth)}}}\n')
    why = "JSON nested too deeply to read" if depth > 10_000 else f"metadata nests more than {MAX_METADATA_DEPTH} levels"
    one_error_line(invoke(data, "index", bad, "-c", "topics", "--no-progress"), f"{bad}:2: {why}", "--skip-bad")
    assert state(data, "topics", cli_model) == before

    # --skip-bad: the bad record is counted, the good one is indexed, the collection reopens.
    (summary,) = [json.loads(line) for line in
                  ok(invoke(data, "index", bad, "-c", "topics", "--skip-bad", "--json", "--no-progress")).stdout.splitlines()]
    assert (summary["documents"], summary["skipped_bad"], summary["points"]) == (1, 1, N_DOCS + 1)
    with EdgeCatalog(data).open("topics") as coll:
        assert coll.count() == N_DOCS + 1
    ok(invoke(data, "info", "topics"))


def test_metadata_at_the_depth_limit_is_stored_and_replayed(tmp_path, cli_model):
    data = tmp_path / "data"
    path = tmp_path / "edge.jsonl"
    path.write_text(f'{{"_id": "edge", "text": "deep but allowed", "metadata": {nested(MAX_METADATA_DEPTH - 1)}}}\n')
    ok(invoke(data, "index", path, "-c", "edge", "--no-progress"))
    with EdgeCatalog(data).open("edge") as coll:  # a reload replays the write-ahead log
        assert coll.count() == 1


def test_unstorable_records_python_api(tmp_path, embedder):
    """The Python API refuses the same records, before the collection is created."""
    catalog = EdgeCatalog(tmp_path / "data")
    cases = {
        "surrogate": '{"_id": "s", "text": "lone \\ud800 surrogate"}',
        "huge-int": '{"_id": "h", "text": "t", "metadata": {"n": 18446744073709551616}}',
        "deep": f'{{"_id": "d", "text": "t", "metadata": {nested(500)}}}',
        "long-id": '{"_id": "' + "x" * 600 + '", "text": "t"}',
    }
    for name, line in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text(line + "\n")
        with pytest.raises(CorpusError, match=rf"^{path}:1: "):
            index_corpus(catalog, "api", [path], embedder)
    assert catalog.names() == [] and leftovers(tmp_path / "data") == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--skip-bad"], "empty corpus"),  # every record bad
        ([], ":2: metadata nests more than"),
        (["--chunk-size", "4"], "invalid chunk size 4"),
        (["--chunk-size", "64", "--chunk-overlap", "64"], "invalid chunk overlap 64"),
        (["--batch-size", "0"], "invalid batch size 0"),
    ],
)
def test_input_errors_before_the_model_loads(args, fragment, tmp_path, monkeypatch):
    """Newcomers wait for nothing: the corpus and the options are checked before the model loads."""
    import retriever.encoding.embedder

    def no_model(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(retriever.encoding.embedder, "Embedder", no_model)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "a", "text": ""}\n' f'{{"_id": "d", "text": "t", "metadata": {nested(50)}}}\n')
    one_error_line(invoke(tmp_path / "data", "index", bad, "-c", "fresh", "--no-progress", *args), fragment)
    assert not (tmp_path / "data" / "collections" / "fresh").exists()


# --- 6. usage errors, collections, concurrent create, drop ------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["index"], "Missing argument 'PATHS...'. (see 'funnel index --help')"),
        (["search", "x", "-c", "docs", "-k", "abc"], "'abc' is not a valid integer"),
        (["--bogus"], "No such option '--bogus'"),
        (["nosuch"], "No such command 'nosuch'"),
        (["index", "c.jsonl", "-c", "x", "--format", "xml"], "'xml' is not one of"),
        (["drop"], "Missing argument 'NAME'"),
    ],
)
def test_usage_error_one_line(args, fragment, tmp_path):
    one_error_line(invoke(tmp_path, *args), fragment)


def test_help_still_works(tmp_path):
    assert "--format" in ok(invoke(tmp_path, "index", "--help")).stdout


def _synthetic(data: Path, name: str) -> None:
    spec = CollectionSpec(name=name, model="m", model_fingerprint="f" * 16, model_dim=32, dims=(8, 32),
                          chunk_size=64, chunk_overlap=8)
    EdgeCatalog(data).create(spec).close()


def test_truncated_collection_json_others_listed(tmp_path):
    data = tmp_path / "data"
    for name in ("alpha", "broken", "zeta"):
        _synthetic(data, name)
    spec_file = data / "collections" / "broken" / "collection.json"
    spec_file.write_text(spec_file.read_text()[:40])
    result = ok(invoke(data, "collections"))
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: collection 'broken': unreadable")
    assert "alpha" in result.stdout and "zeta" in result.stdout and "unreadable" in result.stdout
    listed = json.loads(ok(invoke(data, "collections", "--json")).stdout)
    assert [item["name"] for item in listed] == ["alpha", "broken", "zeta"]
    assert "error" in listed[1] and listed[0]["dims"] == [8, 32]
    # and a broken collection can be dropped
    ok(invoke(data, "drop", "broken", "--yes"))
    assert EdgeCatalog(data).names() == ["alpha", "zeta"]


def _spec(name: str) -> CollectionSpec:
    return CollectionSpec(name=name, model="m", model_fingerprint="f" * 16, model_dim=32, dims=(8, 32),
                          chunk_size=64, chunk_overlap=8)


def test_concurrent_create_same_collection(tmp_path):
    """Eight threads create the same new collection at once: one gets it, the others a clear
    "being created" / "already exists" error, never an OSError; nothing temporary is left."""
    catalog = EdgeCatalog(tmp_path / "data")
    barrier = threading.Barrier(8)
    outcomes: list[object] = []

    def create() -> None:
        barrier.wait()
        try:
            outcomes.append(catalog.create(_spec("race")))
        except Exception as exc:  # noqa: BLE001 - what happened is the test's subject
            outcomes.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made = [o for o in outcomes if not isinstance(o, Exception)]
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert len(made) == 1, outcomes
    assert all(isinstance(e, (CollectionLockedError, CollectionExistsError)) for e in errors), errors
    made[0].close()
    assert catalog.names() == ["race"] and leftovers(tmp_path / "data") == []
    assert not list(catalog.root.glob(".race.lock"))


def test_concurrent_index_processes_same_new_collection(tmp_path, topic_corpus):
    """Two real ``funnel index`` processes on the same new collection at once: each ends with
    success or one clear line ("being created" / "in use"), never an OSError; the collection ends
    whole."""
    data = tmp_path / "data"
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "cli.py", "--data-dir", str(data), "index", str(topic_corpus), "-c", "race", "--no-progress"]
    procs = [subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    assert any(rc == 0 for rc, _ in results), results
    for rc, err in results:
        assert "Traceback" not in err and "Errno" not in err, err
        if rc != 0:
            lines = err.strip().splitlines()
            assert rc == 1 and len(lines) == 1, err
            assert "is being created by another process" in lines[0] or "in use by another process" in lines[0]
    with EdgeCatalog(data).open("race") as coll:
        assert coll.count() == N_DOCS
    assert leftovers(data) == []


def test_collection_being_created_is_a_clear_error(tmp_path, topic_corpus, cli_model):
    """While another process holds the creation lock, ``funnel index`` says so in one line."""
    data = tmp_path / "data"
    root = data / "collections"
    root.mkdir(parents=True)
    with open(root / ".fresh.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        one_error_line(invoke(data, "index", topic_corpus, "-c", "fresh", "--no-progress"),
                       "collection 'fresh' is being created by another process")
    assert EdgeCatalog(data).names() == [] and leftovers(data) == []


def test_drop_collection_whose_shard_cannot_be_replayed(tmp_path):
    """A collection bricked by a payload the engine cannot replay (as an older funnel let through)."""
    from qdrant_edge import EdgeShard, Point, UpdateOperation

    data = tmp_path / "data"
    _synthetic(data, "bricked")
    _synthetic(data, "fine")
    shard_dir = data / "collections" / "bricked" / SHARD_DIR
    shard = EdgeShard.load(str(shard_dir))
    deep: object = 1
    for _ in range(130):
        deep = {"a": deep}
    shard.update(UpdateOperation.upsert_points(
        [Point("00000000-0000-0000-0000-000000000001", {"dim8": [0.1] * 8, "dim32": [0.1] * 32}, {"m": deep})]))
    shard.close()
    one_error_line(invoke(data, "info", "bricked"), "collection 'bricked': engine error", "'funnel drop bricked' deletes it")
    ok(invoke(data, "drop", "bricked", "--yes"))
    assert EdgeCatalog(data).names() == ["fine"]


def test_drop_refuses_a_collection_in_use(tmp_path):
    data = tmp_path / "data"
    _synthetic(data, "busy")
    with EdgeCatalog(data).open("busy"):
        one_error_line(invoke(data, "drop", "busy", "--yes"), "already open in this process")  # held by this (test) process
    assert EdgeCatalog(data).names() == ["busy"]


# --- 5. CSV / TSV quoting ------------------------------------------------------------------------


def test_tsv_stray_quote_is_not_merged(tmp_path, cli_model):
    """TSV has no quoting: a stray '"' is an ordinary character, and every line stays a record."""
    data = tmp_path / "data"
    path = tmp_path / "notes.tsv"
    path.write_text('id\ttext\na\tThe "best volcano tour starts at dawn\nb\tBread needs yeast and flour\n'
                    'c\tViolins have four strings\n', encoding="utf-8")
    (summary,) = [json.loads(x) for x in ok(invoke(data, "index", path, "-c", "tsv", "--json", "--no-progress")).stdout.splitlines()]
    assert (summary["documents"], summary["points"]) == (3, 3)
    with Retriever(EdgeCatalog(data).open("tsv"), cli_model) as r:
        texts = {h.doc_id: h.text for h in r.search("volcano", k=3, exact=True)}
    assert texts["a"] == 'The "best volcano tour starts at dawn'


def test_csv_stray_quote_is_bad_record(topics, tmp_path, cli_model):
    data, before = topics
    path = tmp_path / "notes.csv"
    path.write_text('id,text\na,fine text\nb,"an opened quote\nc,never closed\n', encoding="utf-8")
    one_error_line(invoke(data, "index", path, "-c", "topics", "--no-progress"),
                   f"{path}:3: malformed CSV record")
    assert state(data, "topics", cli_model) == before


# --- 4. read-once inputs: FIFO, stdin ------------------------------------------------------------


def test_fifo_corpus(tmp_path, cli_model):
    data = tmp_path / "data"
    fifo = tmp_path / "corpus.jsonl"
    os.mkfifo(fifo)
    lines = "".join(json.dumps(r) + "\n" for r in topic_records())

    def writer() -> None:
        with open(fifo, "w") as out:  # blocks until funnel opens the FIFO, once
            out.write(lines)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    (summary,) = [json.loads(x) for x in ok(invoke(data, "index", fifo, "-c", "fifo", "--json", "--no-progress")).stdout.splitlines()]
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert (summary["documents"], summary["points"]) == (N_DOCS, N_DOCS)
    assert state(data, "fifo", cli_model)[1][0][0]  # searchable
    assert leftovers(data) == []


def test_stdin_corpus(tmp_path, cli_model):
    data = tmp_path / "data"
    lines = "".join(json.dumps(r) + "\n" for r in topic_records())
    (summary,) = [json.loads(x) for x in ok(invoke(data, "index", "-", "-c", "stdin", "--json", "--no-progress",
                                                   input=lines)).stdout.splitlines()]
    assert (summary["documents"], summary["points"]) == (N_DOCS, N_DOCS)
    with Retriever(EdgeCatalog(data).open("stdin"), cli_model) as r:
        assert r.search(PROBE, k=1, exact=True)[0].doc_id == "volcano"
    # CSV from stdin with --format; bad records are named <stdin>:LINE
    csv_text = "id,text\nx,Glaciers carve valleys\ny,\"unterminated\n"
    one_error_line(invoke(data, "index", "-", "-c", "stdin", "--format", "csv", "--no-progress", input=csv_text),
                   "<stdin>:3: malformed CSV record")
    assert leftovers(data) == []


def test_stdin_bad_record_names_stdin(tmp_path):
    one_error_line(invoke(tmp_path / "data", "index", "-", "-c", "x", "--no-progress", input='{"_id": 1}\n'),
                   "<stdin>:1: no 'text' field")
    assert leftovers(tmp_path / "data") == []


# --- 3. read-only data dir and full disk -------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A small tmpfs at ``path`` (needs root and CAP_SYS_ADMIN; the test skips otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or 'not root'}): a full disk "
                    "cannot be made without it")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def test_read_only_data_dir(tmp_path, topic_corpus, cli_model):
    with tmpfs(tmp_path / "mnt", "512m") as data:
        ok(invoke(data, "index", topic_corpus, "-c", "topics", "--no-progress"))
        before = state(data, "topics", cli_model)
        remount(data, "ro")
        try:
            one_error_line(invoke(data, "index", topic_corpus, "-c", "topics", "--no-progress"),
                           "cannot write collections in", "Read-only file system")
            one_error_line(invoke(data, "index", topic_corpus, "-c", "other", "--no-progress"), "Read-only file system")
        finally:
            remount(data, "rw")
        assert state(data, "topics", cli_model) == before
        assert EdgeCatalog(data).names() == ["topics"] and leftovers(data) == []


def test_read_only_data_dir_by_permissions(tmp_path, topic_corpus):
    """The same without a mount, for a user a 0555 directory refuses (root writes through it)."""
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions: test_read_only_data_dir covers this with a read-only mount")
    data = tmp_path / "data"
    (data / "collections").mkdir(parents=True)
    (data / "collections").chmod(0o555)
    try:
        one_error_line(invoke(data, "index", topic_corpus, "-c", "x", "--no-progress"), "Permission denied")
    finally:
        (data / "collections").chmod(0o755)


def test_disk_full(tmp_path):
    """A 3 MB file system: a real ``funnel index`` process exits 1 with one line (it used to die of
    SIGBUS), before loading the model, and leaves nothing behind."""
    with tmpfs(tmp_path / "mnt", "3m") as data:
        corpus = write_jsonl(tmp_path / "c.jsonl", topic_records())
        env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        done = subprocess.run([sys.executable, "cli.py", "--data-dir", str(data), "index", str(corpus), "-c", "full",
                               "--no-progress"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120, check=False)
        lines = done.stderr.decode().strip().splitlines()
        assert done.returncode == 1, done.stderr.decode()
        assert len(lines) == 1 and lines[0].startswith("Error: no space left"), lines
        assert "Traceback" not in done.stderr.decode()
        assert EdgeCatalog(data).names() == [] and leftovers(data) == []
        assert not list((data / "collections").glob(".tmp~*"))


def test_disk_full_existing_collection_intact(tmp_path, topic_corpus, cli_model):
    """The disk fills up after a collection was made: the next index run is refused before the
    engine writes, and the collection keeps what it held."""
    import shutil

    from retriever.store.edge.disk import sparse_bytes

    with tmpfs(tmp_path / "mnt", "512m") as data:
        ok(invoke(data, "index", topic_corpus, "-c", "topics", "--no-progress"))
        before = state(data, "topics", cli_model)
        holes = sparse_bytes(data / "collections" / "topics")
        free = shutil.disk_usage(data).free
        filler = data / "filler"
        with open(filler, "wb") as out:  # room for the holes and the margin, too little for 20 points
            out.write(b"\0" * (free - holes - MIN_FREE_BYTES - 64 * 1024))
        more = write_jsonl(tmp_path / "more.jsonl", [{"_id": f"m{i}", "text": f"More text number {i}."} for i in range(20)])
        one_error_line(invoke(data, "index", more, "-c", "topics", "--no-progress"),
                       "no space left for 20 points in collection 'topics'")
        filler.unlink()
        assert state(data, "topics", cli_model) == before
        assert leftovers(data) == []


# --- 2. a huge document, streamed ---------------------------------------------------------------


def test_huge_document_streamed(tmp_path, embedder):
    """A document far bigger than one group of chunks is written over several groups (bounded
    memory), re-indexed without re-encoding, and its stale chunks dropped when it shrinks."""
    from retriever.ingest.chunking import TokenChunker
    from retriever.ingest.corpus import Document
    from retriever.ingest.indexer import index_chunks

    words = [f"w{i % 997}" for i in range(3_000)]
    text = " ".join(words)
    catalog = EdgeCatalog(tmp_path / "data")
    spec = CollectionSpec(name="huge", model="MiniLM", model_fingerprint=embedder.fingerprint,
                          model_dim=embedder.dim, dims=(64, embedder.dim), chunk_size=32, chunk_overlap=4)
    chunker = TokenChunker(embedder.tokenizer, 32, 4, embedder.max_tokens)
    expected = chunker.split(Document("huge", text))
    assert len(expected) > 200

    class Groups:
        def __init__(self) -> None:
            self.calls: list[tuple[int, int]] = []

        def start(self, documents: int) -> None: ...

        def advance(self, documents: int, chunks: int) -> None:
            self.calls.append((documents, chunks))

    groups = Groups()
    with catalog.create(spec) as coll:
        counts = index_chunks(coll, embedder, chunker, [Document("huge", text)], group_size=50, progress=groups)
        assert coll.count() == len(expected) == counts.chunks
    documents = [d for d, _ in groups.calls]
    assert sum(documents) == 1 and documents[-1] == 1  # one document, finished with the last group
    assert sum(c for _, c in groups.calls) == len(expected)
    assert len(groups.calls) >= -(-len(expected) // 50)  # several groups, each reported
    assert all(c > 0 for _, c in groups.calls)  # progress moves with every call (no empty reports)

    shorter = " ".join(words[: len(words) // 2])
    with catalog.open("huge") as coll:
        again = index_chunks(coll, embedder, chunker, [Document("huge", text)], group_size=50)
        assert again.unchanged == len(expected)  # nothing re-encoded
        kept = index_chunks(coll, embedder, chunker, [Document("huge", shorter)], group_size=50)
        n_short = len(chunker.split(Document("huge", shorter)))
        assert coll.count() == n_short == kept.chunks  # stale chunks of the longer version dropped
        assert kept.unchanged >= n_short - 2  # the chunks the shorter version keeps are copied, not encoded


# --- property: whatever JSON records come in, the collection always reopens ----------------------


ODD_CHARS = st.one_of(st.characters(), st.sampled_from(["\ud800", "\udfff", "\x00", "\u2028", "\ufeff", "\U0001f680"]))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(ODD_CHARS, max_size=12),
    st.sampled_from(["x" * 70_000, "é" * 40_000]),  # over the metadata size limit
)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(ODD_CHARS, max_size=6), inner, max_size=3)), max_leaves=8)


def _deep(value: object, depth: int) -> object:
    for _ in range(depth):
        value = {"k": value}
    return value


RECORDS = st.fixed_dictionaries(
    {
        "_id": st.one_of(st.text(ODD_CHARS, min_size=1, max_size=8), st.integers(0, 50), st.just("z" * 600)),
        "metadata": st.one_of(st.builds(_deep, JSON_VALUES, st.one_of(st.integers(118, 140), st.integers(0, 40))),
                              JSON_VALUES),
    },
    optional={
        "text": st.one_of(st.text(ODD_CHARS, max_size=40), st.integers(), JSON_VALUES),
        "title": st.one_of(st.text(ODD_CHARS, max_size=10), st.just("t" * 5000)),
    },
)


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(records=st.lists(RECORDS, min_size=1, max_size=3), raw_deep=st.booleans())
def test_any_json_records_leave_a_collection_that_reopens(records, raw_deep, tmp_path, embedder):
    """Generated records (deep nesting, huge strings and ints, NaN and infinities as raw JSON, lone
    surrogates, NULs, odd keys) are indexed with --skip-bad semantics: whatever is accepted is stored,
    whatever is not is counted, and the collection always reopens (its write-ahead log replays) with
    exactly the accepted documents."""
    from retriever.errors import StoreError
    from retriever.ingest.corpus import ReadReport, read_corpus

    data = tmp_path / "prop-data"
    path = tmp_path / "gen.jsonl"
    lines = [json.dumps(r) for r in records]  # NaN/Infinity become raw JSON literals; surrogates \\uXXXX
    if raw_deep:
        lines.append('{"_id": "raw", "text": "t", "metadata": ' + "[" * 5000 + "]" * 5000 + "}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    catalog = EdgeCatalog(data)
    existed = catalog.exists("prop")
    before = 0
    if existed:
        with catalog.open("prop") as coll:
            before = coll.count()
    report = ReadReport()
    accepted = {d.id for d in read_corpus([path], skip_bad=True, report=report)}
    try:
        result = index_corpus(catalog, "prop", [path], embedder, skip_bad=True)
    except CorpusError as exc:
        assert not accepted and "empty corpus" in str(exc)
    except StoreError as exc:  # pragma: no cover - would be a bug: show what got through
        pytest.fail(f"the engine refused a record the limits let through: {exc}")
    else:
        assert result.documents == len(accepted) and result.skipped_bad == report.skipped_bad
    if catalog.exists("prop"):
        with catalog.open("prop") as coll:  # a fresh load replays the write-ahead log
            stored = coll.payloads([chunk_id_of(d) for d in accepted])
            assert len(stored) == len(accepted)
            assert coll.count() >= max(before, len(accepted))


def chunk_id_of(doc_id: str) -> str:
    from retriever.ingest.chunking import chunk_id

    return chunk_id(doc_id, 0)

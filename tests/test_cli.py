"""The command line, through click's CliRunner (in-process) and, for crash safety, a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import (
    BAD_CORPORA,
    REPO_ROOT,
    TOPIC_DOCS,
    TOPIC_QUERIES,
    bad_corpora,
    plain_huge_text,
    topic_records,
    write_jsonl,
)
from conftest import assert_cli_error as assert_error
from qdrant_edge import ScrollRequest

from cli import main
from retriever.errors import CollectionNotFoundError
from retriever.ingest.chunking import TokenChunker
from retriever.ingest.corpus import Document
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.spec import CollectionSpec

N_DOCS = len(TOPIC_DOCS)


def invoke(data_dir: Path, *args: str, input: str | None = None, env: dict | None = None) -> Result:
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), *map(str, args)], input=input, env=env)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.output
    return result


def json_lines(result: Result) -> list:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def synthetic_collection(data_dir: Path, name: str) -> None:
    """A collection made directly through the store (no model needed), for catalog-only commands."""
    spec = CollectionSpec(name=name, model="m", model_fingerprint="f" * 16, model_dim=32, dims=(8, 32),
                          chunk_size=64, chunk_overlap=8)
    EdgeCatalog(data_dir).create(spec).close()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The topic corpus indexed through ``funnel index --json`` once for the module."""
    root = tmp_path_factory.mktemp("cli")
    corpus = write_jsonl(root / "corpus" / "corpus.jsonl", topic_records())  # a BEIR directory
    data = root / "data"
    result = invoke(data, "index", corpus.parent, "-c", "docs", "--json", "--no-progress")
    return data, corpus, result


# --- the happy path ------------------------------------------------------------------------------


def test_index(built):
    data, _, result = built
    ok(result)
    (summary,) = json_lines(result)
    assert summary["collection"] == "docs"
    assert (summary["documents"], summary["chunks"], summary["points"]) == (N_DOCS, N_DOCS, N_DOCS)
    assert (summary["skipped"], summary["skipped_empty"], summary["skipped_bad"]) == (0, 0, 0)
    assert f"indexed {N_DOCS} documents" in " ".join(result.stderr.split())
    assert EdgeCatalog(data).names() == ["docs"]


def test_search_table(built):
    data, _, _ = built
    result = ok(invoke(data, "search", "How does a volcano erupt with lava?", "-c", "docs", "-k", "3"))
    out = result.stdout
    assert "How does a volcano erupt with lava?" in out
    assert "plan 64:120,128:60,256:30,384:3" in out
    assert "rank" in out and "score" in out and "doc id" in out
    # Rows whose rank cell is filled: one per hit, best first.
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    ranked = [row for row in cells if row and row[0]]
    assert [row[0] for row in ranked] == ["1", "2", "3"]
    assert ranked[0][2] == "volcano" and ranked[0][3] == "0"
    scores = [float(row[1]) for row in ranked]
    assert scores == sorted(scores, reverse=True)


def test_search_json_and_exact(built):
    data, _, _ = built
    query = "How do plants make oxygen from sunlight?"
    funnel = json_lines(ok(invoke(data, "search", query, "-c", "docs", "-k", "4", "--json")))
    exact = json_lines(ok(invoke(data, "search", query, "-c", "docs", "-k", "4", "--json", "--exact", "--no-text")))
    (f,), (e,) = funnel, exact
    assert f["query"] == query and f["plan"] == "64:160,128:80,256:40,384:4"
    assert e["plan"] == "exact"
    assert "query_id" not in f
    assert len(f["hits"]) == len(e["hits"]) == 4
    assert f["hits"][0]["doc_id"] == e["hits"][0]["doc_id"] == "photosynthesis"
    assert [h["id"] for h in f["hits"]] == [h["id"] for h in e["hits"]]
    assert set(f["hits"][0]) == {"id", "doc_id", "chunk", "score", "text", "title", "metadata"}
    assert f["hits"][0]["text"].startswith("Plants turn sunlight")
    assert all(h["text"] is None for h in e["hits"])


def test_search_batch_queries(built, tmp_path):
    data, _, _ = built
    queries = write_jsonl(tmp_path / "queries.jsonl",
                          [{"_id": qid, "text": text} for qid, text, _ in TOPIC_QUERIES] + [{"_id": "blank", "text": " "}])
    result = ok(invoke(data, "search", "--queries", queries, "-c", "docs", "-k", "2", "--json"))
    records = json_lines(result)
    assert [r["query_id"] for r in records] == [qid for qid, _, _ in TOPIC_QUERIES]
    for record, (_, text, expected) in zip(records, TOPIC_QUERIES):
        assert record["query"] == text
        assert len(record["hits"]) == 2
        assert record["hits"][0]["doc_id"] == expected


def test_collection_from_the_environment(built):
    data, _, _ = built
    result = ok(invoke(data, "search", "four strings and a bow", "--json", "-k", "1",
                       env={"FUNNEL_COLLECTION": "docs", "FUNNEL_PLAN": "64:20,256:10"}))
    (record,) = json_lines(result)
    assert record["plan"] == "64:20,256:10,384:1"
    assert record["hits"][0]["doc_id"] == "violin"


def test_collections_and_info(built, tmp_path):
    data, _, _ = built
    table = ok(invoke(data, "collections")).stdout
    assert "docs" in table and "64,128,256,384" in table and "254/32" in table
    (spec,) = json.loads(ok(invoke(data, "collections", "--json")).stdout)
    assert spec["name"] == "docs" and spec["dims"] == [64, 128, 256, 384]
    assert spec["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert (spec["chunk_size"], spec["chunk_overlap"], spec["model_dim"]) == (254, 32, 384)

    info = json.loads(ok(invoke(data, "info", "docs", "--json")).stdout)
    assert info["points"] == N_DOCS
    assert info["disk_bytes"] > 0
    assert info["default_plan_k10"] == "64:400,128:200,256:100,384:10"
    assert Path(info["path"]) == data / "collections" / "docs"
    table = ok(invoke(data, "info", "docs")).stdout
    assert "points" in table and "64:400,128:200,256:100,384:10" in table

    empty = ok(invoke(tmp_path / "empty-data", "collections"))
    assert "no collections yet" in empty.stderr
    assert json.loads(ok(invoke(tmp_path / "empty-data", "collections", "--json")).stdout) == []


def test_drop(tmp_path):
    data = tmp_path / "data"
    synthetic_collection(data, "keep")
    synthetic_collection(data, "gone")
    aborted = invoke(data, "drop", "gone", input="n\n")
    assert aborted.exit_code == 1 and "Aborted" in aborted.output
    assert EdgeCatalog(data).names() == ["gone", "keep"]
    result = ok(invoke(data, "drop", "gone", "--yes"))
    assert "dropped gone" in result.stderr
    assert EdgeCatalog(data).names() == ["keep"]
    ok(invoke(data, "drop", "keep", input="y\n"))
    assert EdgeCatalog(data).names() == []
    assert_error(invoke(data, "info", "keep"), "no collection 'keep'")


def test_version_and_help(tmp_path):
    assert "version" in ok(invoke(tmp_path, "--version")).stdout
    help_text = ok(invoke(tmp_path, "index", "--help")).stdout
    assert "--skip-bad" in help_text and "FUNNEL_DIMS" in help_text


# --- bad input that fails before any model is loaded ---------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["search", "x", "-c", "docs", "-k", "0"], ["invalid k 0: k must be between 1 and 1000"]),
        (["search", "x", "-c", "docs", "-k", "-5"], ["invalid k -5"]),
        (["search", "x", "-c", "docs", "-k", "100000"], ["invalid k 100000"]),
        (["search", "   ", "-c", "docs"], ["empty query"]),
        (["search", "-c", "docs"], ["give either a QUERY or --queries FILE.jsonl"]),
        (["search", "x", "--queries", "q.jsonl", "-c", "docs"], ["give either a QUERY or --queries"]),
        (["search", "--queries", "missing-queries.jsonl", "-c", "docs"], ["missing-queries.jsonl: no such file"]),
        (["search", "x", "-c", "nope"], ["no collection 'nope'", "collections: docs"]),
        (["info", "nope"], ["no collection 'nope'"]),
        (["drop", "nope", "--yes"], ["no collection 'nope'"]),
        (["index", "corpus.jsonl", "-c", "a/b"], ["invalid collection name 'a/b'"]),
        (["index", "corpus.jsonl", "-c", "../escape"], ["invalid collection name '../escape'"]),
        (["index", "corpus.jsonl", "-c", ".."], ["invalid collection name '..'"]),
        (["search", "x", "-c", "../docs"], ["invalid collection name '../docs'"]),
        (["info", "a/b"], ["invalid collection name 'a/b'"]),
        (["drop", "x..y", "--yes"], ["invalid collection name 'x..y'"]),
    ],
)
def test_errors_before_loading_the_model(built, args, fragments):
    data, _, _ = built
    assert_error(invoke(data, *args), *fragments)
    assert EdgeCatalog(data).names() == ["docs"]
    assert not (data.parent / "escape").exists()


def test_missing_required_option_is_a_usage_error(tmp_path):
    assert_error(invoke(tmp_path, "index", "corpus.jsonl"), "Missing option '-c' / '--collection'",
                 "(see 'funnel index --help')")


def test_debug_shows_the_exception(built):
    data, _, _ = built
    result = CliRunner().invoke(main, ["--data-dir", str(data), "--debug", "info", "nope"])
    assert result.exit_code != 0
    assert isinstance(result.exception, CollectionNotFoundError)


# --- bad corpora: clear errors, and nothing half-written -----------------------------------------


@pytest.mark.parametrize("case", BAD_CORPORA)
def test_bad_corpus(case, tmp_path):
    data = tmp_path / "data"
    path, fragments = bad_corpora(tmp_path)[case]
    assert_error(invoke(data, "index", path, "-c", "fresh", "--no-progress"), *fragments)
    assert "fresh" not in EdgeCatalog(data).names()
    assert not (data / "collections" / "fresh").exists()


@pytest.mark.parametrize(
    ("dims", "fragments"),
    [
        ("256,128,384", ["invalid dims '256,128,384'", "strictly ascending"]),
        ("64,128,512", ["512 is above the model's dim (384)"]),
    ],
)
def test_bad_dims(dims, fragments, topic_corpus, tmp_path):
    data = tmp_path / "data"
    assert_error(invoke(data, "index", topic_corpus, "-c", "fresh", "--dims", dims, "--no-progress"), *fragments)
    assert EdgeCatalog(data).names() == []


def test_skip_bad_and_empty_texts_are_counted(tmp_path):
    data = tmp_path / "data"
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        '{"_id": "a", "text": "Owls hunt small mammals at night."}\n'
        "not json\n"
        '{"_id": "b", "text": "   "}\n'
        '{"_id": "c", "content": "wrong field"}\n'
        '{"_id": "d", "text": ""}\n'
        '{"_id": "e", "text": "Tulips bloom in spring."}\n'
        '{"_id": "f", "text": "\\n\\t"}\n'
    )
    # Without --skip-bad the first bad record stops the run.
    assert_error(invoke(data, "index", path, "-c", "mixed", "--no-progress"), f"{path}:2: malformed JSON")
    assert EdgeCatalog(data).names() == []
    result = ok(invoke(data, "index", path, "-c", "mixed", "--skip-bad", "--json", "--no-progress"))
    (summary,) = json_lines(result)
    assert (summary["documents"], summary["chunks"], summary["points"]) == (2, 2, 2)
    assert (summary["skipped_empty"], summary["skipped_bad"], summary["skipped"]) == (3, 2, 5)
    assert "skipped 5: 3 empty, 2 bad" in " ".join(result.stderr.split())


def test_empty_texts_are_skipped_and_counted(tmp_path):
    data = tmp_path / "data"
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"_id": "a", "text": "Hedgehogs eat insects."}, {"_id": "b", "text": ""}, {"_id": "c", "text": "  \n "},
    ])
    (summary,) = json_lines(ok(invoke(data, "index", path, "-c", "sparse", "--json", "--no-progress")))
    assert (summary["documents"], summary["points"], summary["skipped_empty"], summary["skipped_bad"]) == (1, 1, 2, 0)


def test_huge_document_is_chunked_not_truncated(tmp_path, tokenizer):
    data = tmp_path / "data"
    text = plain_huge_text(20_000, ending="In the final paragraph the zebra plays a golden saxophone.")
    path = write_jsonl(tmp_path / "huge.jsonl", [{"_id": "huge", "text": text}])
    expected = TokenChunker(tokenizer, 254, 32, 256).split(Document("huge", text))
    assert len(expected) > 80
    (summary,) = json_lines(ok(invoke(data, "index", path, "-c", "huge", "--json", "--no-progress")))
    assert (summary["documents"], summary["chunks"], summary["points"]) == (1, len(expected), len(expected))
    (record,) = json_lines(ok(invoke(data, "search", "zebra playing a golden saxophone", "-c", "huge", "-k", "1",
                                     "--json")))
    hit = record["hits"][0]
    assert (hit["doc_id"], hit["chunk"]) == ("huge", len(expected) - 1)
    assert hit["text"].endswith("golden saxophone.")


def test_malformed_plan(built):
    data, _, _ = built
    assert_error(invoke(data, "search", "x", "-c", "docs", "--plan", "64-400"),
                 "invalid plan '64-400'", "is not DIM:LIMIT")
    assert_error(invoke(data, "search", "x", "-c", "docs", "--plan", "100:50"),
                 "dim 100 is not in the collection's dims [64, 128, 256, 384]")


# --- another model ---------------------------------------------------------------------------


def test_another_model_is_refused(built, perturbed_model_dir):
    data, corpus, _ = built
    line = assert_error(invoke(data, "index", corpus, "-c", "docs", "--model", perturbed_model_dir, "--no-progress"),
                        "collection 'docs' was built with model 'sentence-transformers/all-MiniLM-L6-v2'",
                        "is another model")
    assert str(perturbed_model_dir.resolve()) in line
    assert_error(invoke(data, "search", "x", "-c", "docs", "--model", perturbed_model_dir),
                 "search it with the model that built it")
    assert_error(invoke(data, "index", corpus, "-c", "docs", "--model", perturbed_model_dir / "nope",
                        "--no-progress"), "cannot load model")
    with EdgeCatalog(data).open("docs") as coll:
        assert coll.count() == N_DOCS


# --- known bugs ----------------------------------------------------------------------------------


def test_search_table_shows_brackets_verbatim(built):
    data, _, _ = built
    result = invoke(data, "search", "what does a[i] or a closing [/] tag mean", "-c", "docs", "-k", "1")
    ok(result)
    assert "a[i]" in result.stdout and "[/]" in result.stdout


def test_corrupt_collection_spec_is_a_clear_error(tmp_path):
    data = tmp_path / "data"
    synthetic_collection(data, "broken")
    (data / "collections" / "broken" / "collection.json").write_text('{"name": "broken"')
    assert_error(invoke(data, "info", "broken"), "collection 'broken': unreadable")


def test_queries_file_larger_than_one_batch(built, tmp_path, monkeypatch):
    """--queries searches in slices, so a file longer than one batch (or than MAX_BATCH) is searched whole."""
    import retriever.cli.search as cli
    import retriever.query.validation

    monkeypatch.setattr(cli, "QUERY_BATCH", 4)
    monkeypatch.setattr(retriever.query.validation, "MAX_BATCH", 4)
    data, _, _ = built
    queries = write_jsonl(tmp_path / "q.jsonl", [{"_id": f"q{i}", "text": f"query {i}"} for i in range(11)])
    result = invoke(data, "search", "--queries", queries, "-c", "docs", "-k", "1", "--json")
    ok(result)
    assert [line["query_id"] for line in json_lines(result)] == [f"q{i}" for i in range(11)]


# --- crash safety: kill -9 a real `funnel index`, then run it again --------------------------------


def _wait_for(predicate, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"funnel index ended (rc {proc.returncode}) before {what}:\n{err.decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_killed_index_run_is_finished_by_a_rerun(tmp_path):
    n_docs = 3000  # two groups of chunks (2,048 + 952): the kill lands after the first group was written
    subjects = ["river", "castle", "engine", "garden", "planet", "violin", "market", "glacier"]
    verbs = ["crosses", "guards", "powers", "feeds", "orbits", "serenades", "trades", "carves"]
    corpus = write_jsonl(tmp_path / "many.jsonl", [
        {"_id": f"d{i}", "text": f"The {subjects[i % 8]} {verbs[(i // 8) % 8]} item {i}."} for i in range(n_docs)
    ])
    data = tmp_path / "data"
    coll_dir = data / "collections" / "crash"
    cmd = [sys.executable, "-m", "cli", "--data-dir", str(data), "index", str(corpus), "-c", "crash", "--no-progress",
           "--json", "--batch-size", "128"]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(coll_dir.is_dir, proc, 240, "the collection directory appeared")
        _wait_for(lambda: any(coll_dir.glob("shard/segments/*/vector_storage-*/vectors/*.mmap")), proc, 240,
                  "points were written")
        t_written = time.monotonic()
        time.sleep(0.2)
        assert proc.poll() is None, "the run finished before it could be killed: use a bigger corpus"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    catalog = EdgeCatalog(data)
    assert catalog.names() == ["crash"]
    with catalog.open("crash") as coll:  # the dead process's lock is gone
        partial = coll.count()
    assert 0 < partial < n_docs

    t_killed = time.monotonic()
    rerun = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, timeout=480)
    print(f"phases: written {t_written - t0:.1f}s killed {t_killed - t0:.1f}s rerun {time.monotonic() - t_killed:.1f}s partial {partial}")
    assert rerun.returncode == 0, rerun.stderr.decode()[-3000:]
    summary = json.loads(rerun.stdout.decode().strip().splitlines()[-1])
    assert (summary["documents"], summary["chunks"], summary["points"]) == (n_docs, n_docs, n_docs)
    assert summary["unchanged"] == partial, "points written before the kill are not encoded again"

    with catalog.open("crash") as coll:
        assert coll.count() == n_docs
        keys, offset = [], None
        while True:
            page, offset = coll.shard.scroll(ScrollRequest(offset=offset, limit=1000, with_payload=True))
            keys.extend((r.payload["doc_id"], r.payload["chunk"]) for r in page)
            if offset is None:
                break
    assert len(keys) == n_docs
    assert set(keys) == {(f"d{i}", 0) for i in range(n_docs)}, "every chunk exactly once"


def test_progress_lines_without_a_terminal(capsys):
    """Without a terminal the bar would print nothing until the end: plain lines come instead."""
    from retriever.cli.display import IndexProgressBar

    bar = IndexProgressBar(enabled=True, plain=True, every=0.0)
    bar.start(10)
    bar.advance(0, 512)
    bar.advance(4, 100)
    bar.stop()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("indexing: 0/10 documents, 512 chunks, ")
    assert lines[1].startswith("indexing: 4/10 documents, 612 chunks, ")
    quiet = IndexProgressBar(enabled=False, plain=True, every=0.0)
    quiet.start(1)
    quiet.advance(1, 1)
    quiet.stop()
    assert capsys.readouterr().err == ""

"""`funnel pairs misses` and `funnel pairs feedback` on a real indexed collection and a real /feedback log."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from conftest import TOPIC_DOCS, TOPIC_QUERIES, assert_cli_error, topic_records, write_jsonl

from cli import main
from retriever.ingest.indexer import index_corpus
from retriever.service import BackgroundServer, ServiceConfig
from retriever.store.edge.catalog import EdgeCatalog
from tuner.pairs import load_pairs

TEXT = {doc_id: text for doc_id, _, text in TOPIC_DOCS}


@pytest.fixture(scope="module")
def home(tmp_path_factory, embedder) -> Path:
    """The topic corpus indexed as 'topics', and a feedback log written by the real service's POST /feedback."""
    root = tmp_path_factory.mktemp("loop")
    corpus = write_jsonl(root / "corpus.jsonl", topic_records())
    catalog = EdgeCatalog(root / "data")
    index_corpus(catalog, "topics", [corpus], embedder)
    collection = catalog.open("topics")
    log = root / "data" / "feedback" / "topics.jsonl"
    server = BackgroundServer(collection, lambda: embedder, ServiceConfig(feedback_path=log))
    with server, httpx.Client(base_url=server.url, timeout=60) as client:
        for body in ({"query": "bowed string instruments", "doc_id": "violin"},
                     {"query": "hot drinks from beans", "doc_id": "coffee", "chunk": 0, "note": "rank 4"},
                     {"query": "bowed string instruments", "doc_id": "violin"}):  # a repeat
            assert client.post("/feedback", json=body).status_code == 200
    collection.close()
    return root


def run(home: Path, *args: str):  # noqa: ANN201 - click Result
    return CliRunner().invoke(main, ["--data-dir", str(home / "data"), "pairs", *args])


def qrels(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["query-id", "corpus-id", "score"])
        w.writerows(rows)
    return path


@pytest.fixture
def queries(tmp_path) -> Path:
    return write_jsonl(tmp_path / "queries.jsonl", [{"_id": q, "text": t} for q, t, _ in TOPIC_QUERIES])


def test_misses_become_pairs_with_the_relevant_chunk(home, queries, tmp_path):
    judged = qrels(tmp_path / "qrels.tsv", [
        ("q-volcano", "volcano", 1), ("q-photo", "photosynthesis", 1),      # found at k=1
        ("q-rates", "violin", 1),                                          # judged against the wrong passage: a miss
        ("q-bread", "mars", 1), ("q-bread", "ghost-doc", 1),               # a miss; one relevant doc is not stored
        ("q-violin", "violin", 0),                                         # score 0: not judged relevant
    ])
    out = tmp_path / "misses.jsonl"
    result = run(home, "misses", "-c", "topics", "--queries", str(queries), "--qrels", str(judged), "--out", str(out),
                 "-k", "1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["queries"], report["found"], report["missed"], report["missing_documents"]) == (4, 2, 2, 1)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_query = {line["query_id"]: line for line in lines}
    assert set(by_query) == {"q-rates", "q-bread"}
    assert by_query["q-rates"]["positive"] == TEXT["violin"] and by_query["q-rates"]["doc_id"] == "violin"
    assert by_query["q-bread"]["positive"] == TEXT["mars"] and by_query["q-bread"]["chunk"] == 0
    assert by_query["q-bread"]["anchor"] == dict((q, t) for q, t, _ in TOPIC_QUERIES)["q-bread"]
    pairs, _ = load_pairs(str(out))  # what funnel tune --train reads
    assert len(pairs) == 2


def test_misses_with_a_larger_k_finds_more(home, queries, tmp_path):
    judged = qrels(tmp_path / "qrels.tsv", [("q-rates", "violin", 1)])
    out = tmp_path / "m.jsonl"
    result = run(home, "misses", "-c", "topics", "--queries", str(queries), "--qrels", str(judged), "--out", str(out),
                 "-k", str(len(TOPIC_DOCS)), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["missed"] == 0 and out.read_text() == ""


def test_feedback_log_from_the_service_becomes_pairs(home, tmp_path):
    out = tmp_path / "fb.jsonl"
    result = run(home, "feedback", "-c", "topics", "--out", str(out), "--json")  # the service's default log path
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["lines"], report["pairs"], report["duplicates"]) == (3, 2, 1)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(x["anchor"], x["positive"], x["doc_id"], x["chunk"]) for x in lines] == [
        ("bowed string instruments", TEXT["violin"], "violin", 0),
        ("hot drinks from beans", TEXT["coffee"], "coffee", 0),
    ]


def test_feedback_skips_and_counts_chunks_gone_and_other_collections(home, tmp_path):
    log = write_jsonl(tmp_path / "log.jsonl", [
        {"collection": "topics", "query": "volcanic eruptions", "doc_id": "volcano", "chunk": 0},
        {"collection": "topics", "query": "a chunk that was re-indexed away", "doc_id": "volcano", "chunk": 7},
        {"collection": "topics", "query": "a document dropped since", "doc_id": "no-such-doc", "chunk": 0},
        {"collection": "other", "query": "another collection's feedback", "doc_id": "violin", "chunk": 0},
        {"query": "no collection field: taken", "doc_id": "piano"},
    ])
    out = tmp_path / "fb.jsonl"
    result = run(home, "feedback", "-c", "topics", "--feedback-file", str(log), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["pairs"], report["missing_chunks"], report["other_collection"]) == (2, 2, 1)
    assert [json.loads(x)["doc_id"] for x in out.read_text().splitlines()] == ["volcano", "piano"]


def test_malformed_feedback_line_is_named_and_nothing_is_written(home, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"query": "fine", "doc_id": "violin"}\n{"query": "cut off", "doc_\n{"query": "x", "doc_id": 3}\n')
    out = tmp_path / "fb.jsonl"
    out.write_text("earlier pairs\n")
    assert_cli_error(run(home, "feedback", "-c", "topics", "--feedback-file", str(log), "--out", str(out)),
                     f"{log}:2: not JSON", "--skip-bad")
    assert out.read_text() == "earlier pairs\n"  # nothing lost
    result = run(home, "feedback", "-c", "topics", "--feedback-file", str(log), "--out", str(out), "--skip-bad",
                 "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["bad_lines"] == 2 and report["pairs"] == 1 and f"{log}:2" in report["first_bad"]


@pytest.mark.parametrize("case", ["missing-collection", "no-log", "out-is-dir", "log-is-dir"])
def test_feedback_bad_input_is_one_line(home, tmp_path, case):
    out = tmp_path / "fb.jsonl"
    log = write_jsonl(tmp_path / "log.jsonl", [{"query": "q", "doc_id": "violin"}])
    args, fragment = {
        "missing-collection": (["-c", "nope", "--feedback-file", str(log), "--out", str(out)], "nope"),
        "no-log": (["-c", "topics", "--feedback-file", str(tmp_path / "none.jsonl"), "--out", str(out)],
                   "no feedback log"),
        "out-is-dir": (["-c", "topics", "--feedback-file", str(log), "--out", str(tmp_path)], "is a directory"),
        "log-is-dir": (["-c", "topics", "--feedback-file", str(tmp_path), "--out", str(out)], "is a directory"),
    }[case]
    assert_cli_error(run(home, "feedback", *args), fragment)
    assert not out.exists()


@pytest.mark.parametrize("case", ["no-header", "bad-score", "missing-collection", "unjudged", "missing-qrels"])
def test_misses_bad_input_is_one_line(home, queries, tmp_path, case):
    out = tmp_path / "m.jsonl"
    good = qrels(tmp_path / "good.tsv", [("q-rates", "violin", 1)])
    no_header = tmp_path / "nohead.tsv"
    no_header.write_text("q-rates\tviolin\t1\n")
    bad_score = tmp_path / "badscore.tsv"
    bad_score.write_text("query-id\tcorpus-id\tscore\nq-rates\tviolin\tmany\n")
    unjudged = qrels(tmp_path / "unjudged.tsv", [("q-unknown", "violin", 1)])
    collection, file, fragment = {
        "no-header": ("topics", no_header, "needs a header"),
        "bad-score": ("topics", bad_score, f"{bad_score}:2: score 'many' is not a number"),
        "missing-collection": ("nope", good, "nope"),
        "unjudged": ("topics", unjudged, "no query of the queries file is judged"),
        "missing-qrels": ("topics", tmp_path / "none.tsv", "none.tsv"),
    }[case]
    assert_cli_error(run(home, "misses", "-c", collection, "--queries", str(queries), "--qrels", str(file),
                         "--out", str(out)), fragment)
    assert not out.exists()

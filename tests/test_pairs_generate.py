"""`funnel pairs generate`, offline: chunks as funnel index makes them, sampling, formats, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import assert_cli_error, bad_corpora, topic_records, write_jsonl

from cli import main
from retriever.ingest.indexer import index_corpus
from retriever.store.edge.catalog import EdgeCatalog
from tuner.pairs import load_pairs
from tuner.pseudo_queries import sentences

LONG_DOC = " ".join(f"Sentence number {i} says that segment {i % 7} grew by {i} percent in the year." for i in range(120))


def generate(*args: str):  # noqa: ANN201 - click Result
    """The model-free method (fast, deterministic): what these tests check is everything around it."""
    return CliRunner().invoke(main, ["pairs", "generate", "--offline", "ict", *args])


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_jsonl(tmp_path / "corpus.jsonl", [*topic_records(), {"_id": "long", "title": "", "text": LONG_DOC}])


def test_offline_pairs_come_from_the_chunks_funnel_index_stores(corpus, tmp_path, embedder):
    out = tmp_path / "pairs.jsonl"
    result = generate(str(corpus), "--out", str(out), "--questions-per-chunk", "2", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    pairs = read(out)
    assert report["method"] == "offline/ict" and report["pairs"] == len(pairs) > 0
    assert set(pairs[0]) == {"anchor", "positive", "doc_id", "chunk"}
    catalog = EdgeCatalog(tmp_path / "data")
    index_corpus(catalog, "c", [corpus], embedder)
    with catalog.open("c") as coll:
        from retriever.ingest.chunking import chunk_id

        stored = coll.payloads([chunk_id(p["doc_id"], p["chunk"]) for p in pairs])
        assert len(stored) == len({(p["doc_id"], p["chunk"]) for p in pairs})
        for p in pairs:  # the query is a sentence of the stored chunk, the positive is drawn from it too
            text = stored[chunk_id(p["doc_id"], p["chunk"])]["text"]
            assert p["anchor"] in sentences(text) or p["anchor"] in text
            assert all(s in text for s in sentences(p["positive"]))
    long_chunks = {p["chunk"] for p in pairs if p["doc_id"] == "long"}
    assert len(long_chunks) > 3  # a long document is several chunks, each with its own pairs
    assert len(load_pairs(str(out))[0]) == len(pairs)  # what funnel tune --train reads


def test_a_rerun_whose_remaining_chunks_give_no_question_ends_well(tmp_path):
    """A chunk too short for a pseudo-query is tried again on every rerun; when it is all that is left,
    the rerun keeps the pairs already written and ends with exit 0 (it was an error: "no usable question
    for any of the 1 chunks … check --llm-model", advice for another method)."""
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": "long", "text": LONG_DOC}, {"_id": "tiny", "text": "Too short."}])
    out = tmp_path / "p.jsonl"
    first = generate(str(corpus), "--out", str(out), "--round-trip-k", "0", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["no_questions"] == 1
    written = read(out)
    again = generate(str(corpus), "--out", str(out), "--round-trip-k", "0", "--json")
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert (report["generated"], report["no_questions"], report["pairs"]) == (0, 1, 0) and report["resumed"] > 0
    assert read(out) == written
    alone = write_jsonl(tmp_path / "t.jsonl", [{"_id": "tiny", "text": "Too short."}])
    line = assert_cli_error(generate(str(alone), "--out", str(tmp_path / "t-pairs.jsonl")), "no usable question")
    assert "--llm-model" not in line and "too short" in line


def test_limit_is_a_seeded_sample_and_a_rerun_resumes(corpus, tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    for out, seed in ((a, "1"), (b, "1"), (c, "2")):
        assert generate(str(corpus), "--out", str(out), "--limit", "5", "--seed", seed).exit_code == 0
    keys = [{(p["doc_id"], p["chunk"]) for p in read(x)} for x in (a, b, c)]
    assert keys[0] == keys[1] and len(keys[0]) == 5 and keys[0] != keys[2]
    assert read(a) == read(b)  # same seed, same pairs
    again = generate(str(corpus), "--out", str(a), "--limit", "5", "--seed", "1", "--json")
    report = json.loads(again.stdout)
    assert (report["resumed"], report["pairs"]) == (5, 0) and read(a) == read(b)


def test_every_corpus_format_index_reads(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Volcanoes\n\nMagma rises through the crust. Lava and ash burst out of the vent.")
    csv_file = tmp_path / "c.csv"
    csv_file.write_text('id,text\nx,"Bread needs flour, water and yeast. The dough rises before it is baked."\n')
    out = tmp_path / "p.jsonl"
    result = generate(str(docs), str(csv_file), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert {p["doc_id"] for p in read(out)} == {"a.md", "x"}


@pytest.mark.parametrize("case", ["missing", "empty", "malformed", "not-utf8-jsonl"])
def test_bad_corpus_is_one_line(tmp_path, case):
    path, fragments = bad_corpora(tmp_path / "bad")[case]
    out = tmp_path / "p.jsonl"
    assert_cli_error(generate(str(path), "--out", str(out)), *fragments)
    assert not out.exists()


def test_bad_options_are_one_line(corpus, tmp_path):
    out = tmp_path / "p.jsonl"
    assert_cli_error(generate(str(corpus), "--out", str(tmp_path)), "is a directory")
    assert_cli_error(generate(str(corpus), "--out", str(out), "--method", "llm"), "--llm-url")
    assert_cli_error(generate(str(corpus), "--out", str(out), "--questions-per-chunk", "0"), "--questions-per-chunk")
    assert_cli_error(generate(str(corpus), "--out", str(out), "--limit", "0"), "--limit")
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Write {n} questions.")
    assert_cli_error(generate(str(corpus), "--out", str(out), "--prompt-file", str(prompt)), "no {chunk} placeholder")
    prompt.write_text("Questions about {chunk} in {lang}")
    assert_cli_error(generate(str(corpus), "--out", str(out), "--prompt-file", str(prompt)), "unknown placeholder {lang}")
    assert not out.exists()
    out.write_text("this is not a pairs file\n")
    assert_cli_error(generate(str(corpus), "--out", str(out)), f"{out}:1", "cannot resume")
    assert out.read_text() == "this is not a pairs file\n"  # nothing lost


def test_a_cut_off_last_line_is_dropped_on_resume(corpus, tmp_path):
    out = tmp_path / "p.jsonl"
    assert generate(str(corpus), "--out", str(out), "--limit", "4").exit_code == 0
    whole = out.read_text()
    last = whole.splitlines()[-1]
    key = (json.loads(last)["doc_id"], json.loads(last)["chunk"])
    # As if killed in the middle of writing the last chunk's only line:
    kept = [line for line in whole.splitlines() if (json.loads(line)["doc_id"], json.loads(line)["chunk"]) != key]
    out.write_text("".join(line + "\n" for line in kept) + last[: len(last) // 2])
    result = generate(str(corpus), "--out", str(out), "--limit", "4", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(out.read_text().splitlines()) == sorted(whole.splitlines())

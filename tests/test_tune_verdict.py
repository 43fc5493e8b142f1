"""Pairs that make the model better, never worse (issue 25): the held-out split that fits a few hundred
pairs, the verdict that keeps the base model when tuning made it worse, the round-trip filter of
generated questions, and hard negatives that are never the positive or a duplicate of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_beir, topic_records, write_jsonl
from test_pairs_llm import scripted  # noqa: F401 - the scripted OpenAI-protocol server

from cli import main
from retriever.errors import TuneError
from tuner.evaluation import beir_ir_data, held_out_count, ndcg_per_query, split_pairs
from tuner.pairs import load_pairs
from tuner.round_trip import RoundTrip
from tuner.training import REPORT_FILE, WORSE_DIR
from tuner.verdict import judge

# --- the held-out split fits the data ---------------------------------------------------------------


@pytest.mark.parametrize("anchors, held", [(194, 50), (500, 50), (1_000, 100), (120, 36), (67, 20)])
def test_default_split_holds_out_enough_and_leaves_most_to_train(anchors, held):
    assert held_out_count(anchors, None) == held


def test_the_reported_case_194_anchors_splits_by_default(tmp_path):
    """The issue's new user: ~200 pairs, `funnel tune` with its defaults stopped at "eval split too small"."""
    pairs, _ = load_pairs(write_jsonl(tmp_path / "p.jsonl", [{"anchor": f"q{i}", "positive": f"p{i % 150}"}
                                                            for i in range(194)]))
    train, data = split_pairs(pairs)
    assert (len(train), len(data.queries)) == (144, 50)
    assert not set(train["anchor"]) & set(data.queries.values())
    assert len(data.corpus) == 150  # every distinct positive, the trained ones too


def test_too_few_questions_to_hold_out_is_one_clear_error(tmp_path):
    with pytest.raises(TuneError, match=r"19 held-out queries from 66 anchors \(at least 20\); give at least 67 "
                                        r"distinct questions or --eval BEIR_DIR"):
        held_out_count(66, None)
    with pytest.raises(TuneError, match="raise --eval-split"):
        held_out_count(100, 0.1)  # an explicit fraction is taken as given


# --- the verdict -------------------------------------------------------------------------------------


def test_verdict_calls_a_dim_worse_only_beyond_noise():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 1.0, 200)
    jitter = rng.normal(0, 0.05, 200)
    verdict = judge("set", {64: base, 128: base, 384: base},
                    {64: base - 0.1 + jitter, 128: base + jitter - jitter.mean(), 384: np.minimum(base + 0.1, 1.0)})
    calls = {d.dim: d.call for d in verdict.dims}
    assert calls == {64: "worse", 128: "same", 384: "better"}
    assert verdict.call == "worse" and verdict.worse_dims == [64]
    assert judge("set", {64: base}, {64: base}).call == "same"  # identical: no noise, no change
    assert judge("set", {64: base}, {64: base + 0.01}).call == "better"


def test_per_query_ndcg_is_the_evaluators_ndcg(embedder, tmp_path):
    """The verdict's per-query NDCG@10 averages to the evaluator's cosine_ndcg@10 (test_tuner checks that
    one against sentence-transformers' own InformationRetrievalEvaluator)."""
    from tuner.evaluation import MatryoshkaIREvaluator

    data = beir_ir_data(make_beir(tmp_path / "b"))
    per_query = ndcg_per_query(embedder.model, data, [64, 384])
    evaluator = MatryoshkaIREvaluator(data, [64, 384], 64)
    table = evaluator.ndcg_by_dim(evaluator(embedder.model))
    for dim in (64, 384):
        assert len(per_query[dim]) == len(data.queries)
        assert per_query[dim].mean() == pytest.approx(table[dim], abs=1e-6)


def _shifted_pairs(path: Path) -> Path:
    """A deliberately bad pair file: every question about one topic paired with a passage of the next
    topic (what a generator does when another passage answers its question)."""
    from jargon_pairs import TOPICS

    topics = list(TOPICS)
    rows = []
    for i, topic in enumerate(topics):
        wrong = topics[(i + 1) % len(topics)]
        for fact, other in zip(TOPICS[topic][1][:2], TOPICS[wrong][1]):
            rows.append({"anchor": f"What is true of {topic}: {fact.rstrip('.').lower()}?",
                         "positive": f"{other} ({wrong} note)"})
    return write_jsonl(path, rows)


def test_bad_pairs_make_the_guard_keep_the_base_model(embedder, tmp_path):
    """`funnel tune` on the bad file, judged on plain topic questions: worse at some dim beyond noise, so
    one warning line, OUTPUT holds the base model unchanged, the tuned one is kept aside, the report says so."""
    from jargon_pairs import write_jargon_task

    _, _, judged = write_jargon_task(tmp_path / "task")  # 64 plain topic questions over 64 passages
    out = tmp_path / "model"
    result = CliRunner().invoke(main, ["tune", "--train", str(_shifted_pairs(tmp_path / "bad.jsonl")), "--eval",
                                       str(judged), "--output", str(out), "--batch-size", "16", "--lr", "1e-3",
                                       "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kept"] == "base" and report["verdict"]["call"] == "worse" and report["verdict"]["worse_dims"]
    assert report["worse_model"] == str(out / WORSE_DIR)
    stderr = " ".join(result.stderr.split())  # the console wraps long lines
    assert stderr.count("warning:") == 1 and "warning: tuning made the model worse than" in stderr, stderr
    assert f"{out} holds the base model unchanged, the tuned one is in {out / WORSE_DIR}" in stderr
    assert json.loads((out / REPORT_FILE).read_text())["kept"] == "base"
    assert "Not better" in (out / "README.md").read_text()
    from sentence_transformers import SentenceTransformer

    texts = ["Lava flows from the volcano.", "Knead the bread dough."]
    base = embedder.model.encode(texts)
    assert np.allclose(SentenceTransformer(str(out), device="cpu").encode(texts), base, atol=1e-5)
    assert not np.allclose(SentenceTransformer(str(out / WORSE_DIR), device="cpu").encode(texts), base, atol=1e-3)


def test_without_judged_queries_the_held_out_pairs_decide(tmp_path):
    """No --eval, the default split (70 questions: 21 held out): good pairs trained far too hard (lr 5e-3)
    lose on their own held-out part, so the base model is kept; the split needs no option."""
    from jargon_pairs import TOPICS

    facts = [(topic, fact) for topic, (_, texts) in TOPICS.items() for fact in texts][:70]
    pairs = write_jsonl(tmp_path / "p.jsonl", [{"anchor": fact.rstrip("."), "positive": f"{fact} ({topic} note)"}
                                               for topic, fact in facts])
    out = tmp_path / "model"
    result = CliRunner().invoke(main, ["tune", "--train", str(pairs), "--output", str(out), "--batch-size", "16",
                                       "--lr", "5e-3", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["eval_set"] == "held-out" and report["verdict"]["queries"] == 21 and report["pairs"]["train"] == 49
    assert report["kept"] == "base" and report["verdict"]["worse_dims"], report["verdict"]
    assert (out / WORSE_DIR / "model.safetensors").is_file() and (out / "model.safetensors").is_file()


# --- round-trip consistency --------------------------------------------------------------------------


def test_round_trip_ranks_the_source_chunk_and_counts_duplicates_once(embedder):
    texts = [r["text"] for r in topic_records()]
    volcano, bread = texts[0], texts[1]
    trip = RoundTrip(embedder, [*texts, volcano], k=1)  # the volcano text twice: one chunk, not a competitor
    assert trip.ranks(["How does magma reach the surface?"], volcano) == [0]
    assert trip.keep(["How does magma reach the surface?", "What makes bread dough rise?"], volcano) == [True, False]
    assert trip.ranks(["What makes bread dough rise?"], bread) == [0]


def test_generated_question_answered_by_another_passage_is_dropped(scripted, tmp_path):  # noqa: F811
    """Crafted model output over the OpenAI protocol: each chunk gets the same two questions, one about
    volcanoes and one about bread; only the chunk that answers a question keeps it."""
    url, handler = scripted
    handler.script = [(200, "1. How does magma reach the surface?\n2. What makes bread dough rise?")]
    corpus = write_jsonl(tmp_path / "c.jsonl", topic_records())
    out = tmp_path / "p.jsonl"
    result = CliRunner().invoke(main, ["pairs", "generate", str(corpus), "--out", str(out), "--llm-url", url,
                                       "--llm-model", "m", "--round-trip-k", "1", "--json"])
    assert result.exit_code == 0, result.output
    pairs = {(p["anchor"], p["doc_id"]) for p in map(json.loads, out.read_text().splitlines())}
    assert pairs == {("How does magma reach the surface?", "volcano"), ("What makes bread dough rise?", "bread")}
    report = json.loads(result.stdout)
    assert report["dropped"]["round_trip"] == 2 * len(topic_records()) - 2
    assert report["no_questions"] == len(topic_records()) - 2
    assert "22 not in the base model's top 1 for their chunk (round trip)" in " ".join(result.stderr.split())


# --- hard negatives ------------------------------------------------------------------------------------


def test_negatives_are_never_the_positive_or_a_duplicate_of_it(embedder, tmp_path):
    """The same question with two positives: neither is the other's negative; a positive repeated for
    another question is never its own negative; a near-copy of the positive (above 95 % of its score) is
    skipped."""
    from tuner.training import mine_negatives

    texts = [r["text"] for r in topic_records()]
    volcano = texts[0]
    rows = [{"anchor": f"Question {i} about {r['title'].lower()}?", "positive": r["text"]}
            for i, r in enumerate(topic_records())]
    rows += [{"anchor": rows[1]["anchor"], "positive": texts[0]},  # a second positive of question 1
             {"anchor": "Another question about volcanoes?", "positive": volcano},  # the volcano text again
             {"anchor": "How do volcanoes erupt?", "positive": volcano},
             {"anchor": "Near copy", "positive": volcano.replace("lava and ash", "lava and ash.")}]
    pairs, _ = load_pairs(write_jsonl(tmp_path / "p.jsonl", rows))
    mined = mine_negatives(pairs, embedder.model, 3, batch_size=64)
    positives: dict[str, set[str]] = {}
    for row in rows:
        positives.setdefault(row["anchor"], set()).add(row["positive"])
    near_copy = rows[-1]["positive"]
    assert sum(volcano in positives[row["anchor"]] for row in mined) >= 3  # the rows the checks below are about
    for row in mined:
        negatives = {row[f"negative_{i}"] for i in (1, 2, 3)}
        assert not negatives & positives[row["anchor"]], row
        if volcano in positives[row["anchor"]]:
            assert near_copy not in negatives, row

"""Adaptive search: the settle signal and threshold rule, the calibration record, and adaptive search on
a real HNSW-walked collection (calibrated on some queries, held to its recall on others)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import retriever.calibration.adaptive as adaptive_calibrate
import retriever.store.edge.collection as edge_store
from retriever.calibration.adaptive import ALWAYS, NEVER, calibrate_adaptive, choose_threshold, recall_each
from retriever.calibration.defaults import adaptive_by_default, adaptive_rule_for
from retriever.calibration.plans import calibrate
from retriever.calibration.record import scale_rule
from retriever.errors import InvalidPlanError
from retriever.query.adaptive import AdaptiveRule, AdaptiveSpec, first_plan, settle_signal
from retriever.query.plan import parse_plan
from retriever.query.result import Depth, SearchResult, plan_depth
from retriever.query.spec import QuerySpec
from retriever.search import search_each
from retriever.store.base import PointBatch
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.spec import CollectionSpec

LADDER = (64, 128, 256, 384)
K = 10


# -- the signal and the threshold rule -------------------------------------------------------------

def test_settle_signals():
    scores = [1.0 - 0.01 * i for i in range(20)]
    scores[10] = 0.80  # a gap right after rank 10
    assert settle_signal(scores, 10, 10, "gap") == pytest.approx(scores[9] - 0.80)
    assert settle_signal(scores, 10, 10, "margin") == pytest.approx(scores[9] - scores[19])
    assert settle_signal(scores, 10, 10, "score") == pytest.approx(scores[9])
    assert settle_signal(scores + [0.1], 10, 10, "margin") == pytest.approx(scores[9] - scores[19])  # probe only
    assert settle_signal(scores[:15], 10, 10, "margin") == -math.inf  # too few hits to judge: widen


def test_choose_threshold_widens_the_lowest_signals_until_the_target():
    signals = np.array([0.5, 0.1, 0.3, 0.2, 0.4])
    shallow = np.array([1.0, 0.0, 1.0, 0.5, 1.0])
    deep = np.ones(5)
    threshold, widened, recall = choose_threshold(signals, shallow, deep, target=0.85)
    assert (widened, recall) == (1, 0.9)  # widening 0.1 (the miss) is enough
    assert 0.1 < threshold <= 0.2 and int(np.sum(signals < threshold)) == 1
    threshold, widened, recall = choose_threshold(signals, shallow, deep, target=1.0)
    assert widened == 2 and recall == 1.0 and int(np.sum(signals < threshold)) == 2
    assert choose_threshold(signals, shallow, deep, target=0.5)[:2] == (NEVER, 0)
    assert choose_threshold(signals, shallow, deep * 0.5, target=0.99)[:2] == (ALWAYS, 5)  # unreachable: widen all


def test_choose_threshold_widens_unjudgeable_and_tied_queries_together():
    signals = np.array([-math.inf, 0.2, 0.2, 0.6])
    threshold, widened, _ = choose_threshold(signals, np.array([1.0, 0.0, 1.0, 1.0]), np.ones(4), target=0.8)
    assert widened == 3 and int(np.sum(signals < threshold)) == 3  # the -inf one, and both ties
    threshold, widened, _ = choose_threshold(signals, np.ones(4), np.ones(4), target=1.0)
    assert widened == 1 and int(np.sum(signals < threshold)) == 1  # -inf is always widened


def test_rule_scales_with_k_and_depth_counts_candidates():
    rule = scale_rule({"k": 10, "first_plan": "64:40,384:20", "probe": 10, "signal": "gap", "threshold": 0.01,
                       "first_ef": 40}, LADDER, 20)
    assert str(rule.first) == "64:80,384:40" and rule.probe == 20 and rule.first_ef == 80 and rule.signal == "gap"
    assert str(first_plan([(64, 5), (128, 3)], 384, 10, 10)) == "64:20,128:20,384:20"  # kept ≥ k + probe
    assert plan_depth(parse_plan("64:400,128:200", LADDER, 10), 0) == Depth(1, 3, 400 + 400 + 200)
    assert plan_depth(None, 1234) == Depth(1, 1, 1234)
    assert Depth(1, 2, 60) + Depth(1, 3, 600) == Depth(2, 5, 660)
    hits = SearchResult([], Depth(1, 2, 3))
    assert hits == [] and isinstance(hits, list) and hits.depth.to_dict() == {"passes": 1, "stages": 2, "candidates": 3}


# -- a real collection whose graph is walked -----------------------------------------------------

def _prefixes(full: np.ndarray) -> dict[int, np.ndarray]:
    return {d: full[:, :d] / np.linalg.norm(full[:, :d], axis=1, keepdims=True) for d in LADDER}


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    """4,000 Matryoshka-like points (variance decays along the dims) in a collection whose 64-dim graph
    is walked, and 160 queries near stored points: 80 to calibrate on, 80 held out."""
    mp = pytest.MonkeyPatch()
    mp.setattr(edge_store, "INDEXING_THRESHOLD_KB", 1)
    mp.setattr(edge_store, "FULL_SCAN_THRESHOLD_KB", 1)
    rng = np.random.default_rng(11)
    scale = np.exp(-np.arange(384, dtype=np.float32) / 100)
    full = rng.standard_normal((4_000, 384)).astype(np.float32) * scale
    spec = CollectionSpec(name="walked", model="synthetic", model_fingerprint="0", model_dim=384, dims=LADDER,
                          chunk_size=16, chunk_overlap=0)
    catalog = EdgeCatalog(tmp_path_factory.mktemp("adaptive") / "data")
    ids = [f"00000000-0000-0000-0000-{i:012x}" for i in range(len(full))]
    with catalog.create(spec) as coll:
        coll.upsert(PointBatch(ids, _prefixes(full), [{"doc_id": i, "chunk": 0} for i in ids]))
        coll.finish_indexing()
    # Queries near a stored point, more or less: some rankings are settled, others crowded.
    near = full[rng.integers(0, len(full), 160)]
    noise = rng.uniform(0.3, 1.5, (160, 1)).astype(np.float32)
    queries = _prefixes(near + noise * rng.standard_normal((160, 384)).astype(np.float32) * scale)
    coll = catalog.open("walked")
    yield coll, queries
    coll.close()
    mp.undo()


def _half(queries: dict[int, np.ndarray], part: slice) -> dict[int, np.ndarray]:
    return {d: m[part] for d, m in queries.items()}


def test_adaptive_search_widens_only_unsettled_queries_and_keeps_its_recall(walked, monkeypatch):
    coll, queries = walked
    cal, held = _half(queries, slice(0, 80)), _half(queries, slice(80, 160))
    reference = coll.search(cal, None, K, with_text=False)
    fixed = calibrate(coll, cal, K, target=0.97, reference=reference).plan
    # Only narrow first passes, so that the rule must widen some queries to reach the target.
    monkeypatch.setattr(adaptive_calibrate, "FIRST_FACTORS", (2,))
    monkeypatch.setattr(adaptive_calibrate, "FIRST_SCALES", ())
    result = calibrate_adaptive(coll, cal, fixed, reference, target=0.97)
    assert result.recall >= 0.97 and 0 < result.widened_share < 1, result.record()
    assert {t["signal"] for t in result.tried} == {"margin", "gap", "score"}

    spec = AdaptiveSpec(fixed, K, with_text=False, rule=result.rule)
    found = search_each(coll, held, [spec] * 80)
    exact = coll.search(held, None, K, with_text=False)
    widened = [r.depth.passes == 2 for r in found]
    assert 0 < sum(widened) < 80  # (a) some widened, some not
    assert recall_each(found, exact, K).mean() >= 0.97 - 0.04  # (b) the calibrated recall, held out
    shallow, deep = plan_depth(result.rule.first, 0), plan_depth(fixed, 0)
    for r, wide in zip(found, widened):  # (c) depth
        assert len(r) == K
        assert r.depth == (shallow + deep if wide else shallow)
    # A settled query's hits are the first pass's top k; a widened one's are the fixed plan's.
    first = coll.search_each(held, [QuerySpec(result.rule.first, result.rule.first.k, False, None,
                                              result.rule.first_ef)] * 80)
    plain = coll.search(held, fixed, K, with_text=False)
    for r, wide, f, p in zip(found, widened, first, plain):
        assert [h.id for h in r] == [h.id for h in (p if wide else f[:K])]


def test_calibration_record_round_trips_and_old_records_load(walked):
    coll, queries = walked
    cal = _half(queries, slice(0, 40))
    reference = coll.search(cal, None, K, with_text=False)
    fixed = calibrate(coll, cal, K, target=0.9, reference=reference)
    result = calibrate_adaptive(coll, cal, fixed.plan, reference, target=0.9)
    record = fixed.record("test") | {"adaptive": result.record()}
    try:
        coll.save_calibration(fixed.record("test"))  # a record from before adaptive search
        assert adaptive_rule_for(coll, K) is None and not adaptive_by_default(coll)
        coll.save_calibration(record)
        assert adaptive_rule_for(coll, K) == result.rule
        assert adaptive_by_default(coll) is result.pays
        saved = coll.calibration()["adaptive"]
        for key in ("mean_ms_fixed", "mean_ms_adaptive", "widened_share", "adaptive_pays", "threshold", "signal"):
            assert key in saved
        assert saved["mean_ms_fixed"] > 0 and saved["mean_ms_adaptive"] > 0
        coll.save_calibration(record | {"adaptive": record["adaptive"] | {"adaptive_pays": True}})
        assert adaptive_by_default(coll)
    finally:
        (coll.path / edge_store.CALIBRATION_FILE).unlink()


def test_threshold_always_widens_every_query(walked):
    coll, queries = walked
    rule = AdaptiveRule(first_plan([(64, 20)], 384, K, K), K, "margin", ALWAYS)
    fixed = parse_plan("64:100,256:40", LADDER, K)
    found = search_each(coll, _half(queries, slice(0, 5)), [AdaptiveSpec(fixed, K, False, rule=rule)] * 5)
    assert all(r.depth.passes == 2 for r in found)  # ALWAYS widens everything


# -- the flags: Python API, CLI, HTTP (real model, a small real collection) ---------------------------

def _rule_record(threshold: float, pays: bool) -> dict:
    """A calibration record with an adaptive section (k=3: first pass 64:6 → 384:6, probe 3)."""
    return {"plan": "64:12,384:3", "k": 3, "recall_vs_exact": 1.0, "target": 0.98, "met": True, "queries": 10,
            "source": "test", "adaptive": {"k": 3, "first_plan": "64:6,384:6", "probe": 3, "signal": "margin",
                                           "threshold": threshold, "first_ef": None, "adaptive_pays": pays,
                                           "widened_share": 0.5, "mean_ms_fixed": 1.0, "mean_ms_adaptive": 0.5}}


@pytest.fixture(scope="module")
def topics(tmp_path_factory, embedder):
    from conftest import topic_records, write_jsonl

    from retriever.ingest.indexer import index_corpus

    root = tmp_path_factory.mktemp("adaptive-topics")
    corpus = write_jsonl(root / "corpus.jsonl", topic_records())
    catalog = EdgeCatalog(root / "data")
    index_corpus(catalog, "topics", [corpus], embedder)
    return catalog


def _calibrate_by_hand(catalog: EdgeCatalog, record: dict | None) -> None:
    with catalog.open("topics") as coll:
        if record is None:
            (coll.path / edge_store.CALIBRATION_FILE).unlink(missing_ok=True)
        else:
            coll.save_calibration(record)


def test_python_api_adaptive_flag(topics, embedder):
    from retriever import Retriever

    _calibrate_by_hand(topics, None)
    with Retriever(topics.open("topics"), embedder) as r:
        with pytest.raises(InvalidPlanError, match="no adaptive calibration"):
            r.search("volcano lava", k=3, adaptive=True)
        fixed = r.search("volcano lava", k=3)  # an old (or no) calibration: fixed, with a depth too
        assert fixed.depth == Depth(1, 4, 120 + 120 + 60 + 30)  # the default rule 64:120,128:60,256:30
        r.collection.save_calibration(_rule_record(ALWAYS, pays=False))
        assert r.search("volcano lava", k=3).depth.passes == 1  # adaptive not the default: fixed
        wide = r.search("volcano lava", k=3, adaptive=True)
        assert wide.depth == Depth(2, 4, 6 + 6 + 12 + 12) and [h.id for h in wide] == [h.id for h in fixed]
        r.collection.save_calibration(_rule_record(NEVER, pays=True))
        settled = r.search("volcano lava", k=3)  # now the default
        assert settled.depth == Depth(1, 2, 12) and len(settled) == 3 and settled[0].doc_id == "volcano"
        assert r.search("volcano lava", k=3, adaptive=False).depth.passes == 1
        assert r.search("volcano lava", k=3, plan="64:9").depth == Depth(1, 2, 18)  # a plan: fixed
        for bad in ({"plan": "64:9"}, {"exact": True}):
            with pytest.raises(InvalidPlanError, match="not both"):
                r.search("volcano lava", k=3, adaptive=True, **bad)
        with pytest.raises(Exception, match="True or False"):
            r.search("volcano lava", k=3, adaptive="yes")  # type: ignore[arg-type]


def test_cli_adaptive_flags(topics):
    import json

    from click.testing import CliRunner

    from cli import main

    def run(*args: str):
        return CliRunner().invoke(main, ["--data-dir", str(topics.root.parent), *args])

    _calibrate_by_hand(topics, _rule_record(ALWAYS, pays=True))
    out = run("search", "bread yeast", "-c", "topics", "-k", "3", "--json")
    assert out.exit_code == 0, out.output
    record = json.loads(out.stdout)
    assert record["adaptive"] is True and record["depth"] == {"passes": 2, "stages": 4, "candidates": 36}
    record = json.loads(run("search", "bread yeast", "-c", "topics", "-k", "3", "--json", "--fixed").stdout)
    assert record["adaptive"] is False and record["depth"] == {"passes": 1, "stages": 2, "candidates": 24}
    table = run("search", "bread yeast", "-c", "topics", "-k", "3", "--adaptive")
    assert table.exit_code == 0 and "2 passes" in table.stdout
    for bad in (("--plan", "64:9"), ("--exact",)):
        refused = run("search", "bread yeast", "-c", "topics", "--adaptive", *bad)
        assert refused.exit_code != 0 and "not both" in refused.output and len(refused.output.strip().splitlines()) == 1
    info = json.loads(run("info", "topics", "--json").stdout)
    assert info["adaptive_default"] is True and info["adaptive"]["first_plan"] == "64:6,384:6"
    assert "the default" in run("info", "topics").stdout


def test_http_adaptive_flag_and_depth(topics, embedder):
    import httpx

    from retriever.service import BackgroundServer

    _calibrate_by_hand(topics, _rule_record(ALWAYS, pays=False))
    collection = topics.open("topics")
    try:
        with BackgroundServer(collection, lambda: embedder) as server, httpx.Client(base_url=server.url) as c:
            body = c.post("/search", json={"queries": ["bread", "lava"], "k": 3}).json()
            assert body["adaptive"] is False and [r["depth"]["passes"] for r in body["results"]] == [1, 1]
            body = c.post("/search", json={"queries": ["bread", "lava"], "k": 3, "adaptive": True}).json()
            assert body["adaptive"] is True
            assert [r["depth"] for r in body["results"]] == [{"passes": 2, "stages": 4, "candidates": 36}] * 2
            for bad in ({"plan": "64:9"}, {"exact": True}):
                refused = c.post("/search", json={"query": "bread", "adaptive": True} | bad)
                assert refused.status_code == 400 and "not both" in refused.json()["error"]["message"]
            assert c.post("/search", json={"query": "bread", "adaptive": "yes"}).status_code == 422
            assert c.get("/collections/topics").json()["adaptive_default"] is False
    finally:
        collection.close()

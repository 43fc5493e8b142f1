"""The approximate path for real: HNSW graphs that are walked, and funnels whose shortlist is smaller
than the collection.

Below the engine's thresholds (10 MB of vectors per segment) Qdrant Edge builds no graph and answers
every "HNSW" search with a full scan, so a small test collection proves nothing about the graph. These
tests lower both thresholds (``INDEXING_THRESHOLD_KB``, ``FULL_SCAN_THRESHOLD_KB``) for the collections
they create, check that a graph exists on disk and that a narrow graph search really is approximate
(recall below 1 against exact), then hold the funnel to its contract on a collection many times larger
than its shortlist: synthetic vectors first, then the real model on real passages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT

import retriever.store.edge.collection as edge_store
from retriever.calibration.plans import recall_against
from retriever.query.ladder import vector_name
from retriever.query.plan import parse_plan
from retriever.store.base import PointBatch
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.spec import CollectionSpec

LADDER = (64, 128, 256, 384)
N_POINTS = 6_000
K = 10
FUNNEL = "64:150,128:80,256:40"
MSMARCO = REPO_ROOT.parent / "shared" / "data" / "msmarco-sample"


@pytest.fixture
def graph_thresholds(monkeypatch):
    """Build a graph however small the collection, and search it instead of scanning."""
    monkeypatch.setattr(edge_store, "INDEXING_THRESHOLD_KB", 1)
    monkeypatch.setattr(edge_store, "FULL_SCAN_THRESHOLD_KB", 1)


def _prefixes(full: np.ndarray) -> dict[int, np.ndarray]:
    return {d: full[:, :d] / np.linalg.norm(full[:, :d], axis=1, keepdims=True) for d in LADDER}


def _graph_files(path: Path, dim: int) -> list[Path]:
    return list((path / "shard" / "segments").glob(f"*/vector_index-{vector_name(dim)}/graph.bin"))


def _matryoshka_collection(catalog: EdgeCatalog, name: str, seed: int, decay: float, queries: int):
    """``N_POINTS`` random 384-dim points whose dim i has variance exp(-i/decay) (smaller decay: the
    prefixes carry more), indexed (graph built), and ``queries`` query ladders drawn the same way."""
    rng = np.random.default_rng(seed)
    scale = np.exp(-np.arange(384, dtype=np.float32) / decay)
    full = rng.standard_normal((N_POINTS, 384)).astype(np.float32) * scale
    spec = CollectionSpec(name=name, model="synthetic", model_fingerprint="0", model_dim=384, dims=LADDER,
                          chunk_size=16, chunk_overlap=0)
    with catalog.create(spec) as coll:
        for start in range(0, N_POINTS, 2_000):
            rows = slice(start, start + 2_000)
            ids = [f"00000000-0000-0000-0000-{i:012x}" for i in range(start, min(N_POINTS, start + 2_000))]
            coll.upsert(PointBatch(ids, _prefixes(full[rows]), [{"doc_id": i, "chunk": 0} for i in ids]))
        coll.finish_indexing()
    return full, _prefixes(rng.standard_normal((queries, 384)).astype(np.float32) * scale)


@pytest.fixture
def synthetic(tmp_path, graph_thresholds):
    """6,000 random 384-dim points, Matryoshka-like: the variance of dim i decays as exp(-i/100), so the
    64-dim top-20 holds ~84 % of the 384-dim top-10 and the top-100 all of it."""
    catalog = EdgeCatalog(tmp_path / "data")
    full, queries = _matryoshka_collection(catalog, "graph", seed=7, decay=100, queries=40)
    coll = catalog.open("graph")
    yield coll, full, queries
    coll.close()


def test_graph_is_built_and_walked(synthetic):
    coll, full, queries = synthetic
    assert _graph_files(coll.path, 64), "no HNSW graph was built for the coarsest vector"
    exact = coll.search_at(queries[64], 64, K, exact=True)
    # The exact search is a true full scan: the same ids as numpy's brute force.
    brute = np.argsort(-(queries[64] @ _prefixes(full)[64].T), axis=1)[:, :K]
    for hits, want in zip(exact, brute):
        assert {int(h.id[-12:], 16) for h in hits} == set(want.tolist())
    narrow = recall_against(coll.search_at(queries[64], 64, K, exact=False, hnsw_ef=K), exact, K)
    wide = recall_against(coll.search_at(queries[64], 64, K, exact=False, hnsw_ef=400), exact, K)
    assert narrow < 0.95, f"a graph search with ef={K} found {narrow:.3f} of the exact top-{K}: no graph was walked"
    assert wide >= 0.97 and wide > narrow


def test_funnel_on_a_collection_larger_than_its_shortlist(synthetic):
    coll, full, queries = synthetic
    exact = coll.search(queries, None, K, with_text=False)
    tight = coll.search(queries, parse_plan("64:10", LADDER, K), K, with_text=False, hnsw_ef=K)
    roomy = coll.search(queries, parse_plan("64:400,128:100,256:30", LADDER, K), K, with_text=False)
    assert recall_against(tight, exact, K) < 0.9, "a 10-candidate shortlist of 6,000 points cannot be exact"
    assert recall_against(roomy, exact, K) >= 0.97
    # Whatever the shortlist, the last stage ranks by the top-dim cosine, highest first.
    normed = _prefixes(full)[384]
    for q, hits in zip(queries[384], roomy):
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        recomputed = [float(normed[int(h.id[-12:], 16)] @ q) for h in hits]
        np.testing.assert_allclose(scores, recomputed, atol=1e-4)


@pytest.mark.skipif(not (MSMARCO / "corpus.jsonl").is_file(),
                    reason=f"the shared MS MARCO sample is not present at {MSMARCO}")
def test_real_model_funnel_is_approximate_and_close_to_exact(tmp_path, graph_thresholds, embedder):
    """1,000 real passages, the real model: a 30-candidate 64-dim shortlist walks the graph and misses
    some exact hits; a 150-candidate funnel (under a sixth of the collection) finds nearly all of them (measured: 0.87 and 0.97 on 40 queries)."""
    from retriever.ingest.corpus import read_corpus
    from retriever.ingest.indexer import index_corpus
    from retriever.retriever import Retriever

    corpus = tmp_path / "corpus.jsonl"
    with corpus.open("w", encoding="utf-8") as out, (MSMARCO / "corpus.jsonl").open(encoding="utf-8") as src:
        for _, line in zip(range(1_000), src):
            out.write(line)
    queries = [d.text for d in read_corpus([MSMARCO / "queries.jsonl"])][:40]
    catalog = EdgeCatalog(tmp_path / "data")
    result = index_corpus(catalog, "ms", [corpus], embedder)
    assert result.points >= 1_000
    with Retriever(catalog.open("ms"), embedder) as r:
        assert _graph_files(r.collection.path, 64)
        exact = r.search_batch(queries, k=K, exact=True, with_text=False)
        tight = r.search_batch(queries, k=K, plan="64:30", with_text=False)
        funnel = r.search_batch(queries, k=K, plan=FUNNEL, with_text=False)
    assert result.points >= 6 * parse_plan(FUNNEL, LADDER, K).stages[0].limit
    tight_recall, funnel_recall = recall_against(tight, exact, K), recall_against(funnel, exact, K)
    assert tight_recall < 0.98, f"a 30-candidate 64-dim shortlist of {result.points} points matched exact search"
    assert funnel_recall >= 0.95 and funnel_recall > tight_recall
    top1 = np.mean([bool(d) and d[0].id == e[0].id for d, e in zip(funnel, exact)])
    assert top1 >= 0.95


def test_calibration_narrows_the_graph_search_and_searches_use_it(tmp_path, graph_thresholds):
    """The first stage walks its graph with ef = max(128, shortlist) unless calibrated: calibration also
    tries narrower widths, keeps the cheapest (plan, width) that meets the target, saves it, and a
    search without a plan uses it. Steeply Matryoshka vectors (variance exp(-i/12)): a short 64-dim
    shortlist suffices, so the default width is far wider than needed."""
    from types import SimpleNamespace

    from retriever.calibration.defaults import default_ef_for, default_plan_for
    from retriever.calibration.plans import EF_STEPS, calibrate
    from retriever.calibration.record import calibrated_ef
    from retriever.retriever import Retriever
    from retriever.store.spec import MIN_HNSW_EF

    catalog = EdgeCatalog(tmp_path / "data")
    _, queries = _matryoshka_collection(catalog, "steep", seed=11, decay=12, queries=60)
    with catalog.open("steep") as coll:
        exact = coll.search(queries, None, K, with_text=False)
        target = 0.95
        cal = calibrate(coll, queries, K, target, reference=exact)
        assert cal.met and cal.hnsw_ef is not None, cal.tried
        first = cal.plan.stages[0]
        assert first.limit <= cal.hnsw_ef < max(MIN_HNSW_EF, first.limit), "no narrower graph search than the default"
        # The saved recall is the one at the calibrated width, and it meets the target there ...
        at_ef = recall_against(coll.search(queries, cal.plan, K, with_text=False, hnsw_ef=cal.hnsw_ef), exact, K)
        assert at_ef == pytest.approx(cal.recall) and at_ef >= target
        # ... and the calibration really walked the graph: the narrowest width of all is too narrow here.
        assert recall_against(coll.search(queries, cal.plan, K, with_text=False, hnsw_ef=first.limit), exact, K) < 1.0
        tried_widths = {t["hnsw_ef"] for t in cal.tried if t["plan"] == str(cal.plan)}
        assert {e for e in EF_STEPS if first.limit <= e <= cal.hnsw_ef} <= tried_widths
        coll.save_calibration(cal.record("test"))
        plan20 = default_plan_for(coll, 2 * K)
        assert default_ef_for(coll, default_plan_for(coll, K)) == cal.hnsw_ef
        assert default_ef_for(coll, plan20) == max(plan20.stages[0].limit, 2 * cal.hnsw_ef)  # scaled with k
        assert calibrated_ef({"plan": str(cal.plan), "k": K}, cal.plan) is None  # records from before: default rule
        # The Retriever's default dense search carries the width; a plan given by the caller keeps the default rule.
        retriever = Retriever(coll, SimpleNamespace(name="synthetic", fingerprint="0"))  # type: ignore[arg-type]
        assert retriever.query_spec(k=K, adaptive=False).hnsw_ef == cal.hnsw_ef
        assert retriever.query_spec(k=K, plan=str(cal.plan)).hnsw_ef is None


def test_a_timed_calibration_on_a_small_collection_tries_its_scan_first(synthetic):
    """Timed within a budget, a small collection's scan of the top dim (exact search, so it always passes)
    is tried and timed before any funnel: a budget that runs out at once keeps the scan, never the first
    funnel that happened to pass. Untimed, the cost model's cheapest passing plan still wins (a funnel)."""
    from retriever.calibration.after_index import BUDGET_S, MIN_BUDGET_S, budget_for
    from retriever.calibration.plans import calibrate

    coll, _, queries = synthetic
    exact = coll.search(queries, None, K, with_text=False)
    timed = calibrate(coll, queries, K, 0.9, reference=exact, timed=True, budget_s=0.0)
    assert [s.dim for s in timed.plan.stages] == [384] and timed.recall == 1.0, timed.tried
    assert timed.tried[0]["plan"] == "384:10" and [t["plan"] for t in timed.tried if "p50_ms" in t] == ["384:10"]
    untimed = calibrate(coll, queries, K, 0.9, reference=exact)
    assert len(untimed.plan.stages) > 1, untimed.tried
    # funnel index's budget: a fifth of its indexing time, within [5, 60] s
    assert budget_for(1.0) == MIN_BUDGET_S and budget_for(100.0) == 20.0 and budget_for(3_600.0) == BUDGET_S

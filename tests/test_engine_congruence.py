"""Congruence: the same points, queries and plans give the same top-k ids and scores (to 1e-5) on the
embedded engine and on the server store, for exact search and for a funnel that really approximates
(the corpus is far larger than the shortlist, and the funnel misses exact hits on most queries).

Local mode searches every stage by brute force; on the embedded engine the collection is below the
full-scan threshold, so its first stage is a scan too: both run the same algorithm, and any
difference is a difference in how the funnel is sent (prefetch nesting, limits, filters, scoring).
Graph (HNSW) search is approximate per engine and is not compared here; see test_hnsw_funnel.py.

Sharding: Qdrant runs a nested prefetch on each shard. Local mode has no shards, so the per-shard plan
(retriever.store.server.sharding) is checked by simulating what a cluster does (each shard runs the plan on its
points, the shards' top-k are merged) and, when QDRANT_URL is set, on a real server with 3 shards.
"""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np
import pytest
from conftest import engine_config

from retriever.ingest.chunking import chunk_id
from retriever.query.filters import parse_filter
from retriever.query.ladder import truncate_normalize
from retriever.query.plan import parse_plan
from retriever.query.spec import Hit
from retriever.store.base import PointBatch
from retriever.store.config import EngineConfig, Placement
from retriever.store.factory import open_catalog
from retriever.store.server.sharding import per_shard_limit, per_shard_plan
from retriever.store.spec import CollectionSpec

DIMS = (16, 32, 64, 128)
POINTS = 3000
QUERIES = 40
K = 10
PLANS = ["16:30,32:15,64:10", "16:20,128:10", "32:12"]  # weak on purpose: the funnel must really approximate


def spec(name: str) -> CollectionSpec:
    return CollectionSpec(name=name, model="synthetic", model_fingerprint="feedfacecafebeef", model_dim=128, dims=DIMS,
                          chunk_size=128, chunk_overlap=16)


def corpus(n: int = POINTS, seed: int = 7) -> tuple[PointBatch, dict[int, np.ndarray]]:
    rng = np.random.default_rng(seed)
    # Matryoshka-like: the leading dims carry more of the signal than the tail.
    full = (rng.normal(size=(n, 128)) * np.exp(-np.arange(128) / 32)).astype(np.float32)
    ids = [chunk_id(f"d{i}", 0) for i in range(n)]
    payloads = [{"text": f"t{i}", "doc_id": f"d{i}", "title": "", "chunk": 0, "metadata": {"group": i % 4}}
                for i in range(n)]
    queries = full[:QUERIES] + 0.5 * rng.normal(size=(QUERIES, 128)) * np.exp(-np.arange(128) / 32)
    return (PointBatch(ids, {d: truncate_normalize(full, d) for d in DIMS}, payloads),
            {d: truncate_normalize(queries.astype(np.float32), d) for d in DIMS})


def assert_same(a: list[list[Hit]], b: list[list[Hit]]) -> None:
    for x, y in zip(a, b):
        assert [h.id for h in x] == [h.id for h in y]
        np.testing.assert_allclose([h.score for h in x], [h.score for h in y], atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """The same corpus in the embedded engine and in local mode (and a real server when QDRANT_URL is set)."""
    root = tmp_path_factory.mktemp("congruence")
    batch, queries = corpus()
    catalogs, collections = {}, {}
    for kind in ("edge", "local", "server"):
        try:
            config = engine_config(kind, root)
        except pytest.skip.Exception:
            continue
        catalog = open_catalog(config)
        if catalog.exists("congruence"):
            catalog.drop("congruence")
        coll = catalog.create(spec("congruence"))
        coll.upsert(batch)
        coll.finish_indexing()
        catalogs[kind] = catalog
        collections[kind] = coll
    yield collections, queries
    for kind, coll in collections.items():
        coll.close()
        if kind == "server":
            catalogs[kind].drop("congruence")
        catalogs[kind].close()


def _others(collections):
    return [kind for kind in collections if kind != "edge"]


def test_exact_search_is_congruent(loaded):
    collections, queries = loaded
    reference = collections["edge"].search(queries, None, K)
    for kind in _others(collections):
        assert_same(reference, collections[kind].search(queries, None, K))
        one = {d: m[:1] for d, m in queries.items()}  # a single query goes through query_points, not the batch call
        assert_same(reference[:1], collections[kind].search(one, None, K))


@pytest.mark.parametrize("plan_text", PLANS)
def test_funnel_is_congruent_and_really_approximate(loaded, plan_text):
    collections, queries = loaded
    plan = parse_plan(plan_text, DIMS, K)
    exact = collections["edge"].search(queries, None, K)
    reference = collections["edge"].search(queries, plan, K)
    missed = sum([h.id for h in f] != [h.id for h in e] for f, e in zip(reference, exact))
    assert missed >= QUERIES // 5, f"the funnel matched exact search on {QUERIES - missed}/{QUERIES}: not a real test"
    for kind in _others(collections):
        assert_same(reference, collections[kind].search(queries, plan, K))


def test_filtered_funnel_is_congruent(loaded):
    collections, queries = loaded
    plan = parse_plan(PLANS[0], DIMS, K)
    where = parse_filter({"metadata.group": {"gte": 2}})
    reference = collections["edge"].search(queries, plan, K, filter=where)
    assert all(h.metadata["group"] >= 2 for hits in reference for h in hits)
    for kind in _others(collections):
        assert_same(reference, collections[kind].search(queries, plan, K, filter=where))
        assert_same(collections["edge"].search(queries, None, K, filter=where),
                    collections[kind].search(queries, None, K, filter=where))


# --- sharding ------------------------------------------------------------------------------------


def test_per_shard_limits():
    assert per_shard_limit(400, 1, 10) == 400
    for limit, shards in ((400, 3), (60, 2), (2000, 8), (20, 3)):
        mine = per_shard_limit(limit, shards, 10)
        assert 10 <= mine <= limit and mine >= limit / shards
    assert per_shard_limit(400, 3, 10) < 400 * 0.5  # well below the limit: a cluster scores ~its share, not N×
    plan = parse_plan("16:400,32:200,64:100", DIMS, K)
    assert per_shard_plan(plan, 1) == plan
    sharded = per_shard_plan(plan, 4)
    assert sharded.stages[-1] == plan.stages[-1] and [s.dim for s in sharded.stages] == [s.dim for s in plan.stages]
    assert all(a.limit >= b.limit for a, b in zip(sharded.stages, sharded.stages[1:]))


def _shard_of(point_id: str, shards: int) -> int:
    return zlib.crc32(point_id.encode()) % shards  # placement by id, independent of the vectors (as Qdrant's)


STRONG_PLANS = ["16:200,32:100,64:50", "16:400,32:200,64:100"]  # recall vs exact >= 0.99 on one shard


@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_funnel_matches_one_shard(tmp_path, shards):
    """What a cluster does with a nested prefetch, simulated on the embedded engine: every shard runs the
    per-shard plan on its own points, and the shards' top-k are merged.

    - the shards' stage-1 shortlists together hold the collection-wide shortlist (the margin's job);
    - the answers are never worse against exact search than on one shard (a shard may also keep a few
      candidates the collection-wide shortlist cut, so a weak plan can find *more* exact hits);
    - for plans good enough to be calibrated (recall >= 0.99), the answers are the same on >= 99 %.
    """
    from retriever.calibration.plans import recall_against

    batch, queries = corpus()
    catalog = open_catalog(EngineConfig(data_dir=tmp_path / "data"))
    parts = [[i for i, pid in enumerate(batch.ids) if _shard_of(pid, shards) == s] for s in range(shards)]
    with catalog.create(spec("whole")) as whole:
        whole.upsert(batch)
        shard_colls = []
        for s, rows in enumerate(parts):
            coll = catalog.create(spec(f"shard{s}"))
            coll.upsert(PointBatch([batch.ids[i] for i in rows], {d: m[rows] for d, m in batch.vectors.items()},
                                   [batch.payloads[i] for i in rows]))
            shard_colls.append(coll)
        try:
            exact = whole.search(queries, None, K, with_text=False)
            for limit in (60, 400):
                wide = whole.search_at(queries[16], 16, limit, exact=True)
                mine = per_shard_limit(limit, shards, K)
                kept = [c.search_at(queries[16], 16, mine, exact=True) for c in shard_colls]
                held = [{h.id for part in kept for h in part[q]} for q in range(QUERIES)]
                assert all({h.id for h in wide[q]} <= held[q] for q in range(QUERIES))
            for plan_text in PLANS + STRONG_PLANS:
                plan = parse_plan(plan_text, DIMS, K)
                one = whole.search(queries, plan, K, with_text=False)
                per_shard = [c.search(queries, per_shard_plan(plan, shards), K, with_text=False) for c in shard_colls]
                merged = [sorted((h for part in per_shard for h in part[q]), key=lambda h: -h.score)[:K]
                          for q in range(QUERIES)]
                assert recall_against(merged, exact, K) >= recall_against(one, exact, K) - 0.005, plan_text
                if plan_text in STRONG_PLANS:
                    assert recall_against(one, exact, K) >= 0.99
                    same = sum([h.id for h in a] == [h.id for h in b] for a, b in zip(one, merged))
                    assert same >= 0.99 * QUERIES, f"{plan_text} on {shards} shards: {same}/{QUERIES} identical"
        finally:
            for coll in shard_colls:
                coll.close()


def test_real_cluster_one_and_three_shards_agree(tmp_path):
    """On a real Qdrant server: the same points in a 1-shard and a 3-shard collection give the same
    funnel answers for >= 99 % of the queries (the per-shard plan at work)."""
    base = engine_config("server", tmp_path)  # skips without QDRANT_URL
    batch, queries = corpus()
    results = {}
    for shards in (1, 3):
        config = replace(base, placement=Placement(shards=shards))
        with open_catalog(config) as catalog:
            name = f"funnel-test-shards-{shards}"
            if catalog.exists(name):
                catalog.drop(name)
            with catalog.create(spec(name)) as coll:
                assert coll.shards == shards  # type: ignore[attr-defined]
                coll.upsert(batch)
                coll.finish_indexing()
                results[shards] = [coll.search(queries, parse_plan(p, DIMS, K), K, with_text=False) for p in STRONG_PLANS]
            catalog.drop(name)
    for one, three in zip(results[1], results[3]):
        same = sum([h.id for h in a] == [h.id for h in b] for a, b in zip(one, three))
        assert same >= 0.99 * QUERIES

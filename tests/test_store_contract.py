"""One store contract, every engine: the embedded engine (Qdrant Edge), the server store on
qdrant-client's local mode, and (when QDRANT_URL is set) on a real Qdrant server. Synthetic vectors,
no model. See conftest.ENGINE_NOTE for what local mode does not model (graphs, quantization, shards).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_edge_store import DIMS, make_batch, make_spec, vectors_for

from retriever.errors import BadInputError, CollectionNotFoundError, ModelMismatchError, StoreError
from retriever.ingest.chunking import chunk_id
from retriever.query.filters import parse_filter
from retriever.query.plan import default_plan, parse_plan
from retriever.query.spec import QuerySpec
from retriever.store.factory import open_catalog


@pytest.fixture
def catalog(engine):
    with open_catalog(engine) as opened:
        yield opened


def test_lifecycle(catalog):
    assert catalog.names() == []
    spec = make_spec("one")
    with catalog.create(spec) as coll:
        assert coll.spec == spec and coll.count() == 0
    catalog.create(make_spec("two")).close()
    assert catalog.names() == ["one", "two"] and catalog.exists("one") and not catalog.exists("three")
    assert catalog.read_spec("one") == spec
    with pytest.raises(StoreError, match="already exists"):
        catalog.create(make_spec("one"))
    catalog.drop("one")
    assert catalog.names() == ["two"]
    for call in (catalog.read_spec, catalog.open, catalog.drop):
        with pytest.raises(CollectionNotFoundError, match="no collection 'missing'.*collections: two"):
            call("missing")
    for call in (catalog.exists, catalog.open):
        with pytest.raises(BadInputError, match="invalid collection name"):
            call("../x")


def test_spec_and_calibration_live_with_the_collection(engine):
    record = {"plan": "8:40,32:10", "k": 10, "recall_vs_exact": 1.0}
    with open_catalog(engine) as catalog, catalog.create(make_spec("cal", quantization="int8", on_disk=True)) as coll:
        assert coll.calibration() is None
        coll.save_calibration(record)
        assert coll.calibration() == record
    with open_catalog(engine) as catalog, catalog.open("cal") as coll:  # a new connection reads both back
        assert coll.spec == make_spec("cal", quantization="int8", on_disk=True)
        assert coll.calibration() == record


def test_upsert_idempotent_payloads_and_points(catalog):
    batch, full = make_batch(300)
    with catalog.create(make_spec("pts")) as coll:
        coll.upsert(batch)
        coll.upsert(batch)
        coll.finish_indexing()
        coll.flush()
        assert coll.count() == 300
        stored = coll.payloads([batch.ids[0], chunk_id("nope", 0)])
        assert stored == {batch.ids[0]: batch.payloads[0]}
        copied = list(coll.points(batch_size=128))
        assert [len(b.ids) for b in copied] == [128, 128, 44]
        by_id = {i: (b.vectors, row) for b in copied for row, i in enumerate(b.ids)}
        assert set(by_id) == set(batch.ids)
        vectors, row = by_id[batch.ids[7]]
        for dim in DIMS:
            np.testing.assert_allclose(vectors[dim][row], batch.vectors[dim][7], atol=1e-6)


def test_exact_and_funnel_search(catalog):
    batch, full = make_batch(60, seed=1)
    queries = vectors_for(full[:5] + np.random.default_rng(2).normal(scale=0.05, size=(5, DIMS[-1])).astype(np.float32))
    with catalog.create(make_spec("search")) as coll:
        coll.upsert(batch)
        coll.finish_indexing()
        exact = coll.search(queries, None, 10)
        funnel = coll.search(queries, default_plan(DIMS, 10), 10)
        narrow = coll.search(queries, parse_plan("8:10,16:10", DIMS, 10), 10, with_text=False)
        alone = coll.search_at(queries[8], 8, 5, exact=True)
    scores = vectors_for(full)[32] @ queries[32].T
    for q in range(5):
        assert [h.doc_id for h in exact[q]] == [f"doc{i}" for i in np.argsort(-scores[:, q])[:10]]
        np.testing.assert_allclose([h.score for h in exact[q]], np.sort(scores[:, q])[::-1][:10], atol=1e-5)
        assert [h.id for h in funnel[q]] == [h.id for h in exact[q]]  # the shortlist holds every point
        assert narrow[q][0].doc_id == f"doc{q}" and all(h.text is None for h in narrow[q])
        assert len(alone[q]) == 5
        hit = exact[q][0]
        assert (hit.chunk, hit.title, hit.metadata, hit.text) == (0, f"title {q}", {"i": q}, f"text {q}")


def test_search_each_mixes_specs_and_filters(catalog):
    batch, full = make_batch(40, seed=4)
    queries = vectors_for(full[:3])
    specs = [QuerySpec(None, 5), QuerySpec(default_plan(DIMS, 3), 3, with_text=False),
             QuerySpec(None, 10, filter=parse_filter({"metadata.i": {"gte": 30}}))]
    with catalog.create(make_spec("each")) as coll:
        coll.upsert(batch)
        results = coll.search_each(queries, specs)
        only = coll.search(queries, None, 10, filter=parse_filter({"doc_id": ["doc5", "doc6"]}))
    assert [len(r) for r in results] == [5, 3, 10]
    assert results[0][0].doc_id == "doc0" and results[1][0].doc_id == "doc1"
    assert all(h.metadata["i"] >= 30 for h in results[2])
    assert all(sorted(h.doc_id for h in r) == ["doc5", "doc6"] for r in only)


def test_stored_vectors_are_the_upserted_ones(catalog):
    """``vectors`` gives back every ladder vector as upserted (funnel index copies an unchanged chunk's
    vectors into its document's new version), of the ids that exist only."""
    from retriever.store.base import PointBatch

    full = np.random.default_rng(3).normal(size=(6, DIMS[-1])).astype(np.float32)
    ids = [chunk_id("a", i) for i in range(6)]
    payloads = [{"text": f"a{i}", "doc_id": "a", "title": "", "chunk": i, "metadata": {}} for i in range(6)]
    vectors = vectors_for(full)
    with catalog.create(make_spec("copies")) as coll:
        coll.upsert(PointBatch(ids=ids, vectors=vectors, payloads=payloads))
        got = coll.vectors([ids[4], ids[1], chunk_id("zzz", 0)])
        assert set(got) == {ids[4], ids[1]} and coll.vectors([]) == {}
        for row in (1, 4):
            for dim in DIMS:
                np.testing.assert_allclose(got[ids[row]][dim], vectors[dim][row], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("changes", [{"model_fingerprint": "ffffffffffffffff"}, {"dims": (8, 32)}, {"chunk_size": 64},
                                     {"quantization": "int8"}])
def test_open_or_create_refuses_another_kind_of_point(catalog, changes):
    catalog.create(make_spec("mm")).close()
    with pytest.raises(ModelMismatchError):
        catalog.open_or_create(make_spec("mm", **changes))
    with catalog.open_or_create(make_spec("mm")) as coll:
        assert coll.spec == make_spec("mm")


def test_closed_collection(catalog):
    coll = catalog.create(make_spec("closed"))
    coll.close()
    coll.close()
    with pytest.raises(StoreError, match="is closed"):
        coll.count()


def test_an_engines_vectors_are_checked_before_they_are_copied():
    """A point's vectors as an engine answered them: taken only whole (every dim, its length, finite)."""
    from retriever.query.ladder import vector_name
    from retriever.store.base import ladder_vectors

    whole = {vector_name(d): [0.5] * d for d in DIMS}
    assert {d: v.shape for d, v in ladder_vectors(DIMS, whole).items()} == {d: (d,) for d in DIMS}
    for broken in ({**whole, vector_name(DIMS[0]): [0.5] * (DIMS[0] - 1)},
                   {**whole, vector_name(DIMS[-1]): [float("nan")] * DIMS[-1]},
                   {k: v for k, v in whole.items() if k != vector_name(DIMS[0])},
                   {**whole, vector_name(DIMS[0]): "not numbers"}, [0.5] * DIMS[-1], None):
        assert ladder_vectors(DIMS, broken) is None, broken

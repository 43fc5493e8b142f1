"""The Qdrant Edge store on the real engine, with synthetic vectors (no model needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qdrant_edge import ScrollRequest

from retriever.errors import (
    BadInputError,
    CollectionLockedError,
    CollectionNotFoundError,
    FunnelError,
    ModelMismatchError,
    StoreError,
)
from retriever.ingest.chunking import chunk_id
from retriever.query.ladder import truncate_normalize
from retriever.query.plan import default_plan, parse_plan
from retriever.store.base import PointBatch
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.edge.collection import SHARD_DIR, SPEC_FILE
from retriever.store.paths import default_data_dir, validate_collection_name
from retriever.store.spec import CollectionSpec

DIMS = (8, 16, 32)


def make_spec(name: str = "syn", **changes) -> CollectionSpec:
    base = dict(name=name, model="test-model", model_fingerprint="0123456789abcdef", model_dim=32, dims=DIMS,
                chunk_size=128, chunk_overlap=16)
    return CollectionSpec(**(base | changes))


def vectors_for(full: np.ndarray, dims=DIMS) -> dict[int, np.ndarray]:
    return {d: truncate_normalize(full, d) for d in dims}


def make_batch(n: int, seed: int = 0, doc_prefix: str = "doc") -> tuple[PointBatch, np.ndarray]:
    full = np.random.default_rng(seed).normal(size=(n, DIMS[-1])).astype(np.float32)
    ids = [chunk_id(f"{doc_prefix}{i}", 0) for i in range(n)]
    payloads = [{"text": f"text {i}", "doc_id": f"{doc_prefix}{i}", "title": f"title {i}", "chunk": 0,
                 "metadata": {"i": i}} for i in range(n)]
    return PointBatch(ids=ids, vectors=vectors_for(full), payloads=payloads), full


def scroll_all(collection) -> list:
    records, offset = [], None
    while True:
        page, offset = collection.shard.scroll(ScrollRequest(offset=offset, limit=256, with_payload=True))
        records.extend(page)
        if offset is None:
            return records


@pytest.fixture
def catalog(data_dir) -> EdgeCatalog:
    return EdgeCatalog(data_dir)


# --- names and paths -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "fin", "fin-qa_2024.v1", "A" * 64, "0start"])
def test_valid_names(name):
    assert validate_collection_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "a/b", "../x", "..", "a..b", "x/../y", ".hidden", "-dash", "_under", "A" * 65, "sp ace", "tab\t",
             "new\nline", "é", "a\\b", "/abs"],
)
def test_invalid_names(name, catalog):
    with pytest.raises(BadInputError) as info:
        validate_collection_name(name)
    assert "invalid collection name" in str(info.value)
    for method in (catalog.exists, catalog.read_spec, catalog.open, catalog.drop):
        with pytest.raises(BadInputError):
            method(name)
    with pytest.raises(BadInputError):
        catalog.create(make_spec(name))
    assert not (catalog.root.parent / "x").exists()


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FUNNEL_HOME", str(tmp_path / "fh"))
    assert default_data_dir() == tmp_path / "fh"
    monkeypatch.delenv("FUNNEL_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "funnel"


# --- catalog lifecycle ---------------------------------------------------------------------------


def test_create_open_list_drop(catalog):
    assert catalog.names() == []
    spec = make_spec("one")
    with catalog.create(spec) as coll:
        assert coll.spec == spec
        assert coll.count() == 0
        assert (coll.path / SPEC_FILE).is_file() and (coll.path / SHARD_DIR).is_dir()
    assert catalog.exists("one") and not catalog.exists("two")
    assert catalog.names() == ["one"]
    assert catalog.read_spec("one") == spec
    assert json.loads((catalog.root / "one" / SPEC_FILE).read_text())["dims"] == list(DIMS)
    catalog.create(make_spec("two")).close()
    assert catalog.names() == ["one", "two"]
    catalog.drop("one")
    assert catalog.names() == ["two"]
    assert not (catalog.root / "one").exists()
    assert not any(p.name.startswith(".") for p in catalog.root.iterdir()), "no leftovers from drop"


def test_spec_json_round_trip():
    spec = make_spec("rt")
    assert CollectionSpec.from_json(spec.to_json()) == spec
    assert spec.top_dim == 32


def test_create_existing_is_refused(catalog):
    catalog.create(make_spec("dup")).close()
    with pytest.raises(StoreError, match="already exists"):
        catalog.create(make_spec("dup"))
    assert catalog.names() == ["dup"]


def test_unknown_collection(catalog):
    catalog.create(make_spec("known")).close()
    for call in (catalog.read_spec, catalog.open, catalog.drop):
        with pytest.raises(CollectionNotFoundError) as info:
            call("missing")
        assert "no collection 'missing'" in str(info.value)
        assert "collections: known" in str(info.value)
    assert CollectionNotFoundError.http_status == 404


def test_hidden_and_stale_temporary_directories(catalog):
    catalog.root.mkdir(parents=True)
    stale = catalog.root / ".tmp~new~deadbeef"
    (stale / SHARD_DIR).mkdir(parents=True)
    (stale / SPEC_FILE).write_text(make_spec("new").to_json())
    (catalog.root / "no-spec-dir").mkdir()
    assert catalog.names() == [], "half-made and hidden directories are not collections"
    catalog.create(make_spec("new")).close()
    assert not stale.exists(), "create removes a crashed run's temporary directory"
    assert catalog.names() == ["new"]


# --- the single-writer lock ----------------------------------------------------------------------


def test_second_open_is_locked(catalog):
    first = catalog.create(make_spec("locked"))
    try:
        with pytest.raises(CollectionLockedError) as info:
            catalog.open("locked")
        assert "already open in this process" in str(info.value)  # this process holds it (issue 22, case 9)
        with pytest.raises(CollectionLockedError):
            EdgeCatalog(catalog.root.parent).open("locked")
        with pytest.raises(CollectionLockedError):
            catalog.drop("locked")
        assert catalog.exists("locked")
    finally:
        first.close()
    with catalog.open("locked") as again:
        assert again.count() == 0
    assert CollectionLockedError.http_status == 423


def test_closed_collection(catalog):
    coll = catalog.create(make_spec("closed"))
    coll.close()
    coll.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="is closed"):
        coll.count()


# --- points --------------------------------------------------------------------------------------


def test_upsert_is_idempotent_and_durable(catalog):
    batch, _ = make_batch(50)
    with catalog.create(make_spec("pts")) as coll:
        coll.upsert(batch)
        assert coll.count() == 50
        coll.upsert(batch)
        coll.finish_indexing()
        assert coll.count() == 50
        info = coll.info()
        assert info.points == 50 and info.disk_bytes > 0 and info.spec.name == "pts"
    with catalog.open("pts") as coll:
        assert coll.count() == 50
        records = scroll_all(coll)
        assert sorted(str(r.id) for r in records) == sorted(batch.ids)
        assert {(r.payload["doc_id"], r.payload["chunk"]) for r in records} == {(f"doc{i}", 0) for i in range(50)}


def test_upsert_replaces_payloads(catalog):
    batch, full = make_batch(5)
    with catalog.create(make_spec("rep")) as coll:
        coll.upsert(batch)
        changed = [p | {"text": "new " + p["text"]} for p in batch.payloads]
        coll.upsert(PointBatch(ids=batch.ids, vectors=batch.vectors, payloads=changed))
        assert coll.count() == 5
        hits = coll.search({d: v[:1] for d, v in vectors_for(full).items()}, None, 1)[0]
        assert hits[0].text == "new text 0"


def test_exact_and_funnel_search(catalog):
    batch, full = make_batch(60, seed=1)
    queries = full[:5] + np.random.default_rng(2).normal(scale=0.05, size=(5, DIMS[-1])).astype(np.float32)
    qvec = vectors_for(queries)
    with catalog.create(make_spec("search")) as coll:
        coll.upsert(batch)
        coll.finish_indexing()
        exact = coll.search(qvec, None, 10)
        funnel = coll.search(qvec, default_plan(DIMS, 10), 10)
        narrow = coll.search(qvec, parse_plan("8:10,16:10", DIMS, 10), 10, with_text=False)
    # Brute force at the top dim agrees with the engine's exact search.
    scores = vectors_for(full)[32] @ qvec[32].T
    for q in range(5):
        expected = [f"doc{i}" for i in np.argsort(-scores[:, q])[:10]]
        assert [h.doc_id for h in exact[q]] == expected
        assert exact[q][0].doc_id == f"doc{q}"
        np.testing.assert_allclose([h.score for h in exact[q]], np.sort(scores[:, q])[::-1][:10], rtol=1e-4, atol=1e-5)
        # The default funnel keeps 200 then 100 candidates of 60 points: it must equal the exact result.
        assert [h.id for h in funnel[q]] == [h.id for h in exact[q]]
        np.testing.assert_allclose([h.score for h in funnel[q]], [h.score for h in exact[q]], rtol=1e-4, atol=1e-5)
        assert len(narrow[q]) == 10 and all(h.text is None for h in narrow[q])
        assert narrow[q][0].doc_id == f"doc{q}"
        hit = exact[q][0]
        assert (hit.chunk, hit.title, hit.metadata, hit.text) == (0, f"title {q}", {"i": q}, f"text {q}")
        assert hit.to_dict()["doc_id"] == f"doc{q}"


def test_search_on_fewer_points_than_k(catalog):
    batch, full = make_batch(3)
    with catalog.create(make_spec("few")) as coll:
        coll.upsert(batch)
        hits = coll.search(vectors_for(full[:1]), default_plan(DIMS, 10), 10)[0]
    assert sorted(h.doc_id for h in hits) == ["doc0", "doc1", "doc2"]


def test_stored_payloads(catalog):
    full = np.random.default_rng(3).normal(size=(6, DIMS[-1])).astype(np.float32)
    ids = [chunk_id("a", i) for i in range(4)] + [chunk_id("b", i) for i in range(2)]
    payloads = [{"text": f"a{i}", "doc_id": "a", "title": "", "chunk": i, "metadata": {}} for i in range(4)]
    payloads += [{"text": f"b{i}", "doc_id": "b", "title": "", "chunk": i, "metadata": {}} for i in range(2)]
    with catalog.create(make_spec("stale")) as coll:
        coll.upsert(PointBatch(ids=ids, vectors=vectors_for(full), payloads=payloads))
        stored = coll.payloads(ids[:2] + [chunk_id("zzz", 0)])
        assert stored == {ids[0]: payloads[0], ids[1]: payloads[1]}


# --- compatibility -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"model_fingerprint": "ffffffffffffffff", "model": "other"}, "is another model"),
        ({"dims": (8, 32)}, "stores dims [8, 16, 32], not [8, 32]"),
        ({"chunk_size": 64}, "chunked with size 128 / overlap 16, not 64 / 16"),
        ({"chunk_overlap": 0}, "not 128 / 0"),
    ],
)
def test_open_or_create_refuses_another_kind_of_point(catalog, changes, fragment):
    catalog.create(make_spec("mm")).close()
    with pytest.raises(ModelMismatchError) as info:
        catalog.open_or_create(make_spec("mm", **changes))
    assert fragment in str(info.value)
    assert ModelMismatchError.http_status == 409
    # The refused open released the lock, and the collection is unchanged.
    with catalog.open_or_create(make_spec("mm")) as coll:
        assert coll.spec == make_spec("mm")


def test_open_or_create_creates(catalog):
    with catalog.open_or_create(make_spec("fresh")) as coll:
        assert coll.count() == 0
    assert catalog.names() == ["fresh"]


def test_compatible_spec_with_another_model_name_is_accepted():
    # Same weights under another name (e.g. a local copy of the model): same fingerprint, accepted.
    make_spec("x").check_compatible(make_spec("x", model="/some/local/copy"))


def test_name_with_trailing_newline_is_refused():
    with pytest.raises(BadInputError):
        validate_collection_name("abc\n")


def test_unstorable_payload_is_a_funnel_error(catalog):
    batch, _ = make_batch(2)
    bad = [p | {"metadata": {"score": float("nan")}} for p in batch.payloads]
    with catalog.create(make_spec("nan")) as coll, pytest.raises(FunnelError):
        coll.upsert(PointBatch(ids=batch.ids, vectors=batch.vectors, payloads=bad))


def test_calibration_is_read_once_and_again_when_the_file_changes(catalog):
    """A search consults the calibration several times per query: it is cached, but a calibration
    saved meanwhile (by this process or, written to the file, by another) is seen at once."""
    import json

    from retriever.store.edge.collection import CALIBRATION_FILE

    with catalog.create(make_spec()) as coll:
        assert coll.calibration() is None
        coll.save_calibration({"plan": "8:40,32:10", "k": 10, "hnsw_ef": 48})
        first = coll.calibration()
        assert first == {"plan": "8:40,32:10", "k": 10, "hnsw_ef": 48}
        assert coll.calibration() is first, "an unchanged file is not parsed again"
        coll.save_calibration({"plan": "8:80,32:10", "k": 10, "hnsw_ef": None})
        assert coll.calibration() == {"plan": "8:80,32:10", "k": 10, "hnsw_ef": None}
        # Another process's `funnel calibrate` replaces the file with the same size in place.
        other = {"plan": "8:90,32:10", "k": 10, "hnsw_ef": None}
        tmp = coll.path / "other.tmp"
        tmp.write_text(json.dumps(other, indent=2))
        tmp.replace(coll.path / CALIBRATION_FILE)
        assert coll.calibration() == other
        (coll.path / CALIBRATION_FILE).unlink()
        assert coll.calibration() is None

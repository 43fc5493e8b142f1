"""Index + search on the real model and the real Qdrant Edge engine, and the Python API's checks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BAD_CORPORA, TOPIC_DOCS, TOPIC_QUERIES, bad_corpora, topic_records, write_jsonl
from qdrant_edge import ScrollRequest

from retriever import Retriever
from retriever.encoding.embedder import DEFAULT_MODEL, Embedder, resolve_model
from retriever.errors import (
    BadInputError,
    CollectionLockedError,
    CollectionNotFoundError,
    CorpusError,
    InvalidDimsError,
    InvalidPlanError,
    ModelLoadError,
    ModelMismatchError,
)
from retriever.ingest.chunking import TokenChunker, chunk_id
from retriever.ingest.corpus import Document, Fields
from retriever.ingest.indexer import build_spec, index_corpus, model_id
from retriever.query.ladder import truncate_normalize
from retriever.query.validation import MAX_QUERY_CHARS
from retriever.store.edge.catalog import EdgeCatalog

N_DOCS = len(TOPIC_DOCS)


def point_keys(collection) -> list[tuple[str, str, int]]:
    """(point id, doc_id, chunk) of every stored point."""
    records, offset = [], None
    while True:
        page, offset = collection.shard.scroll(ScrollRequest(offset=offset, limit=256, with_payload=True))
        records.extend((str(r.id), r.payload["doc_id"], r.payload["chunk"]) for r in page)
        if offset is None:
            return records


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, embedder):
    """The topic corpus indexed once into a module-wide data directory (default ladder and chunking)."""
    root = tmp_path_factory.mktemp("indexed")
    corpus = write_jsonl(root / "topics.jsonl", topic_records())
    catalog = EdgeCatalog(root / "data")
    result = index_corpus(catalog, "topics", [corpus], embedder)
    return catalog, corpus, result


@pytest.fixture
def retriever(indexed, embedder):
    catalog, _, _ = indexed
    with Retriever(catalog.open("topics"), embedder) as r:
        yield r


# --- the embedder --------------------------------------------------------------------------------


def test_embedder_is_the_offline_minilm(embedder):
    assert embedder.dim == 384
    assert embedder.max_tokens == 256
    assert resolve_model(DEFAULT_MODEL) == resolve_model("all-MiniLM-L6-v2") != DEFAULT_MODEL
    assert len(embedder.fingerprint) == 16 and embedder.fingerprint == embedder.fingerprint
    vecs = embedder.encode(["a cat sat on the mat", "stock markets fell"], (64, 384))
    assert set(vecs) == {64, 384}
    assert vecs[64].shape == (2, 64) and vecs[384].shape == (2, 384)
    assert vecs[384].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs[64], axis=1), 1.0, atol=1e-5)
    full = embedder.encode_full(["a cat sat on the mat"])
    np.testing.assert_allclose(truncate_normalize(full, 64)[0], vecs[64][0], atol=1e-5)


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError) as info:
        Embedder(str(tmp_path / "no-such-model"), device="cpu")
    assert "cannot load model" in str(info.value)
    assert "\n" not in str(info.value)


def test_model_id_makes_local_paths_absolute(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    monkeypatch.chdir(tmp_path)
    assert model_id("m") == str(tmp_path / "m")
    assert model_id(DEFAULT_MODEL) == DEFAULT_MODEL


# --- index + search ------------------------------------------------------------------------------


def test_index_result(indexed):
    catalog, _, result = indexed
    assert result.collection == "topics"
    assert (result.documents, result.chunks, result.points) == (N_DOCS, N_DOCS, N_DOCS)
    assert (result.skipped_empty, result.skipped_bad, result.skipped) == (0, 0, 0)
    assert result.seconds > 0
    spec = catalog.read_spec("topics")
    assert spec.dims == (64, 128, 256, 384)
    assert (spec.chunk_size, spec.chunk_overlap, spec.model_dim) == (254, 32, 384)
    assert spec.model == DEFAULT_MODEL
    assert catalog.names() == ["topics"]


def test_chunk_ids_are_stable(indexed):
    catalog, _, _ = indexed
    with catalog.open("topics") as coll:
        keys = point_keys(coll)
        assert coll.spec.point_ids == "int"
    assert sorted(keys) == sorted((chunk_id(doc_id, 0, "int"), doc_id, 0) for doc_id, _, _ in TOPIC_DOCS)
    assert all(k[0].isdecimal() for k in keys), "a new collection stores integer point ids"


def test_a_collection_from_before_integer_ids_keeps_its_uuids(tmp_path, embedder):
    """A collection whose spec has no point_ids (made before integer ids) keeps UUIDv5 ids: re-indexing
    it updates its points in place instead of adding integer-id twins; search and payloads work."""
    import json

    corpus = write_jsonl(tmp_path / "topics.jsonl", topic_records())
    catalog = EdgeCatalog(tmp_path / "data")
    spec = build_spec("old", embedder, None, None, None)
    old = {k: v for k, v in json.loads(spec.to_json()).items() if k != "point_ids"}
    catalog.create(spec).close()
    (catalog.root / "old" / "collection.json").write_text(json.dumps(old))
    first = index_corpus(catalog, "old", [corpus], embedder)
    again = index_corpus(catalog, "old", [corpus], embedder)
    assert (first.points, again.points, again.unchanged) == (N_DOCS, N_DOCS, N_DOCS)
    with catalog.open("old") as coll:
        assert coll.spec.point_ids == "uuid"
        keys = point_keys(coll)
        assert sorted(keys) == sorted((chunk_id(doc_id, 0, "uuid"), doc_id, 0) for doc_id, _, _ in TOPIC_DOCS)
        assert set(coll.payloads([keys[0][0]])) == {keys[0][0]}


def test_funnel_top1_equals_exact_top1(retriever):
    queries = [q for _, q, _ in TOPIC_QUERIES]
    funnel = retriever.search_batch(queries, k=5)
    exact = retriever.search_batch(queries, k=5, exact=True)
    for (_, query, expected_doc), f_hits, e_hits in zip(TOPIC_QUERIES, funnel, exact):
        assert e_hits[0].doc_id == expected_doc, query
        assert f_hits[0].doc_id == e_hits[0].doc_id
        # On a corpus smaller than every shortlist the funnel is exact.
        assert [h.id for h in f_hits] == [h.id for h in e_hits]
        np.testing.assert_allclose([h.score for h in f_hits], [h.score for h in e_hits], rtol=1e-4, atol=1e-5)
        assert all(a.score >= b.score for a, b in zip(f_hits, f_hits[1:]))


def test_exact_scores_are_cosine_similarities(retriever, embedder):
    query = "How does a volcano erupt with lava?"
    hits = retriever.search(query, k=N_DOCS, exact=True)
    assert len(hits) == N_DOCS
    texts = {doc_id: text for doc_id, _, text in TOPIC_DOCS}
    q = embedder.encode([query], (384,))[384][0]
    d = embedder.encode([texts[h.doc_id] for h in hits], (384,))[384]
    np.testing.assert_allclose([h.score for h in hits], d @ q, atol=1e-4)


def test_hits_carry_the_payload(retriever):
    (hit,) = retriever.search("Which instrument has four strings and is played with a bow?", k=1)
    assert hit.doc_id == "violin"
    assert hit.chunk == 0
    assert hit.id == chunk_id("violin", 0)
    assert hit.title == "Music"
    assert hit.metadata == {"topic": "music"}
    assert hit.text == dict((d, t) for d, _, t in TOPIC_DOCS)["violin"]
    (bare,) = retriever.search("violin bow strings", k=1, with_text=False)
    assert bare.text is None and bare.doc_id == "violin"


def test_explicit_plans(retriever):
    query = "How do plants make oxygen from sunlight?"
    for plan in ("64:12,128:11,256:10", "256:10", "64:10", retriever.plan("128:50", 10)):
        hits = retriever.search(query, k=10, plan=plan)
        assert len(hits) == 10
        assert hits[0].doc_id == "photosynthesis"
    assert str(retriever.plan(None, 3)) == "64:120,128:60,256:30,384:3"


def test_batch_equals_single_searches(retriever):
    queries = [q for _, q, _ in TOPIC_QUERIES]
    batch = retriever.search_batch(queries, k=3)
    for query, hits in zip(queries, batch):
        single = retriever.search(query, k=3)
        assert [h.id for h in single] == [h.id for h in hits]


def test_reindexing_the_same_corpus_keeps_the_same_points(indexed, embedder):
    catalog, corpus, _ = indexed
    with catalog.open("topics") as coll:
        before = sorted(point_keys(coll))
    again = index_corpus(catalog, "topics", [corpus], embedder)
    assert (again.documents, again.chunks, again.points) == (N_DOCS, N_DOCS, N_DOCS)
    assert again.unchanged == N_DOCS, "unchanged chunks are not encoded again"
    with catalog.open("topics") as coll:
        assert coll.count() == N_DOCS
        assert sorted(point_keys(coll)) == before


def test_same_corpus_gives_the_same_ids_in_another_collection(indexed, embedder, data_dir):
    catalog, corpus, _ = indexed
    other = EdgeCatalog(data_dir)
    index_corpus(other, "copy", [corpus], embedder, dims="64,384")
    with catalog.open("topics") as a, other.open("copy") as b:
        assert {k[0] for k in point_keys(a)} == {k[0] for k in point_keys(b)}


def test_small_ladder_collection(indexed, embedder, data_dir):
    _, corpus, _ = indexed
    catalog = EdgeCatalog(data_dir)
    index_corpus(catalog, "two-dims", [corpus], embedder, dims="32,full")
    assert catalog.read_spec("two-dims").dims == (32, 384)
    with Retriever(catalog.open("two-dims"), embedder) as r:
        assert str(r.plan(None, 10)) == "32:100,384:10"
        assert r.search("Why do central banks raise interest rates?", k=1)[0].doc_id == "interest"
        assert r.search("Why do central banks raise interest rates?", k=1, exact=True)[0].doc_id == "interest"


def test_long_documents_become_many_chunks_and_shrinking_drops_stale_chunks(tmp_path, embedder, data_dir):
    catalog = EdgeCatalog(data_dir)
    sentences = [f"Sentence {i} is about the number {i} and nothing else." for i in range(60)]
    long_text = " ".join(sentences) + " The treasure is buried under the old oak tree."
    corpus = write_jsonl(tmp_path / "long.jsonl", [{"_id": "long", "text": long_text}, {"_id": "short", "text": "tiny"}])
    result = index_corpus(catalog, "long", [corpus], embedder, chunk_size=64, chunk_overlap=8)
    expected = TokenChunker(embedder.tokenizer, 64, 8, embedder.max_tokens).split(Document("long", long_text))
    assert len(expected) > 5
    assert (result.chunks, result.points) == (len(expected) + 1, len(expected) + 1)
    with Retriever(catalog.open("long"), embedder) as r:
        (hit,) = r.search("Where is the treasure buried?", k=1)
        assert (hit.doc_id, hit.chunk) == ("long", len(expected) - 1), "the end of a long document is indexed"
        assert "oak tree" in hit.text
        assert sorted(k[1:] for k in point_keys(r.collection)) == sorted(
            [("long", i) for i in range(len(expected))] + [("short", 0)]
        )
    # The document shrinks: re-indexing removes the chunks it no longer has.
    write_jsonl(corpus, [{"_id": "long", "text": " ".join(sentences[:10])}, {"_id": "short", "text": "tiny"}])
    shrunk = index_corpus(catalog, "long", [corpus], embedder, chunk_size=64, chunk_overlap=8)
    with catalog.open("long") as coll:
        keys = point_keys(coll)
    assert len(keys) == shrunk.points == shrunk.chunks < result.points
    assert {k[1] for k in keys} == {"long", "short"}


def test_an_edited_document_is_rewritten_whole_but_encodes_only_its_changed_chunks(tmp_path, embedder, data_dir):
    """A sentence appended to a long document: its new version (the other id generation) is written whole,
    the unchanged chunks' vectors copied from the stored ones (only the changed and new chunks are
    encoded), and every stored vector equals what encoding its chunk gives."""
    catalog = EdgeCatalog(data_dir)
    sentences = [f"Sentence {i} is about the number {i} and nothing else." for i in range(40)]
    corpus = write_jsonl(tmp_path / "long.jsonl", [{"_id": "long", "text": " ".join(sentences)}])
    first = index_corpus(catalog, "edited", [corpus], embedder, chunk_size=64, chunk_overlap=8)
    write_jsonl(corpus, [{"_id": "long", "text": " ".join(sentences) + " The treasure is under the old oak tree."}])
    encoded: list[str] = []
    real = embedder.encode

    def counting(texts, dims, batch_size=32):
        encoded.extend(texts)
        return real(texts, dims, batch_size=batch_size)

    embedder.encode = counting
    try:
        again = index_corpus(catalog, "edited", [corpus], embedder, chunk_size=64, chunk_overlap=8)
    finally:
        del embedder.encode
    assert again.chunks >= first.chunks > 4
    assert 1 <= len(encoded) <= again.chunks - first.chunks + 1, "only the changed and new chunks are encoded"
    assert again.unchanged == again.chunks - len(encoded)
    with catalog.open("edited") as coll:
        batches = list(coll.points())
        ids = [i for b in batches for i in b.ids]
        assert set(ids) == {chunk_id("long", i, "int", 1) for i in range(again.chunks)}  # the other generation
        texts = [p["text"] for b in batches for p in b.payloads]
        fresh = embedder.encode(texts, coll.spec.dims)
        for dim in coll.spec.dims:
            stored = np.concatenate([b.vectors[dim] for b in batches])
            np.testing.assert_allclose(stored, fresh[dim], atol=2e-3)
    with Retriever(catalog.open("edited"), embedder) as r:
        assert "oak tree" in r.search("Where is the treasure?", k=1)[0].text


# --- skips and counts ----------------------------------------------------------------------------


def test_empty_texts_and_bad_records_are_counted(tmp_path, embedder, data_dir):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        '{"_id": "1", "text": "the first real document"}\n'
        '{"_id": "2", "text": "   "}\n'
        '{"_id": "3", "text": ""}\n'
        "{not json\n"
        '{"_id": "5", "body": "no text field"}\n'
        '{"_id": "6", "text": "the second real document"}\n'
    )
    catalog = EdgeCatalog(data_dir)
    with pytest.raises(CorpusError, match=f"{path}:4: malformed JSON"):
        index_corpus(catalog, "mixed", [path], embedder)
    assert catalog.names() == []
    result = index_corpus(catalog, "mixed", [path], embedder, skip_bad=True)
    assert (result.documents, result.chunks, result.points) == (2, 2, 2)
    assert (result.skipped_empty, result.skipped_bad, result.skipped) == (2, 2, 4)


def test_custom_fields(tmp_path, embedder, data_dir):
    path = write_jsonl(tmp_path / "custom.jsonl", [
        {"key": "k1", "body": "Penguins are flightless birds of the southern hemisphere.", "lang": "en"},
        {"key": "k2", "body": "Le fromage est fait avec du lait.", "lang": "fr"},
    ])
    catalog = EdgeCatalog(data_dir)
    index_corpus(catalog, "custom", [path], embedder, fields=Fields(id="key", text="body", metadata=("lang",)))
    with Retriever(catalog.open("custom"), embedder) as r:
        (hit,) = r.search("birds that cannot fly", k=1)
    assert (hit.doc_id, hit.metadata) == ("k1", {"lang": "en"})


# --- nothing half-written: bad input fails before the collection is touched ----------------------


@pytest.mark.parametrize("case", BAD_CORPORA)
def test_bad_corpus_creates_nothing(case, tmp_path, embedder, data_dir):
    path, fragments = bad_corpora(tmp_path)[case]
    catalog = EdgeCatalog(data_dir)
    with pytest.raises(CorpusError) as info:
        index_corpus(catalog, "new-coll", [path], embedder)
    assert all(fragment in str(info.value) for fragment in fragments)
    assert "\n" not in str(info.value)
    assert "new-coll" not in EdgeCatalog(data_dir).names()
    assert not (data_dir / "collections" / "new-coll").exists()


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"dims": "128,64"}, InvalidDimsError, "strictly ascending"),
        ({"dims": "64,128,768"}, InvalidDimsError, "768 is above the model's dim (384)"),
        ({"dims": "64,banana"}, InvalidDimsError, "'banana' is not an integer"),
        ({"chunk_size": 4}, BadInputError, "invalid chunk size 4"),
        ({"chunk_size": 1000}, BadInputError, "invalid chunk size 1000: use 8..254"),
        ({"chunk_overlap": 300}, BadInputError, "invalid chunk overlap 300"),
        ({"batch_size": 0}, BadInputError, "invalid batch size 0"),
    ],
)
def test_bad_options_create_nothing(options, error, fragment, topic_corpus, embedder, data_dir):
    catalog = EdgeCatalog(data_dir)
    with pytest.raises(error) as info:
        index_corpus(catalog, "new-coll", [topic_corpus], embedder, **options)
    assert fragment in str(info.value)
    assert catalog.names() == []


# --- another model / ladder / chunking is refused ------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"dims": "64,384"}, "stores dims [64, 128, 256, 384], not [64, 384]"),
        ({"chunk_size": 128}, "chunked with size 254 / overlap 32, not 128 / 32"),
        ({"chunk_overlap": 0}, "not 254 / 0"),
    ],
)
def test_other_ladder_or_chunking_is_refused(options, fragment, indexed, embedder):
    catalog, corpus, _ = indexed
    with pytest.raises(ModelMismatchError) as info:
        index_corpus(catalog, "topics", [corpus], embedder, **options)
    assert fragment in str(info.value)
    with catalog.open("topics") as coll:
        assert coll.count() == N_DOCS


def test_other_model_is_refused(indexed, perturbed_model_dir):
    catalog, corpus, _ = indexed
    other = Embedder(str(perturbed_model_dir), device="cpu")
    assert other.dim == 384
    assert other.fingerprint != Embedder(device="cpu").fingerprint
    spec = build_spec("topics", other, None, None, 32)
    assert spec.model == str(perturbed_model_dir.resolve())
    with pytest.raises(ModelMismatchError) as info:
        index_corpus(catalog, "topics", [corpus], other)
    assert "is another model" in str(info.value)
    with catalog.open("topics") as coll:
        assert coll.count() == N_DOCS
        with pytest.raises(ModelMismatchError, match="search it with the model that built it"):
            Retriever(coll, other)
    with pytest.raises(ModelMismatchError):
        Retriever.open("topics", catalog.root.parent, model=str(perturbed_model_dir), device="cpu")
    # The refused open released the collection.
    with catalog.open("topics") as coll:
        assert coll.count() == N_DOCS


# --- locking -------------------------------------------------------------------------------------


def test_open_collection_is_locked(indexed, embedder):
    catalog, corpus, _ = indexed
    with Retriever.open("topics", catalog.root.parent, device="cpu") as r:
        assert r.name == "topics"
        with pytest.raises(CollectionLockedError):
            EdgeCatalog(catalog.root.parent).open("topics")
        with pytest.raises(CollectionLockedError):
            index_corpus(catalog, "topics", [corpus], embedder)
        with pytest.raises(CollectionLockedError):
            catalog.drop("topics")
    with catalog.open("topics") as coll:
        assert coll.count() == N_DOCS


# --- the search API's checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"query": "x", "k": 0}, BadInputError, "invalid k 0"),
        ({"query": "x", "k": -3}, BadInputError, "invalid k -3"),
        ({"query": "x", "k": 100_000}, BadInputError, "invalid k 100000"),
        ({"query": ""}, BadInputError, "empty query"),
        ({"query": " \n\t "}, BadInputError, "empty query"),
        ({"query": "x" * (MAX_QUERY_CHARS + 1)}, BadInputError, "query too long"),
        ({"query": "x", "plan": "64-400"}, InvalidPlanError, "is not DIM:LIMIT"),
        ({"query": "x", "plan": "100:50"}, InvalidPlanError, "dim 100 is not in the collection's dims"),
        ({"query": "x", "plan": "64:5", "k": 10}, InvalidPlanError, "keeps fewer than k=10"),
    ],
)
def test_bad_search_input(retriever, kwargs, error, fragment):
    with pytest.raises(error) as info:
        retriever.search(**kwargs)
    assert fragment in str(info.value)


def test_bad_batches(retriever):
    with pytest.raises(BadInputError, match="empty query batch"):
        retriever.search_batch([])
    with pytest.raises(BadInputError, match="empty query"):
        retriever.search_batch(["fine", ""])


def test_k_larger_than_the_collection(retriever):
    hits = retriever.search("anything", k=1000)
    assert len(hits) == N_DOCS
    assert len({h.id for h in hits}) == N_DOCS


def test_unknown_collection_is_found_before_loading_a_model(data_dir):
    with pytest.raises(CollectionNotFoundError):
        Retriever.open("nope", data_dir, model="/definitely/not/a/model")


# --- known bugs ----------------------------------------------------------------------------------


def test_unstorable_metadata_is_found_before_the_collection_is_created(tmp_path, embedder, data_dir):
    path = tmp_path / "nan.jsonl"
    path.write_text('{"_id": "a", "text": "hello world", "metadata": {"score": NaN}}\n')
    catalog = EdgeCatalog(data_dir)
    with pytest.raises(CorpusError):
        index_corpus(catalog, "nan", [path], embedder)
    assert catalog.names() == []


def test_duplicate_document_ids_are_not_lost(tmp_path, embedder, data_dir):
    for part in ("part1", "part2"):
        (tmp_path / part).mkdir()
    (tmp_path / "part1" / "notes.txt").write_text("The first notes file talks about apples.")
    (tmp_path / "part2" / "notes.txt").write_text("The second notes file talks about submarines.")
    catalog = EdgeCatalog(data_dir)
    with pytest.raises(CorpusError, match="duplicate document id 'notes.txt'"):
        index_corpus(catalog, "dups", [tmp_path / "part1", tmp_path / "part2"], embedder)
    assert catalog.names() == []
    result = index_corpus(catalog, "dups", [tmp_path / "part1", tmp_path / "part2"], embedder, skip_bad=True)
    assert (result.documents, result.skipped_bad, result.points) == (1, 1, 1)
    with Retriever(catalog.open("dups"), embedder) as r:
        assert "apples" in r.search("apples", k=1)[0].text  # the first one is kept


def test_chunk_overlap_default_fits_small_chunks(tmp_path, embedder, data_dir):
    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "a", "text": "' + " ".join(f"w{i}" for i in range(100)) + '"}\n')
    result = index_corpus(EdgeCatalog(data_dir), "small", [path], embedder, chunk_size=16)
    assert EdgeCatalog(data_dir).read_spec("small").chunk_overlap == 4  # a quarter of 16
    assert result.chunks > 1


@pytest.mark.parametrize("device, message", [("banana", "unknown device"), ("cuda", "no CUDA GPU")])
def test_bad_device_is_a_clear_error(device, message):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(BadInputError, match=message):
        Embedder(device=device)

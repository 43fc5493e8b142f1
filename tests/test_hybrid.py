"""Hybrid search at the engine level: the BM25 stage against an independent BM25 library (bm25s), the
fusions against their definitions, and the embedded engine (Qdrant Edge) against qdrant-client's
local mode. Synthetic vectors, no model: the surfaces (CLI, API, HTTP) are in test_hybrid_surfaces.py.

Tokenization assumptions (what makes the engines and bm25s see the same terms):

- analyzer ``plain``: Qdrant's word tokenizer splits on non-word characters and lower-cases;
  ``bm25s.tokenize(lower=True, stopwords=None, stemmer=None)`` keeps the matches of ``\\w\\w+`` (it
  drops one-character tokens). The synthetic corpus is made of words of 3 to 8 ASCII letters
  (some capitalised), separated by spaces and ending in a full stop: both tokenize it identically.
- Query terms are distinct (Qdrant counts a repeated query term once, bm25s once per occurrence).
- BM25 parameters: k1 = 1.2, b = 0.75, IDF ln(1 + (N - df + 0.5) / (df + 0.5)): Qdrant's, and bm25s'
  ``method="lucene"``, whose term weight tf / (tf + k1 (1 - b + b dl / avgdl)) lacks Qdrant's constant
  factor (k1 + 1): the engines' scores are bm25s' times 2.2. Document lengths are exact in Qdrant below
  8,192 tokens (longer ones are rounded); these documents are far shorter.
- No ties: every document has its own length (ties then need a numerical coincidence; the test checks
  that the reference top 11 has none, so that "the same top 10 in the same order" is well defined).

Analyzer ``english`` (Qdrant: English stop words and Snowball English stemming) is compared with
bm25s' ``stopwords="en"`` (Lucene's 33 English stop words) and PyStemmer's English (Snowball) stemmer
on real English text: Qdrant's English stop word list is longer than Lucene's, so document lengths and
a few terms differ, and the agreement is measured as overlap (see test_english_analyzer_overlap).
"""

from __future__ import annotations

import string

import numpy as np
import pytest
from conftest import engine_config

from retriever.errors import StoreError
from retriever.ingest.chunking import chunk_id
from retriever.query.filters import parse_filter
from retriever.query.fusion import Fusion
from retriever.query.ladder import truncate_normalize
from retriever.query.plan import parse_plan
from retriever.query.spec import Hit, QuerySpec
from retriever.store.base import PointBatch
from retriever.store.factory import open_catalog
from retriever.store.spec import CollectionSpec

bm25s = pytest.importorskip("bm25s")
Stemmer = pytest.importorskip("Stemmer")

DIMS = (8, 16, 32)
N_DOCS = 300
K = 10
K1, B = 1.2, 0.75
QDRANT_FACTOR = K1 + 1  # Qdrant's BM25 term weight = bm25s lucene's × (k1 + 1)


def make_spec(name: str, analyzer: str = "plain", lexical: str | None = "bm25") -> CollectionSpec:
    return CollectionSpec(name=name, model="synthetic", model_fingerprint="feedfacecafebeef", model_dim=32, dims=DIMS,
                          chunk_size=128, chunk_overlap=16, lexical=lexical, lexical_analyzer=analyzer)


def synthetic_texts(n: int = N_DOCS, seed: int = 13) -> tuple[list[str], list[str]]:
    """Documents of pseudo-words (Zipf-distributed, 3-8 ASCII letters, 10 % capitalised), each of its
    own length (4 to n + 3 words); and their vocabulary, most frequent first."""
    rng = np.random.default_rng(seed)
    vocab = list(dict.fromkeys("".join(rng.choice(list(string.ascii_lowercase), size=rng.integers(3, 9)))
                               for _ in range(400)))
    p = 1 / np.arange(1, len(vocab) + 1) ** 0.9
    p /= p.sum()
    texts = []
    for length in rng.permutation(np.arange(4, n + 4)):
        words = [w.capitalize() if rng.random() < 0.1 else str(w) for w in rng.choice(vocab, size=length, p=p)]
        texts.append(" ".join(words) + ".")
    return texts, vocab


def text_queries(vocab: list[str], n: int, seed: int = 5) -> list[str]:
    """1 to 3 distinct mid-frequency terms each."""
    rng = np.random.default_rng(seed)
    return [" ".join(dict.fromkeys(str(w) for w in rng.choice(vocab[5:200], size=rng.integers(1, 4))))
            for _ in range(n)]


def make_points(texts: list[str], seed: int = 3, metadata: bool = True) -> tuple[PointBatch, np.ndarray]:
    rng = np.random.default_rng(seed)
    full = (rng.normal(size=(len(texts), 32)) * np.exp(-np.arange(32) / 12)).astype(np.float32)
    ids = [chunk_id(f"d{i}", 0) for i in range(len(texts))]
    payloads = [{"text": t, "doc_id": f"d{i}", "title": "", "chunk": 0, "metadata": {"group": i % 3}}
                for i, t in enumerate(texts)]
    return PointBatch(ids, {d: truncate_normalize(full, d) for d in DIMS}, payloads), full


def dense_queries(full: np.ndarray, n: int, seed: int = 9) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = full[rng.integers(0, len(full), size=n)]
    noisy = (rows + 0.6 * rng.normal(size=rows.shape) * np.exp(-np.arange(32) / 12)).astype(np.float32)
    return {d: truncate_normalize(noisy, d) for d in DIMS}


def bm25s_reference(texts: list[str], queries: list[str], analyzer: str, k: int) -> list[list[tuple[int, float]]]:
    """bm25s' top k (doc index, score in Qdrant's scale) per query, best first (positive scores only)."""
    stemmer = Stemmer.Stemmer("english") if analyzer == "english" else None
    stopwords = "en" if analyzer == "english" else None
    model = bm25s.BM25(k1=K1, b=B, method="lucene")
    model.index(bm25s.tokenize(texts, lower=True, stopwords=stopwords, stemmer=stemmer, show_progress=False),
                show_progress=False)
    out = []
    for query in queries:
        terms = bm25s.tokenize([query], lower=True, stopwords=stopwords, stemmer=stemmer, return_ids=False,
                               show_progress=False)[0]
        scores = model.get_scores(list(dict.fromkeys(terms))) * QDRANT_FACTOR
        order = sorted(range(len(texts)), key=lambda i: (-scores[i], i))[:k]
        out.append([(i, float(scores[i])) for i in order if scores[i] > 0])
    return out


def doc_index(hit: Hit) -> int:
    return int(hit.doc_id[1:])


def lexical(coll, queries: list[str], k: int = K, filter=None) -> list[list[Hit]]:  # noqa: ANN001
    zeros = {d: np.zeros((len(queries), d), np.float32) for d in DIMS}
    return coll.search_each(zeros, [QuerySpec(None, k, False, filter, mode="lexical", text=q) for q in queries])


ENGINES = ("edge", "local")


@pytest.fixture(scope="module")
def corpus():
    texts, vocab = synthetic_texts()
    batch, full = make_points(texts)
    return texts, vocab, batch, full


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, corpus):
    """The corpus with a plain-analyzer BM25 index, on the embedded engine and on local mode."""
    texts, _vocab, batch, _full = corpus
    root = tmp_path_factory.mktemp("hybrid")
    catalogs, collections = {}, {}
    for kind in ENGINES:
        catalog = open_catalog(engine_config(kind, root))
        coll = catalog.create(make_spec("hyb"))
        coll.upsert(batch)
        coll.finish_indexing()
        catalogs[kind], collections[kind] = catalog, coll
    yield collections
    for kind, coll in collections.items():
        coll.close()
        catalogs[kind].drop("hyb")
        catalogs[kind].close()


# --- the lexical stage against bm25s --------------------------------------------------------------


@pytest.mark.parametrize("kind", ENGINES)
def test_lexical_top10_agrees_with_bm25s(loaded, corpus, kind):
    texts, vocab, _batch, _full = corpus
    queries = text_queries(vocab, 40)
    reference = bm25s_reference(texts, queries, "plain", K + 1)
    for ref in reference:  # the corpus is built without ties: a top 10 in order is well defined
        scores = [s for _, s in ref]
        assert all(a - b > 1e-5 * a for a, b in zip(scores, scores[1:])), f"tie in the reference: {ref}"
    hits = lexical(loaded[kind], queries)
    assert sum(len(ref) >= K for ref in reference) >= 30  # at least 30 queries with a full top 10
    for query, got, ref in zip(queries, hits, reference):
        assert [doc_index(h) for h in got] == [i for i, _ in ref[:K]], query
        np.testing.assert_allclose([h.score for h in got], [s for _, s in ref[:K]], rtol=1e-4)


ENGLISH_VOCABULARY = (
    "the a an and or of to in on for with is are was were be been has have had this that these those it its "
    "bank banks banking banked loan loans lending lender rate rates rated rating interest interests market "
    "markets marketing revenue revenues growth grow grows growing grew profit profits profitable quarter "
    "quarterly report reports reported reporting company companies chip chips design designs designed "
    "designing data center centers gaming game games graphics processor processors invent invented "
    "invention risk risks risky supply supplier suppliers customer customers sale sales sell selling sold "
    "cost costs costly fund funds funding energy power powered powering network networks networking "
    "software hardware compute computing computed research researchers build building builds built"
)
ENGLISH_WORDS = ENGLISH_VOCABULARY.split()


def english_texts(n: int = 200, seed: int = 21) -> list[str]:
    rng = np.random.default_rng(seed)
    p = 1 / np.arange(1, len(ENGLISH_WORDS) + 1) ** 0.7
    p /= p.sum()
    return [" ".join(rng.choice(ENGLISH_WORDS, size=length, p=p)).capitalize() + "."
            for length in rng.permutation(np.arange(6, n + 6))]


def test_english_analyzer_overlap(tmp_path):
    """The english analyzer against bm25s with Lucene's English stop words and PyStemmer's English
    stemmer: the same stems, but Qdrant drops more stop words (so document lengths differ a little).
    Measured: mean top-10 overlap 0.93, top-3 overlap 0.85; asserted ≥ 0.85 and ≥ 0.75."""
    texts = english_texts()
    rng = np.random.default_rng(4)
    content = ENGLISH_WORDS[ENGLISH_WORDS.index("bank"):]
    queries = [" ".join(dict.fromkeys(str(w) for w in rng.choice(content, size=rng.integers(1, 4))))
               for _ in range(40)]
    batch, _ = make_points(texts)
    with open_catalog(engine_config("edge", tmp_path)) as catalog, catalog.create(make_spec("en", "english")) as coll:
        coll.upsert(batch)
        coll.finish_indexing()
        hits = lexical(coll, queries)
        banking = lexical(coll, ["banking"], k=len(texts))[0]
    reference = bm25s_reference(texts, queries, "english", K)
    top10 = [len({doc_index(h) for h in got} & {i for i, _ in ref}) / max(1, len(ref))
             for got, ref in zip(hits, reference)]
    top3 = [len({doc_index(h) for h in got[:3]} & {i for i, _ in ref[:3]}) / max(1, len(ref[:3]))
            for got, ref in zip(hits, reference)]
    assert np.mean(top10) >= 0.85, (np.mean(top10), np.mean(top3))
    assert np.mean(top3) >= 0.75, (np.mean(top10), np.mean(top3))
    # stemming is on: an inflected query term finds the documents of all its forms
    forms = {"bank", "banks", "banking", "banked"}
    assert {doc_index(h) for h in banking} == {i for i, t in enumerate(texts)
                                               if forms & set(t.lower().rstrip(".").split())}


def test_local_mode_refuses_the_english_analyzer_at_create(tmp_path):
    """Local mode scores text queries only with the default tokenization; without this check the
    collection would be created and every lexical search would fail later."""
    with open_catalog(engine_config("local-path", tmp_path)) as catalog:
        with pytest.raises(StoreError, match="local mode .* no 'english' lexical analyzer.*--lexical-analyzer plain"):
            catalog.create(make_spec("en", "english"))
        assert not catalog.exists("en")
        catalog.create(make_spec("pl", "plain")).close()
        assert catalog.read_spec("pl").lexical_analyzer == "plain"


# --- fusions against their definitions --------------------------------------------------------------


def dense(coll, queries: dict[int, np.ndarray], plan, k: int, filter=None) -> list[list[Hit]]:  # noqa: ANN001
    n = len(next(iter(queries.values())))
    return coll.search_each(queries, [QuerySpec(plan, k, False, filter)] * n)


def hybrid(coll, queries: dict[int, np.ndarray], texts: list[str], plan, fusion: Fusion, k: int = K,  # noqa: ANN001
           filter=None) -> list[list[Hit]]:
    return coll.search_each(queries, [QuerySpec(plan, k, False, filter, mode="hybrid", fusion=fusion, text=t)
                                      for t in texts])


def assert_same_up_to_ties(got: list[Hit], expected: list[tuple[str, float]], k: int, atol: float) -> None:
    """``got`` is the top k of the whole ``expected`` fused list (best first): the same scores rank by
    rank, and the same ids once points of equal score are grouped (a group cut by the top k may be
    represented by any of its members)."""
    assert len(got) == min(k, len(expected))
    np.testing.assert_allclose([h.score for h in got], [s for _, s in expected[:k]], atol=atol, rtol=0)
    for h in got:
        assert h.id in {pid for pid, score in expected if abs(score - h.score) <= atol}, h


def rrf_expected(dense_hits: list[Hit], lexical_hits: list[Hit], fusion: Fusion,
                 first_rank: int = 1) -> list[tuple[str, float]]:
    """Qdrant's weighted RRF, as measured on both engines: Σ_lists 1 / (rrf_k - 1 + rank / weight),
    ranks from 1 (``first_rank=1``): the weight divides the rank; it does not multiply the score.
    With weight 1 that is 1 / (rrf_k + rank - 1): the best point of a list gets 1 / rrf_k."""
    scores: dict[str, float] = {}
    for hits, weight in ((dense_hits, fusion.dense_weight), (lexical_hits, fusion.lexical_weight)):
        for rank, h in enumerate(hits, first_rank):
            scores[h.id] = scores.get(h.id, 0.0) + 1 / (fusion.rrf_k - 1 + rank / weight)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("plan", [None, "8:60,16:30"])
def test_rrf_is_the_sum_of_weighted_reciprocal_ranks(loaded, corpus, kind, plan):
    """RRF over the separately run dense funnel (its top dense_limit) and BM25 (its top lexical_limit):
    Σ 1 / (rrf_k - 1 + rank / weight), ranks from 1 (see rrf_expected). Not the textbook
    Σ weight / (rrf_k + rank): neither 1-based nor 0-based ranks with a score-multiplying weight match."""
    _texts, vocab, _batch, full = corpus
    texts = text_queries(vocab, 12, seed=8)
    vectors = dense_queries(full, 12)
    coll = loaded[kind]
    for fusion in (Fusion("rrf", lexical_limit=25, dense_limit=20),
                   Fusion("rrf", lexical_limit=15, dense_limit=30, rrf_k=10, dense_weight=1.0, lexical_weight=0.77)):
        funnel = None if plan is None else parse_plan(plan, DIMS, K).with_k(fusion.dense_limit)
        dense_hits = dense(coll, vectors, funnel, fusion.dense_limit)
        lexical_hits = lexical(coll, texts, fusion.lexical_limit)
        fused = hybrid(coll, vectors, texts, funnel, fusion)
        for got, d, lx in zip(fused, dense_hits, lexical_hits):
            assert_same_up_to_ties(got, rrf_expected(d, lx, fusion), K, atol=1e-6)
            textbook = sorted(textbook_rrf(d, lx, fusion).values(), reverse=True)[:K]
            assert not np.allclose([h.score for h in got], textbook, atol=1e-6, rtol=0)


def textbook_rrf(dense_hits: list[Hit], lexical_hits: list[Hit], fusion: Fusion) -> dict[str, float]:
    scores: dict[str, float] = {}
    for hits, weight in ((dense_hits, fusion.dense_weight), (lexical_hits, fusion.lexical_weight)):
        for rank, h in enumerate(hits, 1):
            scores[h.id] = scores.get(h.id, 0.0) + weight / (fusion.rrf_k + rank)
    return scores


def dbsf_expected(dense_hits: list[Hit], lexical_hits: list[Hit], lexical_depth: int) -> list[tuple[str, float]]:
    """Distribution-based score fusion: each list's scores mapped by (s - (μ - 3σ)) / 6σ, then summed.
    σ is the *sample* standard deviation (n - 1; measured: the population one misses by ~1e-2 on
    both engines' own DBSF), and the mapped scores are not clamped to [0, 1]. A BM25 list shorter
    than its depth counts, for μ and σ, the zeros of the candidates it does not hold."""
    scores: dict[str, float] = {}
    for hits, depth in ((dense_hits, 0), (lexical_hits, lexical_depth)):
        values = np.array([h.score for h in hits], dtype=np.float64)
        padded = np.concatenate([values, np.zeros(max(0, depth - len(values)))])
        mean, std = padded.mean(), padded.std(ddof=1)
        for h, s in zip(hits, values):
            norm = (s - (mean - 3 * std)) / (6 * std)
            scores[h.id] = scores.get(h.id, 0.0) + float(norm)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


@pytest.mark.parametrize("kind", ENGINES)
def test_dbsf_normalises_each_list_by_mean_and_three_sigma(loaded, corpus, kind):
    _texts, vocab, _batch, full = corpus
    texts = text_queries(vocab, 12, seed=8)
    vectors = dense_queries(full, 12)
    coll = loaded[kind]
    fusion = Fusion("dbsf", lexical_limit=25, dense_limit=20)
    dense_hits = dense(coll, vectors, None, fusion.dense_limit)
    lexical_hits = lexical(coll, texts, fusion.lexical_limit)
    for got, d, lx in zip(hybrid(coll, vectors, texts, None, fusion), dense_hits, lexical_hits):
        assert_same_up_to_ties(got, dbsf_expected(d, lx, fusion.lexical_limit), K, atol=1e-5)


@pytest.mark.parametrize("kind", ENGINES)
def test_dbsf_pads_a_short_bm25_list(loaded, corpus, kind):
    """Queries of one of the rarest terms (in 17-19 documents) with 50-deep BM25 lists: each list is
    shorter than its depth, so its zeros count in μ and σ (dbsf_expected), which Qdrant's DBSF
    does not do. (The one-hit case, a rare term's only match ranked first, is test_hybrid_rare.py.)"""
    texts, vocab, _batch, full = corpus
    counts = {w: sum(w in t.lower().replace(".", "").split() for t in texts) for w in vocab}
    rare = sorted(vocab, key=lambda w: counts[w])[:8]
    vectors = dense_queries(full, len(rare), seed=21)
    coll = loaded[kind]
    fusion = Fusion("dbsf", lexical_limit=50, dense_limit=20)
    dense_hits = dense(coll, vectors, None, fusion.dense_limit)
    lexical_hits = lexical(coll, rare, fusion.lexical_limit)
    for term, got, d, lx in zip(rare, hybrid(coll, vectors, rare, None, fusion), dense_hits, lexical_hits):
        assert len(lx) == counts[term] < fusion.lexical_limit
        assert_same_up_to_ties(got, dbsf_expected(d, lx, fusion.lexical_limit), K, atol=1e-5)
        unpadded = [score for _, score in dbsf_expected(d, lx, 0)[:K]]  # Qdrant's own DBSF
        assert not np.allclose([h.score for h in got], unpadded, atol=1e-3), term


@pytest.mark.parametrize("kind", ENGINES)
def test_union_rescores_shortlist_and_bm25_candidates(loaded, corpus, kind):
    """union: BM25's top lexical_limit join the first stage's shortlist; the re-score stages rank
    them all, so every hit comes from the dense shortlist ∪ BM25's top L, scored at the top dim; and
    some hits come from BM25 only (the funnel alone would not have found them)."""
    _texts, vocab, batch, full = corpus
    texts = text_queries(vocab, 12, seed=8)
    vectors = dense_queries(full, 12)
    coll = loaded[kind]
    plan = parse_plan("8:15,16:12,32:10", DIMS, K)
    fusion = Fusion("union", lexical_limit=30)
    shortlist = coll.search_at(vectors[8], 8, 15, exact=True)  # the first stage: a full scan here
    lexical_hits = lexical(coll, texts, fusion.lexical_limit)
    funnel_alone = dense(coll, vectors, plan, K)
    top = {pid: v for pid, v in zip(batch.ids, batch.vectors[32])}
    from_bm25_only = 0
    for i, got in enumerate(hybrid(coll, vectors, texts, plan, fusion)):
        allowed = {h.id for h in shortlist[i]} | {h.id for h in lexical_hits[i]}
        assert {h.id for h in got} <= allowed
        np.testing.assert_allclose([h.score for h in got], [float(top[h.id] @ vectors[32][i]) for h in got],
                                   atol=1e-5)
        assert [h.score for h in got] == sorted((h.score for h in got), reverse=True)
        from_bm25_only += len({h.id for h in got} - {h.id for h in funnel_alone[i]})
    assert from_bm25_only > 0


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("mode", ["lexical", "union", "rrf", "dbsf"])
def test_filter_holds_in_lexical_and_hybrid_modes(loaded, corpus, kind, mode):
    _texts, vocab, _batch, full = corpus
    texts = text_queries(vocab, 8, seed=8)
    vectors = dense_queries(full, 8)
    where = parse_filter({"metadata.group": 1})
    coll = loaded[kind]
    if mode == "lexical":
        results = lexical(coll, texts, K, where)
        unfiltered = lexical(coll, texts, N_DOCS)
    else:
        results = hybrid(coll, vectors, texts, parse_plan("8:40,16:20", DIMS, K), Fusion(mode), filter=where)
        unfiltered = hybrid(coll, vectors, texts, parse_plan("8:40,16:20", DIMS, K), Fusion(mode))
    assert all(results)
    for got, wide in zip(results, unfiltered):
        assert all(doc_index(h) % 3 == 1 for h in got)
        if mode == "lexical":  # the filter restricts before the top k: the same as filtering a deeper list
            assert [h.id for h in got] == [h.id for h in wide if doc_index(h) % 3 == 1][:len(got)]
    assert any(doc_index(h) % 3 != 1 for got in unfiltered for h in got)


# --- congruence: embedded engine vs local mode ------------------------------------------------------


@pytest.mark.parametrize("mode", ["lexical", "union", "rrf", "dbsf"])
@pytest.mark.parametrize("plan", [None, "8:40,16:20,32:10", "16:25"])
def test_engines_agree_on_lexical_and_hybrid(loaded, corpus, mode, plan):
    """The same ids in the same order, scores to 1e-4, for every mode. RRF runs with unequal weights:
    with equal ones, a point ranked r by one list only ties with a point ranked r by the other, and
    which of them the top k keeps is each engine's own choice."""
    _texts, vocab, _batch, full = corpus
    texts = text_queries(vocab, 20, seed=11)
    vectors = dense_queries(full, 20, seed=12)
    funnel = None if plan is None else parse_plan(plan, DIMS, K)
    if mode == "rrf":
        fusion = Fusion("rrf", lexical_limit=30, dense_limit=25, dense_weight=1.0, lexical_weight=0.77)
    elif mode != "lexical":
        fusion = Fusion(mode, lexical_limit=30, dense_limit=25)
    results = {}
    for kind, coll in loaded.items():
        if mode == "lexical":
            results[kind] = lexical(coll, texts)
        else:
            dense_plan = funnel if funnel is None or mode == "union" else funnel.with_k(max(funnel.k, 25))
            results[kind] = hybrid(coll, vectors, texts, dense_plan, fusion)
    for a, b in zip(results["edge"], results["local"]):
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-4, atol=1e-6)
    assert all(len(r) == K for r in results["edge"])


def test_no_lexical_index_no_lexical_search(tmp_path):
    batch, _ = make_points(synthetic_texts(20)[0])
    with open_catalog(engine_config("edge", tmp_path)) as catalog, catalog.create(make_spec("d", lexical=None)) as coll:
        coll.upsert(batch)
        with pytest.raises(StoreError):
            lexical(coll, ["anything"])


def test_fusion_refuses_rrf_k_zero():
    """rrf_k = 0 gives a list's best point 1 / 0: Edge scores it inf (which JSON cannot carry), local
    mode refuses it. The Fusion refuses it first, as a bad-input error."""
    from retriever.errors import InvalidPlanError

    with pytest.raises(InvalidPlanError, match="rrf_k must be an integer from 1 to 10000, not 0"):
        Fusion("rrf", rrf_k=0)
    assert str(Fusion("rrf", rrf_k=1, dense_limit=30, lexical_limit=20)) == "rrf(k=1,dense=30x1,lexical=20x1)"

"""Measure the encoders on a collection's own chunks and queries, and keep the fastest that is faithful.

Faithful: its queries, searched against the stored vectors, find the fp32 torch model's exact
top-k (recall@k against fp32 ≥ :data:`RECALL_FLOOR`), and, where judged queries are given, lose at
most :data:`NDCG_BUDGET` of fp32's NDCG@k. Torch fp32 is the reference, so it always qualifies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from retriever.encoding.names import TORCH
from retriever.errors import FunnelError
from retriever.query.ladder import truncate_normalize

RECALL_FLOOR = 0.99
NDCG_BUDGET = 0.002
QUERY_TIMING = 100  # single-query encodes timed per encoder (after 10 untimed)


@dataclass(frozen=True)
class EncoderTrial:
    """One encoder measured: speed (single query, passages), fidelity to fp32 torch, and why it failed."""

    encoder: str
    precision: str = ""
    load_s: float = 0.0
    query_p50_ms: float = 0.0
    query_p99_ms: float = 0.0
    passages_per_s: float = 0.0
    recall_vs_fp32: float = 0.0  # exact top-k of its queries in the collection, vs fp32 torch's queries'
    recall_vs_fp32_both: float = 0.0  # it on both sides (a sample of documents too), vs fp32 on both sides
    ndcg: float | None = None
    error: str | None = None

    def faithful(self, ndcg_fp32: float | None, both: bool = False) -> bool:
        if self.error is not None:
            return False
        if ndcg_fp32 is not None and self.ndcg is not None and not both:
            return ndcg_fp32 - self.ndcg <= NDCG_BUDGET and self.recall_vs_fp32 >= RECALL_FLOOR - 0.02
        return (self.recall_vs_fp32_both if both else self.recall_vs_fp32) >= RECALL_FLOOR


@dataclass
class EncoderCalibration:
    """The trials, the query encoder chosen (fastest faithful single query) and the document
    encoder recommended for indexing (most passages/s, faithful on both sides)."""

    trials: list[EncoderTrial]
    query: str
    document: str
    ndcg_fp32: float | None
    source: str
    k: int
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"query": self.query, "document": self.document, "k": self.k, "source": self.source,
                "recall_floor": RECALL_FLOOR, "ndcg_budget": NDCG_BUDGET, "ndcg_fp32": self.ndcg_fp32,
                "trials": [asdict(t) for t in self.trials]}


def exact_top_k(queries: np.ndarray, docs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-``k`` of each query row among the document rows: (indices, scores), best first."""
    scores = truncate_normalize(queries, queries.shape[1]) @ truncate_normalize(docs, docs.shape[1]).T
    k = min(k, docs.shape[0])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1), axis=1)
    return order, np.take_along_axis(scores, order, axis=1)


def sample_texts(collection: Any, n: int = 300) -> list[str]:
    """Up to ``n`` chunk texts of ``collection``, spread over it (every k-th of its first ``4n`` points;
    points stored without text are left out)."""
    texts: list[str] = []
    for batch in collection.points(batch_size=1024):
        texts.extend(str(p.get("text") or "") for p in batch.payloads)
        if len(texts) >= 4 * n:
            break
    step = max(1, len(texts) // n)
    return [t for t in texts[::step] if t.strip()][:n]


def recall_against(found: Any, reference: Any) -> float:
    """Mean share of each reference row's ids that the matching ``found`` row holds (recall@k)."""
    return float(np.mean([len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(found, reference)]))


def calibrate_encoders(
    load: Callable[[str], Any],
    candidates: Sequence[str],
    documents: Sequence[str],
    search: Callable[[np.ndarray], list[list[str]]],
    queries: Sequence[str],
    k: int,
    ndcg_of: Callable[[Any], float] | None = None,
    source: str = "",
    on_trial: Callable[[EncoderTrial], None] | None = None,
) -> EncoderCalibration:
    """Measure ``candidates`` (each loaded by ``load(name)``, an :class:`~retriever.encoding.embedder.Embedder`).

    ``documents`` are chunk texts of the collection; ``search(full-dim query vectors)`` gives the ids of
    the exact top-k in the collection (its stored vectors, whatever encoded them); ``queries`` are timed
    and compared on; ``ndcg_of(embedder)``, when given, is the NDCG@k of a real search with that
    embedder's query vectors (judged queries).
    """
    if not documents or not queries:
        raise FunnelError("encoder calibration needs stored chunks and queries")
    reference_model = load(TORCH)
    ref_docs = reference_model.encode_full(documents)
    ref_queries = reference_model.encode_full(queries)
    reference = exact_top_k(ref_queries, ref_docs, k)[0]
    reference_found = search(ref_queries)
    ndcg_fp32 = ndcg_of(reference_model) if ndcg_of is not None else None
    trials: list[EncoderTrial] = []
    for name in dict.fromkeys([TORCH, *candidates]):
        trial = _trial(name, reference_model if name == TORCH else None, load, documents, search, queries,
                       (reference, reference_found), k, ndcg_of)
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial)
    faithful_q = [t for t in trials if t.faithful(ndcg_fp32)]
    faithful_d = [t for t in trials if t.faithful(ndcg_fp32, both=True)]
    query = min(faithful_q, key=lambda t: t.query_p50_ms).encoder
    document = max(faithful_d, key=lambda t: t.passages_per_s).encoder
    return EncoderCalibration(trials, query, document, ndcg_fp32, source, k)


def _trial(name: str, loaded: Any, load: Callable[[str], Any], documents: Sequence[str],
           search: Callable[[np.ndarray], list[list[str]]], queries: Sequence[str],
           references: tuple[np.ndarray, list[list[str]]], k: int,
           ndcg_of: Callable[[Any], float] | None) -> EncoderTrial:
    from retriever.calibration.timing import Latency

    try:
        started = time.perf_counter()
        embedder = loaded if loaded is not None else load(name)
        load_s = 0.0 if loaded is not None else time.perf_counter() - started
        timed = list(queries[:QUERY_TIMING])
        for q in timed[:10]:
            embedder.encode_full([q])
        seconds = []
        for q in timed:
            t0 = time.perf_counter()
            embedder.encode_full([q])
            seconds.append(time.perf_counter() - t0)
        latency = Latency.of(seconds)
        t0 = time.perf_counter()
        docs = embedder.encode_full(documents)
        passages = len(documents) / max(time.perf_counter() - t0, 1e-9)
        mine = embedder.encode_full(queries)
        return EncoderTrial(
            encoder=name, precision=getattr(embedder, "precision", ""), load_s=round(load_s, 3),
            query_p50_ms=round(latency.p50, 3), query_p99_ms=round(latency.p99, 3),
            passages_per_s=round(passages, 1),
            recall_vs_fp32=round(recall_against(search(mine), references[1]), 4),
            recall_vs_fp32_both=round(recall_against(exact_top_k(mine, docs, k)[0], references[0]), 4),
            ndcg=round(ndcg_of(embedder), 4) if ndcg_of is not None else None,
        )
    except FunnelError as exc:
        return EncoderTrial(encoder=name, error=str(exc))


def pseudo_queries(texts: Sequence[str], words: int = 12) -> list[str]:
    """Query-length pieces of chunk texts (their first ``words`` words), where no queries are given."""
    return [" ".join(t.split()[:words]) for t in texts if t.split()]


def calibrate_for_collection(retriever: Any, candidates: Sequence[str], queries: Sequence[str],
                             relevant: Sequence[set[str]], k: int, sample: int, source: str,
                             on_trial: Callable[[EncoderTrial], None] | None = None) -> EncoderCalibration | None:
    """:func:`calibrate_encoders` on ``retriever``'s collection: a sample of its stored chunks (texts and
    stored vectors), ``queries`` (else pieces of those chunks), and NDCG when ``relevant`` judges them.
    ``None`` when the stored chunks hold no text (points written without it): nothing to encode."""
    from types import SimpleNamespace

    from retriever.calibration.judge import Judge
    from retriever.encoding.embedder import Embedder

    collection, current = retriever.collection, retriever.embedder
    spec = collection.spec
    documents = sample_texts(collection, 1000)
    if not documents:  # empty, or points stored without text
        return None

    def search(full: np.ndarray) -> list[list[str]]:
        vectors = {dim: truncate_normalize(full, dim) for dim in spec.dims}
        return [[h.id for h in hits] for hits in collection.search(vectors, None, k, with_text=False)]
    asked = list(queries) or pseudo_queries(documents[: max(10, sample)])
    if not queries:
        source = f"{len(asked)} pieces of stored chunks used as queries, {len(documents)} stored chunks"
    else:
        source = f"{source}, {len(documents)} stored chunks"

    def load(name: str) -> Any:
        if name == current.encoder:
            return current
        return Embedder(current.name, device="cpu" if name != TORCH else None, encoder=name,
                        calibration_texts=documents if name == "openvino-int8" else None)

    ndcg_of = None
    if relevant:
        ids = [f"q{i}" for i in range(len(asked))]
        judged: Any = SimpleNamespace(queries=dict(zip(ids, asked)), relevant=dict(zip(ids, relevant)))
        judge = Judge(judged, ids, k)

        def ndcg_of(embedder: Any) -> float:
            hits = collection.search(embedder.encode(asked, spec.dims), None, k, with_text=False)
            return judge.metrics(hits)[f"ndcg@{k}"]

    return calibrate_encoders(load, candidates, documents, search, asked, k, ndcg_of, source, on_trial)

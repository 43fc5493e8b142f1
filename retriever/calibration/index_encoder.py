"""Choose the encoder ``funnel index`` encodes a corpus with, measured on a sample of that corpus.

Without ``--encoder``, a CPU indexes in fp32 (``openvino``), unless a faster, lower-precision
encoder of the same model (``openvino-bf16``, where the CPU computes bf16) keeps the fp32 encoder's
exact top-k on a sample of the corpus itself — at every ladder dim, documents and queries both
encoded by it — with recall@k ≥ :data:`~retriever.calibration.encoders.RECALL_FLOOR`, and is
really faster on that sample. The queries are pieces of the sampled documents (no judged queries
exist at index time). Small corpora are not sampled: the measurement would cost more than it saves.

The same sample then chooses the encoder of the collection's *queries* (:func:`choose_query_encoder`):
one query at a time, the runtimes rank differently than on batches (on the 2-core EPYC, ONNX Runtime
fp32 answered one in 5.84 ms against OpenVINO fp32's 7.34 ms, while OpenVINO encoded passages
faster). A candidate is kept for queries only if its queries, searched against the documents as they
will be stored, find fp32 queries' exact top-k at every ladder dim (recall@k ≥ the floor) and it is
really faster one query at a time on this machine. int8 is not a candidate: its queries' recall@10
against fp32's was 0.956–0.974 on financial-qa-10k (under the 0.99 floor, though NDCG@10 moved by at
most 0.0011); ``funnel calibrate --encoders openvino-int8 --qrels`` can still choose it by NDCG.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from retriever.calibration.encoders import RECALL_FLOOR, exact_top_k, pseudo_queries, recall_against
from retriever.encoding.names import BF16, available
from retriever.errors import FunnelError
from retriever.ingest.intake import ValidCorpus

MIN_DOCUMENTS = 2_000  # below this a corpus is indexed in fp32 without a measurement
SAMPLE = 500  # documents encoded by both encoders
QUERIES = 100  # pieces of them searched
MIN_SPEEDUP = 1.2  # a candidate must be at least this much faster on the sample
CANDIDATES = (BF16,)
QUERY_CANDIDATES = ("onnx",)  # for queries only: fp32, and faster one query at a time on some CPUs
MIN_QUERY_SPEEDUP = 1.15  # a query candidate must be this much faster (single-query p50) than the documents' encoder
QUERY_TIMING_WARMUP = 10


@dataclass(frozen=True)
class QueryEncoderChoice:
    """The encoder chosen for the collection's queries, and the measurement behind it: single-query
    p50 of each encoder tried (the documents' own included) and, per candidate, recall@k of its
    queries' exact top-k among the documents' vectors against fp32 queries', per ladder dim."""

    encoder: str
    documents: str
    queries: int = 0
    p50_ms: dict[str, float] = field(default_factory=dict)
    recall_by_dim: dict[str, dict[int, float]] = field(default_factory=dict)
    reason: str = ""

    def encoder_record(self, k: int, source: str) -> dict[str, Any]:
        """The calibration record's ``encoder`` part (as ``funnel calibrate --encoders`` writes it)."""
        from retriever.calibration.encoders import NDCG_BUDGET

        trials = [{"encoder": name, "query_p50_ms": p50,
                   "recall_vs_fp32": min(self.recall_by_dim[name].values()) if name in self.recall_by_dim else None,
                   "recall_by_dim": self.recall_by_dim.get(name)} for name, p50 in self.p50_ms.items()]
        return {"query": self.encoder, "document": self.documents, "k": k, "source": source,
                "recall_floor": RECALL_FLOOR, "ndcg_budget": NDCG_BUDGET, "ndcg_fp32": None, "trials": trials}


@dataclass(frozen=True)
class IndexEncoderChoice:
    """The encoder chosen, what it was compared with, and the measurement behind the choice (and, when
    measured, the choice of the queries' encoder)."""

    encoder: str
    reference: str
    candidate: str | None = None
    sample: int = 0
    recall_by_dim: dict[int, float] = field(default_factory=dict)
    speedup: float | None = None
    seconds: float = 0.0
    reason: str = ""
    query: QueryEncoderChoice | None = None

    def record(self) -> dict[str, Any]:
        return asdict(self) | {"recall_floor": RECALL_FLOOR}


def spread(texts: Sequence[str], n: int) -> list[str]:
    """Up to ``n`` of ``texts``, evenly spread over them."""
    step = max(1, len(texts) // n)
    return list(texts[::step])[:n]


def corpus_sample(corpus: ValidCorpus, n: int = SAMPLE) -> list[str]:
    """The texts of up to ``n`` documents spread over ``corpus`` (one more read of it)."""
    step = max(1, corpus.report.documents // n)
    texts = []
    for i, doc in enumerate(corpus.documents()):
        if i % step == 0:
            texts.append(doc.text)
            if len(texts) >= n:
                break
    return texts


def choose_index_encoder(reference: Any, texts: Sequence[str], dims: Sequence[int], k: int = 10,
                         ) -> tuple[IndexEncoderChoice, Any]:
    """The encoder to index with, and its embedder: ``reference`` (an fp32
    :class:`~retriever.encoding.embedder.Embedder`) unless a candidate keeps its exact top-``k`` on
    ``texts`` (a sample of the corpus) at every dim of ``dims`` and is at least :data:`MIN_SPEEDUP`
    times faster on them."""
    from retriever.encoding.embedder import Embedder

    started = time.perf_counter()
    candidates = [c for c in CANDIDATES if c != reference.encoder and available(c)]
    documents = [t for t in texts if t.strip()]
    queries = pseudo_queries(spread(documents, QUERIES))
    if len(documents) < 2 * k or not queries:
        return IndexEncoderChoice(reference.encoder, reference.encoder, reason="too few texts to measure"), reference
    if not candidates:  # fp32 documents; their queries' encoder is still measured
        query = choose_query_encoder(reference, documents, queries, reference.encode_full(queries),
                                     reference.encode_full(documents), dims, k)
        return IndexEncoderChoice(reference.encoder, reference.encoder, sample=len(documents),
                                  seconds=round(time.perf_counter() - started, 2),
                                  reason="no faster document encoder runs on this CPU", query=query), reference
    try:
        candidate = Embedder(reference.name, device="cpu", encoder=candidates[0])
        reference.encode_full(documents[:32])  # warm both before timing
        candidate.encode_full(documents[:32])
    except FunnelError as exc:  # the candidate cannot run here: index in fp32, and say why
        return IndexEncoderChoice(reference.encoder, reference.encoder, candidates[0],
                                  reason=f"{candidates[0]} did not run: {exc}"), reference
    t0 = time.perf_counter()
    ref_docs = reference.encode_full(documents)
    t1 = time.perf_counter()
    cand_docs = candidate.encode_full(documents)
    t2 = time.perf_counter()
    ref_q, cand_q = reference.encode_full(queries), candidate.encode_full(queries)
    recall: dict[int, float] = {}
    for dim in dims:
        want = exact_top_k(ref_q[:, :dim], ref_docs[:, :dim], k)[0]
        got = exact_top_k(cand_q[:, :dim], cand_docs[:, :dim], k)[0]
        recall[int(dim)] = round(recall_against(got, want), 4)
    speedup = round((t1 - t0) / max(t2 - t1, 1e-9), 2)
    faithful = min(recall.values()) >= RECALL_FLOOR
    chosen = candidate.encoder if faithful and speedup >= MIN_SPEEDUP else reference.encoder
    if chosen == candidate.encoder:
        reason = f"recall@{k} vs fp32 ≥ {RECALL_FLOOR} at every dim, {speedup}× faster"
    elif not faithful:
        reason = f"{candidate.encoder} moves the top {k}: recall@{k} vs fp32 {min(recall.values())} < {RECALL_FLOOR}"
    else:
        reason = f"{candidate.encoder} is only {speedup}× faster here"
    embedder = candidate if chosen == candidate.encoder else reference
    query = choose_query_encoder(embedder, documents, queries, ref_q,
                                 cand_docs if embedder is candidate else ref_docs, dims, k)
    choice = IndexEncoderChoice(chosen, reference.encoder, candidate.encoder, len(documents), recall, speedup,
                                round(time.perf_counter() - started, 2), reason, query)
    return choice, embedder


def _single_query_p50(embedder: Any, queries: Sequence[str]) -> float:
    """Median milliseconds of one ``encode_full([q])`` over ``queries`` (after a few untimed)."""
    for q in queries[:QUERY_TIMING_WARMUP]:
        embedder.encode_full([q])
    seconds = []
    for q in queries:
        t0 = time.perf_counter()
        embedder.encode_full([q])
        seconds.append(time.perf_counter() - t0)
    return round(float(np.median(seconds)) * 1000, 3)


def choose_query_encoder(documents_embedder: Any, documents: Sequence[str], queries: Sequence[str],
                         fp32_queries: np.ndarray, document_vectors: np.ndarray, dims: Sequence[int],
                         k: int = 10) -> QueryEncoderChoice:
    """The encoder for the collection's queries: the documents' own unless a candidate of
    :data:`QUERY_CANDIDATES`, its queries searched exactly among ``document_vectors`` (the sample as the
    documents' encoder stored it), finds the top-``k`` of ``fp32_queries`` at every dim of ``dims``
    (recall ≥ :data:`~retriever.calibration.encoders.RECALL_FLOOR`) and answers one query at least
    :data:`MIN_QUERY_SPEEDUP` times faster. ``documents`` calibrate an int8 export made now."""
    from retriever.encoding.embedder import Embedder

    own = documents_embedder.encoder
    p50 = {own: _single_query_p50(documents_embedder, queries)}
    recall: dict[str, dict[int, float]] = {}
    reasons: list[str] = []
    best = own
    for name in (c for c in QUERY_CANDIDATES if c != own):
        if not available(name):
            reasons.append(f"{name} is not installed")
            continue
        try:
            embedder = Embedder(documents_embedder.name, device="cpu", encoder=name,
                                calibration_texts=list(documents) if name.endswith("int8") else None)
            vectors = embedder.encode_full(list(queries))
            p50[name] = _single_query_p50(embedder, queries)
        except FunnelError as exc:
            reasons.append(f"{name} did not run: {exc}")
            continue
        recall[name] = {int(dim): round(recall_against(exact_top_k(vectors[:, :dim], document_vectors[:, :dim], k)[0],
                                                       exact_top_k(fp32_queries[:, :dim], document_vectors[:, :dim],
                                                                   k)[0]), 4)
                        for dim in dims}
        worst = min(recall[name].values())
        speedup = p50[own] / max(p50[name], 1e-9)
        if worst < RECALL_FLOOR:
            reasons.append(f"{name} queries move the top {k}: recall@{k} vs fp32 {worst} < {RECALL_FLOOR}")
        elif speedup < MIN_QUERY_SPEEDUP:
            reasons.append(f"{name} answers one query only {speedup:.2f}× faster ({p50[name]:.2f} vs {p50[own]:.2f} ms)")
        elif p50[name] < p50[best]:
            best = name
            reasons.append(f"{name}: recall@{k} vs fp32 ≥ {RECALL_FLOOR} at every dim, one query in "
                           f"{p50[name]:.2f} ms vs {p50[own]:.2f} ms")
    return QueryEncoderChoice(best, own, len(queries), p50, recall, "; ".join(reasons) or "no other query encoder")

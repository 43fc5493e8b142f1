"""Choose the encoder ``funnel index`` encodes a corpus with, measured on a sample of that corpus.

Without ``--encoder``, a CPU indexes in fp32 (``openvino``), unless a faster, lower-precision
encoder of the same model (``openvino-bf16``, where the CPU computes bf16) keeps the fp32 encoder's
exact top-k on a sample of the corpus itself — at every ladder dim, documents and queries both
encoded by it — with recall@k ≥ :data:`~retriever.calibration.encoders.RECALL_FLOOR`, and is
really faster on that sample. The queries are pieces of the sampled documents (no judged queries
exist at index time). Small corpora are not sampled: the measurement would cost more than it saves.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from retriever.calibration.encoders import RECALL_FLOOR, exact_top_k, pseudo_queries, recall_against
from retriever.encoding.names import BF16, available
from retriever.errors import FunnelError
from retriever.ingest.intake import ValidCorpus

MIN_DOCUMENTS = 2_000  # below this a corpus is indexed in fp32 without a measurement
SAMPLE = 500  # documents encoded by both encoders
QUERIES = 100  # pieces of them searched
MIN_SPEEDUP = 1.2  # a candidate must be at least this much faster on the sample
CANDIDATES = (BF16,)


@dataclass(frozen=True)
class IndexEncoderChoice:
    """The encoder chosen, what it was compared with, and the measurement behind the choice."""

    encoder: str
    reference: str
    candidate: str | None = None
    sample: int = 0
    recall_by_dim: dict[int, float] = field(default_factory=dict)
    speedup: float | None = None
    seconds: float = 0.0
    reason: str = ""

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
    if not candidates:
        return IndexEncoderChoice(reference.encoder, reference.encoder, reason="no faster encoder runs on this CPU"), reference
    documents = [t for t in texts if t.strip()]
    queries = pseudo_queries(spread(documents, QUERIES))
    if len(documents) < 2 * k or not queries:
        return IndexEncoderChoice(reference.encoder, reference.encoder, reason="too few texts to measure"), reference
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
    choice = IndexEncoderChoice(chosen, reference.encoder, candidate.encoder, len(documents), recall, speedup,
                                round(time.perf_counter() - started, 2), reason)
    return choice, candidate if chosen == candidate.encoder else reference

"""Per-dim retrieval evaluation: NDCG@10 and friends at every Matryoshka dim, from one corpus encode.

The metrics are sentence-transformers' own :class:`InformationRetrievalEvaluator` (with
``truncate_dim``); this evaluator only encodes the corpus once at the full dim and hands each
per-dim evaluator the truncated corpus embeddings, so a 4-dim evaluation costs one corpus encode.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sentence_transformers.sentence_transformer.evaluation import (
    InformationRetrievalEvaluator,
    SentenceEvaluator,
)

from retriever.errors import CorpusError, TuneError
from retriever.ingest.beir import check_layout, load_split
from retriever.ingest.corpus import read_corpus

MIN_EVAL_QUERIES = 50  # what an automatic held-out split aims for, and what a BEIR eval set must have
MIN_SPLIT_QUERIES = 20  # the fewest held-out queries a split may leave
DEFAULT_SPLIT_FRACTION = 0.1
MAX_SPLIT_FRACTION = 0.3  # an automatic split never holds out more than this share of the anchors


@dataclass(frozen=True)
class IRData:
    """Queries, corpus and relevance judgements for one evaluation set."""

    name: str
    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]]


def beir_passages(corpus_file: Path) -> dict[str, str]:
    """A BEIR corpus as id → text, the title (if any) before the text, as BEIR models read it."""
    return {d.id: (f"{d.title} {d.text}".strip() if d.title else d.text) for d in read_corpus([corpus_file])}


def beir_ir_data(path: str | Path, split: str = "test", name: str | None = None) -> IRData:
    """Read a BEIR directory's ``queries.jsonl``, ``corpus.jsonl`` and ``qrels/<split>.tsv``."""
    try:
        path = check_layout(path, split)
        corpus = beir_passages(path / "corpus.jsonl")
        data = load_split(path, split, known_corpus_ids=set(corpus))
    except CorpusError as exc:
        raise TuneError(str(exc)) from None
    if len(data.queries) < MIN_EVAL_QUERIES:
        raise TuneError(
            f"{path}: only {len(data.queries)} judged queries in {split} (at least {MIN_EVAL_QUERIES} are needed)"
        )
    return IRData(name or path.name, data.queries, corpus, data.relevant)


def held_out_count(anchors: int, fraction: float | None) -> int:
    """How many of ``anchors`` distinct questions to hold out for evaluation.

    ``fraction`` None (the default) fits the split to the data: 10 % of the anchors, raised to
    :data:`MIN_EVAL_QUERIES` (a smaller set measures little), capped at :data:`MAX_SPLIT_FRACTION` of
    them so that most pairs still train. A given ``fraction`` is taken as it is. Either way fewer than
    :data:`MIN_SPLIT_QUERIES` held-out queries is refused (:class:`TuneError`).
    """
    if fraction is not None and not 0 < fraction < 1:
        raise TuneError(f"invalid eval split {fraction}: use a fraction between 0 and 1, e.g. 0.1")
    if fraction is None:
        held = min(max(round(anchors * DEFAULT_SPLIT_FRACTION), MIN_EVAL_QUERIES), int(anchors * MAX_SPLIT_FRACTION))
    else:
        held = round(anchors * fraction)
    if held < MIN_SPLIT_QUERIES:
        need = f"at least {math.ceil(MIN_SPLIT_QUERIES / (fraction or MAX_SPLIT_FRACTION))} distinct questions"
        raise TuneError(
            f"eval split too small: {held} held-out queries from {anchors} anchors (at least {MIN_SPLIT_QUERIES}); "
            f"give {need}{', raise --eval-split' if fraction is not None else ''} or --eval BEIR_DIR"
        )
    return held


def split_pairs(pairs: Any, fraction: float | None = None, seed: int = 42) -> tuple[Any, IRData]:
    """Hold out some anchors (:func:`held_out_count`) as queries; the corpus is every distinct positive.

    Returns the remaining training pairs (a ``datasets.Dataset``) and the held-out set.
    """
    anchors = sorted(set(pairs["anchor"]))
    count = held_out_count(len(anchors), fraction)
    random.Random(seed).shuffle(anchors)
    held = set(anchors[:count])
    doc_ids: dict[str, str] = {}
    for text in pairs["positive"]:
        doc_ids.setdefault(text, f"d{len(doc_ids)}")
    query_ids: dict[str, str] = {a: f"q{i}" for i, a in enumerate(sorted(held))}
    relevant: dict[str, set[str]] = {}
    for anchor, positive in zip(pairs["anchor"], pairs["positive"]):
        if anchor in held:
            relevant.setdefault(query_ids[anchor], set()).add(doc_ids[positive])
    train = pairs.filter(lambda row: row["anchor"] not in held)
    data = IRData(
        "held-out",
        {qid: a for a, qid in query_ids.items()},
        {did: text for text, did in doc_ids.items()},
        relevant,
    )
    return train, data


def ndcg_per_query(model: Any, data: IRData, dims: list[int], k: int = 10, batch_size: int = 64) -> dict[int, np.ndarray]:
    """NDCG@k of every query of ``data`` (in ``data.queries`` order) at each dim, binary relevance, cosine.

    The same measure as :class:`InformationRetrievalEvaluator`'s ``cosine_ndcg@10`` (its mean), kept per
    query so that two models can be compared query by query (:mod:`tuner.verdict`). One encode of the
    corpus and of the queries serves every dim.
    """
    import torch

    doc_ids = list(data.corpus)
    query_ids = [q for q in data.queries if data.relevant.get(q)]  # as the evaluator: judged queries only
    corpus = model.encode([data.corpus[d] for d in doc_ids], batch_size=batch_size, convert_to_tensor=True)
    queries = model.encode([data.queries[q] for q in query_ids], batch_size=batch_size, convert_to_tensor=True)
    position = {d: i for i, d in enumerate(doc_ids)}
    relevant = torch.zeros(len(query_ids), len(doc_ids), dtype=torch.bool)
    for row, qid in enumerate(query_ids):
        relevant[row, [position[d] for d in data.relevant.get(qid, ()) if d in position]] = True
    top = min(k, len(doc_ids))
    discount = 1.0 / torch.log2(torch.arange(2, top + 2, dtype=torch.float64))
    ideal = torch.cumsum(discount, 0)
    n_relevant = relevant.sum(1).clamp(max=top)
    out: dict[int, np.ndarray] = {}
    for dim in dims:
        q = torch.nn.functional.normalize(queries[:, :dim].float(), dim=1)
        c = torch.nn.functional.normalize(corpus[:, :dim].float(), dim=1)
        ranked = (q @ c.T).topk(top, dim=1).indices.cpu()
        dcg = (torch.gather(relevant, 1, ranked).double() * discount).sum(1)
        idcg = torch.where(n_relevant > 0, ideal[(n_relevant - 1).clamp(min=0)], torch.ones(1, dtype=torch.float64))
        out[dim] = (dcg / idcg).numpy()
    return out


class MatryoshkaIREvaluator(SentenceEvaluator):
    """IR metrics at every dim of the ladder; the primary metric is NDCG@10 at ``primary_dim``."""

    def __init__(self, data: IRData, dims: list[int], primary_dim: int, batch_size: int = 64) -> None:
        super().__init__()
        self.data = data
        self.dims = sorted(dims, reverse=True)
        # The trainer prefixes "eval_" to each metric unless it starts so already: a set named "eval"
        # (an --eval ./eval directory) would lose that prefix, and the best checkpoint's metric with it.
        self.name = f"{data.name}-set" if data.name == "eval" or data.name.startswith("eval_") else data.name
        self.batch_size = batch_size
        self.evaluators = {
            dim: InformationRetrievalEvaluator(
                dict[str, Any](data.queries), dict[str, Any](data.corpus), data.relevant, truncate_dim=dim, name=f"dim{dim}",
                batch_size=batch_size, write_csv=False,
            )
            for dim in self.dims
        }
        self.primary_metric = f"dim{primary_dim}_cosine_ndcg@10"
        self.greater_is_better = True

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        first = self.evaluators[self.dims[0]]
        corpus_embeddings = model.encode(first.corpus, batch_size=self.batch_size, convert_to_tensor=True)
        metrics: dict[str, float] = {}
        for dim, evaluator in self.evaluators.items():
            metrics.update(evaluator(model, corpus_embeddings=corpus_embeddings[:, :dim]))
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def ndcg_by_dim(self, metrics: dict[str, float], prefix: str = "") -> dict[int, float]:
        """NDCG@10 per dim from this evaluator's metrics (``prefix`` is ``eval_`` inside the trainer)."""
        return {dim: float(metrics[f"{prefix}{self.name}_dim{dim}_cosine_ndcg@10"]) for dim in self.dims}

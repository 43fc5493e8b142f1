"""Per-dim retrieval evaluation: NDCG@10 and friends at every Matryoshka dim, from one corpus encode.

The metrics are sentence-transformers' own :class:`InformationRetrievalEvaluator` (with
``truncate_dim``); this evaluator only encodes the corpus once at the full dim and hands each
per-dim evaluator the truncated corpus embeddings, so a 4-dim evaluation costs one corpus encode.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentence_transformers.sentence_transformer.evaluation import (
    InformationRetrievalEvaluator,
    SentenceEvaluator,
)

from retriever.errors import CorpusError, TuneError
from retriever.ingest.beir import check_layout, load_split
from retriever.ingest.corpus import read_corpus

MIN_EVAL_QUERIES = 50


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


def split_pairs(pairs: Any, fraction: float, seed: int = 42) -> tuple[Any, IRData]:
    """Hold out ``fraction`` of the anchors as queries; the corpus is every distinct positive.

    Returns the remaining training pairs (a ``datasets.Dataset``) and the held-out set.
    """
    if not 0 < fraction < 1:
        raise TuneError(f"invalid eval split {fraction}: use a fraction between 0 and 1, e.g. 0.1")
    anchors = sorted(set(pairs["anchor"]))
    random.Random(seed).shuffle(anchors)
    held = set(anchors[: round(len(anchors) * fraction)])
    if len(held) < MIN_EVAL_QUERIES:
        raise TuneError(
            f"eval split too small: {len(held)} held-out queries from {len(anchors)} anchors "
            f"(at least {MIN_EVAL_QUERIES}); raise --eval-split or give --eval BEIR_DIR"
        )
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

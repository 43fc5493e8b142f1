"""IR metrics of result lists, from sentence-transformers' evaluator (nothing hand-written)."""

from __future__ import annotations

from typing import Any

from retriever.ingest.beir import BeirSplit
from retriever.query.spec import Hit


def fold_to_documents(hits: list[Hit]) -> list[dict[str, Any]]:
    """Best chunk score per document, as the evaluator wants its rankings."""
    best: dict[str, float] = {}
    for h in hits:
        best[h.doc_id] = max(best.get(h.doc_id, -1.0), h.score)
    return [{"corpus_id": d, "score": s} for d, s in best.items()]


class Judge:
    """IR metrics of result lists, from sentence-transformers' evaluator (nothing hand-written)."""

    def __init__(self, split: BeirSplit, query_ids: list[str], k: int) -> None:
        from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

        queries = {q: split.queries[q] for q in query_ids}
        relevant = {q: split.relevant[q] for q in query_ids}
        placeholder_corpus = {d: "" for docs in relevant.values() for d in docs}  # only ids are used
        self.k = k
        self.evaluator = InformationRetrievalEvaluator(
            dict[str, Any](queries), dict[str, Any](placeholder_corpus), relevant, mrr_at_k=[k], ndcg_at_k=[k], accuracy_at_k=[k],
            precision_recall_at_k=[k], map_at_k=[k], write_csv=False,
        )
        if self.evaluator.queries_ids != query_ids:
            raise RuntimeError("evaluator reordered the queries")  # pragma: no cover - an ST contract

    def metrics(self, results: list[list[Hit]]) -> dict[str, float]:
        m = self.evaluator.compute_metrics([fold_to_documents(h) for h in results])
        k = self.k
        return {f"ndcg@{k}": float(m["ndcg@k"][k]), f"recall@{k}": float(m["recall@k"][k]),
                f"mrr@{k}": float(m["mrr@k"][k])}


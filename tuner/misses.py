"""``funnel pairs misses``: judged queries whose relevant document is not in the top k become pairs.

Each query is searched in the collection the way the app searches it (the collection's default
plan). A query none of whose relevant documents has a chunk in the top k is a miss; for each of its
relevant documents, the chunk that scores best for the query (a search restricted to that document)
is the positive. Relevant documents with no chunk in the collection are counted and skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from retriever.errors import PairsError
from tuner.pair_file import record

SEARCH_BATCH = 256


@dataclass
class MissReport:
    """Judged queries searched, found in the top k, missed; pairs made; relevant documents not stored."""

    k: int
    queries: int = 0
    found: int = 0
    missed: int = 0
    pairs: int = 0
    missing_documents: int = 0
    unjudged_queries: int = 0
    unknown_judged: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hit_rate(self) -> float:
        return self.found / self.queries if self.queries else 0.0


def find_misses(retriever: Any, queries: Mapping[str, str], relevant: Mapping[str, set[str]], k: int = 10
                ) -> tuple[list[dict[str, Any]], MissReport]:
    """Pairs (query, best chunk of a relevant document) for every judged query missed at ``k``.

    ``retriever`` is a :class:`retriever.Retriever`; ``relevant`` maps query ids to relevant doc ids.
    """
    report = MissReport(k=k, unjudged_queries=sum(1 for q in queries if q not in relevant),
                        unknown_judged=sum(1 for q in relevant if q not in queries))
    judged = [(qid, text) for qid, text in queries.items() if relevant.get(qid)]
    if not judged:
        raise PairsError("no query of the queries file is judged relevant in the qrels file (check the ids)")
    missed: list[tuple[str, str]] = []
    spec = retriever.query_spec(k=k, with_text=False)
    for start in range(0, len(judged), SEARCH_BATCH):
        batch = judged[start : start + SEARCH_BATCH]
        results = retriever.search_each([t for _, t in batch], [spec] * len(batch))
        for (qid, text), hits in zip(batch, results):
            report.queries += 1
            if relevant[qid] & {h.doc_id for h in hits}:
                report.found += 1
            else:
                report.missed += 1
                missed.append((qid, text))
    targets = [(qid, text, doc) for qid, text in missed for doc in sorted(relevant[qid])]
    pairs: list[dict[str, Any]] = []
    for start in range(0, len(targets), SEARCH_BATCH):
        batch_t = targets[start : start + SEARCH_BATCH]
        specs = [retriever.query_spec(k=1, exact=True, filter={"doc_id": doc}) for _, _, doc in batch_t]
        results = retriever.search_each([text for _, text, _ in batch_t], specs)
        for (qid, text, doc), hits in zip(batch_t, results):
            if not hits:
                report.missing_documents += 1
                continue
            best = hits[0]
            pairs.append(record(text, best.text or "", doc, best.chunk, query_id=qid))
    report.pairs = len(pairs)
    return pairs, report

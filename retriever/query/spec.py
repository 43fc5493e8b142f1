"""What a search asks for and what it returns: :class:`QuerySpec` and :class:`Hit`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from retriever.query.filters import PayloadFilter
from retriever.query.fusion import Fusion
from retriever.query.plan import FunnelPlan


@dataclass(frozen=True)
class Hit:
    """One search result: a chunk of a document with its score."""

    id: str
    doc_id: str
    chunk: int
    score: float
    text: str | None
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ranked(hits: list[Hit]) -> list[Hit]:
    """Hits best first, points with equal scores (e.g. the same text twice) by id: every engine
    returns tied points in the same order (the engines' own tie orders differ)."""
    return sorted(hits, key=lambda h: (-h.score, h.id))


@dataclass(frozen=True)
class QuerySpec:
    """How to search one query: funnel plan (``None`` = exact), k, payload text, payload filter, and
    the graph search width of the first stage (``None``: ``max(128, its limit)``).

    ``mode`` (see :mod:`retriever.query.fusion`): ``dense`` (the funnel), ``lexical`` (BM25 over the
    chunk text; needs ``text``) or ``hybrid`` (both, combined as ``fusion`` says; needs ``text``).
    """

    plan: FunnelPlan | None
    k: int
    with_text: bool = True
    filter: PayloadFilter | None = None
    hnsw_ef: int | None = None
    mode: str = "dense"
    fusion: Fusion | None = None
    text: str | None = None

    @property
    def fusion_or_default(self) -> Fusion:
        return self.fusion or Fusion()

    def dense_list(self) -> QuerySpec:
        """The dense side of a fused (``rrf``/``dbsf``) hybrid search, as a dense search: the plan as
        given when it returns at least the fusion's dense depth (the retriever plans it for that
        depth), else the same stages widened to it; an exact search returns that depth."""
        depth = self.fusion_or_default.depths(self.k)[0]
        if self.plan is not None and self.plan.k >= depth:
            depth = self.plan.k
        return replace(self, plan=None if self.plan is None else self.plan.with_k(depth), k=depth, mode="dense")

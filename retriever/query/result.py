"""A search's result: its hits and the :class:`Depth` each query was searched to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from retriever.query.plan import FunnelPlan
from retriever.query.spec import Hit


@dataclass(frozen=True)
class Depth:
    """How deep one query went: passes run (1 or 2), funnel stages run, candidates scored.

    ``candidates`` counts, per stage, the points it scores: the first stage its shortlist (or the
    whole collection for an exact search), every later stage the shortlist it re-scores.
    """

    passes: int
    stages: int
    candidates: int

    def to_dict(self) -> dict[str, int]:
        return {"passes": self.passes, "stages": self.stages, "candidates": self.candidates}

    def __add__(self, other: Depth) -> Depth:
        return Depth(self.passes + other.passes, self.stages + other.stages, self.candidates + other.candidates)


def plan_depth(plan: FunnelPlan | None, points: int) -> Depth:
    """The depth of one pass of ``plan`` (``None``: an exact scan of ``points`` points)."""
    if plan is None:
        return Depth(1, 1, points)
    first = plan.stages[0]
    return Depth(1, len(plan.stages), first.limit + sum(s.limit for s in plan.stages[:-1]))


class SearchResult(list[Hit]):
    """The hits of one query (a plain ``list[Hit]``), with the :class:`Depth` the search reached."""

    depth: Depth

    def __init__(self, hits: Sequence[Hit], depth: Depth) -> None:
        super().__init__(hits)
        self.depth = depth

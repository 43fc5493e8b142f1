"""Adaptive funnel search: a cheap first pass for every query, the deep plan only where it is needed.

Pass 1 runs a small plan (``first``) for every query of a batch in one engine call; its last stage
returns ``k + probe`` hits, so each query also shows the scores just past rank k. A query whose
ranking at rank k is *crowded* — its settle signal (see :data:`SIGNALS`) below the calibrated
``threshold`` — is *widened*: pass 2 runs the deep plan (the calibrated fixed plan) for the widened
queries only, again in one engine call. Every result reports its :class:`Depth`.

Built only on :meth:`Collection.search_each` and :class:`QuerySpec`, so it works on any engine.
The rule is calibrated by :mod:`retriever.adaptive_calibrate` and stored with the calibration.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from retriever.plan import MAX_SHORTLIST, FunnelPlan, Stage
from retriever.store import Collection, Hit, QuerySpec


def _margin(scores: Sequence[float], k: int) -> float:
    """s_k − s_last: how far the score falls from rank k to the last probe hit."""
    return scores[k - 1] - scores[-1]


def _gap(scores: Sequence[float], k: int) -> float:
    """s_k − s_{k+1}: the gap right at rank k."""
    return scores[k - 1] - scores[k]


def _score(scores: Sequence[float], k: int) -> float:
    """s_k: the k-th score itself (a far k-th neighbour: the coarse shortlist likely missed some)."""
    return scores[k - 1]


# Which predicts a pass-1 miss best depends on the collection and model; calibration tries each.
# On financial-qa-10k with MiniLM, s_k did best (fewest queries widened at the same recall).
SIGNALS: dict[str, Callable[[Sequence[float], int], float]] = {"margin": _margin, "gap": _gap, "score": _score}


def settle_signal(scores: Sequence[float], k: int, probe: int, signal: str) -> float:
    """The settle signal of pass-1 scores (best first; large = settled).

    Fewer than ``k + probe`` scores (a filter, or a small shortlist ran dry) gives ``-inf``: the
    ranking cannot be judged, so the query is widened.
    """
    if len(scores) < k + probe:
        return -math.inf
    return SIGNALS[signal](scores[: k + probe], k)


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


@dataclass(frozen=True)
class AdaptiveRule:
    """Pass 1 (``first``, whose last stage keeps ``k + probe``; ``first_ef`` its graph width) and
    the widening rule: widen when ``signal`` < ``threshold``."""

    first: FunnelPlan
    probe: int
    signal: str
    threshold: float
    first_ef: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"first_plan": str(self.first), "probe": self.probe, "signal": self.signal,
                "threshold": self.threshold, "first_ef": self.first_ef}


@dataclass(frozen=True)
class AdaptiveSpec(QuerySpec):
    """A :class:`QuerySpec` whose ``plan`` is the deep pass, plus the rule for the cheap first pass.

    An engine that knows nothing of adaptive search runs it as the deep plan alone.
    """

    rule: AdaptiveRule | None = None


def first_plan(stages: Sequence[tuple[int, int]], top: int, k: int, probe: int) -> FunnelPlan:
    """A pass-1 plan: coarse ``(dim, limit)`` stages (limits kept ≥ k + probe), then ``top:k+probe``."""
    keep = k + probe
    coarse = tuple(Stage(d, min(MAX_SHORTLIST, max(keep, lim))) for d, lim in stages)
    return FunnelPlan(coarse + (Stage(top, keep),))


def scale_rule(record: dict[str, Any], ladder: tuple[int, ...], k: int) -> AdaptiveRule:
    """The stored rule (calibrated at ``record["k"]``) for ``k``: shortlists and probe scaled by k/k_cal."""
    scale = k / int(record["k"])
    probe = max(1, math.ceil(int(record["probe"]) * scale))
    coarse = []
    for part in str(record["first_plan"]).split(",")[:-1]:
        dim, _, limit = part.partition(":")
        coarse.append((int(dim), math.ceil(int(limit) * scale)))
    ef = record.get("first_ef")
    return AdaptiveRule(first_plan(coarse, ladder[-1], k, probe), probe, str(record["signal"]),
                        float(record["threshold"]), None if ef is None else max(k + probe, math.ceil(int(ef) * scale)))


def _rows(queries: dict[int, np.ndarray], rows: Sequence[int]) -> dict[int, np.ndarray]:
    return {dim: m[list(rows)] for dim, m in queries.items()}


def search_each(collection: Collection, queries: dict[int, np.ndarray],
                specs: Sequence[QuerySpec]) -> list[SearchResult]:
    """Search a batch, row ``i`` as ``specs[i]`` says; :class:`AdaptiveSpec` rows adaptively.

    At most two engine calls: pass 1 for every row (adaptive rows run their cheap plan), pass 2
    for the widened adaptive rows only.
    """
    points = -1
    first_specs = []
    for spec in specs:
        rule = spec.rule if isinstance(spec, AdaptiveSpec) else None
        if rule is not None:
            first_specs.append(QuerySpec(rule.first, rule.first.k, spec.with_text, spec.filter, rule.first_ef))
        else:
            first_specs.append(spec)
    first_hits = collection.search_each(queries, first_specs)
    results: list[SearchResult | None] = [None] * len(specs)
    widen: list[int] = []
    for i, (spec, hits) in enumerate(zip(specs, first_hits)):
        rule = spec.rule if isinstance(spec, AdaptiveSpec) else None
        if spec.plan is None and points < 0:
            points = collection.count()
        depth = plan_depth(first_specs[i].plan, points)
        if spec.mode == "lexical":
            depth = Depth(1, 1, 0)  # the text index scores only the points that hold a query term
        elif spec.mode == "hybrid":
            depth += Depth(0, 1, spec.fusion_or_default.depths(spec.k)[1])
        if rule is None:
            results[i] = SearchResult(hits, depth)
        elif settle_signal([h.score for h in hits], spec.k, rule.probe, rule.signal) < rule.threshold:
            widen.append(i)
        else:
            results[i] = SearchResult(hits[: spec.k], depth)
    if widen:
        deep = collection.search_each(_rows(queries, widen), [QuerySpec(specs[i].plan, specs[i].k, specs[i].with_text,
                                                                          specs[i].filter, specs[i].hnsw_ef)
                                                                for i in widen])
        for i, hits in zip(widen, deep):
            results[i] = SearchResult(hits, plan_depth(first_specs[i].plan, points) + plan_depth(specs[i].plan, points))
    return [r for r in results if r is not None]

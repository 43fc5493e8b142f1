"""Adaptive funnel search: a cheap first pass for every query, the deep plan only where it is needed.

Pass 1 runs a small plan (``first``) for every query of a batch in one engine call; its last stage
returns ``k + probe`` hits, so each query also shows the scores just past rank k. A query whose
ranking at rank k is *crowded* — its settle signal (see :data:`SIGNALS`) below the calibrated
``threshold`` — is *widened*: pass 2 runs the deep plan (the calibrated fixed plan) for the widened
queries only, again in one engine call. Every result reports its :class:`Depth`.

Built only on :meth:`Collection.search_each` and :class:`QuerySpec`, so it works on any engine.
The rule is calibrated by :mod:`retriever.calibration.adaptive` and stored with the calibration.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from retriever.query.plan import MAX_SHORTLIST, FunnelPlan, Stage
from retriever.query.spec import QuerySpec


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

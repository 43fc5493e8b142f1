"""Plan calibration: the cheapest funnel plan that keeps recall@k against exact search above a target.

Candidates vary which coarse dims are stages and how many candidates each keeps (``f·k`` before
the top dim, growing by a ratio ``r`` towards the coarsest). Each is run on sample queries and
compared with the exact top-dim result, in order of a cost model: the number of vector components
scored (the graph search width times the coarsest dim, plus, for every later stage, the candidates
it re-scores times its dim).

Without timing, the cheapest plan by that model that reaches the target wins (deterministic). With
``timed=True``, the cheapest passing plan of each stage structure (which dims are stages) is timed
one query at a time on this machine, and the fastest wins: the cost model ignores the engine's
fixed cost per stage, which often makes a two-stage plan faster than a four-stage one that scores
fewer components.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from .bench.timing import time_each
from .errors import BadInputError
from .plan import MAX_SHORTLIST, FunnelPlan, Stage, default_plan, parse_plan, validate_k
from .store import MIN_HNSW_EF, Collection, CollectionSpec, Hit

TOP_FACTORS = (2, 3, 5, 10, 20, 40)
# Up to this many points a single top-dim stage (a scan of the top-dim vector, which has no graph) is
# also a candidate: on small collections it beats any funnel (measured on financial-qa-10k, 6,771
# points: 0.4 ms against 1.0 ms for the calibrated funnel), and timing it stays cheap.
SCAN_CANDIDATE_MAX_POINTS = 50_000
GROWTH = (1, 2, 4)
DEFAULT_TARGET = 0.98
DEFAULT_SAMPLE = 200


def plan_cost(plan: FunnelPlan) -> int:
    """Vector components scored by one query of ``plan`` (see the module docstring)."""
    first = plan.stages[0]
    cost = max(MIN_HNSW_EF, first.limit) * first.dim
    for before, stage in zip(plan.stages, plan.stages[1:]):
        cost += before.limit * stage.dim
    return cost


def candidate_plans(ladder: tuple[int, ...], k: int) -> list[FunnelPlan]:
    """Every candidate plan for this ladder and k, cheapest first."""
    validate_k(k)
    top = ladder[-1]
    coarse_sets = {ladder[:-1], ladder[:1], (ladder[0], ladder[-2])} if len(ladder) > 1 else {()}
    plans: set[FunnelPlan] = set()
    for coarse, factor, growth in product(coarse_sets, TOP_FACTORS, GROWTH):
        stages = [
            Stage(dim, min(MAX_SHORTLIST, factor * k * growth ** (len(coarse) - 1 - i))) for i, dim in enumerate(coarse)
        ]
        plans.add(FunnelPlan(tuple(stages) + (Stage(top, k),)))
    return sorted(plans, key=lambda p: (plan_cost(p), str(p)))


def search_ladder(spec: CollectionSpec) -> tuple[int, ...]:
    """The ladder dims a plan's stages use: from the dim that carries the graph (the coarsest by
    default; a layout may put it higher, see :mod:`retriever.layout_calibrate`) up to the top: a
    first stage at a coarser dim would scan every point."""
    graph = (spec.hnsw_dims or spec.dims)[0]
    return tuple(d for d in spec.dims if d >= graph)


def _candidates(collection: Collection, k: int, points: int) -> list[FunnelPlan]:
    """The candidate plans of :func:`candidate_plans`, plus, on a small collection, the single top-dim
    stage in its place in the cost order (it scores every point: ``points × top dim`` components)."""
    ladder = search_ladder(collection.spec)
    plans = candidate_plans(ladder, k)
    if len(ladder) == 1 or points > SCAN_CANDIDATE_MAX_POINTS:
        return plans
    scan = FunnelPlan((Stage(collection.spec.top_dim, k),))
    return sorted([*plans, scan], key=lambda p: (_cost(p, points), str(p)))


def _cost(plan: FunnelPlan, points: int) -> int:
    """:func:`plan_cost`, except that a single top-dim stage scans all ``points``."""
    return points * plan.stages[0].dim if len(plan.stages) == 1 else plan_cost(plan)


def recall_against(found: list[list[Hit]], reference: list[list[Hit]], k: int) -> float:
    """Mean share of the reference top-k ids that ``found`` also returned.

    A reference with fewer than k hits (a collection, or a filter, with fewer than k points) is
    compared on the hits it has; an empty reference counts as fully recalled.
    """
    shares = []
    for f, r in zip(found, reference):
        wanted = {h.id for h in r[:k]}
        shares.append(len({h.id for h in f} & wanted) / len(wanted) if wanted else 1.0)
    return float(np.mean(shares)) if shares else 1.0


@dataclass(frozen=True)
class Calibration:
    """The chosen plan, its recall, whether it met the target, and every plan tried."""

    plan: FunnelPlan
    recall: float
    target: float
    met: bool
    queries: int
    tried: list[dict] = field(default_factory=list)

    def record(self, source: str) -> dict:
        """What a collection saves (``funnel calibrate``): enough to derive a plan for any k."""
        return {"plan": str(self.plan), "k": self.plan.k, "recall_vs_exact": self.recall, "target": self.target,
                "met": self.met, "queries": self.queries, "source": source}


def calibrated_plan(record: dict, ladder: tuple[int, ...], k: int) -> FunnelPlan:
    """The saved calibration's plan for ``k``: its stages, every limit scaled by ``k / k_calibrated``.

    Falls back to the default rule when the saved plan does not fit the ladder (never expected).
    """
    validate_k(k)
    try:
        saved = parse_plan(record["plan"], ladder, int(record["k"]))
    except (KeyError, TypeError, ValueError, BadInputError):
        return default_plan(ladder, k)
    scale = k / saved.k
    stages = [Stage(s.dim, min(MAX_SHORTLIST, max(k, math.ceil(s.limit * scale)))) for s in saved.stages[:-1]]
    return FunnelPlan(tuple(stages) + (Stage(ladder[-1], k),))


def calibrate(
    collection: Collection,
    queries: dict[int, np.ndarray],
    k: int = 10,
    target: float = DEFAULT_TARGET,
    reference: list[list[Hit]] | None = None,
    timed: bool = False,
) -> Calibration:
    """Return the plan to use: the cheapest (or, ``timed``, the fastest) whose recall@k ≥ ``target``.

    ``queries`` holds one (n × dim) matrix per ladder dim (real queries, or stored points used as
    queries). If no plan reaches the target, the one with the best recall is returned with
    ``met=False``.
    """
    if not 0 < target <= 1:
        raise BadInputError(f"invalid recall target {target}: use a number in (0, 1]")
    n = len(next(iter(queries.values())))
    if n == 0:
        raise BadInputError("calibration needs at least one query")
    if reference is None:
        reference = collection.search(queries, None, k, with_text=False)
    tried: list[dict] = []
    best: tuple[float, FunnelPlan] | None = None
    passing: list[tuple[FunnelPlan, float, dict]] = []
    structures: set[tuple[int, ...]] = set()  # stage dims of the plans that passed already
    points = collection.count()
    for plan in _candidates(collection, k, points):
        dims = tuple(s.dim for s in plan.stages)
        if dims in structures:
            continue  # a cheaper plan of this structure passed: this one can only be slower
        found = collection.search(queries, plan, k, with_text=False)
        recall = recall_against(found, reference, k)
        entry = {"plan": str(plan), "cost": _cost(plan, points), "recall_vs_exact": recall}
        tried.append(entry)
        if best is None or recall > best[0]:
            best = (recall, plan)
        if recall >= target:
            passing.append((plan, recall, entry))
            structures.add(dims)
            if not timed:
                break
    if not passing:
        assert best is not None
        return Calibration(best[1], best[0], target, False, n, tried)
    if timed:
        rows = [{dim: m[i : i + 1] for dim, m in queries.items()} for i in range(n)]
        for plan, _, entry in passing:
            def search_plan(q: dict[int, np.ndarray], plan: FunnelPlan = plan) -> list[list[Hit]]:
                return collection.search(q, plan, k, with_text=False)

            _, latency = time_each(search_plan, rows, warmup=n)
            entry["p50_ms"] = latency.p50
        plan, recall, _ = min(passing, key=lambda p: p[2]["p50_ms"])
    else:
        plan, recall, _ = passing[0]
    return Calibration(plan, recall, target, True, n, tried)

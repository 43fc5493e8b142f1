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
fewer components. Timed, a small collection's scan of the top dim (exact search) is tried and timed
first, so a budget that runs out early still leaves the scan to beat.

The graph search width (``ef``) of the first stage is calibrated with the plan: by default a stage
walks its graph with ``ef = max(128, shortlist)``, far wider than a small shortlist needs, so every
candidate plan whose first stage walks a graph is also tried with each narrower width of
:data:`EF_STEPS` (at least its shortlist), costed by that width: a wider shortlist walked narrowly
can beat a narrow one walked wide. With ``timed=True`` the cheapest passing candidates of each
structure (up to ``1 + WIDER_PER_STRUCTURE``) are timed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from retriever.calibration.timing import time_each
from retriever.errors import BadInputError
from retriever.query.plan import MAX_SHORTLIST, FunnelPlan, Stage, validate_k
from retriever.query.spec import Hit
from retriever.store.base import Collection
from retriever.store.spec import MIN_HNSW_EF, CollectionSpec

TOP_FACTORS = (2, 3, 5, 10, 20, 40)
# Up to this many points a single top-dim stage (a scan of the top-dim vector, which has no graph) is
# also a candidate: on small collections it beats any funnel (measured on financial-qa-10k, 6,771
# points: 0.4 ms against 1.0 ms for the calibrated funnel), and timing it stays cheap.
SCAN_CANDIDATE_MAX_POINTS = 50_000
GROWTH = (1, 2, 4)
# Graph search widths tried for a passing plan's first stage (those ≥ its shortlist and below the default).
EF_STEPS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
# With timing, this many more passing candidates of each structure (after its cheapest) are timed.
WIDER_PER_STRUCTURE = 2
DEFAULT_TARGET = 0.98
DEFAULT_SAMPLE = 200


def plan_cost(plan: FunnelPlan, hnsw_ef: int | None = None) -> int:
    """Vector components scored by one query of ``plan`` whose first stage walks its graph with
    ``hnsw_ef`` (``None``: the default width ``max(128, shortlist)``; see the module docstring)."""
    first = plan.stages[0]
    cost = (hnsw_ef or max(MIN_HNSW_EF, first.limit)) * first.dim
    for before, stage in zip(plan.stages, plan.stages[1:]):
        cost += before.limit * stage.dim
    return cost


def candidate_plans(ladder: tuple[int, ...], k: int) -> list[FunnelPlan]:
    """Every candidate plan for this ladder and k, cheapest first."""
    validate_k(k)
    top = ladder[-1]
    # all coarse dims; the coarsest alone; the coarsest and the one below the top (one dim when they are the same)
    coarse_sets = ({ladder[:-1], ladder[:1], tuple(sorted({ladder[0], ladder[-2]}))} if len(ladder) > 1 else {()})
    plans: set[FunnelPlan] = set()
    for coarse, factor, growth in product(coarse_sets, TOP_FACTORS, GROWTH):
        stages = [
            Stage(dim, min(MAX_SHORTLIST, factor * k * growth ** (len(coarse) - 1 - i))) for i, dim in enumerate(coarse)
        ]
        plans.add(FunnelPlan(tuple(stages) + (Stage(top, k),)))
    return sorted(plans, key=lambda p: (plan_cost(p), str(p)))


Candidate = tuple[FunnelPlan, "int | None", int]  # a plan, its first stage's graph width (None: the default), its cost


def search_ladder(spec: CollectionSpec) -> tuple[int, ...]:
    """The ladder dims a plan's stages use: from the dim that carries the graph (the coarsest by
    default; a layout may put it higher, see :mod:`retriever.calibration.layouts`) up to the top: a
    first stage at a coarser dim would scan every point."""
    graph = (spec.hnsw_dims or spec.dims)[0]
    return tuple(d for d in spec.dims if d >= graph)


def _widths(plan: FunnelPlan, walks_graph: bool) -> list[int | None]:
    """The graph widths to try for ``plan``: each of :data:`EF_STEPS` at least its shortlist and below the
    default width, then the default (``None``); only the default where the first stage walks no graph."""
    limit = plan.stages[0].limit
    if not walks_graph:
        return [None]
    return [*(e for e in EF_STEPS if limit <= e < max(MIN_HNSW_EF, limit)), None]


def _candidates(collection: Collection, k: int, points: int) -> list[Candidate]:
    """The candidate plans of :func:`candidate_plans` on the :func:`search_ladder`, each with every graph
    width of :func:`_widths`, plus, on a small collection, the single top-dim stage (it scores every
    point: ``points × top dim`` components), all in cost order."""
    spec = collection.spec
    ladder = search_ladder(spec)
    plans = candidate_plans(ladder, k)
    if len(ladder) > 1 and points <= SCAN_CANDIDATE_MAX_POINTS:
        plans.append(FunnelPlan((Stage(spec.top_dim, k),)))
    # whether a first stage at each dim walks a graph (else it scans, and ef means nothing)
    graph = {d: d in (spec.hnsw_dims or ()) and not collection.hnsw_is_full_scan(d) for d in ladder}
    found = [(plan, ef, _cost(plan, points, ef, graph[plan.stages[0].dim]))
             for plan in plans for ef in _widths(plan, graph[plan.stages[0].dim])]
    return sorted(found, key=lambda c: (c[2], str(c[0])))


def _scan_first(candidates: list[Candidate]) -> list[Candidate]:
    """``candidates`` with the single top-dim stage (a small collection's scan) first: it always
    passes (it *is* exact search), so when the candidates are timed within a budget, the plan found
    in it is never slower than the scan (on financial-qa-10k's 6,771 points the scan, 0.47 ms, beat
    every funnel candidate, 1.1–2.1 ms, but came 40th by the cost model)."""
    scans = [c for c in candidates if len(c[0].stages) == 1]
    return scans + [c for c in candidates if len(c[0].stages) > 1]


def _cost(plan: FunnelPlan, points: int, hnsw_ef: int | None = None, graph: bool = True) -> int:
    """:func:`plan_cost`, except that a single stage without a graph scans all ``points``."""
    return points * plan.stages[0].dim if len(plan.stages) == 1 and not graph else plan_cost(plan, hnsw_ef)


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
    hnsw_ef: int | None = None  # the first stage's calibrated graph width (None: the default rule)

    def record(self, source: str) -> dict:
        """What a collection saves (``funnel calibrate``): enough to derive a plan for any k."""
        return {"plan": str(self.plan), "k": self.plan.k, "hnsw_ef": self.hnsw_ef, "recall_vs_exact": self.recall,
                "target": self.target, "met": self.met, "queries": self.queries, "source": source}


def calibrate(
    collection: Collection,
    queries: dict[int, np.ndarray],
    k: int = 10,
    target: float = DEFAULT_TARGET,
    reference: list[list[Hit]] | None = None,
    timed: bool = False,
    budget_s: float | None = None,
) -> Calibration:
    """Return the plan to use: the cheapest (or, ``timed``, the fastest) whose recall@k ≥ ``target``.

    ``queries`` holds one (n × dim) matrix per ladder dim (real queries, or stored points used as
    queries). If no plan reaches the target, the one with the best recall is returned with
    ``met=False``. ``budget_s``: once that many seconds have passed and a plan passed, no more
    candidates are tried (they come cheapest first) nor timed: the fastest of those timed is chosen.
    """
    if not 0 < target <= 1:
        raise BadInputError(f"invalid recall target {target}: use a number in (0, 1]")
    n = len(next(iter(queries.values())))
    if n == 0:
        raise BadInputError("calibration needs at least one query")
    if reference is None:
        reference = collection.search(queries, None, k, with_text=False)
    tried: list[dict] = []
    best: tuple[float, FunnelPlan, int | None] | None = None
    passing: list[tuple[FunnelPlan, float, dict]] = []
    passed: dict[tuple[int, ...], int] = {}  # stage dims → how many candidates of that structure passed
    points = collection.count()
    deadline = None if budget_s is None else time.monotonic() + budget_s
    candidates = _candidates(collection, k, points)
    if timed:
        candidates = _scan_first(candidates)
    for plan, ef, cost in candidates:
        if deadline is not None and passing and time.monotonic() > deadline:
            break
        dims = tuple(s.dim for s in plan.stages)
        if passed.get(dims, 0) > (WIDER_PER_STRUCTURE if timed else 0):
            continue  # cheaper candidates of this structure passed: this one can only be slower
        found = collection.search(queries, plan, k, with_text=False, hnsw_ef=ef)
        recall = recall_against(found, reference, k)
        entry: dict = {"plan": str(plan), "hnsw_ef": ef, "cost": cost, "recall_vs_exact": recall}
        tried.append(entry)
        if best is None or recall > best[0]:
            best = (recall, plan, ef)
        if recall >= target:
            passing.append((plan, recall, entry))
            passed[dims] = passed.get(dims, 0) + 1
            if not timed:
                break
    if not passing:
        assert best is not None
        return Calibration(best[1], best[0], target, False, n, tried, best[2])
    plan, recall, chosen = _fastest(collection, queries, passing, k, deadline) if timed else passing[0]
    return Calibration(plan, recall, target, True, n, tried, chosen["hnsw_ef"])


def _fastest(collection: Collection, queries: dict[int, np.ndarray], passing: list[tuple[FunnelPlan, float, dict]],
             k: int, deadline: float | None) -> tuple[FunnelPlan, float, dict]:
    """Time the passing plans one query at a time (each entry gets ``p50_ms``; past ``deadline``, no
    more are timed) and return the fastest."""
    n = len(next(iter(queries.values())))
    rows = [{dim: m[i : i + 1] for dim, m in queries.items()} for i in range(n)]
    for plan, _, entry in passing:
        if deadline is not None and "p50_ms" in passing[0][2] and time.monotonic() > deadline:
            break

        def search_plan(q: dict[int, np.ndarray], plan: FunnelPlan = plan, ef: int | None = entry["hnsw_ef"]
                        ) -> list[list[Hit]]:
            return collection.search(q, plan, k, with_text=False, hnsw_ef=ef)

        _, latency = time_each(search_plan, rows, warmup=n)
        entry["p50_ms"] = latency.p50
    return min((p for p in passing if "p50_ms" in p[2]), key=lambda p: p[2]["p50_ms"])

"""Calibrate adaptive search: the cheapest (first plan, settle signal, threshold) that keeps the target.

On the calibration queries, with the exact top-k as reference and the calibrated fixed plan as
pass 2: every candidate first plan is run once (k + probe hits) and timed one query at a time; for
each settle signal the queries are sorted by it, and the fewest widened (lowest signals first)
that bring mean recall@k to the target fix the threshold. Expected latency = pass-1 mean + widened
share × fixed-plan mean, all *measured* (the engine's fixed cost per call and per stage makes a
cost model misleading). The best rule is then run for real and timed; it is the collection's
default (``adaptive_pays``) only when it measured faster than the fixed plan at the target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retriever.calibration.plans import search_ladder
from retriever.calibration.timing import Latency, time_each
from retriever.query.adaptive import SIGNALS, AdaptiveRule, AdaptiveSpec, first_plan, settle_signal
from retriever.query.plan import FunnelPlan
from retriever.query.spec import Hit, QuerySpec
from retriever.search import search_each
from retriever.store.base import Collection

FIRST_FACTORS = (2, 4, 8, 16)  # single-stage first plans: the coarsest dim keeps f·k
FIRST_SCALES = (0.15, 0.3, 0.5)  # first plans shaped like the fixed plan, every shortlist scaled
ALWAYS = 10.0  # thresholds stored for "widen every query" / "widen none" (scores are cosines)
NEVER = -10.0


def recall_each(found: Sequence[Sequence[Hit]], reference: Sequence[Sequence[Hit]], k: int) -> np.ndarray:
    """Per query: the share of the reference top-k ids found in ``found``'s top k (empty reference: 1)."""
    out = []
    for f, r in zip(found, reference):
        wanted = {h.id for h in r[:k]}
        out.append(len({h.id for h in f[:k]} & wanted) / len(wanted) if wanted else 1.0)
    return np.asarray(out, dtype=np.float64)


def first_candidates(fixed: FunnelPlan, ladder: tuple[int, ...], k: int, probe: int) -> list[tuple[FunnelPlan, int | None]]:
    """Candidate (first plan, graph width) pairs: small single-stage shortlists and scaled copies of
    the fixed plan, each with the default graph width and with one as narrow as its shortlist."""
    top = ladder[-1]
    shapes: set[FunnelPlan] = {first_plan([(ladder[0], f * k)], top, k, probe) for f in FIRST_FACTORS}
    coarse = fixed.stages[:-1]
    for s in FIRST_SCALES:
        shapes.add(first_plan([(st.dim, math.ceil(st.limit * s)) for st in coarse], top, k, probe))
    out: list[tuple[FunnelPlan, int | None]] = []
    for plan in sorted(shapes, key=str):
        out.append((plan, None))
        out.append((plan, plan.stages[0].limit))
    return out


def choose_threshold(signals: np.ndarray, shallow: np.ndarray, deep: np.ndarray, target: float) -> tuple[float, int, float]:
    """Widen the lowest-signal queries until mean recall ≥ ``target``: (threshold, widened, recall).

    ``shallow``/``deep`` are per-query recalls of pass 1 / pass 2. Unjudgeable (-inf) signals are
    always widened; ties are widened together, so ``signal < threshold`` widens exactly those.
    If even widening all falls short, every query is widened (threshold :data:`ALWAYS`).
    """
    n = len(signals)
    order = np.argsort(signals, kind="stable")
    v = signals[order]
    gain = np.concatenate([[0.0], np.cumsum(deep[order] - shallow[order])])  # recall gained by widening the first j
    base = shallow.sum()
    j = int(np.sum(np.isneginf(v)))
    while j < n and (base + gain[j]) / n < target - 1e-12:
        j += 1
    while 0 < j < n and v[j] == v[j - 1]:
        j += 1
    if j >= n:
        return ALWAYS, n, float(deep.mean()) if n else 1.0
    # any value in (v[j-1], v[j]] widens exactly the first j
    threshold = NEVER if j == 0 else float(v[j]) if np.isneginf(v[j - 1]) else float((v[j - 1] + v[j]) / 2)
    return threshold, j, float((base + gain[j]) / n)


@dataclass
class AdaptiveCalibration:
    """The chosen rule with its measured latencies and recall, and every candidate tried."""

    rule: AdaptiveRule
    k: int
    target: float
    recall: float
    widened_share: float
    fixed: Latency
    adaptive: Latency
    mean_candidates: float
    tried: list[dict] = field(default_factory=list)

    @property
    def pays(self) -> bool:
        """Adaptive meets the target and measured faster (mean) than the fixed plan."""
        return self.recall >= self.target - 1e-12 and self.adaptive.mean < self.fixed.mean

    def record(self) -> dict[str, Any]:
        """The ``adaptive`` section of the calibration record."""
        return {"k": self.k, **self.rule.to_dict(), "target": self.target, "recall_vs_exact": self.recall,
                "widened_share": self.widened_share, "mean_candidates": self.mean_candidates,
                "mean_ms_fixed": self.fixed.mean, "p50_ms_fixed": self.fixed.p50,
                "mean_ms_adaptive": self.adaptive.mean, "p50_ms_adaptive": self.adaptive.p50,
                "adaptive_pays": self.pays}


def _timed(collection: Collection, rows: list[dict[int, np.ndarray]], spec: QuerySpec) -> Latency:
    _, latency = time_each(lambda q: search_each(collection, q, [spec]), rows, warmup=min(len(rows), 20))
    return latency


def calibrate_adaptive(
    collection: Collection,
    queries: dict[int, np.ndarray],
    fixed: FunnelPlan,
    reference: list[list[Hit]],
    target: float,
    probe: int | None = None,
    fixed_ef: int | None = None,
) -> AdaptiveCalibration:
    """Pick the adaptive rule for ``fixed`` (pass 2, its first stage walked with ``fixed_ef``) at recall
    ``target`` on these queries (see module doc)."""
    k = fixed.k
    probe = probe or k
    n = len(reference)
    rows = [{dim: m[i : i + 1] for dim, m in queries.items()} for i in range(n)]
    fixed_spec = QuerySpec(fixed, k, with_text=False, hnsw_ef=fixed_ef)
    deep = recall_each(collection.search_each(queries, [fixed_spec] * n), reference, k)
    fixed_latency = _timed(collection, rows, fixed_spec)
    best: tuple[float, AdaptiveRule] | None = None
    tried: list[dict] = []
    for plan, ef in first_candidates(fixed, search_ladder(collection.spec), k, probe):
        first = QuerySpec(plan, plan.k, with_text=False, hnsw_ef=ef)
        hits = collection.search_each(queries, [first] * n)
        shallow = recall_each(hits, reference, k)
        t1 = _timed(collection, rows, first).mean
        for signal in SIGNALS:
            values = np.asarray([settle_signal([h.score for h in q], k, probe, signal) for q in hits])
            threshold, widened, recall = choose_threshold(values, shallow, deep, target)
            expected = t1 + widened / n * fixed_latency.mean
            tried.append({"first_plan": str(plan), "first_ef": ef, "signal": signal, "threshold": threshold,
                          "widened_share": widened / n, "recall_vs_exact": recall, "first_ms": t1,
                          "expected_ms": expected})
            if recall >= target - 1e-12 and (best is None or expected < best[0]):
                best = (expected, AdaptiveRule(plan, probe, signal, threshold, ef))
    if best is None:  # not even the fixed plan reaches the target: widen everything (never the default)
        plan, ef = first_candidates(fixed, search_ladder(collection.spec), k, probe)[0]
        best = (math.inf, AdaptiveRule(plan, probe, "margin", ALWAYS, ef))
    rule = best[1]
    spec = AdaptiveSpec(fixed, k, with_text=False, hnsw_ef=fixed_ef, rule=rule)
    results = search_each(collection, queries, [spec] * n)
    latency = _timed(collection, rows, spec)
    return AdaptiveCalibration(
        rule=rule, k=k, target=target, recall=float(recall_each(results, reference, k).mean()),
        widened_share=sum(r.depth.passes == 2 for r in results) / n, fixed=fixed_latency, adaptive=latency,
        mean_candidates=float(np.mean([r.depth.candidates for r in results])), tried=tried,
    )

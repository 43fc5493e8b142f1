"""Layout calibration: which storage layout (graph dim, quantization, on-disk) is fastest on this collection.

For each candidate layout (see :mod:`retriever.store.layout`) the collection's stored points are copied, as
they are (never re-embedded), into a scratch collection laid out that way; the copy is verified
(same exact-search answers); the funnel plan is calibrated on it with the same queries, exact
reference and recall target as the collection's own calibration; and the calibrated plan is timed
one query at a time (p50, after a warm-up of every query). The scratch collection is then dropped,
also when a trial fails or is interrupted. The current layout is measured in place.

Choice: the lowest p50 among the layouts whose plan meets the target. The current layout stays
unless another is at least ``MIN_GAIN`` (10 %) faster (re-laying a collection for noise is not worth
it: on a busy 2-core machine one plan timed 0.30 to 0.39 ms in nine runs); between other layouts a tie in p50 goes to the one with fewer bytes on disk, then to the one
listed first. With ``keep_chosen``, the winner's scratch collection is kept, its adaptive search
calibrated, and :func:`apply_layout` verifies it against the collection and swaps it into place
(the embedded engine renames directories; a server cannot, and refuses before any work).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from retriever.calibration.adaptive import AdaptiveCalibration, calibrate_adaptive
from retriever.calibration.plans import DEFAULT_TARGET, Calibration, calibrate, recall_against
from retriever.calibration.record import CalibrationRecord, LayoutsPart
from retriever.calibration.timing import time_each
from retriever.errors import BadInputError, InPlaceUnsupportedError, InvalidLayoutError
from retriever.query.plan import FunnelPlan, validate_k
from retriever.query.spec import Hit
from retriever.store.base import Catalog, Collection
from retriever.store.copy import DEFAULT_BATCH, DEFAULT_VERIFY_SAMPLE, copy_points, verify_copy
from retriever.store.layout import LayoutChoice

MIN_GAIN = 0.10
RULE = ("lowest p50 among the layouts meeting the target; the current layout stays unless another is at "
        f"least {MIN_GAIN:.0%} faster; equal p50: fewer bytes on disk, then the order listed")


@dataclass(frozen=True)
class LayoutTrial:
    """One layout's measurements: its calibrated plan, recall@k against exact, single-query p50 of that
    plan, seconds to build it (copy + index; ``None`` for the current layout) and bytes on disk."""

    layout: str
    current: bool
    plan: str
    recall: float
    met: bool
    p50_ms: float
    build_s: float | None
    disk_bytes: int | None
    hnsw_ef: int | None = None  # the plan's calibrated first-stage graph width (None: the default)

    def to_dict(self) -> dict[str, Any]:
        return {"layout": self.layout, "current": self.current, "plan": self.plan, "hnsw_ef": self.hnsw_ef,
                "recall_vs_exact": self.recall, "met": self.met, "p50_ms": self.p50_ms, "build_s": self.build_s,
                "disk_bytes": self.disk_bytes}


@dataclass
class LayoutCalibration:
    """The trials, the chosen layout and, when kept for :func:`apply_layout`, its built collection."""

    k: int
    target: float
    queries: int
    trials: list[LayoutTrial]
    chosen: LayoutTrial
    calibration: Calibration | None = None  # the chosen layout's plan calibration (None: the current's)
    adaptive: AdaptiveCalibration | None = None  # set with keep_chosen and a change of layout
    built: tuple[Catalog, str] | None = field(default=None, repr=False)
    applied: bool = False

    @property
    def current(self) -> LayoutTrial:
        return next(t for t in self.trials if t.current)

    @property
    def changed(self) -> bool:
        return not self.chosen.current

    def record(self) -> dict[str, Any]:
        """What the calibration record keeps under ``layouts``."""
        return {"k": self.k, "target": self.target, "queries": self.queries, "current": self.current.layout,
                "chosen": self.chosen.layout, "changed": self.changed, "applied": self.applied, "rule": RULE,
                "trials": [t.to_dict() for t in self.trials]}


def check_apply(catalog: Catalog, name: str) -> None:
    """Raise :class:`InPlaceUnsupportedError` unless this engine can replace ``name`` in place."""
    if not catalog.can_swap_in:
        raise InPlaceUnsupportedError(
            f"--apply cannot replace collection {name!r} in place on {catalog.location or 'this engine'}: calibrate "
            f"without --apply, then copy it into a new name in the chosen layout (funnel collections copy {name} "
            "NEW --layout DIM:QUANTIZATION) and use that name")


def choose(trials: Sequence[LayoutTrial], min_gain: float | None = None) -> LayoutTrial:
    """The layout to use (see the module docstring); the current one when none meets the target.
    ``min_gain``: how much faster another layout must be than the current one (default ``MIN_GAIN``)."""
    min_gain = MIN_GAIN if min_gain is None else min_gain
    current = next(t for t in trials if t.current)
    others = [t for t in trials if t.met and not t.current]
    if not others:
        return current
    order = {id(t): i for i, t in enumerate(trials)}
    best = min(others, key=lambda t: (t.p50_ms, t.disk_bytes if t.disk_bytes is not None else 0, order[id(t)]))
    if current.met and best.p50_ms > current.p50_ms * (1 - min_gain):
        return current
    return best


def _p50(collection: Collection, queries: dict[int, np.ndarray], plan: FunnelPlan, k: int,
         hnsw_ef: int | None = None) -> float:
    """Single-query p50 (ms) of ``plan`` (first stage walked with ``hnsw_ef``) over the queries, after a
    warm-up run of all of them."""
    n = len(next(iter(queries.values())))
    rows = [{dim: m[i: i + 1] for dim, m in queries.items()} for i in range(n)]

    def one(q: dict[int, np.ndarray]) -> list[list[Hit]]:
        return collection.search(q, plan, k, with_text=False, hnsw_ef=hnsw_ef)

    _, latency = time_each(one, rows, warmup=n)
    return latency.p50


def calibrate_layouts(
    catalog: Catalog,
    source: Collection,
    layouts: Sequence[LayoutChoice],
    queries: dict[int, np.ndarray],
    k: int = 10,
    target: float = DEFAULT_TARGET,
    reference: list[list[Hit]] | None = None,
    current_plan: FunnelPlan | None = None,
    current_ef: int | None = None,
    keep_chosen: bool = False,
    verify_sample: int = DEFAULT_VERIFY_SAMPLE,
    on_trial: Callable[[LayoutTrial], None] | None = None,
) -> LayoutCalibration:
    """Measure every layout of ``layouts`` (and the source's own, in place) on the source's points and
    choose one (see the module docstring).

    ``source`` is the open collection (of ``catalog``); ``queries`` one (n × dim) matrix per ladder dim;
    ``current_plan`` the source's calibrated plan if known, with its graph width ``current_ef`` (else
    both are calibrated here). Layouts equal
    to the current one are skipped. ``keep_chosen``: keep the winner's scratch collection (with its
    adaptive search calibrated) for :func:`apply_layout`; refused up front on an engine that cannot
    replace a collection in place. Nothing is left of the scratch collections otherwise, whatever
    happens (an error or Ctrl-C mid-way included); the source is only read.
    """
    n = _check_options(catalog, source, layouts, queries, k, target, keep_chosen)
    catalog.clear_stale_scratch(source.spec.name)
    if reference is None:
        reference = source.search(queries, None, k, with_text=False)
    trials = _Trials(catalog, source, queries, k, target, reference, verify_sample, keep_chosen)
    trials.measure_current(current_plan, current_ef)
    if on_trial is not None:
        on_trial(trials.current)
    try:
        for layout in layouts:
            if not layout.same_as(source.spec):
                trial = trials.measure(layout)
                if on_trial is not None:
                    on_trial(trial)
        return trials.result(n)
    finally:
        trials.drop_kept()  # after an error or interrupt before the result was handed over: nothing is kept


def _check_options(catalog: Catalog, source: Collection, layouts: Sequence[LayoutChoice],
                   queries: dict[int, np.ndarray], k: int, target: float, keep_chosen: bool) -> int:
    """Refuse bad options before any work (:class:`BadInputError`, :class:`InvalidLayoutError`,
    :class:`InPlaceUnsupportedError`); returns the number of queries."""
    validate_k(k)
    if not 0 < target <= 1:
        raise BadInputError(f"invalid recall target {target}: use a number in (0, 1]")
    if not layouts:
        raise InvalidLayoutError("no layout to try: give auto or DIM:QUANTIZATION,…")
    for layout in layouts:
        layout.apply_to(source.spec)  # InvalidLayoutError before any work
    if keep_chosen:
        check_apply(catalog, source.spec.name)
    n = len(next(iter(queries.values())))
    if n == 0:
        raise BadInputError("calibration needs at least one query")
    return n


@dataclass
class _Trials:
    """The layout trials of one :func:`calibrate_layouts` run: the measurements so far and, with
    ``keep_chosen``, the scratch collection of the best new layout so far (``kept``), which is dropped
    as soon as another beats it, and by :meth:`drop_kept` unless :meth:`result` handed it over."""

    catalog: Catalog
    source: Collection
    queries: dict[int, np.ndarray]
    k: int
    target: float
    reference: list[list[Hit]]
    verify_sample: int
    keep_chosen: bool
    trials: list[LayoutTrial] = field(default_factory=list)
    calibrations: dict[int, Calibration] = field(default_factory=dict)
    kept: tuple[LayoutTrial, Catalog, str] | None = None

    @property
    def current(self) -> LayoutTrial:
        return self.trials[0]

    def measure_current(self, plan: FunnelPlan | None, ef: int | None) -> None:
        """Measure the source's own layout in place, with ``plan`` (and graph width ``ef``) when
        known, else with the plan calibrated on it here."""
        source, queries, k = self.source, self.queries, self.k
        if plan is None:
            own = calibrate(source, queries, k, self.target, reference=self.reference, timed=True)
            plan, ef = own.plan, own.hnsw_ef
        recall = recall_against(source.search(queries, plan, k, with_text=False, hnsw_ef=ef), self.reference, k)
        self.trials.append(LayoutTrial(str(LayoutChoice.of(source.spec)), True, str(plan), recall,
                                       recall >= self.target - 1e-12, _p50(source, queries, plan, k, ef), None,
                                       source.disk_bytes(), ef))

    def measure(self, layout: LayoutChoice) -> LayoutTrial:
        """Build, verify, calibrate and time ``layout`` in a scratch collection, kept only while it is
        the best new layout with ``keep_chosen``."""
        scratch, scratch_name = self.catalog.scratch(self.source.spec.name)
        try:
            trial, result = _trial(self.source, layout, scratch, scratch_name, self.queries, self.k, self.target,
                                   self.reference, self.verify_sample)
            self.trials.append(trial)
            self.calibrations[id(trial)] = result
            best = choose([t for t in self.trials if not t.current] + [_never(self.current)])
            if self.keep_chosen and best is trial:
                self.drop_kept()
                self.kept = (trial, scratch, scratch_name)
            else:
                self.catalog.discard_scratch(scratch, scratch_name)
        except BaseException:
            if self.kept is None or self.kept[1] is not scratch:
                self.catalog.discard_scratch(scratch, scratch_name)
            raise
        return trial

    def result(self, queries: int) -> LayoutCalibration:
        """The choice; the chosen layout's kept collection (its adaptive search calibrated) is handed over."""
        chosen = choose(self.trials)
        out = LayoutCalibration(self.k, self.target, queries, self.trials, chosen, self.calibrations.get(id(chosen)))
        if self.kept is not None and self.kept[0] is chosen:
            assert out.calibration is not None
            _, scratch, scratch_name = self.kept
            with scratch.open(scratch_name) as built:
                out.adaptive = calibrate_adaptive(built, self.queries, out.calibration.plan, self.reference,
                                                  self.target, fixed_ef=out.calibration.hnsw_ef)
            out.built = (scratch, scratch_name)
            self.kept = None
        return out

    def drop_kept(self) -> None:
        """Remove the kept scratch collection, if any."""
        if self.kept is not None:
            self.catalog.discard_scratch(self.kept[1], self.kept[2])
            self.kept = None


def _never(current: LayoutTrial) -> LayoutTrial:
    """The current trial made unwinnable: :func:`choose` then returns the best of the others."""
    return LayoutTrial(current.layout, True, current.plan, current.recall, False, float("inf"), None, None,
                       current.hnsw_ef)


def _trial(source: Collection, layout: LayoutChoice, scratch: Catalog, scratch_name: str,
           queries: dict[int, np.ndarray], k: int, target: float, reference: list[list[Hit]],
           verify_sample: int) -> tuple[LayoutTrial, Calibration]:
    """Build ``layout`` from the source's points in the scratch collection, verify, calibrate and time it."""
    started = time.perf_counter()
    spec = layout.apply_to(source.spec)
    with scratch.create(dataclasses.replace(spec, name=scratch_name)) as built:
        copy_points(source, built, DEFAULT_BATCH)
        built.finish_indexing()
        build_s = time.perf_counter() - started
        verify_copy(source, built, verify_sample)
        result = calibrate(built, queries, k, target, reference=reference, timed=True)
        p50 = _p50(built, queries, result.plan, k, result.hnsw_ef)
        trial = LayoutTrial(str(layout), False, str(result.plan), result.recall, result.met, p50, build_s,
                            built.disk_bytes(), result.hnsw_ef)
    return trial, result


def apply_layout(catalog: Catalog, name: str, result: LayoutCalibration, source: str,
                 extra: dict[str, Any] | CalibrationRecord | None = None,
                 verify_sample: int = DEFAULT_VERIFY_SAMPLE) -> dict[str, Any]:
    """Replace collection ``name`` (closed by the caller) with the chosen layout's collection kept by
    :func:`calibrate_layouts` (``keep_chosen=True``): verify it against ``name`` once more (point
    count, exact-search answers), give it its calibration record (the chosen plan, calibrated on
    ``source``, its adaptive search, the layout measurements, and the other sections, such as the
    hybrid fusion: ``extra`` gives them, as stored sections or as the collection's
    :class:`CalibrationRecord`, whose parts the new record lacks are kept), and swap it into place.
    Returns that record (stored form). On any failure ``name`` is left as it was and the built
    collection is removed."""
    if result.built is None or result.calibration is None or result.adaptive is None:
        raise BadInputError("nothing to apply: the chosen layout is the collection's own, or it was not kept")
    scratch, scratch_name = result.built
    fresh = CalibrationRecord.from_dict(result.calibration.record(source) | {"adaptive": result.adaptive.record()}
                                        | (extra if isinstance(extra, dict) else {}))
    if isinstance(extra, CalibrationRecord):
        fresh = fresh.merged(extra)
    try:
        with catalog.open(name) as original, scratch.open(scratch_name) as built:
            verify_copy(original, built, verify_sample)
            result.applied = True
            record = replace(fresh, layouts=LayoutsPart.from_dict(result.record())).to_dict()
            built.save_calibration(record)
        catalog.swap_in(name, scratch, scratch_name)
    except BaseException:
        result.applied = False
        raise
    finally:
        catalog.discard_scratch(scratch, scratch_name)  # after a swap: what was the old collection
        result.built = None
    return record

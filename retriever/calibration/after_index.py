"""The calibration ``funnel index`` runs at its end, so that the first search already uses a calibrated plan.

When the collection it wrote holds at least :data:`MIN_POINTS` points, ``funnel index`` calibrates the
plan, its graph width and the adaptive rule (not the layouts, the fusion or the query encoder: those
take judged queries or minutes) on :data:`SAMPLE` of its own stored chunks used as queries, as
``funnel calibrate NAME`` without options does, within :func:`budget_for` seconds for the plan's
candidates (a fifth of the indexing time, 5 to 60 s). Measured on financial-qa-10k (6,771 chunks,
MiniLM, 2 cores, bf16): the whole calibration took 14.8 s with a flat 60 s budget, against ~31 s of
indexing (see docs/cli.md).

A calibration the user ran (``funnel calibrate``) is never replaced: only one that ``funnel index``
made itself is refreshed, and only when the run changed the collection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retriever.store.base import Collection

MIN_POINTS = 2_000  # below: too few points for a plan to matter (an exact scan is ~1 ms)
SAMPLE = 200  # stored chunks used as queries
BUDGET_S = 60.0  # at most, for the plan's candidates; the adaptive rule after them adds ~a tenth of it
MIN_BUDGET_S = 5.0  # at least (a small collection's scan and its cheapest funnels are timed in it)
BUDGET_SHARE = 0.2  # of the indexing run's own seconds: calibrating costs a fraction of what was indexed
BY = "funnel index"  # the record's source starts with this: a calibration funnel index may refresh


def budget_for(index_seconds: float) -> float:
    """Seconds for the plan's candidates after an indexing run of ``index_seconds``: a fifth of it,
    within [:data:`MIN_BUDGET_S`, :data:`BUDGET_S`] (a re-run that changed three documents does not
    spend a minute re-calibrating; a million-chunk run gets the whole minute)."""
    return min(BUDGET_S, max(MIN_BUDGET_S, BUDGET_SHARE * index_seconds))


def reason_to_skip(collection: Collection, changed: bool) -> str | None:
    """Why ``funnel index`` does not calibrate ``collection`` now, or ``None``: it calibrates.

    ``changed``: the run wrote or removed chunks.
    """
    points = collection.count()
    if points < MIN_POINTS:
        return f"{points:,} points, under {MIN_POINTS:,}: the rule-based plan is kept (funnel calibrate measures one)"
    record = collection.calibration()
    if record is None:
        return None
    if not str(record.get("source", "")).startswith(BY):
        return "kept the calibration funnel calibrate made (run it again to re-measure)"
    return None if changed else "unchanged collection: its calibration is kept"

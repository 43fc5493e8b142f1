"""The calibration ``funnel index`` runs at its end, so that the first search already uses a calibrated plan.

When the collection it wrote holds at least :data:`MIN_POINTS` points, ``funnel index`` calibrates the
plan, its graph width and the adaptive rule (not the layouts, the fusion or the query encoder: those
take judged queries or minutes) on :data:`SAMPLE` of its own stored chunks used as queries, as
``funnel calibrate NAME`` without options does, within :data:`BUDGET_S` seconds for the plan's
candidates. Measured on dbpedia-sample (5,014 chunks, MiniLM, 2 cores): ~20 s, against ~170 s for the
indexing itself (see docs/cli.md).

A calibration the user ran (``funnel calibrate``) is never replaced: only one that ``funnel index``
made itself is refreshed, and only when the run changed the collection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retriever.store.base import Collection

MIN_POINTS = 2_000  # below: too few points for a plan to matter (an exact scan is ~1 ms)
SAMPLE = 200  # stored chunks used as queries
BUDGET_S = 60.0  # for the plan's candidates; the adaptive rule after them adds ~a tenth of it
BY = "funnel index"  # the record's source starts with this: a calibration funnel index may refresh


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

"""Re-tuning without forgetting: mix a share of earlier pairs (replay) into new ones, and record the chain.

``--replay old.jsonl --replay-ratio R`` adds ``R × len(new)`` pairs drawn at random (seeded) from
the old pairs, never more than there are, and none that repeats a new pair. The lineage is the base
model's own lineage (from its ``eval_report.json`` when it was tuned by funnel) plus this step, so a
model card lists every training set that shaped the model, oldest first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retriever.errors import TuneError

MAX_REPLAY_RATIO = 100.0
REPORT_FILE = "eval_report.json"


def check_replay(replay: str | None, ratio: float | None) -> float:
    """The ratio to use (default 1.0 with --replay); refuses a ratio without --replay or out of range."""
    if replay is None:
        if ratio is not None:
            raise TuneError("--replay-ratio needs --replay OLD_PAIRS (the pairs to mix back in)")
        return 0.0
    ratio = 1.0 if ratio is None else ratio
    if not 0 < ratio <= MAX_REPLAY_RATIO:
        raise TuneError(f"invalid --replay-ratio {ratio}: use a number above 0 and at most {MAX_REPLAY_RATIO:g}")
    return ratio


def mix_replay(new: Any, old: Any, ratio: float, seed: int) -> tuple[Any, dict[str, Any]]:
    """``new`` plus a seeded sample of ``old`` (both ``datasets.Dataset``); returns it and what was mixed."""
    from datasets import Dataset

    seen = {(a, p) for a, p in zip(new["anchor"], new["positive"])}
    columns = [c for c in ("anchor", "positive", "negative") if c in new.column_names and c in old.column_names]
    fresh = old.filter(lambda row: (row["anchor"], row["positive"]) not in seen)
    wanted = min(len(fresh), round(ratio * len(new)))
    sample = fresh.shuffle(seed=seed).select(range(wanted))
    rows = new.select_columns(columns).to_list() + sample.select_columns(columns).to_list()
    mixed = Dataset.from_list(rows).shuffle(seed=seed)
    return mixed, {"new": len(new), "replayed": wanted, "replay_available": len(old),
                   "replay_repeats_dropped": len(old) - len(fresh)}


def base_lineage(base_model: str) -> list[dict[str, Any]]:
    """The training steps recorded by funnel in a tuned model directory (empty for any other model)."""
    report = Path(base_model).expanduser() / REPORT_FILE
    if not report.is_file():
        return []
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if isinstance(data.get("lineage"), list):
        return list(data["lineage"])
    config = data.get("config") or {}
    return [{"base_model": data.get("base_model"), "train": config.get("train"), "pairs": (data.get("pairs") or {}).get("train")}]

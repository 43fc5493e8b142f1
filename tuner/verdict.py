"""Is the tuned model better? Base vs tuned, query by query, at every dim of the ladder.

A dim is *worse* when the tuned model's mean NDCG@10 is below the base model's by more than the
noise of the set: one standard error of the per-query differences (paired: the same queries, both
models). *Better* is the mirror image; anything between is *same* (within noise). The run's verdict
is ``worse`` when any dim is worse, else ``better`` when any dim is better, else ``same``; a
``worse`` run keeps the base model as the result (:func:`tuner.training.tune`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

NOISE_SE = 1.0  # a change counts when it exceeds this many standard errors of the paired differences


@dataclass(frozen=True)
class DimChange:
    """One dim: mean NDCG@10 of both models, their mean paired difference and its standard error."""

    dim: int
    base: float
    tuned: float
    change: float
    noise: float

    @property
    def call(self) -> str:
        if self.change < -self.noise and self.change < 0:
            return "worse"
        if self.change > self.noise and self.change > 0:
            return "better"
        return "same"


@dataclass(frozen=True)
class Verdict:
    """Base vs tuned on one evaluation set: per dim, and the run's call."""

    eval_set: str
    queries: int
    dims: list[DimChange]

    @property
    def call(self) -> str:
        calls = {d.call for d in self.dims}
        return "worse" if "worse" in calls else "better" if "better" in calls else "same"

    @property
    def worse_dims(self) -> list[int]:
        return [d.dim for d in self.dims if d.call == "worse"]

    def to_dict(self) -> dict[str, Any]:
        return {"call": self.call, "eval_set": self.eval_set, "queries": self.queries, "noise_se": NOISE_SE,
                "worse_dims": self.worse_dims,
                "dims": {d.dim: asdict(d) | {"call": d.call} for d in self.dims}}


def judge(eval_set: str, base: dict[int, np.ndarray], tuned: dict[int, np.ndarray]) -> Verdict:
    """Compare per-query NDCG@10 arrays (the same queries in the same order) of the base and tuned models."""
    changes = []
    for dim in sorted(base):
        b, t = np.asarray(base[dim], dtype=float), np.asarray(tuned[dim], dtype=float)
        if b.shape != t.shape or not b.size:
            raise ValueError(f"dim {dim}: base and tuned scores are not the same queries")
        diff = t - b
        noise = float(diff.std(ddof=1) / math.sqrt(diff.size)) * NOISE_SE if diff.size > 1 else 0.0
        changes.append(DimChange(dim, float(b.mean()), float(t.mean()), float(diff.mean()), noise))
    return Verdict(eval_set, len(next(iter(base.values()))), changes)

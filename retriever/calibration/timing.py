"""Latency of one query at a time, after a warm-up: percentiles and sequential throughput."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
DEFAULT_WARMUP = 20


@dataclass(frozen=True)
class Latency:
    """Per-query latency percentiles (ms) and the sequential queries per second."""

    p50: float
    p95: float
    p99: float
    mean: float
    qps: float
    queries: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return cls(float(p50), float(p95), float(p99), float(ms.mean()), float(1000.0 * len(ms) / ms.sum()), len(ms))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_each(run: Callable[[T], object], items: Sequence[T], warmup: int = DEFAULT_WARMUP,
              on_done: Callable[[], None] | None = None) -> tuple[list[object], Latency]:
    """Run ``run(item)`` for each item, one at a time, timing each; ``warmup`` untimed runs first.

    Returns the results (in order) and their :class:`Latency`.
    """
    for item in list(items)[: min(warmup, len(items))]:
        run(item)
    results: list[object] = []
    seconds: list[float] = []
    for item in items:
        t0 = time.perf_counter()
        results.append(run(item))
        seconds.append(time.perf_counter() - t0)
        if on_done is not None:
            on_done()
    return results, Latency.of(seconds)

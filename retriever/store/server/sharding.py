"""Funnel plans on a sharded collection: Qdrant runs a nested prefetch on every shard.

A plan's limits are collection-wide: ``64:400`` means the 400 nearest points of the whole
collection. On a collection of N shards, Qdrant runs the whole nested query on each shard (each
shard keeps *its own* 400 at 64 dims, re-scores them, …) and merges the shards' final top-k. Sent
unchanged, a plan would score N times the candidates it says. So every stage but the last is sent
with a per-shard limit: the share of the collection-wide shortlist that one shard holds, plus a
safety margin. Points are spread over shards by a hash of their id, independent of their vectors,
so the number of a stage's collection-wide candidates on one shard is Binomial(limit, 1/N); the
per-shard limit is its mean plus :data:`MARGIN_SIGMAS` standard deviations (rounded up, at least k),
so a shard cuts one of its collection-wide candidates with a probability below about 3·10⁻⁵. The
last stage keeps k per shard: the merge of the shards' top-k is the collection's top-k.

The plan a user gives or calibration saves stays collection-wide (so it means the same on 1 or N
shards, and survives ``funnel collections copy`` between them); only the request is per shard.
"""

from __future__ import annotations

import math

from retriever.query.plan import FunnelPlan, Stage

MARGIN_SIGMAS = 4.0


def per_shard_limit(limit: int, shards: int, k: int) -> int:
    """The limit one of ``shards`` shards keeps so that it holds its share of a collection-wide ``limit``."""
    if shards <= 1:
        return limit
    p = 1.0 / shards
    mean = limit * p
    return min(limit, max(k, math.ceil(mean + MARGIN_SIGMAS * math.sqrt(limit * p * (1 - p))) + 1))


def per_shard_plan(plan: FunnelPlan, shards: int) -> FunnelPlan:
    """``plan`` with every stage but the last (k) at its per-shard limit (unchanged for one shard)."""
    if shards <= 1:
        return plan
    k = plan.k
    *coarse, last = plan.stages
    stages = [Stage(s.dim, per_shard_limit(s.limit, shards, k)) for s in coarse]
    for i in range(1, len(stages)):  # limits never grow along the funnel
        stages[i] = Stage(stages[i].dim, min(stages[i].limit, stages[i - 1].limit))
    return FunnelPlan((*stages, last))

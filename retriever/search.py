"""The one search runner: adaptive (two passes) or fixed, over any engine's :meth:`Collection.search_each`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retriever.query.adaptive import (
    AdaptiveSpec,
    settle_signal,
)
from retriever.query.result import Depth, SearchResult, plan_depth
from retriever.query.spec import QuerySpec
from retriever.store.base import Collection


def _rows(queries: dict[int, np.ndarray], rows: Sequence[int]) -> dict[int, np.ndarray]:
    return {dim: m[list(rows)] for dim, m in queries.items()}


def search_each(collection: Collection, queries: dict[int, np.ndarray],
                specs: Sequence[QuerySpec]) -> list[SearchResult]:
    """Search a batch, row ``i`` as ``specs[i]`` says; :class:`AdaptiveSpec` rows adaptively.

    At most two engine calls: pass 1 for every row (adaptive rows run their cheap plan), pass 2
    for the widened adaptive rows only.
    """
    points = -1
    first_specs = []
    for spec in specs:
        rule = spec.rule if isinstance(spec, AdaptiveSpec) else None
        if rule is not None:
            first_specs.append(QuerySpec(rule.first, rule.first.k, spec.with_text, spec.filter, rule.first_ef))
        else:
            first_specs.append(spec)
    first_hits = collection.search_each(queries, first_specs)
    results: list[SearchResult | None] = [None] * len(specs)
    widen: list[int] = []
    for i, (spec, hits) in enumerate(zip(specs, first_hits)):
        rule = spec.rule if isinstance(spec, AdaptiveSpec) else None
        if spec.plan is None and points < 0:
            points = collection.count()
        depth = plan_depth(first_specs[i].plan, points)
        if spec.mode == "lexical":
            depth = Depth(1, 1, 0)  # the text index scores only the points that hold a query term
        elif spec.mode == "hybrid":
            depth += Depth(0, 1, spec.fusion_or_default.depths(spec.k)[1])
        if rule is None:
            results[i] = SearchResult(hits, depth)
        elif settle_signal([h.score for h in hits], spec.k, rule.probe, rule.signal) < rule.threshold:
            widen.append(i)
        else:
            results[i] = SearchResult(hits[: spec.k], depth)
    if widen:
        deep = collection.search_each(_rows(queries, widen), [QuerySpec(specs[i].plan, specs[i].k, specs[i].with_text,
                                                                          specs[i].filter, specs[i].hnsw_ef)
                                                                for i in widen])
        for i, hits in zip(widen, deep):
            results[i] = SearchResult(hits, plan_depth(first_specs[i].plan, points) + plan_depth(specs[i].plan, points))
    return [r for r in results if r is not None]

"""Qdrant Edge requests for funnel, lexical and hybrid searches (see :mod:`retriever.query.fusion`).

A funnel is one nested-prefetch query: the first stage searches the whole collection at the
coarsest dim of the plan (HNSW, or a scan), each later stage re-scores the previous one's
shortlist at a larger dim. A lexical search is the engine's BM25 text query; a hybrid one either
adds the BM25 candidates to the first stage's shortlist (``union``) or fuses the dense funnel's
list with BM25's (``rrf``; ``dbsf`` runs its two lists as two queries, fused by
:mod:`retriever.query.dbsf`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qdrant_edge import (
    FieldCondition,
    Filter,
    Fusion,
    MatchAny,
    MatchValue,
    Prefetch,
    QuantizationSearchParams,
    Query,
    QueryRequest,
    RangeFloat,
    SearchParams,
    TextQuery,
)

from retriever.query.filters import Match, PayloadFilter, Range
from retriever.query.filters import MatchAny as AnyOf
from retriever.query.fusion import TEXT_FIELD
from retriever.query.ladder import vector_name
from retriever.query.spec import Hit, QuerySpec
from retriever.store.spec import MIN_HNSW_EF, QUANTIZED_OVERSAMPLING, CollectionSpec


def edge_filter(payload_filter: PayloadFilter | None) -> Filter | None:
    """The engine-neutral filter as a Qdrant Edge ``Filter`` (every condition must hold)."""
    if not payload_filter:
        return None
    must: list[Any] = []
    for key, cond in payload_filter.conditions:
        if isinstance(cond, Match):
            must.append(FieldCondition(key, match=MatchValue(cond.value)))
        elif isinstance(cond, AnyOf):
            values: list[str] | list[int] = list(cond.values)  # type: ignore[assignment] # all str or all int
            must.append(FieldCondition(key, match=MatchAny(values)))
        elif isinstance(cond, Range):
            must.append(FieldCondition(key, range=RangeFloat(gte=cond.gte, gt=cond.gt, lte=cond.lte, lt=cond.lt)))
        else:  # pragma: no cover - PayloadFilter only holds the three kinds
            raise TypeError(f"unknown filter condition {cond!r}")
    return Filter(must=must)


class EdgeRequests:
    """Builds the engine requests for one collection's spec."""

    def __init__(self, spec: CollectionSpec) -> None:
        self.spec = spec

    def payload(self, with_text: bool) -> bool | list[str]:
        return True if with_text else ["doc_id", "chunk", "title", "metadata"]

    def stage_params(self, dim: int, limit: int, exact: bool, hnsw_ef: int | None, refined: bool) -> SearchParams:
        """Params of the stage that searches the whole collection at ``dim``.

        Exact: a full scan on the original vectors. Otherwise HNSW (where the dim has a graph) with
        ``ef`` = ``hnsw_ef`` or ``max(128, limit)``; a quantized vector is rescored with the originals
        (oversampled as ``QUANTIZED_OVERSAMPLING`` says) unless a later stage (``refined``)
        re-scores the shortlist anyway.
        """
        if exact:
            quantization = QuantizationSearchParams(ignore=True) if dim in self.spec.quantized_dims else None
            return SearchParams(exact=True, quantization=quantization)
        quantization = QuantizationSearchParams(rescore=not refined, oversampling=None if refined else
                                                QUANTIZED_OVERSAMPLING[self.spec.quantization]) \
            if dim in self.spec.quantized_dims else None
        return SearchParams(hnsw_ef=hnsw_ef or max(MIN_HNSW_EF, limit), quantization=quantization)

    def dense(self, vectors: dict[int, np.ndarray], row: int, spec: QuerySpec,
               lexical: Prefetch | None = None) -> tuple[Query, SearchParams | None, list[Prefetch] | None, bool]:
        """The dense funnel's last stage: (query, params, prefetches, filtered inside).

        ``lexical`` joins the first stage's shortlist (hybrid ``union``): the re-score stages that
        follow rank both. An exact search, or a plan of one stage, gets the lexical candidates
        beside a top-dim stage of its own.
        """
        def nearest(dim: int) -> Query:
            return Query.Nearest(vectors[dim][row].tolist(), using=vector_name(dim))

        where = edge_filter(spec.filter)
        if spec.plan is None:
            top = self.spec.top_dim
            params = self.stage_params(top, spec.k, exact=True, hnsw_ef=None, refined=False)
            if lexical is None:
                return nearest(top), params, None, False
            return nearest(top), None, [Prefetch(limit=spec.k, query=nearest(top), params=params, filter=where),
                                        lexical], True
        *coarse, last = spec.plan.stages
        prefetch: list[Prefetch] | None = None
        for i, stage in enumerate(coarse):
            # The filter applies to the shortlist (the first stage); later stages only re-score it.
            first = i == 0
            shortlist = self.stage_params(stage.dim, stage.limit, False, spec.hnsw_ef, refined=True) if first else None
            prefetch = [Prefetch(limit=stage.limit, query=nearest(stage.dim), prefetches=prefetch, params=shortlist,
                                 filter=where if first else None)]
            if first and lexical is not None:
                prefetch.append(lexical)
        if not coarse and lexical is not None:
            graph = self.stage_params(last.dim, last.limit, False, spec.hnsw_ef, refined=True)
            return nearest(last.dim), None, [Prefetch(limit=last.limit, query=nearest(last.dim), params=graph,
                                                      filter=where), lexical], True
        alone = None if coarse else self.stage_params(last.dim, last.limit, False, spec.hnsw_ef, refined=False)
        return nearest(last.dim), alone, prefetch, bool(coarse)

    def request(self, vectors: dict[int, np.ndarray], row: int, spec: QuerySpec) -> QueryRequest:
        payload = self.payload(spec.with_text)
        where = edge_filter(spec.filter)
        if spec.mode == "dense":
            query, params, prefetch, inside = self.dense(vectors, row, spec)
            return QueryRequest(limit=spec.k, query=query, prefetches=prefetch, params=params, with_payload=payload,
                                filter=None if inside else where)
        text = TextQuery(TEXT_FIELD, spec.text or "")
        if spec.mode == "lexical":
            return QueryRequest(limit=spec.k, query=text, with_payload=payload, filter=where)
        fusion = spec.fusion_or_default
        lexical = Prefetch(limit=fusion.depths(spec.k)[1], query=text, filter=where)
        if fusion.method == "union":
            query, params, prefetch, inside = self.dense(vectors, row, spec, lexical)
            return QueryRequest(limit=spec.k, query=query, prefetches=prefetch, params=params, with_payload=payload,
                                filter=None if inside else where)
        deep = spec.dense_list()
        query, params, prefetch, inside = self.dense(vectors, row, deep)
        dense = Prefetch(limit=deep.k, query=query, prefetches=prefetch, params=params,
                         filter=None if inside else where)
        if fusion.method != "rrf":  # DBSF runs as two queries, fused by retriever.query.dbsf
            raise RuntimeError(f"no single engine request fuses {fusion.method!r}")
        fuse: Any = Fusion.Rrf(k=fusion.rrf_k, weights=[fusion.dense_weight, fusion.lexical_weight])
        return QueryRequest(limit=spec.k, query=fuse, prefetches=[dense, lexical], with_payload=payload)


def to_hit(point, with_text: bool) -> Hit:  # noqa: ANN001 - qdrant_edge.ScoredPoint
    payload = point.payload or {}
    return Hit(
        id=str(point.id),
        doc_id=str(payload.get("doc_id", "")),
        chunk=int(payload.get("chunk", 0)),
        score=float(point.score),
        text=payload.get("text") if with_text else None,
        title=payload.get("title") or "",
        metadata=payload.get("metadata") or {},
    )

"""Qdrant server requests (qdrant-client models) for funnel, lexical and hybrid searches: the same
shapes as :mod:`retriever.store.edge.requests` builds for the embedded engine, with every limit but the
last sent per shard on a sharded collection (see :mod:`retriever.store.server.sharding`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from retriever.query.filters import Match, MatchAny, PayloadFilter, Range
from retriever.query.fusion import TEXT_FIELD
from retriever.query.ladder import vector_name
from retriever.query.spec import Hit, QuerySpec
from retriever.store.server.sharding import per_shard_limit, per_shard_plan
from retriever.store.spec import MIN_HNSW_EF, QUANTIZED_OVERSAMPLING, CollectionSpec

TEXT_FIELDS = ["doc_id", "chunk", "title", "metadata"]  # a hit's payload without its text


def server_filter(payload_filter: PayloadFilter | None) -> Any:
    """The engine-neutral filter as a qdrant-client ``Filter`` (every condition must hold)."""
    from qdrant_client import models

    if not payload_filter:
        return None
    must: list[Any] = []
    for key, cond in payload_filter.conditions:
        if isinstance(cond, Match):
            must.append(models.FieldCondition(key=key, match=models.MatchValue(value=cond.value)))
        elif isinstance(cond, MatchAny):
            values: list[str] | list[int] = list(cond.values)  # type: ignore[assignment] # all str or all int
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=values)))
        elif isinstance(cond, Range):
            must.append(models.FieldCondition(key=key, range=models.Range(gte=cond.gte, gt=cond.gt, lte=cond.lte,
                                                                          lt=cond.lt)))
        else:  # pragma: no cover - PayloadFilter only holds the three kinds
            raise TypeError(f"unknown filter condition {cond!r}")
    return models.Filter(must=must)


def to_hit(point: Any, with_text: bool) -> Hit:
    payload = point.payload or {}
    return Hit(id=str(point.id), doc_id=str(payload.get("doc_id", "")), chunk=int(payload.get("chunk", 0)),
               score=float(point.score), text=payload.get("text") if with_text else None,
               title=payload.get("title") or "", metadata=payload.get("metadata") or {})


class ServerRequests:
    """Builds the requests for one collection's spec on ``shards`` shards."""

    def __init__(self, spec: CollectionSpec, shards: int) -> None:
        self.spec = spec
        self.shards = shards

    def stage_params(self, dim: int, limit: int, exact: bool, hnsw_ef: int | None, refined: bool) -> Any:
        """As :meth:`edge_query.EdgeRequests.stage_params`: exact scans the originals; a graph stage searches
        with ``ef = hnsw_ef or max(128, limit)``; a quantized vector is rescored (oversampled)
        unless a later stage re-scores."""
        from qdrant_client import models

        quantized = dim in self.spec.quantized_dims
        if exact:
            return models.SearchParams(exact=True, quantization=models.QuantizationSearchParams(ignore=True)
                                       if quantized else None)
        oversampling = None if refined else QUANTIZED_OVERSAMPLING.get(self.spec.quantization)
        return models.SearchParams(hnsw_ef=hnsw_ef or max(MIN_HNSW_EF, limit),
                                   quantization=models.QuantizationSearchParams(rescore=not refined, oversampling=oversampling)
                                   if quantized else None)

    def dense(self, vectors: dict[int, np.ndarray], row: int, spec: QuerySpec, lexical: Any = None) -> dict[str, Any]:
        """The dense funnel's last stage as keyword arguments of a request or prefetch (as
        :meth:`edge_query.EdgeRequests.dense`; ``lexical`` joins the first stage's shortlist)."""
        from qdrant_client import models

        where = server_filter(spec.filter)
        if spec.plan is None:
            top = self.spec.top_dim
            exact = self.stage_params(top, spec.k, True, None, False)
            scan: dict[str, Any] = {"query": vectors[top][row].tolist(), "using": vector_name(top)}
            if lexical is None:
                return {**scan, "params": exact, "filter": where}
            return {**scan, "prefetch": [models.Prefetch(**scan, limit=spec.k, params=exact, filter=where), lexical]}
        plan = per_shard_plan(spec.plan, self.shards)  # limits are per shard in a nested prefetch
        *coarse, last = plan.stages
        prefetch: list[Any] | None = None
        for i, stage in enumerate(coarse):
            first = i == 0  # the filter applies to the shortlist; later stages only re-score it
            prefetch = [models.Prefetch(query=vectors[stage.dim][row].tolist(), using=vector_name(stage.dim),
                                        limit=stage.limit, prefetch=prefetch, filter=where if first else None,
                                        params=self.stage_params(stage.dim, stage.limit, False, spec.hnsw_ef, True)
                                        if first else None)]
            if first and lexical is not None:
                prefetch.append(lexical)
        top_stage: dict[str, Any] = {"query": vectors[last.dim][row].tolist(), "using": vector_name(last.dim)}
        if not coarse and lexical is not None:
            alone = self.stage_params(last.dim, last.limit, False, spec.hnsw_ef, True)
            return {**top_stage, "prefetch": [models.Prefetch(**top_stage, limit=last.limit, params=alone, filter=where),
                                              lexical]}
        if coarse:
            return {**top_stage, "prefetch": prefetch}
        return {**top_stage, "params": self.stage_params(last.dim, last.limit, False, spec.hnsw_ef, False), "filter": where}

    def request(self, vectors: dict[int, np.ndarray], row: int, spec: QuerySpec) -> Any:
        from qdrant_client import models

        payload: bool | list[str] = True if spec.with_text else TEXT_FIELDS
        if spec.mode == "dense":
            return models.QueryRequest(**self.dense(vectors, row, spec), limit=spec.k, with_payload=payload)
        where = server_filter(spec.filter)
        text: dict[str, Any] = {"query": models.TextQuery(text=spec.text or ""), "using": TEXT_FIELD}
        if spec.mode == "lexical":
            return models.QueryRequest(**text, limit=spec.k, filter=where, with_payload=payload)
        fusion = spec.fusion_or_default
        lexical = models.Prefetch(**text, limit=per_shard_limit(fusion.depths(spec.k)[1], self.shards, spec.k),
                                  filter=where)
        if fusion.method == "union":
            return models.QueryRequest(**self.dense(vectors, row, spec, lexical), limit=spec.k, with_payload=payload)
        deep = spec.dense_list()
        dense = models.Prefetch(**self.dense(vectors, row, deep), limit=deep.k)
        if fusion.method != "rrf":  # DBSF runs as two queries, fused by retriever.query.dbsf
            raise RuntimeError(f"no single engine request fuses {fusion.method!r}")
        fuse: Any = models.RrfQuery(rrf=models.Rrf(k=fusion.rrf_k, weights=[fusion.dense_weight, fusion.lexical_weight]))
        return models.QueryRequest(query=fuse, prefetch=[dense, lexical], limit=spec.k, with_payload=payload)

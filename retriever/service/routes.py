"""The service's routes: ``POST /search``, ``GET /collections/{name}``, ``GET /healthz``, ``POST /feedback``.

Each handler is a plain function on :data:`router`; what it serves (the :class:`ServiceState`, the
:class:`MicroBatcher`, the :class:`FeedbackLog`) comes from ``app.state`` through a dependency, set
up by :func:`retriever.service.app.create_app`. A request is checked once: its body by the models
(:mod:`retriever.service.models`), then its queries and options by the library (``validate_queries``,
:meth:`Retriever.query_spec`), before any is queued.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader

from retriever.calibration.defaults import (
    adaptive_by_default,
    calibration_warning,
    default_mode_for,
    default_plan_for,
    fusion_for,
)
from retriever.errors import ChunkNotFoundError, CollectionNotFoundError, FunnelError
from retriever.ingest.chunking import chunk_id
from retriever.query.describe import describe_search
from retriever.query.result import Depth
from retriever.query.spec import Hit
from retriever.query.validation import validate_queries, validate_query
from retriever.service.batcher import MicroBatcher
from retriever.service.feedback import FeedbackLog
from retriever.service.models import (
    BatchingInfo,
    CollectionResponse,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    SearchRequest,
    SearchResponse,
)
from retriever.service.security import API_KEY_HEADER
from retriever.service.state import ServiceState

_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                        description="required when the server runs with --api-key / FUNNEL_API_KEY")


def _documented_key(_: str | None = Security(_api_key)) -> None:
    """Declares the API key in the OpenAPI spec; :class:`~retriever.service.app.ApiKeyGuard` enforces it."""


def get_service(request: Request) -> ServiceState:
    """The collection (and, once loaded, the retriever) this app serves."""
    return request.app.state.service


def get_batcher(request: Request) -> MicroBatcher:
    """The app's micro-batcher (and its search thread)."""
    return request.app.state.batcher


def get_feedback(request: Request) -> FeedbackLog | None:
    """The feedback file, or ``None``: feedback is not enabled."""
    return request.app.state.feedback


Service = Annotated[ServiceState, Depends(get_service)]
Batcher = Annotated[MicroBatcher, Depends(get_batcher)]
Feedback = Annotated[FeedbackLog | None, Depends(get_feedback)]

PROTECTED = [Depends(_documented_key)]
router = APIRouter()


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorResponse} for s in statuses}


def _check_collection(state: ServiceState, name: str | None) -> None:
    if name is not None and name != state.name:
        raise CollectionNotFoundError(f"no collection {name[:64]!r} here: this server serves {state.name!r}")


def _hit_dict(hit: Hit) -> dict[str, Any]:
    return {"id": hit.id, "doc_id": hit.doc_id, "chunk": hit.chunk, "score": hit.score, "text": hit.text,
            "title": hit.title, "metadata": hit.metadata}


def _depth(hits: list[Hit]) -> dict[str, int]:
    depth = getattr(hits, "depth", None)  # every Retriever result has one
    return depth.to_dict() if isinstance(depth, Depth) else {"passes": 1, "stages": 0, "candidates": 0}


@router.post("/search", response_model=SearchResponse, dependencies=PROTECTED,
             responses=_errors(400, 401, 404, 408, 409, 413, 422, 500, 503))
async def search(body: SearchRequest, service: Service, batcher: Batcher) -> JSONResponse:
    """Funnel-search one query or a batch; optionally exact, filtered by payload, without texts."""
    start = time.perf_counter()
    _check_collection(service, body.collection)
    retriever = service.ready()
    texts = validate_queries(body.texts)
    spec = retriever.query_spec(body.k, body.plan, body.exact, body.with_text, body.filter, body.adaptive,
                                body.mode, body.fusion)
    results = await batcher.search(texts, [spec] * len(texts))
    # Built as plain dicts and returned as a JSONResponse: the hot path skips re-validating the
    # response model (its shape is the documented SearchResponse, checked by the tests).
    return JSONResponse({
        "collection": service.name,
        **describe_search(spec, service.collection.spec.top_dim).fields(),
        "k": body.k,
        "results": [{"query": q, "hits": [_hit_dict(h) for h in hits], "depth": _depth(hits)}
                    for q, hits in zip(texts, results)],
        "took_ms": round((time.perf_counter() - start) * 1000, 3),
        "calibration_warning": calibration_warning(service.collection),
    })


def _collection_body(state: ServiceState) -> dict[str, Any]:
    """The ``/collections/{name}`` answer (engine calls: run it off the event loop)."""
    collection = state.collection
    info = collection.info()
    plan, adaptive = default_plan_for(collection, 10), adaptive_by_default(collection)
    mode, fusion = default_mode_for(collection), fusion_for(collection, None)
    spec = info.spec
    return {
        "name": spec.name, "points": info.points, "dims": list(spec.dims), "model": spec.model,
        "model_fingerprint": spec.model_fingerprint, "model_dim": spec.model_dim,
        "chunk_size": spec.chunk_size, "chunk_overlap": spec.chunk_overlap, "engine": spec.engine,
        "default_plan": str(plan), "adaptive_default": adaptive, "disk_bytes": info.disk_bytes,
        "lexical": spec.lexical, "lexical_analyzer": spec.lexical_analyzer if spec.lexical else None,
        "default_mode": mode, "default_fusion": str(fusion) if spec.lexical else None,
        "calibration_warning": calibration_warning(collection),
    }


@router.get("/collections/{name}", response_model=CollectionResponse, dependencies=PROTECTED,
            responses=_errors(401, 404))
async def collection(name: str, service: Service, batcher: Batcher) -> dict[str, Any]:
    """Points, dims, model and default plan of the served collection."""
    _check_collection(service, name)
    return await asyncio.get_running_loop().run_in_executor(batcher.executor, _collection_body, service)


@router.get("/healthz", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def healthz(service: Service, batcher: Batcher) -> Any:
    """200 when the model and the collection are loaded; 503 while loading (or after a failed load)."""
    stats = batcher.stats
    body = HealthResponse(
        status=service.status, collection=service.name, model=service.collection.spec.model,
        message=str(service.error) if service.error is not None else None,
        batching=BatchingInfo(max_batch=batcher.max_batch, max_wait_ms=batcher.max_wait * 1000,
                              batches=stats.batches, queries=stats.queries, largest_batch=stats.largest),
    )
    if service.status != "ready":
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})
    return body


@router.post("/feedback", response_model=FeedbackResponse, dependencies=PROTECTED,
             responses=_errors(400, 401, 404, 408, 413, 422, 500, 503))
async def post_feedback(body: FeedbackRequest, service: Service, batcher: Batcher,
                        feedback: Feedback) -> dict[str, Any]:
    """Record the chunk that should have been found for a query (one JSONL line, for tuning)."""
    validate_query(body.query)
    if feedback is None:
        raise FunnelError("feedback is not enabled on this server")
    scheme = service.collection.spec.point_ids
    points = [chunk_id(body.doc_id, body.chunk, scheme, g) for g in (0, 1)]  # 1: last written by an upsert
    loop = asyncio.get_running_loop()
    found = await loop.run_in_executor(batcher.executor, service.collection.payloads, points)
    point = next((p for p in points if p in found), points[0])
    if point not in found:
        raise ChunkNotFoundError(
            f"no chunk {body.chunk} of document {body.doc_id[:80]!r} in collection {service.name!r}"
        )
    line = await loop.run_in_executor(None, feedback.append, {
        "collection": service.name, "query": body.query, "doc_id": body.doc_id, "chunk": body.chunk,
        "chunk_id": point, "note": body.note,
    })
    return {"recorded": True, "time": line["time"], "chunk_id": point}

"""The service's routes: ``POST /search`` (and ``POST /collections/{name}/search``), ``GET /collections``,
``GET /collections/{name}``, ``GET /healthz``, ``POST /feedback``.

Each handler is a plain function on :data:`router`; what it serves (the :class:`ServedCollections`,
the :class:`MicroBatcher`, the feedback files) comes from ``app.state`` through a dependency, set
up by :func:`retriever.service.app.create_app`. A server of one collection answers requests that
name none; a server of several wants the collection named (400 otherwise). A request is checked once: its body by the models
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
from retriever.errors import (
    BadInputError,
    ChunkNotFoundError,
    DamagedCalibrationError,
    FunnelError,
)
from retriever.ingest.chunking import chunk_id
from retriever.query.describe import describe_search
from retriever.query.result import Depth
from retriever.query.spec import Hit
from retriever.query.validation import validate_queries, validate_query
from retriever.service.batcher import MicroBatcher
from retriever.service.feedback import FeedbackLog
from retriever.service.models import (
    BatchingInfo,
    CollectionHealth,
    CollectionListResponse,
    CollectionResponse,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    SearchRequest,
    SearchResponse,
)
from retriever.service.security import API_KEY_HEADER
from retriever.service.state import ServedCollections, ServiceState

_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                        description="required when the server runs with --api-key / FUNNEL_API_KEY")


def _documented_key(_: str | None = Security(_api_key)) -> None:
    """Declares the API key in the OpenAPI spec; :class:`~retriever.service.app.ApiKeyGuard` enforces it."""


def get_service(request: Request) -> ServedCollections:
    """The collections (and, once loaded, their retrievers) this app serves."""
    return request.app.state.service


def get_batcher(request: Request) -> MicroBatcher:
    """The app's micro-batcher (and its search thread)."""
    return request.app.state.batcher


def get_feedback(request: Request) -> dict[str, FeedbackLog]:
    """The feedback file of each served collection (none: feedback is not enabled)."""
    return request.app.state.feedback


Service = Annotated[ServedCollections, Depends(get_service)]
Batcher = Annotated[MicroBatcher, Depends(get_batcher)]
Feedback = Annotated[dict[str, FeedbackLog], Depends(get_feedback)]

PROTECTED = [Depends(_documented_key)]
router = APIRouter()


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorResponse} for s in statuses}


def _check_collection(served: ServedCollections, name: str | None) -> ServiceState:
    """The served collection ``name`` (``None``: the only one), else 404 (400 when several are served)."""
    return served.get(name)


def _hit_dict(hit: Hit) -> dict[str, Any]:
    return {"id": hit.id, "doc_id": hit.doc_id, "chunk": hit.chunk, "score": hit.score, "text": hit.text,
            "title": hit.title, "metadata": hit.metadata}


def _depth(hits: list[Hit]) -> dict[str, int]:
    depth = getattr(hits, "depth", None)  # every Retriever result has one
    return depth.to_dict() if isinstance(depth, Depth) else {"passes": 1, "stages": 0, "candidates": 0}


@router.post("/search", response_model=SearchResponse, dependencies=PROTECTED,
             responses=_errors(400, 401, 404, 408, 409, 413, 422, 500, 503))
async def search(body: SearchRequest, service: Service, batcher: Batcher) -> JSONResponse:
    """Funnel-search one query or a batch; optionally exact, filtered by payload, without texts. A server of
    several collections wants `collection` (or POST /collections/{name}/search)."""
    return await _search(body, service.get(body.collection), batcher)


@router.post("/collections/{name}/search", response_model=SearchResponse, dependencies=PROTECTED,
             responses=_errors(400, 401, 404, 408, 409, 413, 422, 500, 503))
async def collection_search(name: str, body: SearchRequest, service: Service, batcher: Batcher) -> JSONResponse:
    """`POST /search` on collection `name` (a `collection` in the body, if any, must be `name`)."""
    state = service.get(name)
    if body.collection is not None and body.collection != name:
        raise BadInputError(f"the body names collection {body.collection[:64]!r}, the path {name!r}: "
                            "leave `collection` out or make them agree")
    return await _search(body, state, batcher)


async def _search(body: SearchRequest, state: ServiceState, batcher: MicroBatcher) -> JSONResponse:
    start = time.perf_counter()
    retriever = state.ready()
    texts = validate_queries(body.texts)
    spec = retriever.query_spec(body.k, body.plan, body.exact, body.with_text, body.filter, body.adaptive,
                                body.mode, body.fusion)
    results = await batcher.search(texts, [spec] * len(texts), route=state.name)
    # Built as plain dicts and returned as a JSONResponse: the hot path skips re-validating the
    # response model (its shape is the documented SearchResponse, checked by the tests).
    return JSONResponse({
        "collection": state.name,
        **describe_search(spec, state.collection.spec.top_dim).fields(),
        "k": body.k,
        "results": [{"query": q, "hits": [_hit_dict(h) for h in hits], "depth": _depth(hits)}
                    for q, hits in zip(texts, results)],
        "took_ms": round((time.perf_counter() - start) * 1000, 3),
        "calibration_warning": calibration_warning(state.collection),
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
        "status": state.status, "calibration": _stored_calibration(collection),
    }


def _stored_calibration(collection: Any) -> dict[str, Any] | None:
    """The calibration record as stored, or ``None`` when there is none or it is not one (then
    ``calibration_warning`` says what is wrong with it)."""
    try:
        return collection.calibration()
    except DamagedCalibrationError:
        return None


@router.get("/collections", response_model=CollectionListResponse, dependencies=PROTECTED,
            responses=_errors(401))
async def list_collections(service: Service, batcher: Batcher) -> dict[str, Any]:
    """The served collections with their point counts, models and load status."""
    def rows() -> list[dict[str, Any]]:
        return [{"name": s.name, "points": s.collection.count(), "model": s.collection.spec.model,
                 "dims": list(s.collection.spec.dims), "lexical": s.collection.spec.lexical, "status": s.status}
                for s in service]

    return {"collections": await asyncio.get_running_loop().run_in_executor(batcher.executor, rows)}


@router.get("/collections/{name}", response_model=CollectionResponse, dependencies=PROTECTED,
            responses=_errors(401, 404))
async def collection(name: str, service: Service, batcher: Batcher) -> dict[str, Any]:
    """Points, dims, model, default plan and calibration of a served collection."""
    state = service.get(name)
    return await asyncio.get_running_loop().run_in_executor(batcher.executor, _collection_body, state)


@router.get("/healthz", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def healthz(service: Service, batcher: Batcher) -> Any:
    """200 when every served collection and its model are loaded; 503 while loading (or after a failed load)."""
    stats = batcher.stats
    single = service.single
    failed = [s for s in service if s.error is not None]
    body = HealthResponse(
        status=service.status, collection=single.name if single else None,
        model=single.collection.spec.model if single else None,
        message="; ".join(f"{s.name}: {s.error}" if single is None else str(s.error) for s in failed) or None,
        collections=[CollectionHealth(name=s.name, status=s.status, model=s.collection.spec.model,
                                      message=str(s.error) if s.error is not None else None) for s in service],
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
    state = service.get(body.collection)
    log = feedback.get(state.name)
    if log is None:
        raise FunnelError("feedback is not enabled on this server")
    scheme = state.collection.spec.point_ids
    points = [chunk_id(body.doc_id, body.chunk, scheme, g) for g in (0, 1)]  # 1: last written by an upsert
    loop = asyncio.get_running_loop()
    found = await loop.run_in_executor(batcher.executor, state.collection.payloads, points)
    point = next((p for p in points if p in found), points[0])
    if point not in found:
        raise ChunkNotFoundError(
            f"no chunk {body.chunk} of document {body.doc_id[:80]!r} in collection {state.name!r}"
        )
    line = await loop.run_in_executor(None, log.append, {
        "collection": state.name, "query": body.query, "doc_id": body.doc_id, "chunk": body.chunk,
        "chunk_id": point, "note": body.note,
    })
    return {"recorded": True, "time": line["time"], "chunk_id": point}

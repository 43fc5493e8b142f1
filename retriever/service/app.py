"""The FastAPI app: ``POST /search``, ``GET /collections/{name}``, ``GET /healthz``, ``POST /feedback``.

Thin over :class:`~retriever.Retriever`: requests are validated (models), searched through the
:class:`~retriever.service.batcher.MicroBatcher` (one encode and one engine call per batch, off the event
loop) and answered as JSON; every error is ``{"error": {"type", "message"}}`` (see ``errors``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.types import ASGIApp, Receive, Scope, Send

from retriever.errors import ChunkNotFoundError, CollectionNotFoundError, FunnelError, error_type
from retriever.ingest.chunking import chunk_id
from retriever.query.adaptive import AdaptiveSpec
from retriever.query.result import Depth
from retriever.query.spec import Hit
from retriever.query.validation import validate_query
from retriever.retriever import adaptive_by_default, default_mode_for, default_plan_for, fusion_for
from retriever.service.batcher import MicroBatcher
from retriever.service.errors import error_response, install_error_handlers
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
from retriever.service.security import API_KEY_HEADER, BodySizeLimit, InternalErrors, check_api_key
from retriever.service.state import ServiceConfig, ServiceState

OPEN_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                        description="required when the server runs with --api-key / FUNNEL_API_KEY")


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorResponse} for s in statuses}


def _documented_key(_: str | None = Security(_api_key)) -> None:
    """Declares the API key in the OpenAPI spec; :class:`ApiKeyGuard` enforces it."""


class ApiKeyGuard:
    """ASGI middleware: every path but the open ones needs the key (checked before the body is read)."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.api_key is not None and scope["type"] == "http" and scope.get("path") not in OPEN_PATHS:
            header = API_KEY_HEADER.lower().encode()
            given = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == header), None)
            try:
                check_api_key(self.api_key, given)
            except FunnelError as exc:
                response = error_response(exc.http_status, error_type(exc), str(exc), {"WWW-Authenticate": "ApiKey"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _service(request: Request) -> ServiceState:
    return request.app.state.service


def _batcher(request: Request) -> MicroBatcher:
    return request.app.state.batcher


def _hit_dict(hit: Hit) -> dict[str, Any]:
    return {"id": hit.id, "doc_id": hit.doc_id, "chunk": hit.chunk, "score": hit.score, "text": hit.text,
            "title": hit.title, "metadata": hit.metadata}


def _depth(hits: list[Hit]) -> dict[str, int]:
    depth = getattr(hits, "depth", None)  # every Retriever result has one
    return depth.to_dict() if isinstance(depth, Depth) else {"passes": 1, "stages": 0, "candidates": 0}


def _check_collection(state: ServiceState, name: str | None) -> None:
    if name is not None and name != state.name:
        raise CollectionNotFoundError(f"no collection {name[:64]!r} here: this server serves {state.name!r}")


def _package_version() -> str:
    try:
        return version("funnel")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def create_app(config: ServiceConfig, state: ServiceState | None = None) -> FastAPI:
    """The service for ``state``'s collection (``state=None`` only to render the OpenAPI spec)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher: MicroBatcher = app.state.batcher
        await batcher.start()
        if state is not None and state.retriever is None and state.error is None:
            state.start_loading(batcher.executor)
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="funnel",
        version=_package_version(),
        summary="Matryoshka funnel search over one collection, for RAG applications.",
        description="Errors are JSON `{\"error\": {\"type\": ..., \"message\": ...}}`: 4xx for the caller's "
        "mistakes, 503 while the model loads. Send the API key in `X-API-Key` when the server has one.",
        lifespan=lifespan,
    )
    app.state.service = state
    app.state.config = config

    def _search_fn(queries, specs):  # noqa: ANN001, ANN202 - MicroBatcher's SearchFn
        assert state is not None
        return state.ready().search_each(queries, specs)

    app.state.batcher = MicroBatcher(_search_fn, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms)
    feedback = FeedbackLog(config.feedback_path) if config.feedback_path is not None else None
    install_error_handlers(app)
    app.add_middleware(ApiKeyGuard, api_key=config.api_key)
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes, read_timeout=config.read_timeout)
    app.add_middleware(InternalErrors)  # outermost: a 500 in the JSON shape that keeps the connection open
    protected = [Depends(_documented_key)]

    @app.post("/search", response_model=SearchResponse, dependencies=protected,
              responses=_errors(400, 401, 404, 408, 409, 413, 422, 500, 503))
    async def search(body: SearchRequest, request: Request) -> JSONResponse:
        """Funnel-search one query or a batch; optionally exact, filtered by payload, without texts."""
        start = time.perf_counter()
        service = _service(request)
        _check_collection(service, body.collection)
        retriever = service.ready()
        texts = body.texts
        for text in texts:
            validate_query(text)
        spec = retriever.query_spec(body.k, body.plan, body.exact, body.with_text, body.filter, body.adaptive,
                                    body.mode, body.fusion)
        results = await _batcher(request).search(texts, [spec] * len(texts))
        # Built as plain dicts and returned as a JSONResponse: the hot path skips re-validating the
        # response model (its shape is the documented SearchResponse, checked by the tests).
        return JSONResponse({
            "collection": service.name,
            "plan": None if spec.mode == "lexical" else "exact" if spec.plan is None else str(spec.plan),
            "adaptive": isinstance(spec, AdaptiveSpec),
            "mode": spec.mode,
            "fusion": str(spec.fusion) if spec.mode == "hybrid" and spec.fusion is not None else None,
            "k": body.k,
            "results": [{"query": q, "hits": [_hit_dict(h) for h in hits], "depth": _depth(hits)}
                        for q, hits in zip(texts, results)],
            "took_ms": round((time.perf_counter() - start) * 1000, 3),
        })

    @app.get("/collections/{name}", response_model=CollectionResponse, dependencies=protected,
             responses=_errors(401, 404))
    async def collection(name: str, request: Request) -> dict[str, Any]:
        """Points, dims, model and default plan of the served collection."""
        service = _service(request)
        _check_collection(service, name)
        info, plan, adaptive, mode, fusion = await asyncio.get_running_loop().run_in_executor(
            _batcher(request).executor,
            lambda: (service.collection.info(), default_plan_for(service.collection, 10),
                     adaptive_by_default(service.collection), default_mode_for(service.collection),
                     fusion_for(service.collection, None)),
        )
        spec = info.spec
        return {
            "name": spec.name, "points": info.points, "dims": list(spec.dims), "model": spec.model,
            "model_fingerprint": spec.model_fingerprint, "model_dim": spec.model_dim,
            "chunk_size": spec.chunk_size, "chunk_overlap": spec.chunk_overlap, "engine": spec.engine,
            "default_plan": str(plan), "adaptive_default": adaptive, "disk_bytes": info.disk_bytes,
            "lexical": spec.lexical, "lexical_analyzer": spec.lexical_analyzer if spec.lexical else None,
            "default_mode": mode, "default_fusion": str(fusion) if spec.lexical else None,
        }

    @app.get("/healthz", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
    async def healthz(request: Request) -> Any:
        """200 when the model and the collection are loaded; 503 while loading (or after a failed load)."""
        service = _service(request)
        batcher = _batcher(request)
        body = HealthResponse(
            status=service.status, collection=service.name, model=service.collection.spec.model,
            message=str(service.error) if service.error is not None else None,
            batching=BatchingInfo(max_batch=batcher.max_batch, max_wait_ms=batcher.max_wait * 1000,
                                  batches=batcher.stats.batches, queries=batcher.stats.queries,
                                  largest_batch=batcher.stats.largest),
        )
        if service.status != "ready":
            return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})
        return body

    @app.post("/feedback", response_model=FeedbackResponse, dependencies=protected,
              responses=_errors(400, 401, 404, 408, 413, 422, 500, 503))
    async def post_feedback(body: FeedbackRequest, request: Request) -> dict[str, Any]:
        """Record the chunk that should have been found for a query (one JSONL line, for tuning)."""
        service = _service(request)
        validate_query(body.query)
        if feedback is None:
            raise FunnelError("feedback is not enabled on this server")
        point = chunk_id(body.doc_id, body.chunk, service.collection.spec.point_ids)
        found = await asyncio.get_running_loop().run_in_executor(
            _batcher(request).executor, service.collection.payloads, [point]
        )
        if point not in found:
            raise ChunkNotFoundError(
                f"no chunk {body.chunk} of document {body.doc_id[:80]!r} in collection {service.name!r}"
            )
        line = await asyncio.get_running_loop().run_in_executor(None, feedback.append, {
            "collection": service.name, "query": body.query, "doc_id": body.doc_id, "chunk": body.chunk,
            "chunk_id": point, "note": body.note,
        })
        return {"recorded": True, "time": line["time"], "chunk_id": point}

    return app

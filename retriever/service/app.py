"""The FastAPI app: the routes of :mod:`retriever.service.routes` behind the service's middleware.

Thin over :class:`~retriever.Retriever`: requests are validated (models), searched through the
:class:`~retriever.service.batcher.MicroBatcher` (one encode and one engine call per batch, off the event
loop) and answered as JSON; every error is ``{"error": {"type", "message"}}`` (see ``errors``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from retriever.errors import FunnelError, error_type
from retriever.query.result import SearchResult
from retriever.query.spec import QuerySpec
from retriever.service.announce import withdraw
from retriever.service.batcher import MicroBatcher
from retriever.service.docs import ASSETS_URL, install_docs
from retriever.service.document_routes import router as document_router
from retriever.service.errors import error_response, install_error_handlers
from retriever.service.feedback import FeedbackLog
from retriever.service.routes import router
from retriever.service.security import API_KEY_HEADER, BodySizeLimit, InternalErrors, check_api_key
from retriever.service.state import ServedCollections, ServiceConfig, ServiceState

OPEN_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
OPEN_PREFIXES = (ASSETS_URL + "/",)  # the docs pages' own JavaScript and CSS
DESCRIPTION = ("Errors are JSON `{\"error\": {\"type\": ..., \"message\": ...}}`: 4xx for the caller's mistakes, "
               "503 while the model loads. Send the API key in `X-API-Key` when the server has one.")


class ApiKeyGuard:
    """ASGI middleware: every path but the open ones needs the key (checked before the body is read)."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path") or ""
        if (self.api_key is not None and scope["type"] == "http" and path not in OPEN_PATHS
                and not path.startswith(OPEN_PREFIXES)):
            header = API_KEY_HEADER.lower().encode()
            given = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == header), None)
            try:
                check_api_key(self.api_key, given)
            except FunnelError as exc:
                response = error_response(exc.http_status, error_type(exc), str(exc), {"WWW-Authenticate": "ApiKey"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _package_version() -> str:
    try:
        return version("funnel-retriever")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the batcher and the models' loads on its search thread; at shutdown, withdraw the server's
    announcement (before uvicorn re-raises a SIGTERM, which ends the process) and stop the batcher."""
    batcher: MicroBatcher = app.state.batcher
    served: ServedCollections | None = app.state.service
    await batcher.start()
    if served is not None:
        served.start_loading(batcher.executor)
    try:
        yield
    finally:
        withdraw(app.state.announcement)
        await batcher.stop()


def _no_collection(queries: Sequence[str], specs: Sequence[QuerySpec]) -> list[SearchResult]:
    raise RuntimeError("this app serves no collection (made only to render the OpenAPI spec)")


def _feedback_logs(config: ServiceConfig, served: ServedCollections | None) -> dict[str, FeedbackLog]:
    """Each served collection's feedback file: the one configured file, else ``feedback_dir/NAME.jsonl``."""
    if served is None:
        return {}
    if config.feedback_path is not None:
        shared = FeedbackLog(config.feedback_path)
        return {name: shared for name in served.names}
    if config.feedback_dir is not None:
        return {name: FeedbackLog(config.feedback_dir / f"{name}.jsonl") for name in served.names}
    return {}


def create_app(config: ServiceConfig, state: ServiceState | ServedCollections | None = None) -> FastAPI:
    """The service for ``state``'s collection or collections (``None`` only to render the OpenAPI spec)."""
    app = FastAPI(title="funnel", version=_package_version(),
                  summary="Matryoshka funnel search over one or more collections, for RAG applications.",
                  description=DESCRIPTION, lifespan=lifespan, docs_url=None, redoc_url=None)
    install_docs(app, config.docs_assets)  # served from local files, never a CDN
    served = ServedCollections([state]) if isinstance(state, ServiceState) else state
    app.state.service = served
    app.state.config = config
    app.state.announcement = None  # set by the runner once the server has announced itself
    app.state.batcher = MicroBatcher(_no_collection, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms,
                                     routes=served.search_of if served is not None else None)
    app.state.feedback = _feedback_logs(config, served)
    install_error_handlers(app)
    app.add_middleware(ApiKeyGuard, api_key=config.api_key)
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes, read_timeout=config.read_timeout)
    app.add_middleware(InternalErrors)  # outermost: a 500 in the JSON shape that keeps the connection open
    app.include_router(router)
    app.include_router(document_router)
    return app

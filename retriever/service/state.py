"""What the service holds: the open collection, and the model that loads in the background.

The collection is opened before the server starts (so a collection locked by another process
stops ``funnel serve`` at once); the model loads on a thread while the server already answers
``/healthz`` with 503, and every search with 503, until it is ready.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from retriever.encoding.embedder import Embedder
from retriever.errors import BadInputError, FunnelError, NotReadyError
from retriever.query.result import SearchResult
from retriever.query.spec import QuerySpec
from retriever.retriever import Retriever
from retriever.service.security import MAX_HEAD_BYTES, READ_TIMEOUT_S
from retriever.store.base import Collection

log = logging.getLogger("funnel.service")


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of one service: key, batching, feedback file, head and body size and read time limits."""

    api_key: str | None = None
    max_batch: int = 32
    max_wait_ms: float = 2.0
    feedback_path: Path | None = None
    max_body_bytes: int = 256 * 1024
    # seconds for a request's head, then its whole body, to arrive (None: no limit; see runner, security)
    read_timeout: float | None = READ_TIMEOUT_S
    max_head_bytes: int = MAX_HEAD_BYTES  # a request line and headers; above: 431, before the key is checked
    access_log: bool = False  # one line per request (uvicorn's access log, on standard output)
    # where /docs and /redoc load their JavaScript and CSS from (None: the fastapi-offline package's files
    # when it is installed, else those two pages say how to get them; never a CDN)
    docs_assets: Path | None = None

    def __post_init__(self) -> None:
        # An empty key is not "no key": it would be a key anyone can send (or, in a shell, one that
        # was meant to be set and was not). None is no key; the server then says so when it starts.
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key.strip()):
            raise BadInputError("the API key is empty: give a key, or None for a server without one")


class ServiceState:
    """The collection and, once loaded, the :class:`Retriever` over it."""

    def __init__(self, collection: Collection, load_embedder: Callable[[], Embedder],
                 on_failure: Callable[[FunnelError], None] | None = None) -> None:
        self.collection = collection
        self.load_embedder = load_embedder
        self.on_failure = on_failure
        self.retriever: Retriever | None = None
        self.error: FunnelError | None = None
        self._done = threading.Event()

    @property
    def name(self) -> str:
        return self.collection.spec.name

    @property
    def status(self) -> Literal["ready", "loading", "failed"]:
        if self.retriever is not None:
            return "ready"
        return "failed" if self.error is not None else "loading"

    def start_loading(self, executor: Executor) -> None:
        """Load the model on ``executor`` — the search thread itself, so that all torch work (and its
        OpenMP thread team) stays on one thread."""
        executor.submit(self._load)

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Wait until the load finished (or failed); False on timeout."""
        return self._done.wait(timeout)

    def _load(self) -> None:
        try:
            self._try_load()
        finally:
            self._done.set()

    def _try_load(self) -> None:
        try:
            retriever = Retriever(self.collection, self.load_embedder())
            retriever.search("warm-up", k=1, with_text=False)  # the first encode is slow: pay it before ready
            self.retriever = retriever
            log.info("collection %r ready", self.name)
        except FunnelError as exc:
            self.retriever = None
            self.error = exc
            log.error("cannot load the model, so every search answers 503 until a restart: %s", exc)
            if self.on_failure is not None:
                self.on_failure(exc)
        except Exception as exc:  # noqa: BLE001 - an unexpected loader failure still gets a message
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.error = FunnelError(f"cannot load the model: {first}")
            log.exception("cannot load the model, so every search answers 503 until a restart")
            if self.on_failure is not None:
                self.on_failure(self.error)

    def ready(self) -> Retriever:
        """The retriever, or :class:`NotReadyError` (503) while loading or after a failed load."""
        if self.retriever is not None:
            return self.retriever
        if self.error is not None:
            raise NotReadyError(f"the service could not load its model: {self.error}")
        raise NotReadyError(f"loading the model for collection {self.name!r}; retry in a moment")

    def search_each(self, queries: Sequence[str], specs: Sequence[QuerySpec]) -> list[SearchResult]:
        """The batcher's search: :meth:`Retriever.search_each` on the loaded retriever (503 until then)."""
        return self.ready().search_each(queries, specs)

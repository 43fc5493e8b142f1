"""What the service holds: the open collections, and the models that load in the background.

The collections are opened before the server starts (so a collection locked by another process
stops ``funnel serve`` at once); each one's model loads on the search thread while the server
already answers ``/healthz`` with 503, and every search of that collection with 503, until it is
ready. Collections of the same model and encoder share one embedder (:class:`EmbedderCache`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from retriever.encoding.embedder import Embedder
from retriever.errors import BadInputError, CollectionNotFoundError, FunnelError, NotReadyError
from retriever.interrupts import quiet
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
    feedback_path: Path | None = None  # one file for every served collection (each line names its collection)
    feedback_dir: Path | None = None  # else one file per collection here, NAME.jsonl (both None: no feedback)
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
            with quiet():  # a Ctrl-C to funnel serve during the load ends it at once (see retriever.interrupts)
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


class ServedCollections:
    """The collections one server serves, by name, in the order given (one or more)."""

    def __init__(self, states: Sequence[ServiceState]) -> None:
        if not states:
            raise BadInputError("a server serves at least one collection")
        self.states = {state.name: state for state in states}
        if len(self.states) != len(states):
            raise BadInputError("a collection is named twice: serve each collection once")

    @property
    def names(self) -> list[str]:
        return list(self.states)

    @property
    def single(self) -> ServiceState | None:
        """The served collection when there is only one, else ``None``."""
        return next(iter(self.states.values())) if len(self.states) == 1 else None

    def __iter__(self) -> Iterator[ServiceState]:
        return iter(self.states.values())

    def __len__(self) -> int:
        return len(self.states)

    def get(self, name: str | None) -> ServiceState:
        """Collection ``name``; ``None`` names the only one (a server of several wants a name: 400)."""
        if name is None:
            if self.single is not None:
                return self.single
            raise BadInputError(f"this server serves {len(self.states)} collections ({', '.join(self.states)}): "
                                "name one (`collection` in the body, or POST /collections/{name}/search)")
        state = self.states.get(name)
        if state is None:
            served = ", ".join(repr(n) for n in self.states)
            raise CollectionNotFoundError(f"no collection {name[:64]!r} here: this server serves {served}")
        return state

    @property
    def status(self) -> Literal["ready", "loading", "failed"]:
        """``ready`` when every collection is; ``failed`` when one failed; else ``loading``."""
        statuses = {state.status for state in self}
        if statuses == {"ready"}:
            return "ready"
        return "failed" if "failed" in statuses else "loading"

    def start_loading(self, executor: Executor) -> None:
        """Queue every collection's model load on the search thread, in order."""
        for state in self:
            if state.retriever is None and state.error is None:
                state.start_loading(executor)

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Wait until every load finished (or failed); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return all(state.wait_loaded(None if deadline is None else max(0.0, deadline - time.monotonic()))
                   for state in self)

    def search_of(self, name: str) -> Callable[[Sequence[str], Sequence[QuerySpec]], list[SearchResult]]:
        """The batcher's search for collection ``name``."""
        return self.get(name).search_each


class EmbedderCache:
    """One embedder per (model, query encoder, device): collections built with the same model share it.

    Used from the search thread only (every load runs there), so it needs no lock.
    """

    def __init__(self, model: str | None, device: str | None, encoder: str | None,
                 open_embedder: Callable[[Collection, str | None, str | None, str | None], Embedder]) -> None:
        self.model, self.device, self.encoder = model, device, encoder
        self._open = open_embedder
        self._loaded: dict[tuple[str, str | None, str | None], Embedder] = {}

    def loader(self, collection: Collection) -> Callable[[], Embedder]:
        """The ``load_embedder`` of ``collection``'s :class:`ServiceState`."""
        def load() -> Embedder:
            from retriever.calibration.defaults import query_encoder_for

            key = (self.model or collection.spec.model, query_encoder_for(collection, self.encoder, self.device),
                   self.device)
            if key not in self._loaded:
                self._loaded[key] = self._open(collection, self.model, self.device, self.encoder)
            else:
                log.info("collection %r shares the model already loaded for another collection", collection.spec.name)
            return self._loaded[key]
        return load

    @property
    def loaded(self) -> int:
        """Embedders loaded so far."""
        return len(self._loaded)

"""A connection to a Qdrant server (or qdrant-client's local mode): bounded retries with backoff on
transient failures, timeouts, and engine errors turned into funnel's domain errors.

Transient: the server unreachable, a timeout, HTTP 429/502/503/504, gRPC UNAVAILABLE /
DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED. Every call funnel makes is safe to repeat (upserts and
deletes by id or filter are idempotent). Retries stop after :data:`ATTEMPTS` tries or
:data:`RETRY_BUDGET_S` seconds, whichever comes first, so an unreachable URL fails in seconds.

Local mode (``path:DIR``) holds a lock on its directory for as long as a client is open, so one
client per directory is shared within a process (reference-counted). ``:memory:`` is one in-memory
store per process, shared the same way: it lives while any catalog or collection on it is open.

``timeout`` is a wall-clock bound on each try, not only on each read: qdrant-client's REST client
(httpx) times out per read, so a server that sends its headers and then one byte a second would
hold a call forever. Over REST, funnel hands qdrant-client (through its documented httpx keyword
arguments) a transport whose sockets get, for every connect, read and write, at most the time left
before the try's deadline (:mod:`retriever.net.deadline`). gRPC calls
already have deadlines. When an HTTP proxy is set in the environment the default transport (which
honours it) is kept, and the bound is per read again.
"""

from __future__ import annotations

import atexit
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from retriever.errors import (
    CollectionLockedError,
    CollectionNotFoundError,
    FunnelError,
    ServerAuthError,
    ServerUnavailableError,
    ServerVersionError,
    StoreError,
)
from retriever.net.deadline import deadline_transport, proxied, within

T = TypeVar("T")
ATTEMPTS = 4
BACKOFF_S = 0.25  # doubled after every failed try
RETRY_BUDGET_S = 15.0
MIN_SERVER_VERSION = (1, 16, 0)  # the Query API (1.10) and collection metadata (1.16)
TRANSIENT_HTTP = {429, 502, 503, 504}
TRANSIENT_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"}

_local_lock = threading.Lock()
_local_clients: dict[str, list[Any]] = {}  # local-mode location → [client, users]


@atexit.register
def _close_local_clients() -> None:
    """Close local-mode clients still open at exit (their own ``__del__`` fails during shutdown)."""
    with _local_lock:
        for client, _users in _local_clients.values():
            try:
                client.close()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
        _local_clients.clear()


class NotFound(Exception):
    """The server says the collection does not exist (the caller words the message)."""


def _grpc_code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            return str(getattr(code(), "name", code()))
        except Exception:  # noqa: BLE001 - not a gRPC error after all
            return None
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class ServerConnection:
    """One ``QdrantClient`` and the policy around it; ``location`` names it in messages."""

    def __init__(self, url: str, api_key: str | None = None, prefer_grpc: bool = False, timeout: float = 10.0) -> None:
        self.url = url
        self.local = url == ":memory:" or url.startswith("path:")
        self.location = url
        self.timeout = timeout
        self._closed = False
        self._key: str | None = None  # the local-mode store: a resolved directory, or ":memory:"
        if self.local:
            self._key = str(Path(url[len("path:"):]).expanduser().resolve()) if url.startswith("path:") else url
            self.client = self._open_local()
        else:
            from qdrant_client import QdrantClient

            with warnings.catch_warnings():  # "API key over http": the README says so; a compose network is http
                warnings.simplefilter("ignore", UserWarning)
                rest: dict[str, Any] = {} if proxied() else {"transport": deadline_transport()}  # httpx.Client's arguments
                self.client = QdrantClient(url=url, api_key=api_key, prefer_grpc=prefer_grpc,
                                           timeout=max(1, round(timeout)), check_compatibility=False, **rest)

    def _open_local(self) -> Any:
        from qdrant_client import QdrantClient

        key = self._key
        assert key is not None
        with _local_lock:
            entry = _local_clients.get(key)
            if entry is None:
                if key != ":memory:":
                    Path(key).mkdir(parents=True, exist_ok=True)
                try:
                    client = QdrantClient(location=":memory:") if key == ":memory:" else QdrantClient(path=key)
                except RuntimeError as exc:  # another process holds the directory
                    raise CollectionLockedError(
                        f"Qdrant local-mode storage {key} is in use by another process; wait for it to "
                        "finish or stop it (a Qdrant server allows many clients)") from exc
                entry = _local_clients[key] = [client, 0]
            entry[1] += 1
            return entry[0]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._key is None:
            self.client.close()
            return
        with _local_lock:
            entry = _local_clients.get(self._key)
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    del _local_clients[self._key]
                    entry[0].close()

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with retries; ``what`` says what failed in the error line.

        Raises :class:`NotFound` for a missing collection, else a :class:`FunnelError`.
        """
        if self._closed:
            raise StoreError(f"the connection to {self.location} is closed")
        deadline = time.monotonic() + RETRY_BUDGET_S
        delay = BACKOFF_S
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with within(None if self.local else self.timeout), warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # local mode: it ignores indexes and search params
                    return fn(*args, **kwargs)
            except FunnelError:
                raise
            except Exception as exc:  # noqa: BLE001 - every client error is classified below
                transient, error = self._classify(exc, what)
                if not transient or attempt == ATTEMPTS or time.monotonic() + delay > deadline:
                    raise error from exc
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _classify(self, exc: Exception, what: str) -> tuple[bool, Exception]:
        """(whether to retry, the error to raise if not)."""
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        where = f"Qdrant at {self.location}"
        if isinstance(exc, UnexpectedResponse):
            status = exc.status_code or 0
            detail = exc.content.decode("utf-8", "replace")[:300] if exc.content else exc.reason_phrase
            if status in (401, 403):
                return False, ServerAuthError(f"{where} refused the API key ({status}) while trying to {what}: "
                                              "check --qdrant-api-key / QDRANT_API_KEY")
            if status == 404:
                return False, NotFound(detail)
            if status in TRANSIENT_HTTP:
                return True, ServerUnavailableError(f"{where} keeps failing ({status}) to {what}; "
                                                    f"gave up after {ATTEMPTS} tries: {detail}")
            return False, StoreError(f"{where} refused to {what} ({status}): {detail}")
        code = _grpc_code(exc)
        if code is not None:
            if code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
                return False, ServerAuthError(f"{where} refused the API key ({code}) while trying to {what}: "
                                              "check --qdrant-api-key / QDRANT_API_KEY")
            if code == "NOT_FOUND":
                return False, NotFound(_first_line(exc))
            if code in TRANSIENT_GRPC:
                return True, ServerUnavailableError(f"cannot reach {where} to {what} ({code}); gave up after "
                                                    f"{ATTEMPTS} tries: is the server running and the URL right?")
            details = getattr(exc, "details", None)
            return False, StoreError(f"{where} refused to {what} ({code}): {details() if callable(details) else exc}")
        if isinstance(exc, (ResponseHandlingException, ConnectionError, TimeoutError)):
            return True, ServerUnavailableError(f"cannot reach {where} to {what} ({_first_line(exc)}); gave up "
                                                f"after {ATTEMPTS} tries: is the server running and the URL right?")
        if self.local and isinstance(exc, ValueError) and "not found" in str(exc):
            return False, NotFound(str(exc))
        return False, StoreError(f"{where}: cannot {what}: {_first_line(exc)}")

    def check_version(self) -> None:
        """Raise :class:`ServerVersionError` for a server older than :data:`MIN_SERVER_VERSION`."""
        if self.local:
            return
        info = self.call("read the server version", self.client.info)
        version = str(getattr(info, "version", "") or "")
        try:
            parts = tuple(int(p) for p in version.split("-")[0].split(".")[:3])
        except ValueError:
            return  # a development build: let the calls themselves tell
        if parts < MIN_SERVER_VERSION:
            need = ".".join(map(str, MIN_SERVER_VERSION))
            raise ServerVersionError(f"Qdrant at {self.location} is version {version}; funnel needs {need} or newer "
                                     "(the Query API's nested prefetch and collection metadata)")


def not_found(name: str, location: str, known: list[str]) -> CollectionNotFoundError:
    return CollectionNotFoundError(f"no collection {name!r} in {location} (collections: {', '.join(known) or 'none yet'})")

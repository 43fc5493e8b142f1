"""A wall-clock deadline for synchronous httpx requests, from connecting to the answer's last byte.

httpx times out per network step: a server that sends its status line and headers one byte a second
keeps every read on time and holds the request forever. :func:`deadline_transport` is an httpx
transport whose sockets get, for every connect, read and write, at most the time left before the
deadline that :func:`within` set for the current request (an httpcore network backend under
httpcore's own connection pool, so headers, bodies and TLS are all bounded). Its errors are httpx's
(``httpx.ReadTimeout`` once the time is up, :func:`hit_deadline` true of it), as with httpx's own
transport.

It does not honour HTTP proxies from the environment (httpx's default transport does): callers keep
httpx's transport when :func:`proxied` is true, and the bound is per read again there.
"""

from __future__ import annotations

import contextvars
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpcore
import httpx

T = TypeVar("T")
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("funnel_http_deadline", default=None)
DEADLINE_MESSAGE = "no whole answer within the deadline"
SLACK_S = 0.05  # a socket timeout cut by less than this is the step's own timeout, not the deadline's


@contextmanager
def within(seconds: float | None) -> Iterator[None]:
    """Requests made through a :func:`deadline_transport` in this block (this thread or task) end within
    ``seconds`` from now (``None``: no deadline, httpx's per-step timeouts only)."""
    token = _deadline.set(None if seconds is None else time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left(timeout: float | None) -> float | None:
    """``timeout`` for one socket operation, cut to the time left before the current deadline."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout(DEADLINE_MESSAGE)
    return left if timeout is None else min(timeout, left)


def hit_deadline(exc: BaseException) -> bool:
    """Whether a timeout came from the deadline (a socket operation cut to it), not a step's own timeout."""
    return DEADLINE_MESSAGE in str(exc)


def _bounded(step: Callable[[float | None], T], timeout: float | None) -> T:
    """``step(timeout cut to the deadline)``; its timeout is reported as the deadline's when the cut shortened it."""
    cut = time_left(timeout)
    try:
        return step(cut)
    except httpcore.TimeoutException:
        if cut is not None and (timeout is None or cut < timeout - SLACK_S):
            raise httpcore.ReadTimeout(DEADLINE_MESSAGE) from None
        raise


def proxied() -> bool:
    """Whether the environment sets an HTTP(S) proxy (which :func:`deadline_transport` would bypass)."""
    return any(k in ("http", "https", "all") for k in urllib.request.getproxies_environment())


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _bounded(lambda t: self._inner.read(max_bytes, t), timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        _bounded(lambda t: self._inner.write(buffer, t), timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _Stream(_bounded(lambda t: self._inner.start_tls(ssl_context, server_hostname, t), timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        return _Stream(_bounded(lambda t: self._inner.connect_tcp(host, port, t, local_address, socket_options), timeout))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        return _Stream(_bounded(lambda t: self._inner.connect_unix_socket(path, t, socket_options), timeout))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _httpx_error(exc: Exception, request: httpx.Request) -> httpx.TransportError:
    """httpcore's error as httpx's of the same name (what httpx's own transport raises)."""
    for cls in type(exc).__mro__:
        mapped = getattr(httpx, cls.__name__, None)
        if isinstance(mapped, type) and issubclass(mapped, httpx.TransportError):
            return mapped(str(exc), request=request)
    return httpx.TransportError(str(exc), request=request)


_ERRORS = (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError, httpcore.PoolTimeout,
           httpcore.UnsupportedProtocol)


class _Body(httpx.SyncByteStream):
    def __init__(self, inner: Any, request: httpx.Request) -> None:
        self._inner = inner
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except _ERRORS as exc:
            raise _httpx_error(exc, self._request) from exc

    def close(self) -> None:
        self._inner.close()


class DeadlineTransport(httpx.BaseTransport):
    """httpx's transport (a connection pool, TLS, keep-alive) on sockets bounded by :func:`within`."""

    def __init__(self, max_connections: int = 100, max_keepalive_connections: int = 20) -> None:
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(), network_backend=_Backend(),
                                             max_connections=max_connections,
                                             max_keepalive_connections=max_keepalive_connections)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                           target=request.url.raw_path)
        try:
            answer = self._pool.handle_request(httpcore.Request(
                method=request.method, url=url, headers=request.headers.raw, content=request.stream,
                extensions=request.extensions))
        except _ERRORS as exc:
            raise _httpx_error(exc, request) from exc
        return httpx.Response(status_code=answer.status, headers=answer.headers, stream=_Body(answer.stream, request),
                              extensions=answer.extensions)

    def close(self) -> None:
        self._pool.close()


def deadline_transport() -> DeadlineTransport:
    """A new :class:`DeadlineTransport`."""
    return DeadlineTransport()

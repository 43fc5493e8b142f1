"""Request guards: the API key (constant-time compare), the request body's size and read time limits."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sys

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from retriever.errors import UnauthorizedError

log = logging.getLogger("funnel.service")

API_KEY_HEADER = "X-API-Key"
MAX_BODY_BYTES = 256 * 1024
MAX_HEAD_BYTES = 64 * 1024  # a request line and headers (see runner.guarded_protocol)
READ_TIMEOUT_S = 10.0


def check_api_key(expected: str | None, given: str | None) -> None:
    """Raise :class:`UnauthorizedError` unless no key is configured or ``given`` equals it."""
    if expected is None:
        return
    if given is None:
        raise UnauthorizedError(f"missing API key: send it in the {API_KEY_HEADER} header")
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8")):
        raise UnauthorizedError("wrong API key")


class _TooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so the framework answers it as a 413, not a parse error."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body above {max_bytes:,} bytes")


class _ReadTimeout(HTTPException):
    """Raised from ``receive`` when the body is late: a 408 that closes the connection."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"request body not received within {seconds:g} s", headers={"Connection": "close"})


if sys.version_info >= (3, 11):

    async def _receive_by(receive: Receive, deadline: float) -> Message:
        async with asyncio.timeout_at(deadline):  # a timer handle, no extra task (wait_for: a task per call)
            return await receive()

else:  # pragma: no cover - Python 3.10

    async def _receive_by(receive: Receive, deadline: float) -> Message:
        return await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))


class BodySizeLimit:
    """ASGI middleware: a request body above ``max_bytes`` gets 413 before it is read in full, and a
    body that has not fully arrived ``read_timeout`` seconds after the request started gets 408 and
    the connection is closed (uvicorn has no body timeout: a client that announces 100 bytes and
    sends 10 would otherwise hold the connection, and its request, open forever)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, read_timeout: float | None = READ_TIMEOUT_S) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = False
                if too_large:
                    await self._reject(send)
                    return
        seen = 0
        sent = _StartTracker(send)
        body_done = False
        loop = asyncio.get_running_loop()
        deadline = None if self.read_timeout is None else loop.time() + self.read_timeout

        async def limited_receive() -> Message:
            nonlocal seen, body_done
            if body_done or deadline is None:  # after the body: only a disconnect can come, wait for it freely
                message = await receive()
            else:
                try:
                    message = await _receive_by(receive, deadline)
                except asyncio.TimeoutError:
                    raise _ReadTimeout(self.read_timeout or 0.0) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        try:
            await self.app(scope, limited_receive, sent)
        except _TooLarge:
            if not sent.started:
                await self._reject(send)
        except _ReadTimeout as exc:
            if not sent.started:
                await _send_json(send, 408, "request_timeout", str(exc.detail), close=True)

    async def _reject(self, send: Send) -> None:
        await _send_json(send, 413, "payload_too_large", f"request body above {self.max_bytes:,} bytes", close=True)


class _StartTracker:
    """An ASGI ``send`` that passes every message on and remembers whether a response has started
    (after which a middleware can no longer answer with its own error response)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


async def _send_json(send: Send, status: int, type_: str, message: str, close: bool = False) -> None:
    """An error response in the service's JSON shape, straight on the ASGI ``send``."""
    body = json.dumps({"error": {"type": type_, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class InternalErrors:
    """ASGI middleware, outermost: an unexpected exception becomes a 500 in the JSON error shape, logged
    once with its traceback, and the keep-alive connection stays usable.

    (A handler for ``Exception`` registered on the app runs in Starlette's ``ServerErrorMiddleware``,
    which re-raises after sending the response; uvicorn then closes the connection, so every 500
    reset the client's keep-alive connection.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = _StartTracker(send)
        try:
            await self.app(scope, receive, sent)
        except Exception as exc:
            log.error("unexpected error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
            if sent.started:  # half a response is out: only closing the connection (uvicorn does) can end it
                raise
            await _send_json(send, 500, "internal", "internal error: the server log has the details")

"""Request guards: the API key (constant-time compare) and the request body size limit."""

from __future__ import annotations

import hmac
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import UnauthorizedError

API_KEY_HEADER = "X-API-Key"
MAX_BODY_BYTES = 256 * 1024


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


class BodySizeLimit:
    """ASGI middleware: a request body above ``max_bytes`` gets 413 before it is read in full."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

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
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps({"error": {"type": "payload_too_large",
                                     "message": f"request body above {self.max_bytes:,} bytes"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

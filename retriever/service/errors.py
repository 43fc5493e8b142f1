"""Every error as JSON ``{"error": {"type", "message"}}`` with a status that says what went wrong.

Domain errors carry their status (:attr:`FunnelError.http_status`); request validation is 422
(400 for a body that is not JSON); unknown routes 404, wrong methods 405, a late body 408; anything
unexpected is a 500 with a generic message (the traceback goes to the server log, never to the
client), sent by :class:`~retriever.service.security.InternalErrors`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from retriever.errors import FunnelError, NotReadyError, error_type

log = logging.getLogger("funnel.service")

# FastAPI's own 400 is a body it could not parse beyond JSON syntax (e.g. an integer over 4,300 digits).
_HTTP_TYPES = {400: "malformed_json", 404: "not_found", 408: "request_timeout", 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


def error_response(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape; text a request sent that is not valid Unicode is escaped, never a crash."""
    safe = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": {"type": type_, "message": safe}}, status_code=status, headers=headers)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def validation_message(exc: RequestValidationError) -> tuple[int, str, str]:
    """(status, type, message) for a validation failure: one line naming each bad field."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "malformed_json", "malformed JSON body: send one JSON object (Content-Type: application/json)"
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return 422, "validation", "missing JSON body"
    parts = []
    for e in errors[:5]:
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{_location(tuple(e.get('loc', ())))}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return 422, "validation", "; ".join(parts) + more


def unreadable_body_message(cause: BaseException | None) -> str:
    """What is wrong with a JSON body the parser gave up on (FastAPI's "error parsing the body" keeps
    the parser's exception as its cause)."""
    if isinstance(cause, RecursionError):
        return "the JSON body is nested too deeply to read"
    if isinstance(cause, UnicodeDecodeError):
        return f"the JSON body is not valid UTF-8 (at byte offset {cause.start:,})"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return "the JSON body holds a number too long to read (over 4,300 digits)"
    return "the JSON body could not be read" + (f" ({str(cause).splitlines()[0][:200]})" if cause and str(cause) else "")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the JSON shape."""

    @app.exception_handler(FunnelError)
    async def _funnel(_: Request, exc: FunnelError) -> JSONResponse:
        if exc.http_status >= 500 and not isinstance(exc, NotReadyError):  # not-ready: logged once, at load
            log.error("%s: %s", type(exc).__name__, exc)
        headers = {"WWW-Authenticate": "ApiKey"} if exc.http_status == 401 else None
        if exc.http_status == 503:
            headers = {"Retry-After": "1"}
        return error_response(exc.http_status, error_type(exc), str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, type_, message = validation_message(exc)
        return error_response(status, type_, message)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 400 and message == "There was an error parsing the body":
            message = unreadable_body_message(exc.__cause__)
        return error_response(exc.status_code, _HTTP_TYPES.get(exc.status_code, "http_error"), message,
                              getattr(exc, "headers", None))

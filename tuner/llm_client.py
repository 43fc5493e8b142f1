"""An OpenAI-compatible chat-completions client (vLLM, Ollama, llama.cpp's server, OpenAI).

``POST {base}/chat/completions`` with ``model``, ``messages``, ``temperature``, ``max_tokens`` and
``seed``. Connection errors, timeouts, HTTP 408/409/429 and 5xx are retried with exponential backoff
(plus jitter; a ``Retry-After`` header is honoured) up to ``retries`` times, then raise
:class:`~retriever.errors.LLMError`; any other HTTP error (a wrong model name, a bad key) fails at
once. A shared :class:`RateLimiter` spaces request starts; concurrency is the caller's semaphore.

The server is not trusted: its URL is checked before the first request (:func:`check_url`), each
request (connect, send, the whole answer) must finish within ``timeout_s`` of wall-clock time, not
only between two reads (a timeout counts as a failed try), an answer is read as a stream and refused
once it passes :data:`MAX_ANSWER_BYTES` (an error body is cut at :data:`MAX_ERROR_BYTES`), and JSON
nested too deeply to parse is "not the chat-completions format", never a ``RecursionError``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from retriever.errors import LLMError

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0
MAX_ANSWER_BYTES = 4 * 1024 * 1024  # one chat completion: a few hundred tokens are a few KiB
MAX_ERROR_BYTES = 64 * 1024  # an error body: only its first 200 characters are shown


class _TooLarge(Exception):
    """The answer passed :data:`MAX_ANSWER_BYTES`."""


class _TooDeep(ValueError):
    """JSON nested too deeply for the parser (its recursion limit)."""


def check_url(url: str) -> str:
    """Return ``url`` if it can name an OpenAI-compatible server, else raise :class:`LLMError`."""
    why = ""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        why = str(exc) or "it does not parse"
    else:
        if parsed.scheme not in ("http", "https"):
            why = f"the scheme is {parsed.scheme!r}" if parsed.scheme else "it has no http:// or https://"
        elif not parsed.host:
            why = "it has no host"
        elif parsed.port is not None and not 1 <= parsed.port <= 65535:
            why = f"port {parsed.port} is outside 1..65535"
    if why:
        raise LLMError(f"invalid LLM server URL {url!r}: {why}; use http(s)://HOST[:PORT][/v1]")
    return url


def chat_url(base: str) -> str:
    """``…/v1`` or a server root → the chat-completions endpoint (a full endpoint URL is kept)."""
    base = base.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat/completions"


class RateLimiter:
    """At most ``per_second`` request starts per second (``None`` or 0: no limit), shared by all tasks."""

    def __init__(self, per_second: float | None) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass(frozen=True)
class LLMSettings:
    """Where and how to ask: server URL, model, key, sampling, limits."""

    url: str
    model: str
    api_key: str | None = None
    temperature: float = 0.7
    max_tokens: int = 256
    timeout_s: float = 60.0
    retries: int = 4
    backoff_s: float = 1.0
    rate_limit: float | None = None  # requests per second


class ChatClient:
    """Sends chat requests with retries; use as an async context manager."""

    def __init__(self, settings: LLMSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.url = chat_url(check_url(settings.url))
        self.limiter = RateLimiter(settings.rate_limit)
        self.rng = rng or random.Random()
        self.retried = 0
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(settings.timeout_s))

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    def _backoff(self, attempt: int, response: httpx.Response | None) -> float:
        after = response.headers.get("retry-after") if response is not None else None
        if after is not None:
            try:
                return min(MAX_BACKOFF_S, max(0.0, float(after)))
            except ValueError:
                pass
        base = self.settings.backoff_s * 2**attempt
        return min(MAX_BACKOFF_S, base * (0.5 + self.rng.random()))

    async def complete(self, messages: list[dict[str, str]], seed: int | None = None) -> str:
        """The assistant's text for ``messages``; raises :class:`LLMError` when it cannot get one."""
        s = self.settings
        body: dict[str, Any] = {"model": s.model, "messages": messages, "temperature": s.temperature,
                                "max_tokens": s.max_tokens}
        if seed is not None:
            body["seed"] = seed
        why = ""
        for attempt in range(s.retries + 1):
            if attempt:
                self.retried += 1
            await self.limiter.wait()
            response = None
            try:
                response, data = await asyncio.wait_for(self._post(body), s.timeout_s)
            except (httpx.TimeoutException, asyncio.TimeoutError):
                why = f"no whole answer within {s.timeout_s:g} s"
            except httpx.TransportError as exc:
                why = f"cannot connect ({type(exc).__name__}: {str(exc) or 'no detail'})"
            except _TooLarge:
                raise LLMError(f"LLM server {self.url} sent an answer over {MAX_ANSWER_BYTES // 2**20} MiB "
                               "(the limit for one chat completion)") from None
            else:
                if response.status_code == 200:
                    return _content(data, self.url)
                why = f"HTTP {response.status_code}: {_message(data)}"
                if response.status_code not in RETRY_STATUS:
                    raise LLMError(f"LLM server {self.url} refused the request: {why}")
            if attempt < s.retries:
                await asyncio.sleep(self._backoff(attempt, response))
        raise LLMError(f"LLM server {self.url} failed {s.retries + 1} times: {why}")

    async def _post(self, body: dict[str, Any]) -> tuple[httpx.Response, bytes]:
        """The response and its body, read as a stream: a 200 answer over :data:`MAX_ANSWER_BYTES`
        raises :class:`_TooLarge`; an error body is cut at :data:`MAX_ERROR_BYTES`."""
        async with self._client.stream("POST", self.url, json=body) as response:
            ok = response.status_code == 200
            limit = MAX_ANSWER_BYTES if ok else MAX_ERROR_BYTES
            declared = response.headers.get("content-length", "")
            if ok and declared.isdigit() and int(declared) > limit:
                raise _TooLarge
            parts: list[bytes] = []
            size = 0
            async for part in response.aiter_bytes():
                parts.append(part)
                size += len(part)
                if size > limit:
                    if ok:
                        raise _TooLarge
                    break
            return response, b"".join(parts)[:limit]


def _json(data: bytes) -> Any:
    """``data`` parsed; ``ValueError`` for text that is not JSON, :class:`_TooDeep` for JSON nested too
    deeply to parse (Python's parser recurses once per level)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise _TooDeep from None


def _message(data: bytes) -> str:
    try:
        body = _json(data)
        detail = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(detail, dict):
            detail = detail.get("message", detail)
        text = str(detail)
    except (ValueError, RecursionError):  # not JSON, or nested too deeply to parse or print
        text = data.decode("utf-8", "replace")
    return " ".join(text.split())[:200]


def _content(answer: bytes, url: str) -> str:
    try:
        data = _json(answer)
        content = data["choices"][0]["message"]["content"]
    except _TooDeep:
        raise LLMError(f"LLM server {url} answered JSON nested too deeply to read (not a chat completion)") from None
    except (ValueError, KeyError, IndexError, TypeError):
        raise LLMError(f"LLM server {url} did not answer in the OpenAI chat-completions format") from None
    return content if isinstance(content, str) else ""

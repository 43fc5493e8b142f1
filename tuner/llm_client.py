"""An OpenAI-compatible chat-completions client (vLLM, Ollama, llama.cpp's server, OpenAI).

``POST {base}/chat/completions`` with ``model``, ``messages``, ``temperature``, ``max_tokens`` and
``seed``. Connection errors, timeouts, HTTP 408/409/429 and 5xx are retried with exponential backoff
(plus jitter; a ``Retry-After`` header is honoured) up to ``retries`` times, then raise
:class:`~retriever.errors.LLMError`; any other HTTP error (a wrong model name, a bad key) fails at
once. A shared :class:`RateLimiter` spaces request starts; concurrency is the caller's semaphore.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from retriever.errors import LLMError

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0


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


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
        detail = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(detail, dict):
            detail = detail.get("message", detail)
    except ValueError:
        detail = response.text
    return " ".join(str(detail).split())[:200]


class ChatClient:
    """Sends chat requests with retries; use as an async context manager."""

    def __init__(self, settings: LLMSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.url = chat_url(settings.url)
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
                response = await self._client.post(self.url, json=body)
            except httpx.TimeoutException:
                why = f"no answer within {s.timeout_s:g} s"
            except httpx.TransportError as exc:
                why = f"cannot connect ({type(exc).__name__}: {str(exc) or 'no detail'})"
            else:
                if response.status_code == 200:
                    return _content(response, self.url)
                why = f"HTTP {response.status_code}: {_message(response)}"
                if response.status_code not in RETRY_STATUS:
                    raise LLMError(f"LLM server {self.url} refused the request: {why}")
            if attempt < s.retries:
                await asyncio.sleep(self._backoff(attempt, response))
        raise LLMError(f"LLM server {self.url} failed {s.retries + 1} times: {why}")


def _content(response: httpx.Response, url: str) -> str:
    try:
        data = response.json()
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise LLMError(f"LLM server {url} did not answer in the OpenAI chat-completions format") from None
    return content if isinstance(content, str) else ""

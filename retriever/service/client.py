"""``FunnelClient``: a typed Python client for ``funnel serve``, sync and async, over httpx.

The way a RAG application in another process calls funnel. Results are the same types as the
in-process :class:`~retriever.Retriever` returns (a list of :class:`~retriever.query.spec.Hit` with its
``.depth``), and errors are the same domain errors: the service's JSON ``{"error": {"type", ...}}``
becomes the class of that type (``unauthorized`` → :class:`UnauthorizedError`, ``invalid_plan`` →
:class:`InvalidPlanError`, ``validation`` → :class:`InvalidRequestError`, …); a server that does
not answer is a :class:`ServiceUnreachableError`, a late answer a :class:`ServiceTimeoutError`.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from retriever.errors import (
    BadInputError,
    FunnelError,
    InvalidFilterError,
    InvalidPlanError,
    InvalidRequestError,
    NotReadyError,
    ServiceError,
    ServiceTimeoutError,
    ServiceUnreachableError,
    error_class,
)
from retriever.ingest.documents import (
    DocumentPage,
    DocumentSummary,
    UpsertResult,
    delete_filter_arg,
    doc_ids_arg,
    missing_ok_arg,
)
from retriever.net.deadline import deadline_transport, hit_deadline, proxied, within
from retriever.query.filters import Match, MatchAny, PayloadFilter, Range, parse_filter
from retriever.query.fusion import Fusion
from retriever.query.plan import FunnelPlan
from retriever.query.result import Depth, SearchResult
from retriever.query.spec import Hit
from retriever.query.validation import show_value

DEFAULT_TIMEOUT_S = 30.0
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # a longer answer is refused while it is read, not held in memory
MAX_QUERIES_PER_REQUEST = 32  # the service's batch bound; longer batches are split into several requests
MAX_K = 100  # the service's bound on k (models.MAX_HTTP_K)
API_KEY_HEADER = "X-API-Key"
# Error types that name no domain class of their own.
_TYPES = {"validation": InvalidRequestError, "malformed_json": InvalidRequestError,
          "request_timeout": ServiceTimeoutError}


@dataclass(frozen=True)
class Health:
    """``GET /healthz``: ``status`` is ``ready``, ``loading`` or ``failed`` (then ``message`` says why).

    ``collection`` and ``model`` are the served collection's (empty when the server serves several);
    ``collections`` names every served one."""

    status: str
    collection: str
    model: str
    message: str | None
    batching: dict[str, Any]
    collections: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return self.status == "ready"


@dataclass(frozen=True)
class SearchAnswer:
    """A whole ``POST /search`` answer: what ran (``plan``, ``adaptive``, ``mode``, ``fusion``, as
    :func:`~retriever.query.describe.describe_search` says) and one result per query."""

    collection: str
    plan: str | None
    adaptive: bool
    mode: str
    fusion: str | None
    results: list[SearchResult]


@dataclass(frozen=True)
class ServedCollection:
    """One row of ``GET /collections``."""

    name: str
    points: int
    model: str
    dims: tuple[int, ...]
    lexical: str | None
    status: str


@dataclass(frozen=True)
class FeedbackReceipt:
    """``POST /feedback``'s answer: the feedback line was recorded at ``time`` for chunk ``chunk_id``."""

    recorded: bool
    time: str
    chunk_id: str


def search_body(
    queries: list[str],
    k: int,
    plan: str | FunnelPlan | None,
    exact: bool,
    with_text: bool,
    filter: Mapping[str, Any] | None,
    adaptive: bool | None,
    mode: str | None = None,
    fusion: str | None = None,
    collection: str | None = None,
) -> dict[str, Any]:
    """The ``POST /search`` body; options left at their defaults are not sent (the service decides).

    What cannot be sent as JSON is refused here with the error :class:`~retriever.Retriever` raises
    for it (a query that is not text, a filter value that is not a finite number, …); what can be
    sent is left to the service to judge, so both surfaces refuse it the same way.
    """
    body: dict[str, Any] = {"queries": [_text("a query", q) for q in queries], "k": k}
    if isinstance(fusion, Fusion):
        raise InvalidPlanError(f"over HTTP a fusion is given by name ({', '.join(_FUSION_NAMES)}), not as a "
                               f"Fusion object ({fusion}): the service runs that method with its own parameters")
    if plan is not None:
        body["plan"] = str(plan) if isinstance(plan, FunnelPlan) else plan
    if exact is not False:
        body["exact"] = exact
    if with_text is not True:
        body["with_text"] = with_text
    if filter is not None:
        body["filter"] = _filter_body(filter)
    if adaptive is not None:
        body["adaptive"] = adaptive
    if mode is not None:
        body["mode"] = mode
    if fusion is not None:
        body["fusion"] = fusion
    if collection is not None:
        body["collection"] = _text("the collection", collection)
    return body


_FUSION_NAMES = ("union", "rrf", "dbsf")


def _text(what: str, value: Any) -> Any:
    """A string that can be sent (UTF-8), as :func:`~retriever.query.validation.validate_query` says it."""
    if isinstance(value, (bytes, bytearray)):
        raise BadInputError(f"{what} is a string, not {show_value(value)}")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            name = what.removeprefix("a ")
            raise BadInputError(f"{name} is not valid Unicode text (it has lone surrogate code points)") from None
    return value


def _filter_body(filter: Any) -> Any:
    """The filter as JSON: a hand-built :class:`PayloadFilter` as its mapping; a mapping with something
    JSON cannot carry (NaN, a set, bytes, …) refused with :func:`parse_filter`'s error for it."""
    if isinstance(filter, PayloadFilter):
        checked = parse_filter(filter)
        return {} if checked is None else {field: _condition_body(cond) for field, cond in checked.conditions}
    if not isinstance(filter, Mapping) or not _plain_json(filter):
        parse_filter(filter)  # raises its InvalidFilterError for what it refuses
        raise InvalidFilterError("the filter holds values that cannot be sent as JSON")
    return dict(filter)


def _condition_body(cond: Any) -> Any:
    if isinstance(cond, Match):
        return cond.value
    if isinstance(cond, MatchAny):
        return list(cond.values)
    assert isinstance(cond, Range)
    return {op: getattr(cond, op) for op in ("gt", "gte", "lt", "lte") if getattr(cond, op) is not None}


def _plain_json(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is JSON as it is: str keys; str, int, finite float, bool, None, lists and dicts."""
    if depth > 8:
        return False
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain_json(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain_json(v, depth + 1) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    return value is None or isinstance(value, (bool, int))


def _batches(queries: Sequence[str]) -> list[list[str]]:
    if isinstance(queries, (str, bytes)) or not isinstance(queries, Sequence):
        raise BadInputError(f"search_batch takes a list of query strings, not a {type(queries).__name__}"
                            " (use search() for one query)")
    texts = list(queries)
    return [texts[i:i + MAX_QUERIES_PER_REQUEST] for i in range(0, len(texts), MAX_QUERIES_PER_REQUEST)]


def parse_results(payload: dict[str, Any]) -> list[SearchResult]:
    """``POST /search``'s ``results`` as :class:`SearchResult` lists of :class:`Hit`, in query order."""
    try:
        return [
            SearchResult([Hit(**hit) for hit in result["hits"]], Depth(**result["depth"]))
            for result in payload["results"]
        ]
    except (KeyError, TypeError, AttributeError) as exc:
        raise ServiceError(f"the answer to /search is not a funnel search response ({exc!r})") from None


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):
        return None


def answer_json(response: httpx.Response) -> Any:
    """The JSON of a successful answer; an answer that is not JSON (or is nested too deep for Python's
    parser) is a :class:`ServiceError`."""
    where = f"{response.request.method} {response.request.url}"
    try:
        return json.loads(response.content)
    except RecursionError:
        raise ServiceError(f"the answer to {where} is JSON nested too deep to read (is this a funnel service?)") from None
    except ValueError as exc:
        raise ServiceError(f"the answer to {where} is not JSON ({exc}; is this a funnel service?): "
                           f"{response.content[:100]!r}") from None


def raise_for_error(response: httpx.Response) -> None:
    """Raise the domain error for a non-2xx answer (the service's error JSON names its type)."""
    if response.is_success:
        return
    where = f"{response.request.method} {response.request.url}"
    body = _json(response)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("type"), str):
        raise ServiceError(f"HTTP {response.status_code} from {where}, not a funnel error answer "
                           f"(is this a funnel service?): {response.text[:200]!r}")
    type_, message = error["type"], str(error.get("message", ""))
    cls = _TYPES.get(type_) or error_class(type_) or ServiceError
    if cls is FunnelError:  # the base class: a refusal with no specific class, e.g. feedback disabled
        cls = ServiceError
    text = f"{message} (HTTP {response.status_code} {type_} from {where})"
    try:
        exc = cls(text)
    except TypeError:  # a class with its own constructor (never sent by the service)
        exc = ServiceError(text)
    exc.http_status = response.status_code
    raise exc


def _deadline_error(base_url: str, deadline: float) -> ServiceTimeoutError:
    return ServiceTimeoutError(f"the funnel service at {base_url} did not answer in full within {deadline:g} s "
                               "(the whole request's deadline); raise the client's deadline or check the server")


def _too_large(response: httpx.Response) -> ServiceError:
    return ServiceError(f"the answer to {response.request.method} {response.request.url} is above "
                        f"{MAX_ANSWER_BYTES:,} bytes (is this a funnel service?)")


def _read_started(response: httpx.Response) -> None:
    """Refuse an answer that announces more than :data:`MAX_ANSWER_BYTES` before reading it."""
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
        raise _too_large(response)


def _finished(response: httpx.Response, chunks: list[bytes]) -> httpx.Response:
    """The answer, read in full, as a plain (already decoded) response."""
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in ("content-encoding", "content-length",
                                                                               "transfer-encoding")]
    return httpx.Response(response.status_code, headers=headers, content=b"".join(chunks), request=response.request)


def _validated_url(base_url: Any) -> str:
    """An http(s) URL with a host and a valid port, else :class:`BadInputError` (httpx raises its own
    InvalidURL, or nothing until the first request)."""
    bad = BadInputError(f"base_url is an http:// or https:// URL with a host, not {base_url!r}")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise bad
    try:
        parts = urlsplit(base_url)
        port = parts.port
        httpx.URL(base_url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise BadInputError(f"base_url {base_url!r} is not a valid URL: {exc}") from None
    if not parts.hostname or any(c.isspace() for c in base_url) or parts.query or parts.fragment:
        raise bad
    if port == 0:
        raise BadInputError(f"base_url {base_url!r}: port 0 is not a port to connect to")
    return base_url


def transport_error(exc: httpx.TransportError, base_url: str, timeout: httpx.Timeout) -> FunnelError:
    """The domain error for a request that got no answer."""
    if isinstance(exc, httpx.TimeoutException):
        limit = timeout.read if isinstance(exc, httpx.ReadTimeout) else timeout.connect
        bound = f"within {limit:g} s" if limit is not None else "in time"
        return ServiceTimeoutError(f"the funnel service at {base_url} did not answer {bound} "
                                   f"({type(exc).__name__}); raise the client's timeout or check the server")
    reason = str(exc) or type(exc).__name__
    return ServiceUnreachableError(f"cannot reach the funnel service at {base_url}: {reason} "
                                   "(is `funnel serve` running there?)")


class FunnelClient:
    """A client for one ``funnel serve`` at ``base_url`` (e.g. ``http://127.0.0.1:8000``).

    Thread-safe; the sync methods share one connection pool, the ``a``-prefixed coroutines another
    (made per event loop). Close it (or use it as a context manager) to release the connections.

    ``timeout`` bounds each network step (connect, each read, …); ``deadline`` the whole of a request,
    from connecting to its answer's last byte (default: the longest ``timeout``), so a server that
    trickles its headers or its answer cannot hold a call for longer (sync calls: the sockets' every
    read is cut to the time left, see :mod:`retriever.net.deadline`; with an HTTP proxy set in the
    environment, the deadline is checked after each chunk of the answer only). An answer above 64 MiB is refused as it is read.
    """

    def __init__(self, base_url: str, api_key: str | None = None,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S, deadline: float | None = None) -> None:
        base_url = _validated_url(base_url)
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            raise BadInputError("api_key is a non-empty string or None")
        if api_key is not None and not all(" " <= c <= "~" for c in api_key):
            raise BadInputError("api_key is printable ASCII (an HTTP header cannot carry other characters)")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float, httpx.Timeout)) or (
                not isinstance(timeout, httpx.Timeout) and not timeout > 0):
            raise BadInputError(f"timeout is a positive number of seconds or an httpx.Timeout, not {timeout!r}")
        if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, (int, float))
                                     or not deadline > 0):
            raise BadInputError(f"deadline is a positive number of seconds or None, not {deadline!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(float(timeout))
        if deadline is None:  # default: the longest of the timeouts, for the whole request (not per read)
            limits = [t for t in (self.timeout.connect, self.timeout.read, self.timeout.write, self.timeout.pool)
                      if t is not None]
            deadline = max(limits) if limits else None
        self.deadline = None if deadline is None else float(deadline)
        self._headers = {API_KEY_HEADER: api_key} if api_key else {}
        # sockets bounded by the deadline (headers and body), unless a proxy from the environment must be honoured
        self._client = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=self.timeout,
                                    transport=None if proxied() else deadline_transport())
        self._aclient: httpx.AsyncClient | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._collection: str | None = None  # the served collection's name, read from /healthz when first needed

    def __repr__(self) -> str:
        return f"FunnelClient({self.base_url!r}, api_key={'***' if self._headers else None})"

    # --- transport -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        content = _encode(body)
        started = time.monotonic()
        try:
            with within(self.deadline), self._client.stream(method, path, content=content,
                                                            headers=_JSON if content else None) as response:
                _read_started(response)
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        raise _too_large(response)
                    chunks.append(chunk)
                    if self.deadline is not None and time.monotonic() - started > self.deadline:
                        raise _deadline_error(self.base_url, self.deadline)
                return _finished(response, chunks)
        except httpx.TimeoutException as exc:
            if self.deadline is not None and hit_deadline(exc):  # a socket step was cut to the deadline
                raise _deadline_error(self.base_url, self.deadline) from None
            raise transport_error(exc, self.base_url, self.timeout) from exc
        except httpx.TransportError as exc:
            raise transport_error(exc, self.base_url, self.timeout) from exc

    def _async_client(self) -> httpx.AsyncClient:
        # An httpx.AsyncClient's connections belong to the loop that opened them: one client per loop.
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aloop is not loop or self._aclient.is_closed:
            self._aclient = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self.timeout)
            self._aloop = loop
        return self._aclient

    async def _arequest(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        content = _encode(body)

        async def whole() -> httpx.Response:
            async with self._async_client().stream(method, path, content=content,
                                                   headers=_JSON if content else None) as response:
                _read_started(response)
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        raise _too_large(response)
                    chunks.append(chunk)
                return _finished(response, chunks)

        try:
            return await asyncio.wait_for(whole(), self.deadline)  # the whole request, however the server sends it
        except asyncio.TimeoutError:
            raise _deadline_error(self.base_url, self.deadline or 0.0) from None
        except httpx.TransportError as exc:
            raise transport_error(exc, self.base_url, self.timeout) from exc

    # --- search ----------------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, plan: str | FunnelPlan | None = None, exact: bool = False,
               with_text: bool = True, filter: Mapping[str, Any] | None = None,
               adaptive: bool | None = None, mode: str | None = None, fusion: str | None = None,
               collection: str | None = None) -> SearchResult:
        """Search one query; the options are :meth:`Retriever.search`'s (k at most 100 over HTTP; ``fusion``
        by name: union, rrf or dbsf). ``collection``: needed when the server serves several."""
        return self.search_batch([query], k, plan, exact, with_text, filter, adaptive, mode, fusion, collection)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, plan: str | FunnelPlan | None = None,
                     exact: bool = False, with_text: bool = True, filter: Mapping[str, Any] | None = None,
                     adaptive: bool | None = None, mode: str | None = None,
                     fusion: str | None = None, collection: str | None = None) -> list[SearchResult]:
        """Search many queries the same way, one request per 32 queries; results in query order."""
        return self.search_answer(queries, k, plan, exact, with_text, filter, adaptive, mode, fusion,
                                  collection).results

    def search_answer(self, queries: Sequence[str], k: int = 10, plan: str | FunnelPlan | None = None,
                      exact: bool = False, with_text: bool = True, filter: Mapping[str, Any] | None = None,
                      adaptive: bool | None = None, mode: str | None = None, fusion: str | None = None,
                      collection: str | None = None) -> SearchAnswer:
        """:meth:`search_batch`, with what the service says it ran (plan, mode, fusion, adaptive)."""
        results: list[SearchResult] = []
        payload: dict[str, Any] = {}
        for batch in _batches(queries):
            body = search_body(batch, k, plan, exact, with_text, filter, adaptive, mode, fusion, collection)
            response = self._request("POST", "/search", body)
            raise_for_error(response)
            payload = answer_json(response)
            results.extend(parse_results(payload))
        return _answer(payload, results)

    async def asearch(self, query: str, k: int = 10, plan: str | FunnelPlan | None = None, exact: bool = False,
                      with_text: bool = True, filter: Mapping[str, Any] | None = None,
                      adaptive: bool | None = None, mode: str | None = None,
                      fusion: str | None = None, collection: str | None = None) -> SearchResult:
        """:meth:`search`, as a coroutine."""
        return (await self.asearch_batch([query], k, plan, exact, with_text, filter, adaptive, mode, fusion,
                                         collection))[0]

    async def asearch_batch(self, queries: Sequence[str], k: int = 10, plan: str | FunnelPlan | None = None,
                            exact: bool = False, with_text: bool = True,
                            filter: Mapping[str, Any] | None = None,
                            adaptive: bool | None = None, mode: str | None = None,
                            fusion: str | None = None, collection: str | None = None) -> list[SearchResult]:
        """:meth:`search_batch`, as a coroutine; the requests of a long batch run concurrently."""

        async def one(batch: list[str]) -> list[SearchResult]:
            body = search_body(batch, k, plan, exact, with_text, filter, adaptive, mode, fusion, collection)
            response = await self._arequest("POST", "/search", body)
            raise_for_error(response)
            return parse_results(answer_json(response))

        parts = await asyncio.gather(*(one(batch) for batch in _batches(queries)))
        return [result for part in parts for result in part]

    # --- documents -------------------------------------------------------------------------------

    def upsert(self, doc_id: str, text: str, metadata: Mapping[str, Any] | None = None,
               title: str | None = None, collection: str | None = None) -> UpsertResult:
        """Add or replace document ``doc_id`` (``PUT /collections/{name}/documents/{doc_id}``), as
        :meth:`Retriever.upsert` does; ``collection`` defaults to the one the server serves."""
        path = self._document_path(collection or self._served(), doc_id)
        response = self._request("PUT", path, _document_body(text, metadata, title))
        raise_for_error(response)
        return _upsert_result(response)

    def delete(self, doc_id: str, collection: str | None = None) -> int:
        """Delete document ``doc_id`` (every chunk); returns how many chunks it had. An id that is not
        stored raises :class:`~retriever.errors.DocumentNotFoundError`."""
        response = self._request("DELETE", self._document_path(collection or self._served(), doc_id))
        raise_for_error(response)
        return _deleted_chunks(response)

    def delete_many(self, doc_ids: Sequence[str], missing_ok: bool = False,
                    collection: str | None = None) -> dict[str, int]:
        """Delete several documents in one request and one engine operation
        (``POST /collections/{name}/documents/delete``), as :meth:`Retriever.delete` does: all or nothing
        (an id that is not stored raises :class:`~retriever.errors.DocumentNotFoundError`, nothing is
        deleted) unless ``missing_ok``; returns the chunks each deleted document had. At most 1,000 ids."""
        name = collection or self._served()
        response = self._request("POST", _delete_path(name), _delete_ids_body(doc_ids, missing_ok))
        raise_for_error(response)
        return _deleted_map(response)

    def delete_where(self, filter: Mapping[str, Any] | PayloadFilter, collection: str | None = None) -> dict[str, int]:
        """Delete every document one of whose chunks matches ``filter`` (:meth:`Retriever.delete_where`),
        in one request; returns the chunks each had (``{}``: none matched)."""
        response = self._request("POST", _delete_path(collection or self._served()), _delete_filter_body(filter))
        raise_for_error(response)
        return _deleted_map(response)

    def documents(self, limit: int = 100, offset: int = 0, collection: str | None = None) -> DocumentPage:
        """One page of the collection's documents in id order (``GET /collections/{name}/documents``)."""
        path = f"/collections/{quote(collection or self._served(), safe='')}/documents{_page_query(limit, offset)}"
        response = self._request("GET", path)
        raise_for_error(response)
        return _document_page(response)

    async def aupsert(self, doc_id: str, text: str, metadata: Mapping[str, Any] | None = None,
                      title: str | None = None, collection: str | None = None) -> UpsertResult:
        """:meth:`upsert`, as a coroutine."""
        path = self._document_path(collection or await self._aserved(), doc_id)
        response = await self._arequest("PUT", path, _document_body(text, metadata, title))
        raise_for_error(response)
        return _upsert_result(response)

    async def adelete(self, doc_id: str, collection: str | None = None) -> int:
        """:meth:`delete`, as a coroutine."""
        response = await self._arequest("DELETE", self._document_path(collection or await self._aserved(), doc_id))
        raise_for_error(response)
        return _deleted_chunks(response)

    async def adelete_many(self, doc_ids: Sequence[str], missing_ok: bool = False,
                           collection: str | None = None) -> dict[str, int]:
        """:meth:`delete_many`, as a coroutine."""
        body = _delete_ids_body(doc_ids, missing_ok)
        response = await self._arequest("POST", _delete_path(collection or await self._aserved()), body)
        raise_for_error(response)
        return _deleted_map(response)

    async def adelete_where(self, filter: Mapping[str, Any] | PayloadFilter,
                            collection: str | None = None) -> dict[str, int]:
        """:meth:`delete_where`, as a coroutine."""
        body = _delete_filter_body(filter)
        response = await self._arequest("POST", _delete_path(collection or await self._aserved()), body)
        raise_for_error(response)
        return _deleted_map(response)

    async def adocuments(self, limit: int = 100, offset: int = 0, collection: str | None = None) -> DocumentPage:
        """:meth:`documents`, as a coroutine."""
        name = collection or await self._aserved()
        response = await self._arequest("GET", f"/collections/{quote(name, safe='')}/documents"
                                               f"{_page_query(limit, offset)}")
        raise_for_error(response)
        return _document_page(response)

    @staticmethod
    def _document_path(collection: str, doc_id: Any) -> str:
        from retriever.ingest.documents import doc_id_arg

        doc_id = doc_id_arg(_text("doc_id", doc_id))
        # every reserved character escaped, and dots too, so that "." and ".." stay ids, not path steps
        escaped = quote(doc_id, safe="").replace(".", "%2E")
        return f"/collections/{quote(collection, safe='')}/documents/{escaped}"

    def _served(self) -> str:
        if self._collection is None:
            self._collection = _only_collection(self.health(), self.base_url)
        return self._collection

    async def _aserved(self) -> str:
        if self._collection is None:
            self._collection = _only_collection(await self.ahealth(), self.base_url)
        return self._collection

    # --- collections -----------------------------------------------------------------------------

    def collections(self) -> list[ServedCollection]:
        """The served collections with their point counts (``GET /collections``)."""
        response = self._request("GET", "/collections")
        raise_for_error(response)
        body = answer_json(response)
        try:
            return [ServedCollection(str(c["name"]), int(c["points"]), str(c["model"]),
                                     tuple(int(d) for d in c["dims"]), c["lexical"], str(c["status"]))
                    for c in body["collections"]]
        except (KeyError, TypeError, ValueError):
            raise _answer_error(response, "collection listing") from None

    def collection_info(self, collection: str | None = None) -> dict[str, Any]:
        """``GET /collections/{name}``: points, dims, model, default plan, calibration (the JSON as sent)."""
        name = collection or self._served()
        response = self._request("GET", f"/collections/{quote(_text('the collection', name), safe='')}")
        raise_for_error(response)
        body = answer_json(response)
        if not isinstance(body, dict) or "points" not in body:
            raise _answer_error(response, "collection")
        return body

    # --- feedback and health ---------------------------------------------------------------------

    def feedback(self, query: str, doc_id: str, chunk: int = 0, note: str | None = None,
                 collection: str | None = None) -> FeedbackReceipt:
        """Record that chunk ``chunk`` of ``doc_id`` should have been found for ``query``."""
        response = self._request("POST", "/feedback", _feedback_body(query, doc_id, chunk, note, collection))
        raise_for_error(response)
        return _receipt(response)

    async def afeedback(self, query: str, doc_id: str, chunk: int = 0, note: str | None = None,
                        collection: str | None = None) -> FeedbackReceipt:
        """:meth:`feedback`, as a coroutine."""
        response = await self._arequest("POST", "/feedback", _feedback_body(query, doc_id, chunk, note, collection))
        raise_for_error(response)
        return _receipt(response)

    def health(self) -> Health:
        """The service's state (``ready``, ``loading`` or ``failed``); needs no API key."""
        return _health(self._request("GET", "/healthz"))

    async def ahealth(self) -> Health:
        """:meth:`health`, as a coroutine."""
        return _health(await self._arequest("GET", "/healthz"))

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.1) -> Health:
        """Poll ``/healthz`` until the service is ready (it loads its model after it starts listening).

        Raises :class:`NotReadyError` when the model failed to load or is not loaded within
        ``timeout`` seconds, :class:`ServiceUnreachableError` when nothing listened by then.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                health = self.health()
            except ServiceUnreachableError:
                if time.monotonic() >= deadline:
                    raise
            else:
                if health.ready:
                    return health
                if health.status == "failed":
                    raise NotReadyError(f"the funnel service at {self.base_url} failed to load: {health.message}")
                if time.monotonic() >= deadline:
                    raise NotReadyError(f"the funnel service at {self.base_url} is still {health.status} "
                                        f"after {timeout:g} s")
            time.sleep(interval)

    # --- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync connections (the async ones: :meth:`aclose`)."""
        self._client.close()

    async def aclose(self) -> None:
        """Close the async connections of the running loop's client."""
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None

    def __enter__(self) -> FunnelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> FunnelClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
        self.close()


def _feedback_body(query: str, doc_id: str, chunk: int, note: str | None,
                   collection: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"query": _text("a query", query), "doc_id": _text("doc_id", doc_id), "chunk": chunk}
    if note is not None:
        body["note"] = _text("note", note)
    if collection is not None:
        body["collection"] = _text("the collection", collection)
    return body


_JSON = {"Content-Type": "application/json"}


def _encode(body: dict[str, Any] | None) -> bytes | None:
    """The request body as JSON; what JSON cannot carry (a set, bytes, NaN, …) is a :class:`BadInputError`."""
    if body is None:
        return None
    try:
        return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"the request cannot be sent as JSON: {exc}") from None


def _health(response: httpx.Response) -> Health:
    body = _json(response)
    if response.status_code in (200, 503) and isinstance(body, dict) and "status" in body:
        listed = body.get("collections")
        names = tuple(str(c.get("name")) for c in listed if isinstance(c, dict)) if isinstance(listed, list) else ()
        return Health(status=body["status"], collection=body.get("collection") or "", model=body.get("model") or "",
                      message=body.get("message"), batching=body.get("batching") or {},
                      collections=names or ((body["collection"],) if body.get("collection") else ()))
    raise_for_error(response)
    raise ServiceError(f"the answer to GET {response.request.url} is not a funnel health answer")


def _only_collection(health: Health, base_url: str) -> str:
    """The collection a server of one collection serves; a server of several wants it named."""
    if health.collection:
        return health.collection
    raise BadInputError(f"the funnel service at {base_url} serves several collections "
                        f"({', '.join(health.collections)}): pass collection=NAME")


def _answer(payload: dict[str, Any], results: list[SearchResult]) -> SearchAnswer:
    try:
        return SearchAnswer(collection=str(payload.get("collection", "")), plan=payload.get("plan"),
                            adaptive=bool(payload.get("adaptive")), mode=str(payload.get("mode", "dense")),
                            fusion=payload.get("fusion"), results=results)
    except AttributeError:
        raise ServiceError("the answer to /search is not a funnel search response") from None


def _receipt(response: httpx.Response) -> FeedbackReceipt:
    body = answer_json(response)
    try:
        return FeedbackReceipt(**body)
    except TypeError:
        raise ServiceError(f"the answer to {response.request.method} {response.request.url} is not a funnel "
                           "feedback answer") from None


def _document_body(text: Any, metadata: Any, title: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"text": _text("the text", text)}
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not _plain_json(metadata):
            raise BadInputError("the metadata is a mapping of JSON values (str keys; str, int, finite float, bool, "
                                f"None, lists and dicts), not {show_value(metadata)}")
        body["metadata"] = dict(metadata)
    if title is not None:
        body["title"] = _text("the title", title)
    return body


MAX_DELETE_IDS = 1000  # what POST …/documents/delete takes (models.MAX_HTTP_DELETE)


def _delete_path(collection: str) -> str:
    return f"/collections/{quote(collection, safe='')}/documents/delete"


def _delete_ids_body(doc_ids: Any, missing_ok: Any) -> dict[str, Any]:
    if isinstance(doc_ids, Sequence) and not isinstance(doc_ids, (str, bytes)) and len(doc_ids) > MAX_DELETE_IDS:
        raise BadInputError(f"one delete over HTTP takes 1 to {MAX_DELETE_IDS:,} document ids, not {len(doc_ids):,}")
    ids = doc_ids_arg([_text("doc_id", i) for i in doc_ids] if isinstance(doc_ids, (list, tuple)) else doc_ids)
    return {"doc_ids": ids, "missing_ok": missing_ok_arg(missing_ok)}


def _delete_filter_body(filter: Any) -> dict[str, Any]:
    delete_filter_arg(filter)  # the service's own check: a filter that names which documents
    return {"filter": _filter_body(filter)}


def _deleted_map(response: httpx.Response) -> dict[str, int]:
    body = answer_json(response)
    try:
        return {str(k): int(v) for k, v in body["deleted"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _answer_error(response, "delete") from None


def _page_query(limit: Any, offset: Any) -> str:
    from retriever.ingest.documents import page_args

    limit, offset = page_args(limit, offset)
    return f"?limit={limit}&offset={offset}"


def _answer_error(response: httpx.Response, what: str) -> ServiceError:
    return ServiceError(f"the answer to {response.request.method} {response.request.url} is not a funnel {what} answer")


def _upsert_result(response: httpx.Response) -> UpsertResult:
    body = answer_json(response)
    try:
        return UpsertResult(str(body["doc_id"]), int(body["chunks"]), body["status"])
    except (KeyError, TypeError, ValueError):
        raise _answer_error(response, "document") from None


def _deleted_chunks(response: httpx.Response) -> int:
    body = answer_json(response)
    try:
        return int(body["chunks"])
    except (KeyError, TypeError, ValueError):
        raise _answer_error(response, "document") from None


def _document_page(response: httpx.Response) -> DocumentPage:
    body = answer_json(response)
    try:
        docs = [DocumentSummary(str(d["doc_id"]), int(d["chunks"]), str(d["title"])) for d in body["documents"]]
        return DocumentPage(docs, int(body["total"]), int(body["offset"]), int(body["limit"]))
    except (KeyError, TypeError, ValueError):
        raise _answer_error(response, "document listing") from None

"""What an adapter searches, and how: a Retriever in-process or a FunnelClient over HTTP, with the
search options (k, plan / exact / adaptive, filter, mode / fusion) passed through unchanged.

Both searchers take the same options and raise the same domain errors, so an adapter behaves the
same way in-process and over HTTP. ``retriever.retriever`` (and with it torch) is never imported
here: an application that only talks HTTP does not load a model.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Union

from retriever.errors import BadInputError
from retriever.query.spec import Hit
from retriever.service.client import MAX_DELETE_IDS, FunnelClient

if TYPE_CHECKING:
    from retriever.retriever import Retriever

Searcher = Union["Retriever", FunnelClient]

# One lock per in-process Retriever: async searches run on worker threads, one at a time per collection.
_locks: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class SearchOptions:
    """How an adapter searches; the names and defaults of :meth:`Retriever.search`'s options."""

    k: int = 10
    plan: str | None = None
    exact: bool = False
    adaptive: bool | None = None
    filter: Mapping[str, Any] | None = None
    mode: str | None = None
    fusion: str | None = None

    def merged(self, overrides: Mapping[str, Any]) -> SearchOptions:
        """These options with per-call ``overrides`` (only the option names above are accepted)."""
        names = [f.name for f in fields(self)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise BadInputError(f"unknown search option(s) {', '.join(unknown)}: the options are {', '.join(names)}")
        return replace(self, **overrides) if overrides else self

    def kwargs(self) -> dict[str, Any]:
        return {"k": self.k, "plan": self.plan, "exact": self.exact, "adaptive": self.adaptive,
                "filter": self.filter, "with_text": True, "mode": self.mode, "fusion": self.fusion}


def check_searcher(searcher: Any) -> Searcher:
    """``searcher`` if it is a :class:`~retriever.Retriever` or a :class:`FunnelClient`, else a clear error."""
    if isinstance(searcher, FunnelClient):
        return searcher
    module = sys.modules.get("retriever.retriever")  # not imported: it cannot be a Retriever
    if module is not None and isinstance(searcher, module.Retriever):
        return searcher
    raise BadInputError("searcher is a retriever.Retriever (in-process) or a retriever.service.client.FunnelClient "
                        f"(a running funnel serve), not {type(searcher).__name__}")


def _lock(searcher: Any) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(searcher, threading.Lock())


def search(searcher: Searcher, query: str, options: SearchOptions) -> list[Hit]:
    """One query's hits, best first."""
    if isinstance(searcher, FunnelClient):
        return searcher.search(query, **options.kwargs())
    with _lock(searcher):
        return searcher.search(query, **options.kwargs())


async def asearch(searcher: Searcher, query: str, options: SearchOptions) -> list[Hit]:
    """:func:`search` without blocking the event loop (in-process: on a worker thread)."""
    if isinstance(searcher, FunnelClient):
        return await searcher.asearch(query, **options.kwargs())
    return await asyncio.to_thread(search, searcher, query, options)


def hit_metadata(hit: Hit) -> dict[str, Any]:
    """The document's metadata, then funnel's fields (which win a name clash): id, doc_id, chunk, title, score."""
    return {**hit.metadata, "id": hit.id, "doc_id": hit.doc_id, "chunk": hit.chunk, "title": hit.title,
            "score": hit.score}



def upsert(searcher: Searcher, documents: Sequence[Mapping[str, Any]]) -> list[str]:
    """Add or replace documents (``doc_id``, ``text``, optional ``metadata``): in-process in one call
    (all checked before any is written), over HTTP one request each. Returns their ids."""
    if isinstance(searcher, FunnelClient):
        for doc in documents:
            searcher.upsert(doc["doc_id"], doc["text"], doc.get("metadata"))
    else:
        with _lock(searcher):
            searcher.upsert_many(documents)
    return [str(doc["doc_id"]) for doc in documents]


def _requests_of(doc_ids: Sequence[str]) -> list[list[str]]:
    """``doc_ids`` in slices one HTTP delete takes (one slice, maybe empty, for none: the service refuses it)."""
    ids = list(doc_ids)
    return [ids[start:start + MAX_DELETE_IDS] for start in range(0, max(len(ids), 1), MAX_DELETE_IDS)]


def delete(searcher: Searcher, doc_ids: Sequence[str], missing_ok: bool = False) -> dict[str, int]:
    """Delete documents by id, all or none (unless ``missing_ok``): in-process in one call, over HTTP
    in one request per 1,000 ids (each all or none). Returns the chunks each deleted document had."""
    if isinstance(searcher, FunnelClient):
        removed: dict[str, int] = {}
        for part in _requests_of(doc_ids):
            removed.update(searcher.delete_many(part, missing_ok))
        return removed
    with _lock(searcher):
        return searcher.delete(list(doc_ids), missing_ok)


def delete_where(searcher: Searcher, filter: Mapping[str, Any]) -> dict[str, int]:
    """Delete every document one of whose chunks matches ``filter``; the chunks each had ({}: none)."""
    if isinstance(searcher, FunnelClient):
        return searcher.delete_where(filter)
    with _lock(searcher):
        return searcher.delete_where(filter)


async def aupsert(searcher: Searcher, documents: Sequence[Mapping[str, Any]]) -> list[str]:
    """:func:`upsert` without blocking the event loop (in-process: on a worker thread)."""
    if isinstance(searcher, FunnelClient):
        for doc in documents:
            await searcher.aupsert(doc["doc_id"], doc["text"], doc.get("metadata"))
        return [str(doc["doc_id"]) for doc in documents]
    return await asyncio.to_thread(upsert, searcher, documents)


async def adelete(searcher: Searcher, doc_ids: Sequence[str], missing_ok: bool = False) -> dict[str, int]:
    """:func:`delete` without blocking the event loop."""
    if isinstance(searcher, FunnelClient):
        removed: dict[str, int] = {}
        for part in _requests_of(doc_ids):
            removed.update(await searcher.adelete_many(part, missing_ok))
        return removed
    return await asyncio.to_thread(delete, searcher, doc_ids, missing_ok)


async def adelete_where(searcher: Searcher, filter: Mapping[str, Any]) -> dict[str, int]:
    """:func:`delete_where` without blocking the event loop."""
    if isinstance(searcher, FunnelClient):
        return await searcher.adelete_where(filter)
    return await asyncio.to_thread(delete_where, searcher, filter)

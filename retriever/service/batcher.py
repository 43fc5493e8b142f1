"""Micro-batching: concurrent queries share one encode and one engine call.

Requests enter an asyncio queue. One worker task takes the first waiting request, then every
request already queued, up to ``max_batch``; under load (when the previous batch held more than
one query) it also waits up to ``max_wait_ms`` for more to arrive. The batch then runs as one
:meth:`Retriever.search_each` call (one encode, one engine ``query_batch``) on a single worker
thread, off the event loop; while it runs, the next batch gathers in the queue.

A lone query is never held back: with one client the wait never applies, so batching adds no
latency when there is nothing to batch. ``max_batch=1`` turns batching off (one query per call).

Several collections share one batcher (and its one search thread): a query names its collection
(``route``), and a batch runs as one ``search_each`` call per collection it holds.

A query that fails fails alone: when a batch call raises, each of its queries runs again on its
own, so only the query (or queries) at fault get the error and the others their hits. Queries are
validated before they are queued; this is the safety net for whatever validation did not catch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from retriever.query.spec import Hit, QuerySpec

SearchFn = Callable[[Sequence[str], Sequence[QuerySpec]], Sequence[list[Hit]]]
RouteFn = Callable[[str], SearchFn]  # a collection's name → its search


@dataclass
class BatchStats:
    """Counters for ``/healthz``: batches run, queries answered, largest batch."""

    batches: int = 0
    queries: int = 0
    largest: int = 0

    def add(self, size: int) -> None:
        self.batches += 1
        self.queries += size
        self.largest = max(self.largest, size)


@dataclass
class _Item:
    query: str
    spec: QuerySpec
    future: asyncio.Future = field(repr=False)
    route: str | None = None


class MicroBatcher:
    """Gathers concurrent queries into batches for one ``search_each`` call each."""

    def __init__(self, search: SearchFn, max_batch: int = 32, max_wait_ms: float = 2.0,
                 routes: RouteFn | None = None) -> None:
        """``search`` answers queries queued without a route; ``routes`` gives the search of a named one."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._search_fn = search
        self._routes = routes
        self.max_batch = max_batch
        self.max_wait = max(0.0, max_wait_ms) / 1000
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="funnel-search")

    @property
    def pending(self) -> int:
        """Queries queued and not yet taken into a batch."""
        return 0 if self._queue is None else self._queue.qsize()

    async def start(self) -> None:
        """Start the worker on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="funnel-batcher")

    async def stop(self) -> None:
        """Stop the worker; queries still waiting get a ``RuntimeError``."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._queue is not None and not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the service is shutting down"))
        self.executor.shutdown(wait=True)

    async def search(self, queries: Sequence[str], specs: Sequence[QuerySpec],
                     route: str | None = None) -> list[list[Hit]]:
        """Queue the queries (already validated), for collection ``route`` (``None``: the default
        search), and wait for their hits."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        if route is not None and self._routes is None:
            raise RuntimeError("this batcher has no routes")
        loop = asyncio.get_running_loop()
        futures = []
        for query, spec in zip(queries, specs):
            fut = loop.create_future()
            self._queue.put_nowait(_Item(query, spec, fut, route))
            futures.append(fut)
        return list(await asyncio.gather(*futures))

    async def _gather(self, first: _Item, under_load: bool) -> list[_Item]:
        assert self._queue is not None
        batch = [first]
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if not under_load or remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    def _search_of(self, route: str | None) -> SearchFn:
        if route is None or self._routes is None:
            return self._search_fn
        return self._routes(route)

    async def _run(self) -> None:
        assert self._queue is not None
        last_size = 1
        while True:
            first = await self._queue.get()
            batch = await self._gather(first, under_load=last_size > 1 and self.max_batch > 1)
            batch = [item for item in batch if not item.future.done()]  # cancelled by a client gone away
            last_size = len(batch)
            groups: dict[str | None, list[_Item]] = {}
            for item in batch:
                groups.setdefault(item.route, []).append(item)
            for route, group in groups.items():  # one search call per collection in the batch
                await self._run_group(group, route)

    async def _run_group(self, batch: list[_Item], route: str | None) -> None:
        """One search call for the batch's queries of one collection; each query gets its hits or error."""
        loop = asyncio.get_running_loop()
        try:
            search = self._search_of(route)
        except Exception as exc:  # noqa: BLE001 - a route that is gone: its queries get the error
            for item in batch:
                _settle(item, error=exc)
            return
        try:
            results = await loop.run_in_executor(
                self.executor, search, [i.query for i in batch], [i.spec for i in batch]
            )
        except Exception as exc:  # noqa: BLE001 - isolate the failing query, or hand over the error
            if len(batch) == 1:
                _settle(batch[0], error=exc)
            else:
                await self._one_by_one(batch, search)
            return
        self.stats.add(len(batch))
        if len(results) != len(batch):  # never leave a caller waiting on a result that will not come
            error = RuntimeError(f"the search answered {len(results)} of {len(batch)} queries")
            for item in batch:
                _settle(item, error=error)
            return
        for item, hits in zip(batch, results):
            _settle(item, hits)

    async def _one_by_one(self, batch: list[_Item], search: SearchFn) -> None:
        """After a failed batch: run each query alone, so each gets its own hits or its own error."""
        loop = asyncio.get_running_loop()
        for item in batch:
            if item.future.done():  # its client went away meanwhile
                continue
            try:
                (hits,) = await loop.run_in_executor(self.executor, search, [item.query], [item.spec])
            except Exception as exc:  # noqa: BLE001 - this query's own error
                _settle(item, error=exc)
                continue
            self.stats.add(1)
            _settle(item, hits)


def _settle(item: _Item, hits: list[Hit] | None = None, error: BaseException | None = None) -> None:
    if item.future.done():
        return
    if error is not None:
        item.future.set_exception(error)
    else:
        item.future.set_result(hits)


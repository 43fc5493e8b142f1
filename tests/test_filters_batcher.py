"""Payload filters (parsing, and their Qdrant Edge form) and the micro-batcher's scheduling."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from retriever.batcher import MicroBatcher
from retriever.edge_store import edge_filter
from retriever.errors import InvalidFilterError
from retriever.filters import Match, MatchAny, PayloadFilter, Range, parse_filter
from retriever.store import QuerySpec


def test_parse_filter_kinds():
    parsed = parse_filter({"doc_id": "a", "chunk": {"gte": 1, "lt": 3}, "metadata.tags": ["x", "y"],
                           "metadata.year": [2020, 2021], "title": "T", "metadata.n": 5})
    assert parsed == PayloadFilter((
        ("doc_id", Match("a")), ("chunk", Range(gte=1.0, lt=3.0)), ("metadata.tags", MatchAny(("x", "y"))),
        ("metadata.year", MatchAny((2020, 2021))), ("title", Match("T")), ("metadata.n", Match(5)),
    ))
    assert parse_filter(None) is None and parse_filter({}) is None
    assert edge_filter(parsed) is not None and edge_filter(None) is None


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ({"text": "x"}, "unknown filter field 'text'"),
        ({"metadata": "x"}, "unknown filter field 'metadata'"),
        ({"metadata.a/b": "x"}, "unknown filter field"),
        ({"metadata.a": 1.5}, "use a range for a float"),
        ({"metadata.a": True}, "matching a boolean is not supported"),
        ({"metadata.a": None}, "expected a string or an integer"),
        ({"doc_id": 1}, "expected a string"),
        ({"chunk": "1"}, "expected an integer"),
        ({"title": {"gt": 1}}, "not a range"),
        ({"chunk": {}}, "gt, gte, lt and/or lte"),
        ({"chunk": {"gte": None}}, "at least one bound"),
        ({"chunk": {"gte": "1"}}, "finite number"),
        ({"chunk": {"gte": float("nan")}}, "finite number"),
        ({"chunk": {"gte": True}}, "finite number"),
        ({"metadata.a": []}, "1 to 100 values"),
        ({"metadata.a": ["x", 2]}, "only strings or only integers"),
        ({"metadata.a": "x" * 600}, "longer than 512"),
        ({"metadata.a": "\ud800"}, "not valid Unicode"),
        ({f"metadata.k{i}": i for i in range(17)}, "too many filter conditions"),
    ],
)
def test_parse_filter_refuses(spec, fragment):
    with pytest.raises(InvalidFilterError) as info:
        parse_filter(spec)
    assert fragment in str(info.value)


def _batched_run(max_batch: int, n: int, fail: bool = False):
    calls: list[list[str]] = []
    threads: set[str] = set()

    def search(queries, specs):  # a slow stand-in for encode + engine: 20 ms per call
        calls.append(list(queries))
        threads.add(threading.current_thread().name)
        time.sleep(0.02)
        if fail:
            raise RuntimeError("engine down")
        return [[q.upper()] for q in queries]

    async def main():
        batcher = MicroBatcher(search, max_batch=max_batch, max_wait_ms=2)
        await batcher.start()
        try:
            spec = QuerySpec(None, 1)
            return await asyncio.gather(*(batcher.search([f"q{i}"], [spec]) for i in range(n)),
                                        return_exceptions=True), batcher.stats
        finally:
            await batcher.stop()

    results, stats = asyncio.run(main())
    return results, calls, stats, threads


def test_batcher_groups_concurrent_queries_and_routes_results():
    results, calls, stats, threads = _batched_run(max_batch=8, n=20)
    assert results == [[[f"Q{i}"]] for i in range(20)]  # each caller gets its own hits
    assert max(len(c) for c in calls) == 8 and len(calls) == 3 and stats.queries == 20
    assert sorted(q for c in calls for q in c) == sorted(f"q{i}" for i in range(20))
    assert len(threads) == 1 and threads.pop().startswith("funnel-search")  # off the event loop, one thread


def test_batcher_off_and_errors():
    _, calls, stats, _ = _batched_run(max_batch=1, n=5)
    assert [len(c) for c in calls] == [1] * 5 and stats.largest == 1
    results, _, _, _ = _batched_run(max_batch=8, n=4, fail=True)
    assert all(isinstance(r, RuntimeError) and "engine down" in str(r) for r in results)

"""Payload filters (parsing, and their Qdrant Edge form) and the micro-batcher's scheduling."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from retriever.errors import InvalidFilterError
from retriever.query.filters import Match, MatchAny, PayloadFilter, Range, parse_filter
from retriever.query.spec import QuerySpec
from retriever.service.batcher import MicroBatcher
from retriever.store.edge.requests import edge_filter


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


# --- integers beyond the engine's range, hand-built filters ------------------------------------------


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ({"metadata.n": 2**70}, "integer 1180591620717411303424 is outside the engine's signed 64-bit range"),
        ({"metadata.n": 2**63}, "integer 9223372036854775808 is outside"),
        ({"metadata.n": -(2**63) - 1}, "integer -9223372036854775809 is outside"),
        ({"chunk": 2**64}, "is outside the engine's signed 64-bit range"),
        ({"metadata.n": [1, 2**63]}, "integer 9223372036854775808 is outside"),
        ({"metadata.n": 10**5000}, "<an integer of 16610 bits> is outside"),  # no repr: still one line
        ({"chunk": {"gte": 10**400}}, "gte must be a finite number, not <an integer of 1329 bits>"),
        ({"doc_id": 10**5000}, "expected a string, not int <an integer of 16610 bits>"),
        ({5: "x"}, "filter field names are strings, not int 5"),
    ],
)
def test_parse_filter_refuses_integers_the_engine_cannot_take(spec, fragment):
    with pytest.raises(InvalidFilterError) as info:
        parse_filter(spec)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_parse_filter_keeps_the_engine_range_and_float_bounds():
    parsed = parse_filter({"metadata.n": [2**63 - 1, -(2**63)], "chunk": {"gte": 2**70, "lt": 1e308}})
    assert parsed == PayloadFilter((("metadata.n", MatchAny((2**63 - 1, -(2**63)))),
                                    ("chunk", Range(gte=float(2**70), lt=1e308))))
    assert edge_filter(parsed) is not None  # the engine's filter type takes them


def test_hand_built_payload_filter_is_checked():
    with pytest.raises(InvalidFilterError, match="is outside the engine's signed 64-bit range"):
        parse_filter(PayloadFilter((("metadata.n", Match(2**64)),)))
    with pytest.raises(InvalidFilterError, match="unknown condition"):
        parse_filter(PayloadFilter((("chunk", MatchAny("ab")),)))  # type: ignore[arg-type]
    two_bounds = PayloadFilter((("chunk", Range(gte=1)), ("chunk", Range(lte=3))))
    assert parse_filter(two_bounds) == PayloadFilter((("chunk", Range(gte=1.0)), ("chunk", Range(lte=3.0))))


# --- a failing query fails alone ----------------------------------------------------------------------


def test_batcher_a_failing_query_fails_alone():
    """One query that makes the search raise shares a batch with others: only it gets the error."""
    calls: list[list[str]] = []

    def search(queries, specs):  # pure logic: raises whenever the poisoned query is in the call
        calls.append(list(queries))
        if "poison" in queries:
            raise TypeError("cannot convert the filter")
        return [[q.upper()] for q in queries]

    async def main():
        batcher = MicroBatcher(search, max_batch=8, max_wait_ms=0)
        await batcher.start()
        try:
            spec = QuerySpec(None, 1)
            # Queued before the worker runs: the first batch holds all eight, poison in the middle.
            names = ["a", "b", "c", "poison", "d", "e", "f", "g"]
            tasks = [asyncio.ensure_future(batcher.search([n], [spec])) for n in names]
            results = await asyncio.gather(*tasks, return_exceptions=True)
            return names, results, batcher.stats
        finally:
            await batcher.stop()

    names, results, stats = asyncio.run(main())
    assert calls[0] == names  # they did share one batch
    for name, result in zip(names, results):
        if name == "poison":
            assert isinstance(result, TypeError) and "cannot convert" in str(result)
        else:
            assert result == [[name.upper()]], (name, result)
    assert sorted(map(tuple, calls[1:])) == sorted((n,) for n in names)  # then each alone
    assert stats.queries == 7


def test_batcher_a_request_of_several_queries_gets_its_own_error():
    def search(queries, specs):
        if any(q.startswith("bad") for q in queries):
            raise ValueError("bad query")
        return [[q] for q in queries]

    async def main():
        batcher = MicroBatcher(search, max_batch=16, max_wait_ms=0)
        await batcher.start()
        try:
            spec = QuerySpec(None, 1)
            good = asyncio.ensure_future(batcher.search(["g1", "g2", "g3"], [spec] * 3))
            bad = asyncio.ensure_future(batcher.search(["x", "bad1", "bad2"], [spec] * 3))
            other = asyncio.ensure_future(batcher.search(["g4"], [spec]))
            return await asyncio.gather(good, bad, other, return_exceptions=True)
        finally:
            await batcher.stop()

    good, bad, other = asyncio.run(main())
    assert good == [["g1"], ["g2"], ["g3"]] and other == [["g4"]]
    assert isinstance(bad, ValueError)


def test_batcher_a_short_answer_is_an_error_not_a_hang():
    def search(queries, specs):
        return [[q] for q in queries][:-1]  # one result missing

    async def main():
        batcher = MicroBatcher(search, max_batch=4, max_wait_ms=0)
        await batcher.start()
        try:
            spec = QuerySpec(None, 1)
            return await asyncio.wait_for(
                asyncio.gather(*(batcher.search([f"q{i}"], [spec]) for i in range(4)), return_exceptions=True), 10)
        finally:
            await batcher.stop()

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and "answered" in str(r) for r in results), results

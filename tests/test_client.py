"""FunnelClient against a real funnel service (uvicorn on 127.0.0.1, the real model and engine): the
same hits as the in-process Retriever, sync and async, and every failure as its domain error."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from conftest import TOPIC_QUERIES
from topics_service import KEY, NAME, assert_same_hits, closed_port_url, silent_server, topic_service

from retriever.errors import (
    BadInputError,
    ChunkNotFoundError,
    FunnelError,
    InvalidRequestError,
    NotReadyError,
    ServiceError,
    ServiceTimeoutError,
    ServiceUnreachableError,
    UnauthorizedError,
)
from retriever.query.result import SearchResult
from retriever.query.spec import Hit
from retriever.service import BackgroundServer, ServiceConfig
from retriever.service.client import FunnelClient

QUERY = "Why do central banks raise interest rates?"
QUERIES = [q for _, q, _ in TOPIC_QUERIES]
OPTIONS = [
    {"k": 5},
    {"k": 5, "exact": True},
    {"k": 4, "plan": "64:8,128:6"},
    {"k": 12, "filter": {"metadata.topic": "music"}},
    {"k": 12, "filter": {"metadata.year": {"gte": 2019}}, "exact": True},
    {"k": 3, "adaptive": False},
    {"k": 3, "with_text": False},
]


@pytest.fixture(scope="module")
def served(tmp_path_factory, embedder):
    with topic_service(tmp_path_factory.mktemp("client"), embedder) as service:
        yield service


@pytest.fixture(scope="module")
def client(served):
    with FunnelClient(served.url, api_key=KEY, timeout=60) as funnel:
        yield funnel


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(map(str, o)))
def test_search_returns_the_python_apis_hits(served, client, options):
    remote = client.search(QUERY, **options)
    assert isinstance(remote, SearchResult) and all(isinstance(hit, Hit) for hit in remote)
    local = served.retriever.search(QUERY, **options)
    assert_same_hits(remote, local)
    assert remote.depth == local.depth
    assert len(remote) == min(options["k"], len(local))


def test_search_batch_keeps_order_and_splits_past_the_services_bound(served, client):
    queries = QUERIES * 14  # 70 queries: the service takes 32 per request, so three requests
    before = client.health().batching["queries"]
    remote = client.search_batch(queries, k=2)
    assert client.health().batching["queries"] - before == 70
    local = served.retriever.search_batch(queries, k=2)
    assert len(remote) == 70
    for got, expected in zip(remote, local):
        assert_same_hits(got, expected)
    assert [r[0].doc_id for r in remote[:5]] == [doc for _, _, doc in TOPIC_QUERIES]
    assert client.search_batch([]) == []


def test_async_paths_equal_the_sync_ones(client):
    async def run() -> tuple:
        single = await client.asearch(QUERY, k=4, filter={"metadata.year": {"lte": 2016}})
        batch = await client.asearch_batch(QUERIES * 8, k=1)  # 40 queries: two requests, concurrently
        return single, batch, await client.ahealth()

    single, batch, health = asyncio.run(run())
    assert_same_hits(single, client.search(QUERY, k=4, filter={"metadata.year": {"lte": 2016}}))
    assert [r[0].doc_id for r in batch] == [doc for _, _, doc in TOPIC_QUERIES] * 8
    assert health.ready
    # A second event loop gets its own connections (an AsyncClient is bound to the loop that opened it).
    assert_same_hits(asyncio.run(client.asearch(QUERY, k=2)), client.search(QUERY, k=2))


def test_health_needs_no_key_and_names_the_collection(served):
    with FunnelClient(served.url) as anonymous:
        health = anonymous.health()
        assert health.ready and health.status == "ready" and health.message is None
        assert health.collection == NAME and health.model.endswith("all-MiniLM-L6-v2")
        assert anonymous.wait_ready(timeout=5) == health


def test_feedback_is_recorded(served, client):
    receipt = client.feedback("What makes loans more expensive?", "interest", note="expected first")
    assert receipt.recorded and receipt.chunk_id
    lines = [json.loads(line) for line in served.feedback.read_text().splitlines()]
    assert lines[-1]["doc_id"] == "interest" and lines[-1]["chunk_id"] == receipt.chunk_id
    assert asyncio.run(client.afeedback("How do glaciers move?", "glacier")).recorded
    with pytest.raises(ChunkNotFoundError, match="no chunk 3 of document 'glacier'") as caught:
        client.feedback("q", "glacier", chunk=3)
    assert caught.value.http_status == 404


# --- errors: the service's error JSON as domain errors ----------------------------------------------


@pytest.mark.parametrize("options", [
    {"plan": "64:10,999:5"},                   # a dim the collection lacks
    {"plan": "64:8", "exact": True},           # a plan with an exact search
    {"adaptive": True},                        # the collection was never calibrated
    {"filter": {"nope": 1}},                   # an unknown filter field
    {"filter": {"metadata.year": True}},       # a boolean match value
])
def test_a_refused_search_raises_the_same_error_class_as_in_process(served, client, options):
    with pytest.raises(FunnelError) as local:
        served.retriever.search(QUERY, **options)
    with pytest.raises(FunnelError) as remote:
        client.search(QUERY, **options)
    assert type(remote.value) is type(local.value)
    assert str(local.value) in str(remote.value) and "HTTP 400" in str(remote.value)
    with pytest.raises(type(local.value)):
        asyncio.run(client.asearch(QUERY, **options))


@pytest.mark.parametrize("options, field", [({"k": 0}, "k"), ({"k": 101}, "k"), ({"k": True}, "k")])
def test_a_request_outside_the_schema_is_an_invalid_request_error(client, options, field):
    with pytest.raises(InvalidRequestError, match=rf"^{field}: .*HTTP 422 validation") as caught:
        client.search(QUERY, **options)
    assert isinstance(caught.value, BadInputError) and caught.value.http_status == 422
    with pytest.raises(InvalidRequestError):
        client.search("")  # an empty query: the schema's minimum length


def test_wrong_or_missing_api_key(served):
    with FunnelClient(served.url, api_key="not-the-key") as wrong, FunnelClient(served.url) as missing:
        with pytest.raises(UnauthorizedError, match=r"^wrong API key \(HTTP 401 unauthorized") as caught:
            wrong.search(QUERY)
        assert caught.value.http_status == 401
        with pytest.raises(UnauthorizedError, match="missing API key: send it in the X-API-Key header"):
            missing.search(QUERY)
        with pytest.raises(UnauthorizedError):
            wrong.feedback(QUERY, "interest")
        with pytest.raises(UnauthorizedError, match="wrong API key"):
            asyncio.run(wrong.asearch(QUERY))
        assert wrong.health().ready  # /healthz is open


def test_unreachable_server():
    url = closed_port_url()
    with FunnelClient(url, api_key=KEY) as nobody:
        with pytest.raises(ServiceUnreachableError, match=rf"cannot reach the funnel service at {url}: .*refused"):
            nobody.search(QUERY)
        with pytest.raises(ServiceUnreachableError):
            asyncio.run(nobody.asearch(QUERY))
        with pytest.raises(ServiceUnreachableError):
            nobody.health()
        started = time.monotonic()
        with pytest.raises(ServiceUnreachableError):
            nobody.wait_ready(timeout=0.3, interval=0.05)
        assert time.monotonic() - started < 5


def test_a_server_that_does_not_answer_times_out():
    with silent_server() as url, FunnelClient(url, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(ServiceTimeoutError, match=rf"at {url} did not answer within 0.3 s \(ReadTimeout\)"):
            client.search(QUERY)
        assert time.monotonic() - started < 5
        with pytest.raises(ServiceTimeoutError):
            asyncio.run(client.asearch(QUERY))


def test_a_url_that_is_not_a_funnel_service(served):
    with FunnelClient(f"{served.url}/not-here", api_key=KEY) as wrong_path, \
            pytest.raises(ServiceError, match=r"HTTP 404 not_found from POST .*/not-here/search"):
        wrong_path.search(QUERY)


def test_loading_server_is_not_ready_until_its_model_loads(served, embedder):
    release = threading.Event()

    def slow_embedder():  # noqa: ANN202
        release.wait(30)
        return embedder

    collection = served.retriever.collection
    with BackgroundServer(collection, slow_embedder, ServiceConfig()).start(wait_ready=False) as loading, \
            FunnelClient(loading.url) as client:
        assert client.health().status == "loading"
        with pytest.raises(NotReadyError, match="HTTP 503 not_ready") as caught:
            client.search(QUERY)
        assert caught.value.http_status == 503
        with pytest.raises(NotReadyError, match="still loading after 0.2 s"):
            client.wait_ready(timeout=0.2, interval=0.05)
        release.set()
        assert client.wait_ready(timeout=60).ready
        assert client.search(QUERY, k=1)[0].doc_id == "interest"


def test_bad_client_arguments(client):
    for kwargs in ({"base_url": "127.0.0.1:8000"}, {"base_url": "http://x", "timeout": 0},
                   {"base_url": "http://x", "timeout": True}, {"base_url": "http://x", "api_key": ""}):
        with pytest.raises(BadInputError):
            FunnelClient(**kwargs)
    with pytest.raises(BadInputError, match="a list of query strings, not a str"):
        client.search_batch(QUERY)
    assert "not-the" not in repr(FunnelClient("http://x", api_key="not-the-key"))

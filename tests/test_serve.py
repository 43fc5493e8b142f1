"""The HTTP service: a real uvicorn server on a free 127.0.0.1 port, the real model and engine, HTTP calls.

One server (with an API key) is shared by the module; tests that need another set-up (loading,
the CLI in a subprocess) start their own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import REPO_ROOT, TOPIC_DOCS, TOPIC_QUERIES, write_jsonl

from retriever import Retriever
from retriever.errors import ModelLoadError
from retriever.ingest.indexer import index_corpus
from retriever.service import BackgroundServer, ServiceConfig
from retriever.service.openapi import render
from retriever.store.edge.catalog import EdgeCatalog

KEY = "test-key-0123456789"
N_DOCS = len(TOPIC_DOCS)


def serve_records() -> list[dict]:
    """The topic corpus with typed metadata to filter on: topic (str), year (int), featured (bool)."""
    return [
        {"_id": doc_id, "title": title, "text": text,
         "metadata": {"topic": title.lower(), "year": 2010 + i, "featured": i % 2 == 0}}
        for i, (doc_id, title, text) in enumerate(TOPIC_DOCS)
    ]


@pytest.fixture(scope="module")
def served(tmp_path_factory, embedder):
    """The corpus indexed once, and the service over it with an API key, on a free port."""
    root = tmp_path_factory.mktemp("serve")
    corpus = write_jsonl(root / "corpus.jsonl", serve_records())
    catalog = EdgeCatalog(root / "data")
    index_corpus(catalog, "topics", [corpus], embedder)
    collection = catalog.open("topics")
    feedback = root / "feedback" / "topics.jsonl"
    server = BackgroundServer(collection, lambda: embedder, ServiceConfig(api_key=KEY, feedback_path=feedback))
    with server:
        yield server, feedback
    collection.close()


@pytest.fixture(scope="module")
def client(served):
    server, _ = served
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as c:
        yield c


def search(client: httpx.Client, **body) -> dict:
    response = client.post("/search", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, type_: str, fragment: str = "") -> dict:
    """An error: the status, JSON ``{"error": {"type", "message"}}``, no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == type_, error
    assert error["message"] and "Traceback" not in error["message"]
    assert fragment in error["message"], error["message"]
    return error


# --- the happy path ------------------------------------------------------------------------------


def test_healthz_is_open_and_ready(served):
    server, _ = served
    response = httpx.get(f"{server.url}/healthz")  # no API key needed
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready" and body["collection"] == "topics"
    assert body["batching"]["max_batch"] == 32


def test_search_one_query(client):
    body = search(client, query="Which instrument has four strings and is played with a bow?", k=3)
    assert body["collection"] == "topics" and body["k"] == 3
    assert body["plan"] == "64:120,128:60,256:30,384:3"
    (result,) = body["results"]
    hits = result["hits"]
    assert len(hits) == 3 and hits[0]["doc_id"] == "violin"
    assert set(hits[0]) == {"id", "doc_id", "chunk", "score", "text", "title", "metadata"}
    assert "bow" in hits[0]["text"] and hits[0]["title"] == "Music" and hits[0]["metadata"]["topic"] == "music"
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert body["took_ms"] > 0


def test_search_batch_keeps_order(client):
    queries = [q for _, q, _ in TOPIC_QUERIES]
    body = search(client, queries=queries, k=1, with_text=False)
    assert [r["query"] for r in body["results"]] == queries
    assert [r["hits"][0]["doc_id"] for r in body["results"]] == [doc for _, _, doc in TOPIC_QUERIES]
    assert all(r["hits"][0]["text"] is None for r in body["results"])


def test_http_matches_the_python_api(served, client):
    server, _ = served
    retriever: Retriever = server.state.retriever
    query = "Why do central banks raise interest rates?"
    for options in ({"k": 5}, {"k": 5, "exact": True}, {"k": 4, "plan": "64:8,128:6"}):
        body = search(client, query=query, **options)
        direct = retriever.search(query, **options)
        assert [h["id"] for h in body["results"][0]["hits"]] == [h.id for h in direct]
        assert [h["score"] for h in body["results"][0]["hits"]] == pytest.approx([h.score for h in direct], abs=1e-6)
    assert search(client, query=query, exact=True)["plan"] == "exact"


@pytest.mark.parametrize(
    "where, expected",
    [
        ({"metadata.topic": "music"}, {"violin", "piano"}),
        ({"doc_id": ["mars", "glacier"]}, {"mars", "glacier"}),
        ({"title": "Space"}, {"mars"}),
        ({"metadata.year": {"gte": 2019}}, {"piano", "glacier", "vaccine"}),
        ({"metadata.year": {"gt": 2010, "lte": 2012}}, {"bread", "python"}),
        ({"metadata.year": {"lt": 2016}, "metadata.topic": ["music", "space"]}, {"mars"}),
        ({"metadata.year": [2010, 2011]}, {"volcano", "bread"}),
        ({"chunk": 0, "doc_id": "bread"}, {"bread"}),
        ({"chunk": {"gte": 1}}, set()),
    ],
)
def test_filters(client, where, expected):
    for exact in (False, True):
        body = search(client, query="anything at all", k=N_DOCS, filter=where, exact=exact, with_text=False)
        assert {h["doc_id"] for h in body["results"][0]["hits"]} == expected, (where, exact)


def test_filter_in_the_python_api(served):
    server, _ = served
    hits = server.state.retriever.search("volcano", k=N_DOCS, filter={"metadata.topic": "space"})
    assert [h.doc_id for h in hits] == ["mars"]


def test_collection_info(client):
    response = client.get("/collections/topics")
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["name"] == "topics" and info["points"] == N_DOCS
    assert info["dims"] == [64, 128, 256, 384] and info["model"].endswith("all-MiniLM-L6-v2")
    assert info["default_plan"] == "64:400,128:200,256:100,384:10" and info["disk_bytes"] > 0


def test_concurrent_queries_are_batched_and_correct(client):
    before = client.get("/healthz").json()["batching"]
    queries = [q for _, q, _ in TOPIC_QUERIES] * 8
    expected = {q: doc for _, q, doc in TOPIC_QUERIES}
    with ThreadPoolExecutor(16) as pool:
        bodies = list(pool.map(lambda q: search(client, query=q, k=1, with_text=False), queries))
    for q, body in zip(queries, bodies):
        assert body["results"][0]["hits"][0]["doc_id"] == expected[q]
    after = client.get("/healthz").json()["batching"]
    batches, answered = after["batches"] - before["batches"], after["queries"] - before["queries"]
    assert answered == len(queries)
    assert batches < answered, (batches, answered)  # concurrent requests shared encodes


# --- feedback --------------------------------------------------------------------------------------


def test_feedback_is_appended_to_the_configured_file(served, client):
    _, feedback = served
    response = client.post("/feedback", json={"query": "bowed instruments", "doc_id": "violin", "note": "rank 1"})
    assert response.status_code == 200, response.text
    record = json.loads(feedback.read_text().splitlines()[-1])
    assert record["query"] == "bowed instruments" and record["doc_id"] == "violin" and record["chunk"] == 0
    assert record["collection"] == "topics" and record["note"] == "rank 1"
    assert record["chunk_id"] == response.json()["chunk_id"] and record["time"].endswith("+00:00")

    before = len(feedback.read_text().splitlines())
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: client.post("/feedback", json={"query": f"q{i}", "doc_id": "mars"}).status_code,
                              range(24)))
    assert codes == [200] * 24
    lines = feedback.read_text().splitlines()
    assert len(lines) == before + 24
    assert {json.loads(line)["query"] for line in lines[before:]} == {f"q{i}" for i in range(24)}  # whole lines


def test_feedback_errors(client):
    assert_error(client.post("/feedback", json={"query": "q", "doc_id": "no-such-doc"}), 404, "chunk_not_found",
                 "no chunk 0 of document 'no-such-doc'")
    assert_error(client.post("/feedback", json={"query": "q", "doc_id": "violin", "chunk": 3}), 404, "chunk_not_found")
    # No path ever comes from a request: an extra field is refused, not used.
    assert_error(client.post("/feedback", json={"query": "q", "doc_id": "violin", "path": "/tmp/x"}), 422,
                 "validation", "path")


# --- bad input → 4xx JSON ---------------------------------------------------------------------------


BAD_SEARCHES = [
    ("malformed JSON", b'{"query": "x",', 400, "malformed_json", "malformed JSON"),
    ("not an object", b'["x"]', 422, "validation", ""),
    ("missing query", {"k": 3}, 422, "validation", "give exactly one of `query`"),
    ("both query and queries", {"query": "a", "queries": ["b"]}, 422, "validation", "exactly one"),
    ("empty query", {"query": ""}, 422, "validation", "query"),
    ("blank query", {"query": "  \t "}, 400, "bad_input", "empty query"),
    ("blank query in a batch", {"queries": ["ok", " "]}, 400, "bad_input", "empty query"),
    ("huge query", {"query": "x" * 5000}, 422, "validation", "at most 4096 characters"),
    ("empty batch", {"queries": []}, 422, "validation", "queries"),
    ("huge batch", {"queries": ["q"] * 33}, 422, "validation", "at most 32"),
    ("k = 0", {"query": "x", "k": 0}, 422, "validation", "k: Input should be greater than or equal to 1"),
    ("k < 0", {"query": "x", "k": -3}, 422, "validation", "k:"),
    ("k too large", {"query": "x", "k": 101}, 422, "validation", "less than or equal to 100"),
    ("k not a number", {"query": "x", "k": "ten"}, 422, "validation", "k:"),
    ("unknown plan dims", {"query": "x", "plan": "65:100"}, 400, "invalid_plan", "dim 65 is not in the collection's dims"),
    ("malformed plan", {"query": "x", "plan": "64-100"}, 400, "invalid_plan", "is not DIM:LIMIT"),
    ("unknown field", {"query": "x", "colour": "red"}, 422, "validation", "colour"),
    ("unknown filter field", {"query": "x", "filter": {"text": "gpu"}}, 400, "invalid_filter", "unknown filter field 'text'"),
    ("float exact match", {"query": "x", "filter": {"metadata.a": 1.5}}, 400, "invalid_filter", "use a range"),
    ("int for doc_id", {"query": "x", "filter": {"doc_id": 3}}, 400, "invalid_filter", "expected a string"),
    ("string for chunk", {"query": "x", "filter": {"chunk": "0"}}, 400, "invalid_filter", "expected an integer"),
    ("range on a string field", {"query": "x", "filter": {"doc_id": {"gte": 1}}}, 400, "invalid_filter", "not a range"),
    ("unknown range op", {"query": "x", "filter": {"chunk": {"from": 1}}}, 400, "invalid_filter", "gt, gte, lt"),
    ("mixed list", {"query": "x", "filter": {"metadata.a": ["x", 1]}}, 400, "invalid_filter", "only strings or only"),
    ("boolean filter value", {"query": "x", "filter": {"metadata.featured": True}}, 400, "invalid_filter",
     "matching a boolean is not supported"),
    ("null filter value", {"query": "x", "filter": {"metadata.a": None}}, 400, "invalid_filter", "expected"),
    ("filter not an object", {"query": "x", "filter": ["doc_id"]}, 422, "validation", "filter"),
    ("unknown collection", {"query": "x", "collection": "other"}, 404, "collection_not_found", "serves 'topics'"),
]


@pytest.mark.parametrize("body, status, type_, fragment", [c[1:] for c in BAD_SEARCHES], ids=[c[0] for c in BAD_SEARCHES])
def test_bad_search_requests(client, body, status, type_, fragment):
    if isinstance(body, bytes):
        response = client.post("/search", content=body, headers={"content-type": "application/json"})
    else:
        response = client.post("/search", json=body)
    assert_error(response, status, type_, fragment)


def test_size_limits(client):
    big = json.dumps({"query": "x", "note": "y" * 300_000}).encode()
    assert_error(client.post("/search", content=big, headers={"content-type": "application/json"}), 413,
                 "payload_too_large")

    def chunks():  # no Content-Length: the limit is counted while reading
        for _ in range(40):
            yield b" " * 10_000

    assert_error(client.post("/search", content=chunks(), headers={"content-type": "application/json"}), 413,
                 "payload_too_large")


def test_unknown_routes_and_collections(client):
    assert_error(client.get("/collections/other"), 404, "collection_not_found")
    traversal = client.get("/collections/..%2F..%2Fetc")
    assert traversal.status_code == 404 and traversal.json()["error"]["type"] in {"not_found", "collection_not_found"}
    assert_error(client.get("/nowhere"), 404, "not_found")
    assert_error(client.get("/search"), 405, "method_not_allowed")


def test_api_key(served):
    server, _ = served
    url = f"{server.url}/search"
    body = {"query": "violin", "k": 1}
    assert_error(httpx.post(url, json=body), 401, "unauthorized", "missing API key")
    assert_error(httpx.post(url, json=body, headers={"X-API-Key": KEY + "x"}), 401, "unauthorized", "wrong API key")
    assert_error(httpx.post(url, json=body, headers={"X-API-Key": ""}), 401, "unauthorized")
    assert_error(httpx.get(f"{server.url}/collections/topics"), 401, "unauthorized")
    # The key is checked before the body is read: a wrong key with a malformed body is still a 401.
    assert_error(httpx.post(url, content=b"{", headers={"X-API-Key": "no"}), 401, "unauthorized")
    assert httpx.post(url, json=body, headers={"X-API-Key": KEY}).status_code == 200
    assert httpx.get(f"{server.url}/openapi.json").status_code == 200  # the spec is public


# --- loading, failing, locking -----------------------------------------------------------------------


def test_503_while_the_model_loads(served, embedder):
    server, _ = served
    release = threading.Event()

    def slow_embedder():
        release.wait(30)
        return embedder

    with BackgroundServer(server.state.collection, slow_embedder, ServiceConfig()).start(wait_ready=False) as loading:
        health = httpx.get(f"{loading.url}/healthz")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        assert health.headers["retry-after"] == "1"
        assert_error(httpx.post(f"{loading.url}/search", json={"query": "x"}), 503, "not_ready", "loading the model")
        release.set()
        loading.state.wait_loaded(30)
        assert httpx.get(f"{loading.url}/healthz").status_code == 200
        assert httpx.post(f"{loading.url}/search", json={"query": "violin", "k": 1}).status_code == 200


def test_a_failed_model_load_is_a_503_with_the_reason(served):
    server, _ = served

    def broken():
        raise ModelLoadError("cannot load model 'nope': not found")

    with BackgroundServer(server.state.collection, broken, ServiceConfig()) as failed:
        health = httpx.get(f"{failed.url}/healthz")
        assert health.status_code == 503
        assert health.json()["status"] == "failed" and "cannot load model 'nope'" in health.json()["message"]
        assert_error(httpx.post(f"{failed.url}/search", json={"query": "x"}), 503, "not_ready", "could not load")


def _funnel(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "cli.py"), *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_funnel_serve_cli_and_a_second_server_is_refused(tmp_path, embedder):
    """``funnel serve`` in a real process; a second ``funnel serve`` of the same collection exits with one line."""
    data = tmp_path / "data"
    corpus = write_jsonl(tmp_path / "c.jsonl", serve_records()[:3])
    index_corpus(EdgeCatalog(data), "mini", [corpus], embedder)
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT), "FUNNEL_HOME": str(data), "FUNNEL_API_KEY": "k1"}
    first = _funnel("serve", "-c", "mini", "--port", "0", "--device", "cpu", env=env)
    try:
        seen = []
        while not (match := re.search(r"on (http://127\.0\.0\.1:\d+)", seen[-1] if seen else "")):
            seen.append(first.stderr.readline())
            assert seen[-1] and len(seen) < 50, seen
        url = match.group(1)
        deadline = time.monotonic() + 90
        while httpx.get(f"{url}/healthz").status_code != 200:
            assert time.monotonic() < deadline and first.poll() is None, "the server did not get ready"
            time.sleep(0.2)
        hit = httpx.post(f"{url}/search", json={"query": "bake bread", "k": 1}, headers={"X-API-Key": "k1"}).json()
        assert hit["results"][0]["hits"][0]["doc_id"] == "bread"

        second = _funnel("serve", "-c", "mini", "--port", "0", env=env)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 1, err
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith(
            f"Error: collection 'mini' is in use by another process: pid {first.pid} (funnel serve -c mini --port 0 "
            "--device cpu, since ") and lines[0].endswith("wait for it to finish or stop it (the embedded engine opens "
                                                           "a collection in one process at a time, and has no read-only "
                                                           "open)"), err
        assert "Traceback" not in out + err
    finally:
        first.send_signal(signal.SIGINT)  # Ctrl-C: a graceful stop, exit 0
        first.wait(30)
    assert first.returncode == 0, first.stderr.read()


def test_funnel_serve_bad_options(tmp_path):
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT), "FUNNEL_HOME": str(tmp_path)}
    proc = _funnel("serve", "-c", "nothing-here", env=env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and err.startswith("Error: no collection 'nothing-here'") and len(err.splitlines()) == 1


# --- the OpenAPI spec --------------------------------------------------------------------------------


def test_committed_openapi_is_current(served):
    server, _ = served
    committed = (REPO_ROOT / "docs" / "openapi.json").read_text()
    assert committed == render(), "docs/openapi.json is stale: python -m retriever.service.openapi > docs/openapi.json"
    assert httpx.get(f"{server.url}/openapi.json").json() == json.loads(committed)


# --- property-based: schemathesis over the OpenAPI spec, against the live server ----------------------


SCHEMA_EXAMPLES = int(os.environ.get("FUNNEL_SCHEMA_EXAMPLES", "25"))


def test_schemathesis_finds_no_server_error(served):
    """Every operation, with schema-valid and schema-violating requests: never a 5xx, always the documented shape."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    server, _ = served
    schema = schemathesis.openapi.from_dict(json.loads(render()))
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    statuses: dict[tuple[str, str], list[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            seen = statuses.setdefault((operation.label, mode.value), [])

            @settings(max_examples=SCHEMA_EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(mode))
            def run(case):  # noqa: ANN001
                response = case.call(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60)
                assert response.status_code < 500, (case.method, case.path, case.body, response.text)
                case.validate_response(response, checks=checks)
                seen.append(response.status_code)

            try:
                run()
            except Unsatisfiable:  # nothing to violate (e.g. GET /healthz has no parameters)
                assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
    for label in ("POST /search", "POST /feedback", "GET /collections/{name}"):
        assert len(statuses[(label, "positive")]) >= SCHEMA_EXAMPLES // 2, statuses
        assert statuses[(label, "negative")], label
        assert all(400 <= s < 500 for s in statuses[(label, "negative")]), (label, statuses[(label, "negative")])
    assert 200 in statuses[("POST /search", "positive")] and 200 in statuses[("GET /healthz", "positive")]

"""Bad and hostile HTTP clients against the real service (uvicorn on 127.0.0.1, the real model and engine).

Each case of issue 9: an input that used to fail other clients' searches, reset a keep-alive
connection, hold a connection open forever, silently drop a plan, or stop the server at start. Every
test checks the status, the JSON error shape with a one-line message, and that the collection still
answers a normal search afterwards with the same hits as before.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import REPO_ROOT, TOPIC_DOCS, write_jsonl

from retriever.ingest.indexer import index_corpus
from retriever.service import BackgroundServer, ServiceConfig
from retriever.store.edge.catalog import EdgeCatalog

KEY = "bad-input-key-0123"
BOOM = "BOOM: this query makes the encoder raise"  # an internal failure no validation can catch
READ_TIMEOUT = 1.0
QUERIES = {
    "How does a volcano erupt with lava?": "volcano",
    "How do I bake a loaf of bread with yeast?": "bread",
    "Why do central banks raise interest rates?": "interest",
    "Which instrument has four strings and is played with a bow?": "violin",
}


class ExplodingEmbedder:
    """The real embedder, except that encoding :data:`BOOM` raises ``RuntimeError``.

    With ``hold()`` the next encode call waits until ``release()``: the test then knows every request
    it sends meanwhile is queued, and that they all go into the next batch together.
    """

    def __init__(self, real) -> None:
        self.real = real
        self.calls: list[list[str]] = []
        self.holding = threading.Event()
        self._hold = False
        self._release = threading.Event()

    def __getattr__(self, name: str):
        return getattr(self.real, name)

    def hold(self) -> None:
        self._release.clear()
        self.holding.clear()
        self._hold = True

    def release(self) -> None:
        self._release.set()

    def encode(self, texts: Sequence[str], dims, batch_size: int = 64):
        self.calls.append(list(texts))
        if self._hold:
            self._hold = False
            self.holding.set()
            assert self._release.wait(60), "the test never released the encoder"
        if BOOM in texts:
            raise RuntimeError("the encoder exploded")
        return self.real.encode(texts, dims, batch_size=batch_size)


def records() -> list[dict]:
    return [{"_id": doc_id, "title": title, "text": text, "metadata": {"n": i, "topic": title.lower()}}
            for i, (doc_id, title, text) in enumerate(TOPIC_DOCS)]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("bad-http")
    index_corpus(EdgeCatalog(root / "data"), "topics", [write_jsonl(root / "corpus.jsonl", records())], embedder)
    return root / "data"


@pytest.fixture(scope="module")
def served(indexed, embedder):
    collection = EdgeCatalog(indexed).open("topics")
    exploding = ExplodingEmbedder(embedder)
    server = BackgroundServer(collection, lambda: exploding, ServiceConfig(api_key=KEY, read_timeout=READ_TIMEOUT))
    with server:
        yield server, exploding
    collection.close()


@pytest.fixture(scope="module")
def baseline(served) -> dict[str, list[str]]:
    """The hits of each normal query before any bad input: ids in rank order."""
    server, _ = served
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as c:
        return {q: hit_ids(c.post("/search", json={"query": q, "k": 3})) for q in QUERIES}


def hit_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [h["id"] for h in response.json()["results"][0]["hits"]]


def assert_error_body(status: int, body: bytes | dict, expected_status: int, type_: str, fragment: str = "") -> str:
    """``{"error": {"type", "message"}}`` with a one-line message; returns the message."""
    assert status == expected_status, body
    error = (json.loads(body) if isinstance(body, bytes) else body)["error"]
    assert set(error) == {"type", "message"} and error["type"] == type_, error
    message = error["message"]
    assert message and "\n" not in message and "Traceback" not in message, message
    assert fragment in message, message
    return message


def assert_error(response: httpx.Response, status: int, type_: str, fragment: str = "") -> str:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return assert_error_body(response.status_code, response.json(), status, type_, fragment)


def assert_still_answers(server: BackgroundServer, baseline: dict[str, list[str]]) -> None:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as c:
        for q, ids in baseline.items():
            assert hit_ids(c.post("/search", json={"query": q, "k": 3})) == ids, q


# --- raw HTTP/1.1 on one socket: what a keep-alive client really sees ----------------------------------


def connect(server: BackgroundServer, timeout: float = 30) -> socket.socket:
    url = urlsplit(server.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request_head(path: str, length: int | None, extra: str = "") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else ""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\n"
            f"{size}{extra}\r\n").encode()


def post_raw(sock: socket.socket, body: dict) -> None:
    data = json.dumps(body).encode()
    sock.sendall(request_head("/search", len(data)) + data)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response (status, lower-case headers, body) read off the socket; ConnectionError if it closed."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection (read so far: {buf!r})")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    size = int(headers["content-length"])
    while len(body) < size:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-body")
        body += chunk
    return int(status_line.split()[1]), headers, body[:size]


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closed its side (recv gives EOF or a reset before the socket's timeout)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# --- one client's bad filter must not fail anyone else's search ---------------------------------------


@pytest.mark.parametrize(
    "where, fragment",
    [
        ({"metadata.n": 1180591620717411303424}, "filter 'metadata.n': integer 1180591620717411303424 is outside"),
        ({"metadata.n": 2**63}, "integer 9223372036854775808 is outside the engine's signed 64-bit range"),
        ({"metadata.n": -(2**63) - 1}, "integer -9223372036854775809 is outside"),
        ({"metadata.n": [1, 2**64]}, "integer 18446744073709551616 is outside"),
        ({"chunk": 2**63}, "filter 'chunk': integer 9223372036854775808 is outside"),
        ({"metadata.n": {"gte": 10**400}}, "filter 'metadata.n': gte must be a finite number"),
    ],
)
def test_out_of_range_filter_integer_is_400(served, baseline, where, fragment):
    server, _ = served
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as c:
        assert_error(c.post("/search", json={"query": "volcano", "filter": where}), 400, "invalid_filter", fragment)
        # The engine's own limits are accepted (and match nothing here).
        edge = c.post("/search", json={"query": "volcano", "filter": {"metadata.n": [2**63 - 1, -(2**63)]}})
        assert edge.status_code == 200 and edge.json()["results"][0]["hits"] == []
    assert_still_answers(server, baseline)


@pytest.mark.parametrize("raw", [b'{"query": "x", "filter": {"metadata.n": ' + b"9" * 5000 + b"}}",
                                 b'{"query": "x", "k": ' + b"9" * 5000 + b"}"], ids=["filter", "k"])
def test_integer_too_long_to_parse_is_400(served, baseline, raw):
    """An integer of over 4,300 digits is past Python's int parsing limit: a 400, never a 500."""
    server, _ = served
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as c:
        response = c.post("/search", content=raw, headers={"content-type": "application/json"})
        assert_error(response, 400, "malformed_json", "the JSON body holds a number too long to read")
    assert_still_answers(server, baseline)


def test_huge_int_filter_fails_alone(served, baseline):
    """The issue's case: 3 clients with a >64-bit filter integer beside 12 valid ones, all at once.

    Before: the batch worker raised TypeError for the whole batch and 55 of 60 valid requests got 500.
    """
    server, _ = served
    valid_clients, bad_clients, rounds = 12, 3, 5
    queries = list(QUERIES)
    start = threading.Barrier(valid_clients + bad_clients)
    outcomes: dict[str, list] = {"valid": [], "bad": [], "bad_after": []}

    def valid(i: int) -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as c:
            start.wait(30)
            for r in range(rounds):
                q = queries[(i + r) % len(queries)]
                response = c.post("/search", json={"query": q, "k": 3})
                outcomes["valid"].append((q, response.status_code, response.json()))

    def bad(i: int) -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as c:
            start.wait(30)
            for _ in range(rounds):
                response = c.post("/search", json={"query": queries[i], "filter": {"metadata.n": 2**70}})
                outcomes["bad"].append((response.status_code, response.json()))
            outcomes["bad_after"].append(hit_ids(c.post("/search", json={"query": queries[i], "k": 3})))

    threads = [threading.Thread(target=valid, args=(i,)) for i in range(valid_clients)]
    threads += [threading.Thread(target=bad, args=(i,)) for i in range(bad_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)

    assert len(outcomes["valid"]) == valid_clients * rounds
    for q, status, body in outcomes["valid"]:
        assert status == 200, body
        assert [h["id"] for h in body["results"][0]["hits"]] == baseline[q], q
    assert len(outcomes["bad"]) == bad_clients * rounds
    for status, body in outcomes["bad"]:
        assert_error_body(status, body, 400, "invalid_filter", "filter 'metadata.n': integer 1180591620717411303424")
    assert sorted(outcomes["bad_after"]) == sorted(baseline[q] for q in queries[:bad_clients])
    assert_still_answers(server, baseline)


def test_internal_failure_in_a_batch_fails_alone(served, baseline):
    """A query that fails inside the batch call (past all validation) shares a batch with 12 valid
    ones: they get their hits, it gets a 500. The batch is made deterministic by holding the encoder
    until every request is queued."""
    server, exploding = served
    batcher = server.app.state.batcher
    queries = list(QUERIES)
    valid_n, boom_n = 12, 3
    results: dict[str, list] = {"valid": [], "boom": []}

    def send(kind: str, q: str) -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as c:
            response = c.post("/search", json={"query": q, "k": 3})
            results[kind].append((q, response.status_code, response.json()))

    exploding.hold()
    gate = threading.Thread(target=send, args=("valid", queries[0]))
    gate.start()
    assert exploding.holding.wait(30), "the first search never reached the encoder"
    calls_before = len(exploding.calls)
    threads = [threading.Thread(target=send, args=("valid", queries[i % len(queries)])) for i in range(valid_n)]
    threads += [threading.Thread(target=send, args=("boom", BOOM)) for _ in range(boom_n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while batcher.pending < valid_n + boom_n:  # wait for a condition, not for a guessed time
        assert time.monotonic() < deadline, f"only {batcher.pending} queued"
        time.sleep(0.005)
    exploding.release()
    for t in [gate, *threads]:
        t.join(120)

    shared = exploding.calls[calls_before]
    assert len(shared) == valid_n + boom_n and shared.count(BOOM) == boom_n  # they did share one batch
    assert len(results["valid"]) == valid_n + 1
    for q, status, body in results["valid"]:
        assert status == 200, body
        assert [h["id"] for h in body["results"][0]["hits"]] == baseline[q]
    assert len(results["boom"]) == boom_n
    for _, status, body in results["boom"]:
        assert_error_body(status, body, 500, "internal", "internal error: the server log has the details")
    assert_still_answers(server, baseline)


# --- a 500 keeps the keep-alive connection ----------------------------------------------------------------


def test_500_keeps_connection(served, baseline, caplog):
    """On one connection: a request that fails inside the server (500), then a normal one (200).

    Before: the app's ``Exception`` handler ran in Starlette's ServerErrorMiddleware, which re-raises
    after answering; uvicorn then closed the connection under the client.
    """
    server, _ = served
    query = next(iter(QUERIES))
    caplog.set_level(logging.ERROR, logger="funnel.service")
    with connect(server) as sock:
        post_raw(sock, {"query": BOOM})
        status, headers, body = read_response(sock)
        assert_error_body(status, body, 500, "internal", "internal error")
        assert headers["content-type"] == "application/json" and headers.get("connection") != "close"
        for _ in range(2):  # the same socket keeps working
            post_raw(sock, {"query": query, "k": 3})
            status, _, body = read_response(sock)
            assert status == 200, body
            assert [h["id"] for h in json.loads(body)["results"][0]["hits"]] == baseline[query]
    logged = [r for r in caplog.records if "unexpected error on POST /search" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None  # logged once, with the traceback
    assert_still_answers(server, baseline)


# --- slow or partial bodies: a bounded wait, then 408 and a closed connection ------------------------------


@pytest.mark.parametrize(
    "head, partial",
    [
        (request_head("/search", 100), b'{"query": '),  # the case: 10 of 100 bytes
        (request_head("/search", 100), b""),  # headers only
        (request_head("/search", None, "Transfer-Encoding: chunked\r\n"), b'a\r\n{"query": '),  # a chunk cut short
    ],
    ids=["10-of-100-bytes", "headers-only", "chunked-cut-short"],
)
def test_partial_body_times_out(served, baseline, head, partial):
    server, _ = served
    margin = 10.0  # generous for two shared cores; the lower bound shows it waited for the timeout
    with connect(server, timeout=READ_TIMEOUT + margin) as sock:
        start = time.monotonic()
        sock.sendall(head + partial)
        status, headers, body = read_response(sock)  # bounded by the socket timeout, never hangs
        elapsed = time.monotonic() - start
        assert_error_body(status, body, 408, "request_timeout", f"request body not received within {READ_TIMEOUT:g} s")
        assert headers.get("connection") == "close"
        assert closed_by_server(sock)
    assert READ_TIMEOUT * 0.9 <= elapsed < READ_TIMEOUT + margin, elapsed
    assert_still_answers(server, baseline)


@pytest.mark.parametrize("partial", [b"", b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"],
                         ids=["nothing-sent", "half-a-head"])
def test_partial_head_times_out(served, baseline, partial):
    """A connection that never completes a request head is closed after the read timeout (uvicorn
    0.54 alone keeps it open forever: its keep-alive timer stops at the first byte)."""
    server, _ = served
    margin = 10.0
    with connect(server, timeout=READ_TIMEOUT + margin) as sock:
        start = time.monotonic()
        sock.sendall(partial)
        assert closed_by_server(sock)  # bounded by the socket timeout: a timeout error fails the test
        elapsed = time.monotonic() - start
    assert READ_TIMEOUT * 0.9 <= elapsed < READ_TIMEOUT + margin, elapsed
    assert_still_answers(server, baseline)


def test_half_a_head_after_a_response_times_out(served, baseline):
    """The head timer restarts after each response: a keep-alive client that stalls inside its next
    request head is closed too."""
    server, _ = served
    query = next(iter(QUERIES))
    with connect(server, timeout=READ_TIMEOUT + 10) as sock:
        post_raw(sock, {"query": query, "k": 3})
        assert read_response(sock)[0] == 200
        sock.sendall(b"POST /search HTTP/1.1\r\nHost: 127.0")
        start = time.monotonic()
        assert closed_by_server(sock)
        assert time.monotonic() - start < READ_TIMEOUT + 10


def test_a_busy_keep_alive_connection_outlives_the_head_timeout(served, baseline):
    """Requests one after another on one connection for over twice the timeout: never cut off."""
    server, _ = served
    query = next(iter(QUERIES))
    with connect(server) as sock:
        start, answered = time.monotonic(), 0
        while time.monotonic() - start < 2.5 * READ_TIMEOUT:
            post_raw(sock, {"query": query, "k": 3})
            status, headers, body = read_response(sock)
            assert status == 200 and headers.get("connection") != "close", body
            assert [h["id"] for h in json.loads(body)["results"][0]["hits"]] == baseline[query]
            answered += 1
    assert answered > 1


def test_whole_body_in_pieces_is_fine(served, baseline):
    """A body sent in several writes (within the timeout) is read as before."""
    server, _ = served
    query = next(iter(QUERIES))
    data = json.dumps({"query": query, "k": 3}).encode()
    with connect(server) as sock:
        sock.sendall(request_head("/search", len(data)))
        for i in range(0, len(data), 7):
            sock.sendall(data[i : i + 7])
        status, _, body = read_response(sock)
        assert status == 200, body
        assert [h["id"] for h in json.loads(body)["results"][0]["hits"]] == baseline[query]


# --- plan and exact together, and loose JSON types ---------------------------------------------------------


def test_plan_with_exact_refused_http(served, baseline):
    server, _ = served
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as c:
        assert_error(c.post("/search", json={"query": "volcano", "plan": "64:100", "exact": True}), 400,
                     "invalid_plan", "give a plan or exact=True, not both")
        assert_error(c.post("/search", json={"queries": ["a", "b"], "plan": "64:8,128:6", "exact": True}), 400,
                     "invalid_plan", "not both")
        # An empty plan is no plan: exact alone still works.
        assert c.post("/search", json={"query": "volcano", "plan": "", "exact": True}).json()["plan"] == "exact"
    assert_still_answers(server, baseline)


@pytest.mark.parametrize(
    "field, value",
    [("k", True), ("k", "10"), ("k", 10.0), ("exact", "yes"), ("exact", 1), ("with_text", "no"), ("with_text", None)],
)
def test_loose_json_types_are_refused(served, baseline, field, value):
    """``"k": true`` used to mean k=1 and ``"exact": "yes"`` exact search: JSON types are strict now."""
    server, _ = served
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as c:
        assert_error(c.post("/search", json={"query": "volcano", field: value}), 422, "validation", f"{field}:")
    assert_still_answers(server, baseline)


# --- a model that cannot load: the server stays up and says why -----------------------------------------------


def test_model_missing_at_start_answers_503(indexed, tmp_path, embedder):
    """``funnel serve --model /nonexistent``: /healthz 503 with the load error, /search 503 not_ready,
    the error logged once, and the server keeps running until stopped (as the README documents)."""
    data = tmp_path / "data"
    index_corpus(EdgeCatalog(data), "mini", [write_jsonl(tmp_path / "c.jsonl", records()[:3])], embedder)
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT), "FUNNEL_HOME": str(data), "FUNNEL_API_KEY": KEY}
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "cli.py"), "serve", "-c", "mini", "--port", "0",
                             "--model", "/nonexistent", "--device", "cpu"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen: list[str] = []
        while not (match := re.search(r"on (http://127\.0\.0\.1:\d+)", seen[-1] if seen else "")):
            seen.append(proc.stderr.readline())
            assert seen[-1] and len(seen) < 50, seen
        url = match.group(1)
        deadline = time.monotonic() + 90
        while (health := httpx.get(f"{url}/healthz", timeout=30)).json()["status"] == "loading":
            assert time.monotonic() < deadline and proc.poll() is None, "the load never finished"
            time.sleep(0.1)
        assert health.status_code == 503 and health.headers["retry-after"] == "1"
        body = health.json()
        assert body["status"] == "failed" and body["collection"] == "mini"
        assert "cannot load model '/nonexistent'" in body["message"] and "\n" not in body["message"]
        for _ in range(2):
            assert_error(httpx.post(f"{url}/search", json={"query": "bread"}, headers={"X-API-Key": KEY}, timeout=30),
                         503, "not_ready", "the service could not load its model: cannot load model '/nonexistent'")
        assert proc.poll() is None, "the server exited instead of answering 503"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    log = "".join(seen) + err
    assert log.count("cannot load model '/nonexistent'") == 1, log  # logged once
    assert "Traceback" not in log, log

"""Issue 22, item 5: the server and FunnelClient do not trust the other side.

The server: an empty API key is refused, a server without one says so, request heads are bounded
before the key is checked (a real uvicorn server on 127.0.0.1, raw sockets). The client: a
wall-clock deadline per request, a size cap and a JSON depth guard on answers (a scripted stdlib
server on 127.0.0.1 that trickles or floods), and what cannot be sent refused with a domain error.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from conftest import REPO_ROOT, write_jsonl
from topics_service import KEY, closed_port_url, records, topic_service

from retriever.errors import (
    BadInputError,
    InvalidFilterError,
    InvalidPlanError,
    ServiceError,
    ServiceTimeoutError,
)
from retriever.ingest.indexer import index_corpus
from retriever.query.filters import parse_filter
from retriever.query.fusion import Fusion
from retriever.query.validation import validate_query
from retriever.service import ServiceConfig
from retriever.service.client import FunnelClient
from retriever.store.edge.catalog import EdgeCatalog


def _funnel(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "cli.py"), *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --- the server: an empty API key -------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_an_empty_api_key_refuses_to_start_the_server(tmp_path):
    base = os.environ | {"PYTHONPATH": str(REPO_ROOT), "FUNNEL_HOME": str(tmp_path)}
    base.pop("FUNNEL_API_KEY", None)
    for args, env, expected in [
        ((), base | {"FUNNEL_API_KEY": ""}, "Error: FUNNEL_API_KEY is set but empty"),
        ((), base | {"FUNNEL_API_KEY": "  "}, "Error: --api-key is empty"),
        (("--api-key", ""), base, "Error: --api-key is empty"),
    ]:
        proc = _funnel("serve", "-c", "nothing-here", *args, env=env)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1 and err.startswith(expected) and len(err.splitlines()) == 1, err
    for empty in ("", " "):
        with pytest.raises(BadInputError, match="the API key is empty"):
            ServiceConfig(api_key=empty)


@pytest.mark.timeout(180)
def test_a_server_without_an_api_key_says_so_on_startup(tmp_path, embedder):
    data = tmp_path / "data"
    index_corpus(EdgeCatalog(data), "mini", [write_jsonl(tmp_path / "c.jsonl", records()[:3])], embedder)
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT), "FUNNEL_HOME": str(data)}
    env.pop("FUNNEL_API_KEY", None)
    proc = _funnel("serve", "-c", "mini", "--port", "0", "--device", "cpu", env=env)
    try:
        seen: list[str] = []
        while not any(re.search(r"on http://127\.0\.0\.1:\d+", line) for line in seen):
            seen.append(proc.stderr.readline())
            assert seen[-1] and len(seen) < 50, seen
        assert any("no API key: anyone who can reach 127.0.0.1:0 can search" in line for line in seen), seen
    finally:
        # This test is about the startup line. Its stop is bounded: in two full-suite runs a SIGINT
        # sent while the model was loading did not end the server within 60 s and 180 s (the server
        # waited for its load to end; fixed, see test_interrupts); shutdown itself is tested by
        # test_warm's SIGTERM test.
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=30)


# --- the server: request heads bounded before the key ----------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory, embedder):
    with topic_service(tmp_path_factory.mktemp("trust"), embedder) as service:
        yield service


def _send_huge_head(url: str, header_bytes: int) -> tuple[bytes, float]:
    """A GET /healthz (an open path) with ``header_bytes`` of headers on a raw socket: what came back, how fast."""
    host, port = url.removeprefix("http://").split(":")
    pad = b"X-Pad: " + b"a" * 1000 + b"\r\n"
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + pad * (header_bytes // len(pad)) + b"\r\n"
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            sock.sendall(head)
        except OSError:  # the server closed the connection while we sent: refused
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer:
                    break
        except OSError:  # reset: refused
            pass
    return answer, time.monotonic() - started


@pytest.mark.timeout(60)
def test_request_heads_are_bounded_before_the_api_key_is_checked(served):
    answer, took = _send_huge_head(served.url, 2 * 1024 * 1024)
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert took < 5
    small, _ = _send_huge_head(served.url, 8 * 1024)  # an ordinary head still gets its answer
    assert small.startswith(b"HTTP/1.1 200"), small[:200]
    assert httpx.get(f"{served.url}/healthz", timeout=10).status_code == 200
    assert httpx.post(f"{served.url}/search", json={"query": "bread", "k": 1}, headers={"X-API-Key": KEY},
                      timeout=60).status_code == 200


# --- the client: a scripted server on 127.0.0.1 -------------------------------------------------------


@contextmanager
def scripted_server(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A 127.0.0.1 server that reads each request's head and body, then runs ``answer`` on the connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(m.group(1)) if (m := re.search(rb"content-length: *(\d+)", head, re.I)) else 0
                while len(body) < length:
                    body += conn.recv(65536)
                answer(conn)
            except OSError:  # the client gave up: fine
                pass

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _head(length: int | None = None, type_: str = "application/json") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else ""
    return f"HTTP/1.1 200 OK\r\nContent-Type: {type_}\r\n{size}Connection: close\r\n\r\n".encode()


def trickle(conn: socket.socket) -> None:
    conn.sendall(_head(1000))
    for _ in range(60):  # one byte every 0.5 s: each read is on time, the whole answer is not
        conn.sendall(b" ")
        time.sleep(0.5)


def assert_deadlines_hold(script: Callable[[socket.socket], None], within_3s: float, within_1_5s: float) -> None:
    """Against a server running ``script``: a 3 s timeout ends the sync and the async search within
    ``within_3s`` seconds, and a 1.5 s deadline (timeout 30 s) ends a health check within ``within_1_5s``."""
    with scripted_server(script) as url, FunnelClient(url, timeout=3) as client:
        started = time.monotonic()
        with pytest.raises(ServiceTimeoutError, match=r"did not answer in full within 3 s"):
            client.search("bread")
        assert time.monotonic() - started < within_3s
        started = time.monotonic()
        with pytest.raises(ServiceTimeoutError, match=r"within 3 s"):
            asyncio.run(client.asearch("bread"))
        assert time.monotonic() - started < within_3s
    with scripted_server(script) as url, FunnelClient(url, timeout=30, deadline=1.5) as client:
        started = time.monotonic()
        with pytest.raises(ServiceTimeoutError, match=r"within 1.5 s"):
            client.health()
        assert time.monotonic() - started < within_1_5s


@pytest.mark.timeout(60)
def test_funnel_client_has_a_wall_clock_deadline_per_request():
    assert_deadlines_hold(trickle, within_3s=6, within_1_5s=4)


def trickle_head(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    for _ in range(100):  # the headers never end: one byte every 0.2 s for 20 s, each read on time
        conn.sendall(b"a")
        time.sleep(0.2)


@pytest.mark.timeout(60)
def test_case5_funnel_client_deadline_bounds_a_server_trickling_its_headers():
    """The sync client's sockets are cut to the deadline, so headers sent one byte at a time (every read on
    time) end the call at its deadline, not when the server stops; the async client likewise."""
    assert_deadlines_hold(trickle_head, within_3s=4.5, within_1_5s=3)


def test_case5_funnel_client_deadline_leaves_a_prompt_answer_and_per_read_timeouts_alone():
    """A whole answer within the deadline comes back, and a server silent past ``timeout`` (shorter than
    the deadline) is still the per-read timeout's error, not the deadline's."""
    def prompt(conn: socket.socket) -> None:
        body = b'{"status": "ready", "collection": "c"}'
        conn.sendall(_head(len(body)) + body)

    def silent(conn: socket.socket) -> None:
        time.sleep(3)

    with scripted_server(prompt) as url, FunnelClient(url, timeout=2, deadline=5) as client:
        assert client.health().ready
        assert client.health().ready  # again, on the pooled connection or a new one
    with scripted_server(silent) as url, FunnelClient(url, timeout=0.5, deadline=5) as client:
        started = time.monotonic()
        with pytest.raises(ServiceTimeoutError, match=r"did not answer within 0.5 s") as caught:
            client.health()
        assert "deadline" not in str(caught.value) and time.monotonic() - started < 2


def announced_huge(conn: socket.socket) -> None:
    conn.sendall(_head(100 * 1024 * 1024) + b"[" * 1024)


def flood(conn: socket.socket) -> None:
    conn.sendall(_head(None))  # no length: the answer ends when the connection does
    block = b" " * (1024 * 1024)
    for _ in range(80):
        conn.sendall(block)


def deep(conn: socket.socket) -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    conn.sendall(_head(len(body)) + body)


def not_json(conn: socket.socket) -> None:
    body = b"<html>hello</html>"
    conn.sendall(_head(len(body), "text/html") + body)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("script, message", [
    (announced_huge, r"is above 67,108,864 bytes"),
    (flood, r"is above 67,108,864 bytes"),
    (deep, r"is JSON nested too deep to read"),
    (not_json, r"is not JSON .*<html>"),
], ids=["announced-huge", "flood", "deep", "not-json"])
def test_funnel_client_bounds_what_it_reads_and_refuses_non_json(script, message):
    with scripted_server(script) as url, FunnelClient(url, timeout=10) as client:
        with pytest.raises(ServiceError, match=message):
            client.search("bread")
        with pytest.raises(ServiceError, match=message):
            asyncio.run(client.asearch("bread"))
        with pytest.raises(ServiceError):
            client.feedback("bread", "doc")


# --- the client: what cannot be sent ----------------------------------------------------------------


def _error(call: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as caught:
        call()
    return caught.value


@pytest.mark.timeout(30)
def test_funnel_client_refuses_what_cannot_be_sent_with_the_retrievers_errors():
    url = closed_port_url()  # nothing listens: an error that is not a ServiceUnreachableError came before sending
    with FunnelClient(url, api_key=KEY, timeout=5) as client:
        for query in (b"bytes query", "lone \ud800 surrogate"):
            got = _error(lambda q=query: client.search(q))
            expected = _error(lambda q=query: validate_query(q))
            assert type(got) is BadInputError and str(got) == str(expected)
            assert type(_error(lambda q=query: asyncio.run(client.asearch(q)))) is BadInputError
            assert type(_error(lambda q=query: client.feedback(q, "doc"))) is BadInputError
        for where in ({"metadata.year": {"gte": math.nan}}, {"metadata.year": math.inf},
                      {"metadata.topic": {"music", "bread"}}, {"metadata.topic": b"music"}, {1: "x"}):
            got = _error(lambda w=where: client.search("bread", filter=w))
            expected = _error(lambda w=where: parse_filter(w))
            assert type(got) is InvalidFilterError and str(got) == str(expected), (where, got)
        with pytest.raises(InvalidPlanError, match="over HTTP a fusion is given by name"):
            client.search("bread", fusion=Fusion("rrf"))
        with pytest.raises(BadInputError, match="cannot be sent as JSON"):
            client.search("bread", plan={1, 2})  # type: ignore[arg-type]
    for bad_key in ("clé", "ключ", "a\r\nX-Evil: 1"):
        with pytest.raises(BadInputError, match="api_key is printable ASCII"):
            FunnelClient(url, api_key=bad_key)
    for bad_url in ("http://[::1", "http://127.0.0.1:99999", "http://", "http://:80", "http://exa mple.com",
                    "http://127.0.0.1:0"):
        with pytest.raises(BadInputError, match="base_url"):
            FunnelClient(bad_url)

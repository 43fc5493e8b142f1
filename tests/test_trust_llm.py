"""Issue 22, item 4 (and the Qdrant part of 5): funnel's HTTP clients do not trust the server.

`funnel pairs generate --method llm` against tiny stdlib HTTP servers on 127.0.0.1 that answer what a
hostile or broken server would: JSON nested 200,000 deep, an answer that never ends, headers and then
one byte a second; and URLs that cannot name a server. Each must end in one line, never a traceback,
never unbounded memory or time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import assert_cli_error, topic_records, write_jsonl

from cli import main

DEEP = 200_000
LIMIT = 4 * 1024 * 1024  # the stated cap on one answer (tuner.llm_client.MAX_ANSWER_BYTES)


class Hostile(BaseHTTPRequestHandler):
    """Answers every POST the way ``mode`` says; ``sent`` counts the body bytes written."""

    mode = "deep"
    status = 200
    sent = 0
    requests = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).requests += 1
        try:
            getattr(self, f"_{self.mode}")()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up: what these tests want

    def _head(self, length: int | None) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _deep(self) -> None:
        payload = b"[" * DEEP + b"]" * DEEP
        self._head(len(payload))
        self.wfile.write(payload)

    def _blocks(self, total: int) -> None:
        """Spaces in 64 KiB blocks, counted in ``sent``, until ``total`` bytes went out (or the client left)."""
        block = b" " * 65536
        while type(self).sent < total:
            self.wfile.write(block)
            type(self).sent += len(block)

    def _endless(self) -> None:
        """An answer with no length that goes on (up to 300 MB) for as long as the client reads."""
        self._head(None)
        self._blocks(300_000_000)

    def _huge_declared(self) -> None:
        """A 150 MB answer announced by its Content-Length."""
        self._head(150_000_000)
        self._blocks(150_000_000)

    def _trickle(self) -> None:
        """Headers at once, then one byte a second (each read succeeds well within a per-read timeout)."""
        self._head(100)
        for _ in range(100):
            self.wfile.write(b" ")
            self.wfile.flush()
            type(self).sent += 1
            time.sleep(1)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[tuple[str, type[Hostile]]]:
    Hostile.mode, Hostile.status, Hostile.sent, Hostile.requests = "deep", 200, 0, 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", Hostile
    server.shutdown()


def generate(tmp_path: Path, url: str, *args: str):  # noqa: ANN201 - click Result
    corpus = write_jsonl(tmp_path / "c.jsonl", topic_records()[:1])
    return CliRunner().invoke(main, ["pairs", "generate", str(corpus), "--out", str(tmp_path / "p.jsonl"),
                                     "--llm-url", url, "--llm-model", "m", "--retries", "0", *args])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("status", [200, 400])
def test_pairs_generate_llm_answer_nested_200000_deep_is_one_line(hostile, tmp_path, status):
    url, handler = hostile
    handler.mode, handler.status = "deep", status
    line = assert_cli_error(generate(tmp_path, url), url)
    assert ("nested too deeply" in line) if status == 200 else ("HTTP 400" in line)
    assert "RecursionError" not in line


@pytest.mark.timeout(120)
def test_pairs_generate_llm_answer_without_end_is_cut_at_the_size_limit(hostile, tmp_path):
    """An answer that never ends is refused once past 4 MiB: not read whole, not held in memory."""
    url, handler = hostile
    handler.mode = "endless"
    started = time.monotonic()
    assert_cli_error(generate(tmp_path, url, "--concurrency", "4"), url, "over 4 MiB")
    assert time.monotonic() - started < 60
    assert handler.sent < 64 * LIMIT  # the client stopped reading (the server would send 300 MB)


@pytest.mark.timeout(120)
def test_pairs_generate_llm_answer_of_150_mb_declared_is_refused_unread(hostile, tmp_path):
    url, handler = hostile
    handler.mode = "huge_declared"
    assert_cli_error(generate(tmp_path, url), url, "over 4 MiB")
    assert handler.sent < 64 * LIMIT


@pytest.mark.timeout(60)
def test_pairs_generate_llm_server_trickling_one_byte_a_second_fails_within_timeout(hostile, tmp_path):
    """--timeout bounds the whole request (wall clock), not only each read."""
    url, handler = hostile
    handler.mode = "trickle"
    started = time.monotonic()
    line = assert_cli_error(generate(tmp_path, url, "--timeout", "3", "--retries", "1"), url, "failed 2 times",
                            "within 3 s")
    elapsed = time.monotonic() - started
    assert handler.requests == 2 and elapsed < 30, (elapsed, line)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("url", "why"), [
    ("http://[::1", "invalid LLM server URL"),
    ("http://127.0.0.1:99999/v1", "port 99999 is outside 1..65535"),
    ("ftp://127.0.0.1/v1", "scheme"),
    ("localhost:8000/v1", "invalid LLM server URL"),
    ("http:///v1", "no host"),
])
def test_pairs_generate_llm_url_that_cannot_name_a_server_is_one_line(tmp_path, url, why):
    assert_cli_error(generate(tmp_path, url), why)
    assert not (tmp_path / "p.jsonl").exists()  # refused before the output file and the first request


class TricklingQdrant(BaseHTTPRequestHandler):
    """Any GET: headers at once, then one byte a second of a 1,000-byte body."""

    requests = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(1)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.timeout(90)
def test_collections_on_a_qdrant_url_trickling_one_byte_a_second_fails_within_the_timeout(monkeypatch):
    """The 10 s Qdrant timeout bounds each try by the wall clock, not each read: one line, in bounded time."""
    TricklingQdrant.requests = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), TricklingQdrant)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("QDRANT_URL", url)
    try:
        started = time.monotonic()
        assert_cli_error(CliRunner().invoke(main, ["collections"]), url)
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
    assert TricklingQdrant.requests >= 1 and elapsed < 60, elapsed  # 10 s a try, tries within the 15 s budget

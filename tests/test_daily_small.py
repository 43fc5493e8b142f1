"""Issue 23's small items, each through the surface a new user meets: index progress that moves per
document, ``funnel search --filter``, ``--queries -`` and ``--queries <(…)``, adding BM25 to a
dense-only collection (refused at once, with the copy that does it), ``funnel collections`` point
counts and hidden bench collections, ``/docs`` without a CDN, ``funnel serve --access-log``.
The real model and engine; the bench table's byte columns are in test_bench.py."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from conftest import REPO_ROOT, TOPIC_DOCS, topic_records, write_jsonl

from cli import main
from retriever.cli.display import IndexProgressBar
from retriever.ingest.indexer import index_corpus
from retriever.service import BackgroundServer, ServiceConfig
from retriever.store.edge.catalog import EdgeCatalog


def invoke(data: Path, *args: str, input: str | None = None):  # noqa: ANN201 - click.testing.Result
    return CliRunner().invoke(main, ["--data-dir", str(data), *map(str, args)], input=input)


def ok(result):  # noqa: ANN001, ANN201
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}"
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def topics(tmp_path_factory):
    """The topic corpus, dense only, indexed through the CLI once."""
    root = tmp_path_factory.mktemp("daily")
    corpus = write_jsonl(root / "topics.jsonl", topic_records())
    data = root / "data"
    ok(invoke(data, "index", corpus, "-c", "topics", "--no-progress"))
    return data, corpus


# --- progress -------------------------------------------------------------------------------------


def test_index_progress_moves_per_document_before_the_end(tmp_path, embedder):
    """40 documents, encode batches of 4: the document counter moves many times during the one group
    (it sat at 0/40 until the end), and every document and chunk is counted once."""
    docs = [{"_id": f"d{i}", "text": f"{TOPIC_DOCS[i % 12][2]} Note number {i}."} for i in range(40)]
    corpus = write_jsonl(tmp_path / "c.jsonl", docs)

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[int, int]] = []

        def start(self, documents: int) -> None:
            self.total = documents

        def advance(self, documents: int, chunks: int) -> None:
            self.calls.append((documents, chunks))

    recorder = Recorder()
    with EdgeCatalog(tmp_path / "data") as catalog:
        result = index_corpus(catalog, "p", [corpus], embedder, batch_size=4, progress=recorder)
    moved = [d for d, _ in recorder.calls if d]
    assert len(moved) >= 8, recorder.calls  # not one jump at the end
    assert sum(d for d, _ in recorder.calls) == 40 and sum(c for _, c in recorder.calls) == result.chunks


def test_plain_progress_lines_count_documents(tmp_path, embedder, capsys):
    """No terminal (a log): periodic lines whose document count moves."""
    docs = [{"_id": f"d{i}", "text": TOPIC_DOCS[i % 12][2]} for i in range(24)]
    corpus = write_jsonl(tmp_path / "c.jsonl", docs)
    bar = IndexProgressBar(plain=True, every=0.0)
    with EdgeCatalog(tmp_path / "data") as catalog:
        index_corpus(catalog, "p", [corpus], embedder, batch_size=4, progress=bar)
    bar.stop()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("indexing:")]
    counts = [int(line.split()[1].split("/")[0]) for line in lines]
    assert len(set(counts)) >= 3 and counts[-1] == 24 and counts == sorted(counts), lines


# --- search: --filter, --queries - ----------------------------------------------------------------


def test_search_filter_is_the_http_syntax(topics):
    data, _ = topics
    out = ok(invoke(data, "search", "strings and music", "-c", "topics", "--json", "-k", "5",
                    "--filter", '{"metadata.topic": "music"}')).stdout
    hits = json.loads(out)["hits"]
    assert hits and {h["metadata"]["topic"] for h in hits} == {"music"}
    out = ok(invoke(data, "search", "strings and music", "-c", "topics", "--json", "-k", "5",
                    "--filter", '{"doc_id": ["piano", "coffee"]}')).stdout
    assert {h["doc_id"] for h in json.loads(out)["hits"]} == {"piano", "coffee"}


@pytest.mark.parametrize("value, fragment", [
    ("{not json", "--filter is not JSON"),
    ('{"colour": "red"}', "colour"),
    ('["a"]', "filter"),
])
def test_search_filter_bad_input_is_one_line_before_the_model(topics, value, fragment):
    data, _ = topics
    started = time.monotonic()
    result = invoke(data, "search", "x", "-c", "topics", "--filter", value)
    assert result.exit_code != 0 and fragment in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 5  # refused before any model loads


def test_queries_from_stdin_and_from_a_pipe(topics, tmp_path):
    data, _ = topics
    lines = '{"_id": "q1", "text": "How does a volcano erupt?"}\n{"_id": "q2", "text": "espresso"}\n'
    out = ok(invoke(data, "search", "--queries", "-", "-c", "topics", "--json", "-k", "1", input=lines)).stdout
    got = [json.loads(x) for x in out.splitlines() if x.strip()]
    assert [(r["query_id"], r["hits"][0]["doc_id"]) for r in got] == [("q1", "volcano"), ("q2", "coffee")]
    fifo = tmp_path / "queries-pipe"  # what <(…) hands over: a FIFO without a suffix
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "retriever.cli", "--data-dir", str(data), "search", "--queries",
                             str(fifo), "-c", "topics", "--json", "-k", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    with open(fifo, "w") as writer:
        writer.write(lines)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert [json.loads(x)["hits"][0]["doc_id"] for x in stdout.splitlines() if x.strip()] == ["volcano", "coffee"]


# --- adding BM25 to a dense-only collection ---------------------------------------------------------


def test_adding_bm25_is_refused_at_once_and_the_copy_it_names_works(topics):
    data, corpus = topics
    started = time.monotonic()
    refused = invoke(data, "index", corpus, "-c", "topics", "--lexical", "bm25", "--no-progress")
    assert refused.exit_code != 0 and time.monotonic() - started < 5
    (line,) = refused.stderr.strip().splitlines()
    command = "funnel collections copy topics topics-bm25 --lexical bm25 --lexical-analyzer english"
    assert "has no lexical index" in line and command in line and "nothing is re-embedded" in line
    ok(invoke(data, *command.split()[1:]))
    lexical = json.loads(ok(invoke(data, "search", "espresso", "-c", "topics-bm25", "--mode", "lexical",
                                   "--json")).stdout)
    assert [h["doc_id"] for h in lexical["hits"]] == ["coffee"]
    info = json.loads(ok(invoke(data, "info", "topics-bm25", "--json")).stdout)
    assert info["lexical"] == "bm25" and info["points"] == len(TOPIC_DOCS)
    assert json.loads(ok(invoke(data, "info", "topics", "--json")).stdout)["lexical"] is None  # untouched
    ok(invoke(data, "drop", "topics-bm25", "--yes"))


def test_copy_into_local_mode_names_options_that_exist(topics, tmp_path):
    """qdrant-client's local mode has no english analyzer: the message names the options of the
    commands that have them (copy now has --lexical-analyzer too)."""
    data, _ = topics
    result = invoke(data, "collections", "copy", "topics", "t2", "--to-url", f"path:{tmp_path / 'local'}",
                    "--lexical", "bm25", "--lexical-analyzer", "english")
    assert result.exit_code != 0
    assert "funnel index or funnel collections copy: --lexical-analyzer plain" in result.stderr
    ok(invoke(data, "collections", "copy", "topics", "t2", "--to-url", f"path:{tmp_path / 'local'}",
              "--lexical", "bm25", "--lexical-analyzer", "plain"))


# --- funnel collections ---------------------------------------------------------------------------


def test_collections_show_points_and_hide_bench_scratch(topics):
    data, _ = topics
    ok(invoke(data, "collections", "copy", "topics", "bench-0000-scratch"))
    listed = json.loads(ok(invoke(data, "collections", "--json")).stdout)
    assert {c["name"]: c["points"] for c in listed}.get("topics") == len(TOPIC_DOCS)
    assert all(not c["name"].startswith("bench-") for c in listed)
    shown = ok(invoke(data, "collections"))
    assert "bench scratch collection hidden" in shown.stderr and f"{len(TOPIC_DOCS)}" in shown.stdout
    every = json.loads(ok(invoke(data, "collections", "--all", "--json")).stdout)
    assert "bench-0000-scratch" in {c["name"] for c in every}
    ok(invoke(data, "drop", "bench-0000-scratch", "--yes"))


# --- the server: docs offline, access log -----------------------------------------------------------


@pytest.fixture(scope="module")
def served(topics, embedder, tmp_path_factory):
    data, _ = topics
    assets = tmp_path_factory.mktemp("assets")
    for name, body in (("swagger-ui-bundle.js", "/* swagger */"), ("swagger-ui.css", "/* css */"),
                       ("redoc.standalone.js", "/* redoc */")):
        (assets / name).write_text(body)
    catalog = EdgeCatalog(data)
    collection = catalog.open("topics")
    config = ServiceConfig(api_key="k3y", access_log=True, docs_assets=assets)
    with BackgroundServer(collection, lambda: embedder, config).start() as server:
        yield server
    catalog.close()


def test_docs_and_redoc_load_nothing_from_a_cdn(served):
    with httpx.Client(base_url=served.url) as client:
        for page, asset in (("/docs", "/docs-assets/swagger-ui-bundle.js"), ("/redoc", "/docs-assets/redoc.standalone.js")):
            html = client.get(page)
            assert html.status_code == 200 and asset in html.text
            assert "cdn" not in html.text.lower() and "https://" not in html.text
            assert client.get(asset).status_code == 200  # open, like the pages, without the key
        assert client.get("/docs-assets/../search").status_code in (404, 401)
        assert client.post("/search", json={"query": "x"}).status_code == 401  # the API still needs the key


def test_docs_without_assets_say_how_to_get_them():
    from fastapi.testclient import TestClient

    from retriever.service.app import create_app

    app = create_app(ServiceConfig(docs_assets=None))
    with TestClient(app) as client:
        page = client.get("/docs").text
    try:
        import fastapi_offline  # noqa: F401
    except ImportError:
        assert "funnel-retriever[docs]" in page and "/openapi.json" in page and "https://" not in page
    else:  # pragma: no cover - where the docs extra is installed
        assert "/docs-assets/swagger-ui-bundle.js" in page


def test_access_log_writes_a_line_per_request(served):
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep()
    logging.getLogger("uvicorn.access").addHandler(handler)
    try:
        with httpx.Client(base_url=served.url, headers={"X-API-Key": "k3y"}) as client:
            assert client.get("/healthz").status_code == 200
            assert client.post("/search", json={"query": "volcano", "k": 1}).status_code == 200
        deadline = time.monotonic() + 5
        while len(records) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        logging.getLogger("uvicorn.access").removeHandler(handler)
    assert any('"GET /healthz HTTP/1.1" 200' in r for r in records), records
    assert any('"POST /search HTTP/1.1" 200' in r for r in records), records


def test_serve_has_the_access_log_flag_off_by_default():
    help_text = ok(CliRunner().invoke(main, ["serve", "--help"])).stdout
    assert "--access-log" in help_text and "[default: off]" in help_text
    assert ServiceConfig().access_log is False

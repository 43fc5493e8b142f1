"""Indexer, Python API, calibration, service and CLI on every engine (the real model, the topic corpus),
`funnel collections copy` between engines, and the server engine's bad input. See conftest.ENGINE_NOTE
for what qdrant-client's local mode does not model.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import TOPIC_DOCS, TOPIC_QUERIES, assert_cli_error, topic_records, write_jsonl

from cli import main
from retriever import Retriever
from retriever.calibration.plans import calibrate
from retriever.errors import (
    BadInputError,
    ForeignCollectionError,
    ModelMismatchError,
    ServerAuthError,
    ServerUnavailableError,
    ServerVersionError,
)
from retriever.ingest.indexer import index_corpus
from retriever.service import BackgroundServer, ServiceConfig
from retriever.store.config import EngineConfig
from retriever.store.copy import copy_collection
from retriever.store.factory import open_catalog

N_DOCS = len(TOPIC_DOCS)


@pytest.fixture
def cli_model(embedder, monkeypatch):
    """The CLI and Retriever.open in-process with the session's model instead of loading it again."""
    import retriever.encoding.embedder
    import retriever.retriever

    monkeypatch.setattr(retriever.encoding.embedder, "Embedder", lambda *args, **kwargs: embedder)
    monkeypatch.setattr(retriever.retriever, "Embedder", lambda *args, **kwargs: embedder)
    return embedder


def invoke(data_dir: Path, *args: object) -> Result:
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), *map(str, args)])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


# --- indexer, Python API, calibration, service: one contract on every engine ------------------------


def test_index_search_calibrate_serve(engine, embedder, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", topic_records())
    with open_catalog(engine) as catalog:
        first = index_corpus(catalog, "topics", [corpus], embedder)
        again = index_corpus(catalog, "topics", [corpus], embedder)
    assert (first.points, first.unchanged) == (N_DOCS, 0)
    assert (again.points, again.unchanged) == (N_DOCS, N_DOCS)  # re-indexing re-encodes nothing
    with Retriever.open("topics", engine=engine) as r:
        for _, query, expected in TOPIC_QUERIES:
            assert r.search(query, k=3)[0].doc_id == expected
            assert r.search(query, k=3, exact=True)[0].doc_id == expected
        assert r.search("a bowed string instrument", k=5, filter={"metadata.topic": "music"})[0].doc_id == "violin"
        batch = next(r.collection.points(batch_size=N_DOCS))
        result = calibrate(r.collection, batch.vectors, k=3, target=0.98)
        r.collection.save_calibration(result.record("stored chunks"))
        server = BackgroundServer(r.collection, lambda: embedder, ServiceConfig())
        with server, httpx.Client(base_url=server.url, timeout=60) as client:
            response = client.post("/search", json={"query": TOPIC_QUERIES[0][1], "k": 2})
            assert response.status_code == 200, response.text
            assert response.json()["results"][0]["hits"][0]["doc_id"] == "volcano"
            info = client.get("/collections/topics").json()
            assert info["points"] == N_DOCS and (info["disk_bytes"] is None) == (not engine.embedded)
    with Retriever.open("topics", engine=engine) as r:  # the calibration is stored with the collection
        assert str(r.plan(None, 3)) == str(result.plan)


def test_same_answers_on_both_engines(embedder, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", topic_records())
    hits = {}
    for url in (None, ":memory:"):
        config = EngineConfig(data_dir=tmp_path / "data", url=url)
        with open_catalog(config) as catalog:
            index_corpus(catalog, "topics", [corpus], embedder)
            with Retriever(catalog.open("topics"), embedder) as r:
                queries = [q for _, q, _ in TOPIC_QUERIES]
                hits[url] = [r.search_batch(queries, k=8, plan="64:10,128:9,256:8"),
                             r.search_batch(queries, k=8, exact=True)]
    for mine, theirs in zip(hits[None], hits[":memory:"]):
        for a, b in zip(mine, theirs):
            assert [h.id for h in a] == [h.id for h in b]
            np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)


# --- the CLI on a local-mode directory --------------------------------------------------------------


def test_cli_on_the_server_engine(cli_model, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", topic_records())
    data, url = tmp_path / "data", f"path:{tmp_path / 'qdrant'}"
    ok(invoke(data, "--qdrant-url", url, "index", corpus, "-c", "docs", "--no-progress"))
    found = ok(invoke(data, "search", "--qdrant-url", url, TOPIC_QUERIES[1][1], "-c", "docs", "-k", "2", "--json"))
    assert json.loads(found.stdout)["hits"][0]["doc_id"] == "bread"
    info = json.loads(ok(invoke(data, "--qdrant-url", url, "info", "docs", "--json")).stdout)
    assert info["points"] == N_DOCS and info["disk_bytes"] is None and info["location"].startswith(url)
    listed = json.loads(ok(invoke(data, "--qdrant-url", url, "collections", "--json")).stdout)
    assert [c["name"] for c in listed] == ["docs"]
    assert json.loads(ok(invoke(data, "collections", "--json")).stdout) == []  # the embedded engine is apart
    calibrated = json.loads(ok(invoke(data, "--qdrant-url", url, "calibrate", "docs", "-k", "3", "--sample", "12",
                                      "--json")).stdout)
    info = json.loads(ok(invoke(data, "--qdrant-url", url, "info", "docs", "--json")).stdout)
    assert info["plan_calibrated"] and calibrated["plan"]
    ok(invoke(data, "--qdrant-url", url, "drop", "docs", "--yes"))
    assert json.loads(ok(invoke(data, "--qdrant-url", url, "collections", "--json")).stdout) == []


def test_bench_gives_the_same_ndcg_per_dim_on_both_engines(cli_model, tmp_path):
    from conftest import make_beir

    beir = make_beir(tmp_path / "beir", n_test=20, n_train=10)
    runs = {}
    for label, extra in (("embedded", []), ("server", ["--qdrant-url", f"path:{tmp_path / 'qdrant'}"])):
        result = ok(invoke(tmp_path / "data", *extra, "bench", "--data", beir, "--out", tmp_path / label, "--plans",
                           "default", "--dims", "64,384", "--no-memory", "--no-progress", "--json"))
        runs[label] = json.loads(result.stdout)["models"][0]["variants"][0]
    for mine, theirs in zip(runs["embedded"]["dims"], runs["server"]["dims"]):
        assert mine["exact"]["ndcg@10"] == pytest.approx(theirs["exact"]["ndcg@10"], abs=1e-9)
        assert theirs["hnsw_is_full_scan"] and theirs["disk_bytes"] is None  # local mode scans; no disk figure
    assert runs["embedded"]["plans"][0]["ndcg@10"] == pytest.approx(runs["server"]["plans"][0]["ndcg@10"], abs=1e-9)
    assert runs["server"]["disk_bytes"] is None and "memory" not in runs["server"]


# --- copy between engines -----------------------------------------------------------------------------


def test_copy_embedded_to_server_and_back(cli_model, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", topic_records())
    data, url = tmp_path / "data", f"path:{tmp_path / 'qdrant'}"
    ok(invoke(data, "index", corpus, "-c", "docs", "--no-progress"))
    ok(invoke(data, "calibrate", "docs", "-k", "3", "--sample", "12"))
    there = json.loads(ok(invoke(data, "collections", "copy", "docs", "prod", "--to-url", url, "--json")).stdout)
    assert (there["points"], there["written"], there["calibration"]) == (N_DOCS, N_DOCS, True)
    assert there["verified_queries"] == N_DOCS
    again = json.loads(ok(invoke(data, "collections", "copy", "docs", "prod", "--to-url", url, "--json")).stdout)
    assert (again["written"], again["unchanged"]) == (0, N_DOCS)  # a re-run writes nothing
    back = json.loads(ok(invoke(data, "--qdrant-url", url, "collections", "copy", "prod", "home", "--to-url",
                                "embedded", "--json")).stdout)
    assert back["points"] == N_DOCS
    with Retriever.open("docs", data) as a, Retriever.open("home", data) as b:
        assert a.collection.calibration() == b.collection.calibration()
        for _, query, _ in TOPIC_QUERIES:
            mine, theirs = a.search(query, k=5, exact=True), b.search(query, k=5, exact=True)
            assert [(h.id, h.text) for h in mine] == [(h.id, h.text) for h in theirs]
            np.testing.assert_allclose([h.score for h in mine], [h.score for h in theirs], atol=1e-5)


def test_interrupted_copy_resumes(embedder, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", topic_records())
    source = open_catalog(EngineConfig(data_dir=tmp_path / "data"))
    target = open_catalog(EngineConfig(data_dir=tmp_path / "data", url=f"path:{tmp_path / 'qdrant'}"))
    index_corpus(source, "docs", [corpus], embedder)

    def killed(done: int, total: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt  # as a Ctrl-C mid-copy

    with pytest.raises(KeyboardInterrupt):
        copy_collection(source, "docs", target, "docs", batch_size=4, on_batch=killed)
    with target.open("docs") as partial:
        assert partial.count() == 4
    result = copy_collection(source, "docs", target, "docs", batch_size=4)
    assert (result.written, result.unchanged, result.points) == (N_DOCS - 4, 4, N_DOCS)
    target.close()


def test_copy_into_another_models_collection_is_refused(cli_model, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", topic_records())
    data, url = tmp_path / "data", f"path:{tmp_path / 'qdrant'}"
    ok(invoke(data, "index", corpus, "-c", "docs", "--no-progress"))
    ok(invoke(data, "--qdrant-url", url, "index", corpus, "-c", "other", "--dims", "64,384", "--no-progress"))
    result = invoke(data, "collections", "copy", "docs", "other", "--to-url", url)
    assert_cli_error(result, "collection 'other' stores dims [64, 384]")
    assert_cli_error(invoke(data, "collections", "copy", "docs", "docs"), "onto itself")
    with pytest.raises(ModelMismatchError):
        copy_collection(open_catalog(EngineConfig(data_dir=data)), "docs",
                        open_catalog(EngineConfig(data_dir=data, url=url)), "other")


# --- bad input ----------------------------------------------------------------------------------------


def test_unreachable_server_is_one_line_within_seconds(tmp_path):
    started = time.monotonic()
    result = invoke(tmp_path, "--qdrant-url", "http://127.0.0.1:9", "collections")
    assert_cli_error(result, "cannot reach Qdrant at http://127.0.0.1:9", "gave up after 4 tries")
    assert time.monotonic() - started < 10
    with pytest.raises(ServerUnavailableError):
        Retriever.open("docs", qdrant_url="http://127.0.0.1:9")


@pytest.mark.parametrize(("args", "fragment"), [
    (["--qdrant-url", "ftp://host", "collections"], "invalid Qdrant URL 'ftp://host'"),
    (["--qdrant-url", ":memory:", "index", "x.jsonl", "-c", "a", "--shards", "0"], "invalid shards 0"),
    (["index", "x.jsonl", "-c", "a", "--shards", "2"], "need a Qdrant server"),
    (["--qdrant-url", ":memory:", "index", "x.jsonl", "-c", "a", "--replication-factor", "1",
      "--write-consistency", "2"], "at most the replication factor"),
])
def test_bad_engine_options(tmp_path, args, fragment):
    assert_cli_error(invoke(tmp_path, *args), fragment)


def test_collection_made_by_another_tool_is_refused(tmp_path):
    from qdrant_client import QdrantClient, models

    url = f"path:{tmp_path / 'qdrant'}"
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    client.create_collection("theirs", vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT))
    client.create_collection("half", vectors_config={"dim8": models.VectorParams(size=8, distance=models.Distance.COSINE)},
                             metadata={"funnel_spec": {"name": "half", "model": "m", "model_fingerprint": "f" * 16,
                                                       "model_dim": 32, "dims": [8, 32], "chunk_size": 64,
                                                       "chunk_overlap": 8}})
    client.close()
    for name, fragment in (("theirs", "was not created by funnel"), ("half", "lacks funnel's named vectors dim32")):
        for args in (["info", name], ["drop", name, "--yes"], ["search", "q", "-c", name]):
            assert_cli_error(invoke(tmp_path, "--qdrant-url", url, *args), fragment)
    with open_catalog(EngineConfig(data_dir=tmp_path, url=url)) as catalog:
        # 'theirs' is not listed (no funnel spec); 'half' is, and `funnel collections` warns that it is broken
        assert catalog.names() == ["half"] and catalog.exists("theirs") and catalog.exists("half")  # not dropped
        with pytest.raises(ForeignCollectionError):
            catalog.open("theirs")
    listed = invoke(tmp_path, "--qdrant-url", url, "collections", "--json")
    assert listed.exit_code == 0 and "lacks funnel's named vectors" in listed.stderr
    assert [c["name"] for c in json.loads(listed.stdout)] == ["half"] and "error" in json.loads(listed.stdout)[0]


class _FakeQdrant(BaseHTTPRequestHandler):
    """An HTTP server that answers like a Qdrant with a key set (401), or an old Qdrant (version 1.9)."""

    mode = "auth"
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.seen.append(self.path)
        if self.path.split("?")[0] == "/":  # the version: the one call a key-protected Qdrant answers here
            version = "1.9.0" if self.mode == "old" else "1.20.0"
            body, status = json.dumps({"title": "qdrant", "version": version}).encode(), 200
        elif self.mode == "flaky":  # 503 twice, then the answer
            failed = sum(p.startswith("/collections") for p in self.seen) <= 2
            body = b'{"status": {"error": "overloaded"}}' if failed else \
                json.dumps({"result": {"collections": []}, "status": "ok", "time": 0.0}).encode()
            status = 503 if failed else 200
        else:
            body, status = b'{"status": {"error": "Must provide an API key or an Authorization bearer token"}}', 401
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("mode", "error", "fragment"), [
    ("auth", ServerAuthError, "refused the API key (401)"),
    ("old", ServerVersionError, "is version 1.9.0; funnel needs 1.16.0 or newer"),
])
def test_wrong_api_key_and_old_server(tmp_path, mode, error, fragment):
    handler = type("Handler", (_FakeQdrant,), {"mode": mode})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(error, match=re.escape(fragment)):
            open_catalog(EngineConfig(data_dir=tmp_path, url=url, api_key="wrong")).names()
        assert_cli_error(invoke(tmp_path, "--qdrant-url", url, "--qdrant-api-key", "wrong", "collections"), fragment)
    finally:
        server.shutdown()


def test_transient_failures_are_retried(tmp_path):
    handler = type("Handler", (_FakeQdrant,), {"mode": "flaky", "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with open_catalog(EngineConfig(data_dir=tmp_path, url=url)) as catalog:
            assert catalog.names() == []
        assert [p.split("?")[0] for p in handler.seen].count("/collections") == 3  # two 503s, then success
    finally:
        server.shutdown()


def test_engine_config_validation(tmp_path):
    with pytest.raises(BadInputError, match="the Qdrant API key is empty"):
        EngineConfig(data_dir=tmp_path, url=":memory:", api_key=" ")
    assert EngineConfig(data_dir=tmp_path, url="  ").embedded

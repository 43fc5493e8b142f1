"""Several collections on one server, and the CLI's warm path: a real ``funnel serve --all`` subprocess
on 127.0.0.1 over a data directory of the real engine, the real model, real HTTP and real ``funnel``
processes.

One server (with an API key) is started for the module; the last test stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from conftest import REPO_ROOT, topic_records, write_jsonl

from retriever.errors import BadInputError, CollectionNotFoundError
from retriever.ingest.indexer import index_corpus
from retriever.service.announce import announce, announce_dir, find_server
from retriever.service.batcher import MicroBatcher
from retriever.service.client import FunnelClient
from retriever.store.edge.catalog import EdgeCatalog

KEY = "warm-key-0123456789"
SMALL = ["bread", "violin", "mars", "coffee"]
# A warm CLI query must not load a model: none of these may be imported by it.
MODEL_MODULES = ("torch", "openvino", "sentence_transformers", "transformers", "onnxruntime")
CLI_CHECKING_IMPORTS = (
    "import sys\n"
    "from retriever.cli.app import main\n"
    "try:\n"
    "    main(sys.argv[1:], prog_name='funnel')\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    f"loaded = [m for m in {MODEL_MODULES!r} if m in sys.modules]\n"
    "print('MODEL-MODULES ' + ','.join(loaded), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _env(data, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FUNNEL_API_KEY", "FUNNEL_COLLECTION")}
    return env | {"PYTHONPATH": str(REPO_ROOT), "FUNNEL_HOME": str(data)} | extra


def funnel(data, *args: str, key: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``funnel ARGS`` in a fresh process; its stderr ends with the model modules it imported."""
    env = _env(data, **({"FUNNEL_API_KEY": key} if key else {}))
    return subprocess.run([sys.executable, "-c", CLI_CHECKING_IMPORTS, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def model_modules(proc: subprocess.CompletedProcess) -> list[str]:
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODEL-MODULES"))
    return [m for m in line.removeprefix("MODEL-MODULES").strip().split(",") if m]


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [x for x in proc.stderr.splitlines() if x.strip() and not x.startswith("MODEL-MODULES")]


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder):
    """``funnel serve --all`` over a data directory of two collections (and a bench scratch one, not
    served), with an API key; yields (url, data dir, process)."""
    root = tmp_path_factory.mktemp("warm")
    data = root / "data"
    catalog = EdgeCatalog(data)
    records = topic_records()
    index_corpus(catalog, "topics", [write_jsonl(root / "topics.jsonl", records)], embedder)
    index_corpus(catalog, "small", [write_jsonl(root / "small.jsonl", [r for r in records if r["_id"] in SMALL])],
                 embedder)
    index_corpus(catalog, "bench-scratch", [write_jsonl(root / "b.jsonl", records[:1])], embedder)
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "cli.py"), "serve", "--all", "--port", "0",
                             "--device", "cpu"], cwd=REPO_ROOT, env=_env(data, FUNNEL_API_KEY=KEY),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen: list[str] = []
        while not (match := re.search(r"on (http://127\.0\.0\.1:\d+)", seen[-1] if seen else "")):
            seen.append(proc.stderr.readline())
            assert seen[-1] and len(seen) < 50, seen
        url = match.group(1)
        FunnelClient(url).wait_ready(120)
        yield url, data, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)


@pytest.fixture(scope="module")
def http(server):
    url, _, _ = server
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=60) as client:
        yield client


# --- several collections over HTTP --------------------------------------------------------------


def test_all_serves_every_collection_but_bench_scratch(server, http):
    url, _, _ = server
    health = httpx.get(f"{url}/healthz").json()  # open, as before
    assert health["status"] == "ready" and health["collection"] is None and health["model"] is None
    assert [c["name"] for c in health["collections"]] == ["small", "topics"]
    assert all(c["status"] == "ready" for c in health["collections"])
    listed = http.get("/collections")
    assert listed.status_code == 200, listed.text
    rows = {c["name"]: c for c in listed.json()["collections"]}
    assert set(rows) == {"small", "topics"}
    assert rows["topics"]["points"] == 12 and rows["small"]["points"] == len(SMALL)
    assert rows["topics"]["dims"] == [64, 128, 256, 384] and rows["topics"]["status"] == "ready"
    assert httpx.get(f"{url}/collections").status_code == 401  # authenticated like /search
    info = http.get("/collections/small").json()
    assert info["points"] == len(SMALL) and info["status"] == "ready" and info["calibration"] is None


def test_search_names_its_collection(http):
    query = {"query": "How do I bake a loaf of bread with yeast?", "k": 3, "with_text": False}
    unnamed = http.post("/search", json=query)
    assert unnamed.status_code == 400 and unnamed.json()["error"]["type"] == "bad_input"
    assert "serves 2 collections (small, topics)" in unnamed.json()["error"]["message"]
    small = http.post("/search", json=query | {"collection": "small"}).json()
    assert small["collection"] == "small" and {h["doc_id"] for h in small["results"][0]["hits"]} <= set(SMALL)
    by_path = http.post("/collections/topics/search", json=query).json()
    assert by_path["collection"] == "topics" and by_path["results"][0]["hits"][0]["doc_id"] == "bread"
    assert {h["doc_id"] for h in by_path["results"][0]["hits"]} - set(SMALL)  # topics holds more than small
    mismatch = http.post("/collections/topics/search", json=query | {"collection": "small"})
    assert mismatch.status_code == 400 and "the path 'topics'" in mismatch.json()["error"]["message"]
    for response in (http.post("/search", json=query | {"collection": "bench-scratch"}),
                     http.post("/collections/nope/search", json=query), http.get("/collections/nope")):
        assert response.status_code == 404 and response.json()["error"]["type"] == "collection_not_found"
        assert "this server serves 'small', 'topics'" in response.json()["error"]["message"]


def test_concurrent_searches_of_two_collections_each_get_their_own(http):
    """Queries of both collections batched together on the one search thread: each answered by its own."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> tuple[str, set[str]]:
        name = ("small", "topics")[i % 2]
        body = http.post(f"/collections/{name}/search", json={"query": "glacier ice valley", "k": 4}).json()
        return name, {h["doc_id"] for h in body["results"][0]["hits"]}

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(16)))
    for name, docs in answers:
        assert ("glacier" in docs) == (name == "topics"), (name, docs)
        if name == "small":
            assert docs <= set(SMALL)


def test_document_routes_address_their_collection(http):
    put = http.put("/collections/small/documents/tea", json={"text": "Green tea is brewed at 80 degrees."})
    assert put.status_code == 200 and put.json()["collection"] == "small", put.text
    try:
        small = http.get("/collections/small/documents").json()
        topics = http.get("/collections/topics/documents").json()
        assert "tea" in [d["doc_id"] for d in small["documents"]] and small["total"] == len(SMALL) + 1
        assert "tea" not in [d["doc_id"] for d in topics["documents"]] and topics["total"] == 12
        hit = http.post("/collections/small/search", json={"query": "green tea temperature", "k": 1}).json()
        assert hit["results"][0]["hits"][0]["doc_id"] == "tea"
        assert http.delete("/collections/topics/documents/tea").status_code == 404
    finally:
        assert http.delete("/collections/small/documents/tea").status_code == 200


def test_python_client_names_the_collection(server):
    url, _, _ = server
    with FunnelClient(url, api_key=KEY) as client:
        assert {c.name: c.points for c in client.collections()} == {"small": len(SMALL), "topics": 12}
        assert client.health().collections == ("small", "topics")
        assert client.search("Which planet is red?", k=1, collection="topics")[0].doc_id == "mars"
        assert client.collection_info("topics")["points"] == 12
        with pytest.raises(BadInputError, match="serves several collections"):
            client.documents()  # which collection? the client does not guess
        assert client.documents(collection="small").total == len(SMALL)
        with pytest.raises(CollectionNotFoundError):
            client.search("x", collection="nope")


# --- the announcement and the warm CLI ---------------------------------------------------------------


def test_the_server_announces_itself(server):
    url, data, proc = server
    (path,) = announce_dir(data).glob("*.json")
    record = json.loads(path.read_text())
    assert record["url"] == url and record["pid"] == proc.pid and record["api_key"] is True
    assert record["collections"] == ["small", "topics"] and KEY not in path.read_text()
    found = find_server(data, "topics")
    assert found is not None and found.url == url and find_server(data, "bench-scratch") is None


def test_cli_search_is_answered_by_the_server_without_a_model(server):
    url, data, proc = server
    started = time.monotonic()
    done = funnel(data, "search", "How do I bake a loaf of bread with yeast?", "-c", "topics", "-k", "2", key=KEY)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert f"collection 'topics' is held by funnel serve (pid {proc.pid}): answered by {url}" in done.stderr
    assert "bread" in done.stdout and "plan 64:" in done.stdout and "Traceback" not in done.stderr
    assert model_modules(done) == [], "the warm path loaded a model"
    assert took < 60
    as_json = funnel(data, "search", "Which planet is red?", "-c", "small", "-k", "1", "--json", key=KEY)
    assert as_json.returncode == 0, as_json.stderr
    record = json.loads(as_json.stdout)
    assert record["hits"][0]["doc_id"] == "mars" and record["mode"] == "dense" and record["plan"].startswith("64:")
    assert set(record) == {"query", "mode", "fusion", "plan", "adaptive", "depth", "hits"}


def test_cli_without_the_key_says_to_set_it(server):
    url, data, proc = server
    done = funnel(data, "search", "bread", "-c", "topics")
    assert done.returncode == 1
    assert error_lines(done) == [f"Error: collection 'topics' is served by funnel serve at {url} (pid {proc.pid}), "
                                 "which needs an API key: set FUNNEL_API_KEY to it to use that server from here"]
    wrong = funnel(data, "info", "topics", key="not-the-key")
    assert wrong.returncode == 1 and "refused FUNNEL_API_KEY: wrong API key" in error_lines(wrong)[-1]


def test_cli_info_collections_and_docs_of_served_collections(server):
    url, data, _ = server
    info = funnel(data, "info", "topics", "--json", key=KEY)
    assert info.returncode == 0, info.stderr
    shown = json.loads(info.stdout)
    assert shown["points"] == 12 and shown["dims"] == [64, 128, 256, 384] and url in shown["location"]
    assert shown["default_plan_k10"] == "64:400,128:200,256:100,384:10" and shown["disk_bytes"] > 0
    listed = funnel(data, "collections", "--all", "--json", key=KEY)  # --all: the bench scratch one too
    assert listed.returncode == 0, listed.stderr
    rows = {c["name"]: c for c in json.loads(listed.stdout)}
    assert rows["topics"]["points"] == 12 and rows["topics"]["served_by"] == url
    assert rows["small"]["points"] == len(SMALL)
    assert rows["bench-scratch"]["points"] == 1 and rows["bench-scratch"]["served_by"] is None  # opened here
    docs = funnel(data, "docs", "-c", "small", "--json", key=KEY)
    assert docs.returncode == 0, docs.stderr
    assert sorted(d["doc_id"] for d in json.loads(docs.stdout)["documents"]) == sorted(SMALL)
    assert all(model_modules(p) == [] for p in (info, listed, docs))
    put = httpx.put(f"{url}/collections/small/documents/tea", headers={"X-API-Key": KEY},
                    json={"text": "Green tea is brewed at 80 degrees."}, timeout=60)
    assert put.status_code == 200, put.text
    refused = funnel(data, "delete", "-c", "small", "tea", "nope", key=KEY)  # all or none, over HTTP too
    assert refused.returncode == 1 and error_lines(refused) == [
        f"collection 'small' is held by funnel serve (pid {server[2].pid}): answered by {url}",
        "Error: no document 'nope' in collection 'small': nothing deleted (HTTP 404 document_not_found from POST "
        f"{url}/collections/small/documents/delete)"]
    delete = funnel(data, "delete", "-c", "small", "tea", "nope", "--missing-ok", "--json", key=KEY)
    assert delete.returncode == 0, delete.stderr
    assert json.loads(delete.stdout) == {"collection": "small", "deleted": {"tea": 1}, "missing": ["nope"],
                                         "points": len(SMALL)}
    assert model_modules(delete) == []
    assert sorted(d["doc_id"] for d in json.loads(funnel(data, "docs", "-c", "small", "--json", key=KEY).stdout)[
        "documents"]) == sorted(SMALL)


def test_stale_announcements_are_ignored_and_the_cold_path_is_unchanged(server, tmp_path, embedder):
    """A dead pid, or a live pid whose URL does not answer: ignored. Locked with no live server: the old
    error; not locked: the cold path, searched here."""
    url, _, _ = server
    data = tmp_path / "data"
    index_corpus(EdgeCatalog(data), "notes", [write_jsonl(tmp_path / "n.jsonl", topic_records())], embedder)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    announce(data, url, ["notes"], api_key=False)  # this process: alive, but it serves nothing at url
    stale = announce_dir(data) / f"{os.getpid()}.json"
    stale.rename(announce_dir(data) / f"{gone.pid}.json")  # a server killed with kill -9: its pid is dead
    announce(data, "http://127.0.0.1:9", ["notes"], api_key=False)  # alive pid, nothing listens there
    assert find_server(data, "notes") is None
    with EdgeCatalog(data).open("notes"):  # held, by no server
        locked = funnel(data, "search", "bake bread", "-c", "notes")
    (line,) = error_lines(locked)  # one line, naming this (test) process
    assert locked.returncode == 1 and line.startswith(
        f"Error: collection 'notes' is in use by another process: pid {os.getpid()} (") and "wait for it" in line
    cold = funnel(data, "search", "How do I bake a loaf of bread with yeast?", "-c", "notes", "-k", "1", "--json")
    assert cold.returncode == 0, cold.stderr
    assert json.loads(cold.stdout)["hits"][0]["doc_id"] == "bread" and "answered by" not in cold.stderr
    assert model_modules(cold), "the cold path searched without a model?"


def test_serve_refuses_unclear_collections(tmp_path):
    for args, fragment in ((["-c", "a", "--all"], "not both"), ([], "give the collection to serve"),
                           (["--all"], "no collections to serve")):
        done = funnel(tmp_path, "serve", *args)
        assert done.returncode == 1 and len(error_lines(done)) == 1 and fragment in error_lines(done)[0], done.stderr


def test_batcher_routes_each_query_to_its_collection():
    """Pure logic: a mixed batch runs as one call per collection, each query answered by its own."""
    import asyncio

    from retriever.query.spec import QuerySpec

    calls: list[tuple[str, list[str]]] = []

    def route(name: str):
        def search(queries, specs):
            calls.append((name, list(queries)))
            return [[f"{name}:{q}"] for q in queries]
        return search

    async def main():
        batcher = MicroBatcher(lambda q, s: [], max_batch=8, max_wait_ms=0, routes=route)
        await batcher.start()
        try:
            spec = QuerySpec(None, 1)
            return await asyncio.gather(*(batcher.search([f"q{i}"], [spec], route="ab"[i % 2]) for i in range(6)))
        finally:
            await batcher.stop()

    results = asyncio.run(main())
    assert [r[0][0] for r in results] == [f"{'ab'[i % 2]}:q{i}" for i in range(6)]
    assert sorted(q for _, qs in calls for q in qs) == [f"q{i}" for i in range(6)]
    assert len(calls) < 6  # batched: fewer calls than queries


def test_sigterm_withdraws_the_announcement(server):
    """Last: stops the module's server. SIGTERM ends the process (uvicorn re-raises it) after the app's
    shutdown, which removes the announcement."""
    _, data, proc = server
    assert list(announce_dir(data).glob("*.json"))
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert list(announce_dir(data).glob("*.json")) == []
    assert find_server(data, "topics") is None

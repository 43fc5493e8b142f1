"""Documents one at a time, on the real model and engines: ``funnel index --sync``, ``funnel docs`` / ``delete``,
``Retriever.upsert`` / ``delete`` / ``documents``, the HTTP routes and ``FunnelClient``, and a kill -9 in the
middle of an upsert (a real process, killed from outside), after which the collection holds the old or the new
version of the document, never a mix."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from conftest import REPO_ROOT, assert_cli_error, topic_records, write_jsonl

from cli import main
from retriever import Retriever
from retriever.errors import BadInputError, DocumentNotFoundError, InvalidFilterError, ServiceUnreachableError
from retriever.ingest.chunking import chunk_id
from retriever.ingest.indexer import index_corpus
from retriever.service import BackgroundServer, ServiceConfig
from retriever.service.client import FunnelClient
from retriever.store.base import PAUSE_ENV, PENDING_FIELD
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.factory import open_catalog
from retriever.store.spec import Layout

KEY = "doc-key-0123456789"
TEA = "Green tea is brewed with water at eighty degrees for two minutes, never with boiling water."
WALL = ("The Berlin Wall fell on 9 November 1989, hours after Schabowski's muddled announcement at a press "
        "conference. Crowds gathered at the checkpoints, the guards opened the gates, and people climbed the wall "
        "with hammers and chisels. Within a year Germany was reunified; within two the Soviet Union was gone.")
BREAD = "To bake bread, mix flour, water, yeast and salt, knead the dough, let it rise, then bake it in a hot oven."


def invoke(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), *map(str, args)])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.output
    return result


def stored(data_dir: Path, name: str) -> dict[str, list[dict]]:
    """Every stored payload, by document id, in chunk order (the collection opened and closed)."""
    with EdgeCatalog(data_dir).open(name) as coll:
        by_doc: dict[str, list[dict]] = {}
        for batch in coll.points():
            for payload in batch.payloads:
                by_doc.setdefault(payload["doc_id"], []).append(payload)
    return {doc: sorted(chunks, key=lambda p: p["chunk"]) for doc, chunks in by_doc.items()}


def top_doc(data_dir: Path, name: str, query: str, embedder, **options) -> str:
    with EdgeCatalog(data_dir).open(name) as coll:
        return Retriever(coll, embedder).search(query, k=1, **options)[0].doc_id


# --- funnel index --sync -------------------------------------------------------------------------------


def test_sync_after_delete_rename_and_edit(tmp_path, embedder):
    """Deleted and renamed sources are counted (and stay) without --sync, removed with it; an edited
    document that shrank keeps none of its old chunks."""
    notes, data = tmp_path / "notes", tmp_path / "data"
    (notes / "misc").mkdir(parents=True)
    (notes / "misc" / "tea.md").write_text(TEA)
    (notes / "wall.md").write_text(WALL)
    (notes / "bread.md").write_text(BREAD)
    ok(invoke(data, "index", notes, "-c", "notes", "--chunk-size", "24", "--chunk-overlap", "4", "--no-progress"))
    before = stored(data, "notes")
    assert len(before["wall.md"]) >= 3 and top_doc(data, "notes", "green tea temperature", embedder) == "misc/tea.md"

    (notes / "misc" / "tea.md").unlink()
    (notes / "bread.md").rename(notes / "baking.md")
    (notes / "wall.md").write_text("The Berlin Wall fell in 1989.")
    kept = ok(invoke(data, "index", notes, "-c", "notes", "--no-progress", "--json"))
    assert json.loads(kept.stdout)["stale"] == 2 and json.loads(kept.stdout)["removed"] == 0
    assert "holds 2 documents not in this corpus" in kept.stderr and "--sync" in kept.stderr
    assert set(stored(data, "notes")) == {"misc/tea.md", "bread.md", "baking.md", "wall.md"}  # nothing removed

    synced = ok(invoke(data, "index", notes, "-c", "notes", "--no-progress", "--sync", "--json"))
    assert json.loads(synced.stdout)["removed"] == 2 and "removed 2 documents no longer in the corpus" in synced.stderr
    after = stored(data, "notes")
    assert set(after) == {"baking.md", "wall.md"}
    assert [p["text"] for p in after["wall.md"]] == ["The Berlin Wall fell in 1989."]  # old chunks gone
    assert top_doc(data, "notes", "green tea temperature", embedder) != "misc/tea.md"
    listing = json.loads(ok(invoke(data, "docs", "-c", "notes", "--json")).stdout)
    assert listing["total"] == 2 and [d["doc_id"] for d in listing["documents"]] == ["baking.md", "wall.md"]
    again = ok(invoke(data, "index", notes, "-c", "notes", "--no-progress", "--sync"))
    assert "removed" not in again.stderr and "not in this corpus" not in again.stderr


# --- funnel docs / funnel delete -----------------------------------------------------------------------


@pytest.fixture
def topics(tmp_path, embedder) -> Path:
    data = tmp_path / "data"
    index_corpus(EdgeCatalog(data), "topics", [write_jsonl(tmp_path / "c.jsonl", topic_records())], embedder)
    return data


def test_cli_docs_pages_and_json(topics):
    ids = sorted(r["_id"] for r in topic_records())
    page = json.loads(ok(invoke(topics, "docs", "-c", "topics", "--limit", "5", "--offset", "3", "--json")).stdout)
    assert page["total"] == len(ids) and page["offset"] == 3 and page["limit"] == 5
    assert [d["doc_id"] for d in page["documents"]] == ids[3:8]
    assert all(d["chunks"] == 1 and d["title"] for d in page["documents"])
    table = ok(invoke(topics, "docs", "-c", "topics", "--limit", "4"))
    assert "topics: 12 documents" in table.stdout and ids[0] in table.stdout and ids[5] not in table.stdout
    assert "--offset 4 shows the next ones" in table.stderr
    assert_cli_error(invoke(topics, "docs", "-c", "topics", "--limit", "0"), "limit is an integer 1 to 10,000")
    assert_cli_error(invoke(topics, "docs", "-c", "nope"), "no collection 'nope'")


def test_cli_delete_all_or_nothing(topics):
    assert_cli_error(invoke(topics, "delete", "-c", "topics", "violin", "tuba", "harp"),
                     "no document 'tuba' in collection 'topics' (nor 1 more of the 3 ids given): nothing deleted")
    assert "violin" in stored(topics, "topics")  # nothing deleted
    done = ok(invoke(topics, "delete", "-c", "topics", "violin", "piano", "--json"))
    assert json.loads(done.stdout) == {"collection": "topics", "deleted": {"violin": 1, "piano": 1}, "missing": [],
                                       "points": 10}
    assert not {"violin", "piano"} & set(stored(topics, "topics"))
    line = ok(invoke(topics, "delete", "-c", "topics", "coffee")).stderr
    assert "deleted 1 document (1 chunk) from topics; it holds 9 points" in line
    passed = ok(invoke(topics, "delete", "-c", "topics", "tea", "mars", "coffee", "--missing-ok")).stderr
    assert "deleted 1 document (1 chunk) from topics; it holds 8 points" in passed
    assert "not stored, so not deleted: 'tea', 'coffee'" in passed
    by_filter = ok(invoke(topics, "delete", "-c", "topics", "--filter", '{"metadata.topic": ["baking", "sport"]}',
                          "--json"))
    assert json.loads(by_filter.stdout)["deleted"] == {"bread": 1, "football": 1}
    for args, message in ((["--filter", "{}"], "deleting every document is funnel drop"),
                          (["--filter", "{nope"], "--filter is not JSON"),
                          (["x", "--filter", '{"doc_id": "x"}'], "not both"),
                          ([], "give the ids of the documents to delete (or --filter JSON)"),
                          (["--filter", '{"doc_id": "x"}', "--missing-ok"], "--missing-ok goes with document ids")):
        assert_cli_error(invoke(topics, "delete", "-c", "topics", *args), message)
    assert len(stored(topics, "topics")) == 6


# --- the Python API ------------------------------------------------------------------------------------


def test_api_upsert_replace_delete_list(engine, tmp_path, embedder):
    """On each engine: created, replaced (longer, then shorter: no old chunk left), unchanged, deleted."""
    with open_catalog(engine) as catalog:
        index_corpus(catalog, "api", [write_jsonl(tmp_path / "c.jsonl", topic_records()[:4])], embedder,
                     chunk_size=24, chunk_overlap=4)
        with catalog.open("api") as coll:
            r = Retriever(coll, embedder)
            made = r.upsert("wall", WALL, {"topic": "history"}, title="Berlin")
            assert made.status == "created" and made.chunks >= 3
            assert r.search("When did the Berlin Wall fall?", k=1)[0].doc_id == "wall"
            assert r.search("When did the Berlin Wall fall?", k=1, filter={"metadata.topic": "history"})[0].title == "Berlin"
            shorter = r.upsert("wall", "The Berlin Wall fell in 1989.", {"topic": "history"})
            assert (shorter.status, shorter.chunks) == ("replaced", 1)
            assert coll.document_counts(["wall"]) == {"wall": 1}
            assert r.upsert("wall", "The Berlin Wall fell in 1989.", {"topic": "history"}).status == "unchanged"
            longer = r.upsert("wall", WALL)  # back to generation 0's ids
            assert longer.status == "replaced" and coll.document_counts(["wall"]) == {"wall": longer.chunks}
            assert not coll.pending_points()
            assert r.upsert("bread", BREAD.replace("hot oven", "wood-fired oven")).status == "replaced"  # indexed doc

            page = r.documents(limit=2, offset=1)
            assert page.total == 5 and [d.doc_id for d in page.documents] == sorted(["wall", *[
                rec["_id"] for rec in topic_records()[:4]]])[1:3]
            with pytest.raises(DocumentNotFoundError, match="no document 'nope'.*nothing deleted"):
                r.delete(["wall", "nope"])
            assert coll.document_counts(["wall"]) == {"wall": longer.chunks}
            assert r.delete("wall") == {"wall": longer.chunks}
            counts = coll.document_counts()
            assert sorted(counts) == sorted(rec["_id"] for rec in topic_records()[:4])
            assert sum(counts.values()) == coll.count()
            for bad, message in ((("", "x"), "a document id is a non-empty string"),
                                 (("d", "  "), "is empty: nothing to index"),
                                 (("d", "x", {"n": 2**70}), "signed 64-bit")):
                with pytest.raises(BadInputError, match=message):
                    r.upsert(*bad)
            assert coll.document_counts() == counts


def test_api_delete_several_by_id_and_by_filter(engine, tmp_path, embedder):
    """On each engine: delete_where removes whole documents (every chunk, even those the filter does not
    match); missing_ok deletes the stored ids and passes over the others; bad filters delete nothing."""
    with open_catalog(engine) as catalog:
        index_corpus(catalog, "many", [write_jsonl(tmp_path / "c.jsonl", topic_records())], embedder,
                     chunk_size=24, chunk_overlap=4)
        with catalog.open("many") as coll:
            r = Retriever(coll, embedder)
            r.upsert_many([{"doc_id": "n/wall", "text": WALL, "metadata": {"source": "notes.md"}},
                           {"doc_id": "n/tea", "text": TEA, "metadata": {"source": "notes.md"}},
                           {"doc_id": "n/bread", "text": BREAD, "metadata": {"source": "other.md"}}])
            wall_chunks = coll.document_counts(["n/wall"])["n/wall"]
            assert wall_chunks >= 3
            before = coll.count()
            assert r.delete_where({"metadata.source": "nowhere.md"}) == {}
            assert r.delete_where({"metadata.source": "notes.md"}) == {"n/tea": 1, "n/wall": wall_chunks}
            assert coll.count() == before - wall_chunks - 1
            assert "n/wall" not in coll.document_counts() and "n/bread" in coll.document_counts()
            r.upsert("n/wall", WALL, {"source": "notes.md"})
            # a chunk filter: the document one of whose chunks matches goes whole
            assert r.delete_where({"chunk": {"gte": 2}, "metadata.source": "notes.md"}) == {"n/wall": wall_chunks}
            for bad, error, message in (({}, BadInputError, "deleting every document is funnel drop"),
                                        ({"metadata.source": True}, InvalidFilterError, "boolean"),
                                        ({"color": "red"}, InvalidFilterError, "color")):
                with pytest.raises(error, match=message):
                    r.delete_where(bad)
            counts = coll.document_counts()
            with pytest.raises(DocumentNotFoundError, match="no document 'nope'.*nothing deleted"):
                r.delete(["violin", "nope", "n/bread"])
            assert coll.document_counts() == counts
            assert r.delete(["violin", "nope", "violin", "n/bread"], missing_ok=True) == {
                "violin": counts["violin"], "n/bread": counts["n/bread"]}
            assert r.delete(["nope"], missing_ok=True) == {}
            for bad, message in (([], "give 1 to 10,000 document ids, not 0"),
                                 ([str(i) for i in range(10_001)], "not 10,001"),
                                 (["a", 7], "a document id is a non-empty string, not int 7")):
                with pytest.raises(BadInputError, match=message):
                    r.delete(bad)
            with pytest.raises(BadInputError, match="missing_ok is True or False"):
                r.delete(["coffee"], missing_ok="yes")  # type: ignore[arg-type]
            assert sorted(coll.document_counts()) == sorted(set(counts) - {"violin", "n/bread"})


def test_upsert_follows_bm25_and_index_replaces_an_upserted_version(tmp_path, embedder):
    data = tmp_path / "data"
    corpus = write_jsonl(tmp_path / "c.jsonl", topic_records())
    index_corpus(EdgeCatalog(data), "lex", [corpus], embedder, layout=Layout(lexical="bm25"))
    with EdgeCatalog(data).open("lex") as coll:
        r = Retriever(coll, embedder)
        r.upsert("violin", "The violin solo by Zyxwarble opened the concert.", title="Music")
        assert r.search("Zyxwarble", k=1, mode="lexical")[0].doc_id == "violin"
        assert coll.payloads([chunk_id("violin", 0, coll.spec.point_ids, 1)])  # the upsert's generation
    index_corpus(EdgeCatalog(data), "lex", [corpus], embedder, layout=Layout(lexical="bm25"))  # the corpus's version again, under generation 0
    after = stored(data, "lex")
    assert len(after["violin"]) == 1 and "Zyxwarble" not in after["violin"][0]["text"]
    with EdgeCatalog(data).open("lex") as coll:
        assert coll.count() == len(topic_records())
        assert Retriever(coll, embedder).search("Zyxwarble", k=3, mode="lexical") == []


# --- HTTP and FunnelClient ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("docs-http")
    catalog = EdgeCatalog(root / "data")
    index_corpus(catalog, "topics", [write_jsonl(root / "c.jsonl", topic_records())], embedder)
    collection = catalog.open("topics")
    config = ServiceConfig(api_key=KEY, max_body_bytes=64 * 1024, feedback_path=root / "feedback.jsonl")
    with BackgroundServer(collection, lambda: embedder, config) as s:
        yield s
    collection.close()


def test_http_put_list_delete(server):
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as http:
        path = "/collections/topics/documents/misc/tea.md"
        made = http.put(path, json={"text": TEA, "title": "Tea", "metadata": {"topic": "drinks"}})
        assert made.status_code == 200, made.text
        assert made.json() | {"took_ms": 0} == {"collection": "topics", "doc_id": "misc/tea.md", "chunks": 1,
                                                "status": "created", "took_ms": 0}
        hit = http.post("/search", json={"query": "green tea water temperature", "k": 1}).json()
        assert hit["results"][0]["hits"][0]["doc_id"] == "misc/tea.md"
        assert http.put(path, json={"text": TEA, "title": "Tea", "metadata": {"topic": "drinks"}}).json()["status"] == "unchanged"
        page = http.get("/collections/topics/documents", params={"limit": 3, "offset": 0}).json()
        assert page["total"] == 13 and [d["doc_id"] for d in page["documents"]] == ["bread", "coffee", "football"]
        gone = http.delete(path)
        assert gone.status_code == 200 and gone.json() == {"collection": "topics", "doc_id": "misc/tea.md", "chunks": 1}
        assert http.get("/collections/topics/documents", params={"limit": 100}).json()["total"] == 12
        for response, status, type_ in (
            (http.delete(path), 404, "document_not_found"),
            (httpx.put(f"{server.url}{path}", json={"text": TEA}), 401, "unauthorized"),
            (httpx.get(f"{server.url}/collections/topics/documents"), 401, "unauthorized"),
            (http.put("/collections/other/documents/x", json={"text": TEA}), 404, "collection_not_found"),
            (http.put(path, json={"text": ""}), 422, "validation"),
            (http.put(path, json={"text": TEA, "extra": 1}), 422, "validation"),
            (http.put(path, json={"text": "   "}), 400, "bad_input"),
            (http.put(path, json={"text": TEA, "metadata": {"n": 2**70}}), 400, "bad_input"),
            (http.put(path, json={"text": "x" * 70_000}), 413, "payload_too_large"),
            (http.get("/collections/topics/documents", params={"limit": 0}), 422, "validation"),
        ):
            assert response.status_code == status, response.text
            assert response.json()["error"]["type"] == type_, response.text
        assert http.get("/collections/topics/documents").json()["total"] == 12  # none of those wrote anything


def test_funnel_client_documents(server):
    with FunnelClient(server.url, api_key=KEY) as client:
        made = client.upsert("notes/a b?.md", WALL, {"topic": "history"}, title="Wall")
        assert made.status == "created" and made.chunks == 1
        assert client.search("Schabowski press conference", k=1)[0].doc_id == "notes/a b?.md"
        assert client.upsert("notes/a b?.md", "The wall fell in 1989.").status == "replaced"
        assert client.feedback("when did the wall fall", "notes/a b?.md").recorded  # the replaced chunk is found
        page = client.documents(limit=2, offset=5)
        assert page.total == 13 and [d.doc_id for d in page.documents] == ["mars", "notes/a b?.md"]
        with pytest.raises(DocumentNotFoundError):
            client.delete("..")
        assert client.delete("notes/a b?.md") == 1
        with pytest.raises(DocumentNotFoundError):
            client.delete("notes/a b?.md")

        import asyncio

        async def both() -> tuple:
            made = await client.aupsert("async", TEA)
            return made, await client.adocuments(limit=1), await client.adelete("async")

        made, page, chunks = asyncio.run(both())
        assert made.status == "created" and page.total == 13 and chunks == 1


def test_http_delete_several(server):
    """POST …/documents/delete: by ids (all or nothing, or missing_ok), by filter; bad bodies are 4xx and delete nothing."""
    url = "/collections/topics/documents/delete"
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as http:
        for i, text in enumerate((TEA, BREAD, WALL)):
            assert http.put(f"/collections/topics/documents/batch/{i}", json={
                "text": text, "metadata": {"batch": "b1" if i < 2 else "b2"}}).status_code == 200
        total = http.get("/collections/topics/documents").json()["total"]
        for body, status, type_, message in (
            ({"doc_ids": ["batch/0", "nope", "batch/1", "gone"]}, 404, "document_not_found",
             "no document 'nope' in collection 'topics' (nor 1 more of the 4 ids given): nothing deleted"),
            ({"doc_ids": []}, 422, "validation", "doc_ids"),
            ({"doc_ids": [str(i) for i in range(1001)]}, 422, "validation", "1000"),
            ({"doc_ids": [""]}, 422, "validation", "doc_ids"),
            ({"doc_ids": ["batch/0"], "filter": {"metadata.batch": "b1"}}, 422, "validation", "exactly one of"),
            ({}, 422, "validation", "exactly one of"),
            ({"filter": {"metadata.batch": "b1"}, "missing_ok": True}, 422, "validation", "missing_ok"),
            ({"filter": {}}, 400, "bad_input", "deleting every document is funnel drop"),
            ({"filter": {"colour": "red"}}, 400, "invalid_filter", "colour"),
            ({"doc_ids": "batch/0"}, 422, "validation", "doc_ids"),
        ):
            response = http.post(url, json=body)
            assert response.status_code == status, (body, response.text)
            error = response.json()["error"]
            assert error["type"] == type_ and message in error["message"], (body, error)
        assert httpx.post(f"{server.url}{url}", json={"doc_ids": ["batch/0"]}).status_code == 401
        assert http.get("/collections/topics/documents").json()["total"] == total  # none of those deleted anything

        gone = http.post(url, json={"doc_ids": ["batch/0", "nope", "batch/0"], "missing_ok": True})
        assert gone.status_code == 200, gone.text
        assert gone.json() | {"took_ms": 0} == {"collection": "topics", "deleted": {"batch/0": 1}, "missing": ["nope"],
                                                "documents": 1, "chunks": 1, "took_ms": 0}
        by_filter = http.post(url, json={"filter": {"metadata.batch": ["b1", "b2"]}}).json()
        assert by_filter["deleted"] == {"batch/1": 1, "batch/2": 1} and by_filter["missing"] == []
        assert http.post(url, json={"filter": {"metadata.batch": "b1"}}).json()["deleted"] == {}
        assert http.get("/collections/topics/documents").json()["total"] == total - 3
        hit = http.post("/search", json={"query": "green tea water temperature", "k": 3}).json()
        assert not any(h["doc_id"].startswith("batch/") for h in hit["results"][0]["hits"])


def test_funnel_client_deletes_several(server):
    import asyncio

    with FunnelClient(server.url, api_key=KEY) as client:
        for doc_id in ("m/a", "m/b", "m/c", "m/d"):
            client.upsert(doc_id, TEA, {"group": "m"})
        with pytest.raises(DocumentNotFoundError, match="no document 'nope'"):
            client.delete_many(["m/a", "nope"])
        assert client.delete_many(["m/a", "nope"], missing_ok=True) == {"m/a": 1}
        with pytest.raises(BadInputError, match="1 to 1,000 document ids, not 1,001"):
            client.delete_many([str(i) for i in range(1001)])  # refused here, before any request
        with pytest.raises(BadInputError, match="funnel drop"):
            client.delete_where({})

        async def both() -> tuple:
            return await client.adelete_many(["m/b"]), await client.adelete_where({"metadata.group": "m"})

        assert asyncio.run(both()) == ({"m/b": 1}, {"m/c": 1, "m/d": 1})
        assert client.delete_where({"metadata.group": "m"}) == {}
        assert client.documents().total == 12


# --- kill -9 in the middle of an upsert --------------------------------------------------------------------


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the process never reached the pause"
        time.sleep(0.05)


def _old_collection(tmp_path: Path, embedder) -> tuple[Path, dict[str, list[dict]]]:
    data = tmp_path / "data"
    records = [{"_id": "wall", "title": "Berlin", "text": WALL}, *topic_records()[:3]]
    index_corpus(EdgeCatalog(data), "crash", [write_jsonl(tmp_path / "c.jsonl", records)], embedder,
                 chunk_size=24, chunk_overlap=4)
    return data, stored(data, "crash")


NEW_WALL = " ".join(f"Version two, part {i}: the wall came down and the checkpoints opened." for i in range(6))


def test_kill_9_during_an_http_upsert_leaves_the_old_document(tmp_path, embedder):
    """funnel serve killed after the first new chunk is written: reopened, the old version is whole, no new chunk."""
    data, before = _old_collection(tmp_path, embedder)
    marker = tmp_path / "paused"
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT), "FUNNEL_HOME": str(data), "FUNNEL_API_KEY": KEY,
                        PAUSE_ENV: f"partial:{marker}"}
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "cli.py"), "serve", "-c", "crash", "--port", "0",
                             "--device", "cpu"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        seen: list[str] = []
        while not (match := re.search(r"on (http://127\.0\.0\.1:\d+)", seen[-1] if seen else "")):
            seen.append(proc.stderr.readline())
            assert seen[-1] and len(seen) < 50, seen
        client = FunnelClient(match.group(1), api_key=KEY, timeout=120)
        client.wait_ready(90)
        put = threading.Thread(target=lambda: pytest.raises(ServiceUnreachableError, client.upsert, "wall", NEW_WALL),
                               daemon=True)
        put.start()
        _wait_for(marker, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        put.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert (data / "collections" / "crash" / "replacing").exists()  # killed mid-replacement
    after = stored(data, "crash")  # opening recovers
    assert after == before
    assert not (data / "collections" / "crash" / "replacing").exists()


def _kill_at_pause(tmp_path: Path, stage: str, script: list[str]) -> None:
    """Run ``python -c SCRIPT ARGS...`` until it reaches the pause hook's ``stage``, then SIGKILL it."""
    marker = tmp_path / "paused"
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT), PAUSE_ENV: f"{stage}:{marker}"}
    proc = subprocess.Popen([sys.executable, "-c", *script], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(marker, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


CRASH_SCRIPT = """
import sys
from retriever import Retriever
r = Retriever.open("crash", data_dir=sys.argv[1], device="cpu")
r.upsert("wall", sys.argv[2], title="Berlin")
"""


@pytest.mark.parametrize("stage", ["written", "deleted"])
def test_kill_9_after_the_new_chunks_are_written_keeps_the_new_document(tmp_path, embedder, stage):
    """Killed once every new chunk is stored (before or after the old ones are deleted): reopened, the
    new version is whole, marked committed, and no old chunk is left."""
    data, before = _old_collection(tmp_path, embedder)
    _kill_at_pause(tmp_path, stage, [CRASH_SCRIPT, str(data), NEW_WALL])
    after = stored(data, "crash")
    texts = [p["text"] for p in after["wall"]]
    assert len(texts) > 1 and all(t.strip() and t in NEW_WALL for t in texts) and texts[0].startswith("Version two")
    assert [p["chunk"] for p in after["wall"]] == list(range(len(texts)))
    assert not any(PENDING_FIELD in p for p in after["wall"])
    assert {d: v for d, v in after.items() if d != "wall"} == {d: v for d, v in before.items() if d != "wall"}
    assert top_doc(data, "crash", "version two of the wall", embedder) == "wall"


# --- kill -9 in the middle of funnel index's rewrite of changed documents ------------------------------------


INDEX_SCRIPT = """
import sys
from retriever.encoding.embedder import Embedder
from retriever.ingest.indexer import index_corpus
from retriever.store.edge.catalog import EdgeCatalog
index_corpus(EdgeCatalog(sys.argv[1]), "crash", [sys.argv[2]], Embedder(device="cpu"), chunk_size=24, chunk_overlap=4,
             batch_size=2)
"""


def _edited_corpus(tmp_path: Path) -> tuple[list[dict], list[dict]]:
    """Two versions of a corpus: documents that grow, shrink, change in place, stay, and a new one."""
    old = [{"_id": "wall", "title": "Berlin", "text": WALL}, {"_id": "loaf", "text": BREAD * 3},
           *topic_records()[:4]]
    new = [{"_id": "wall", "title": "Berlin", "text": NEW_WALL}, {"_id": "loaf", "text": BREAD},
           {**old[2], "text": old[2]["text"] + " Revised: a second paragraph that changes the last chunk."},
           *old[3:], {"_id": "tea", "text": TEA * 4}]
    return old, new


def _index_reference(tmp_path: Path, embedder, records: list[dict], name: str) -> dict[str, list[dict]]:
    data = tmp_path / name
    index_corpus(EdgeCatalog(data), "crash", [write_jsonl(tmp_path / f"{name}.jsonl", records)], embedder,
                 chunk_size=24, chunk_overlap=4)
    return stored(data, "crash")


def _texts(docs: dict[str, list[dict]]) -> dict[str, list[str]]:
    return {d: [p["text"] for p in payloads] for d, payloads in docs.items()}


@pytest.mark.parametrize("stage", ["slice", "deleted"])
def test_kill_9_during_funnel_index_leaves_each_document_old_or_new(tmp_path, embedder, stage):
    """funnel index of an edited corpus killed after its first upsert (``slice``) or once the changed
    documents' old points are deleted (``deleted``): reopened, every document is its old version or its
    new one, whole (none mixed, none half-written, no pending mark), and a re-run completes it."""
    old_records, new_records = _edited_corpus(tmp_path)
    old = _texts(_index_reference(tmp_path, embedder, old_records, "old"))
    new = _texts(_index_reference(tmp_path, embedder, new_records, "new"))
    changed = {d for d in new if old.get(d) != new[d]}
    assert {"wall", "loaf", "tea"} <= changed and len(old["loaf"]) > len(new["loaf"])
    data = tmp_path / "trial"
    index_corpus(EdgeCatalog(data), "crash", [tmp_path / "old.jsonl"], embedder, chunk_size=24, chunk_overlap=4)
    _kill_at_pause(tmp_path, stage, [INDEX_SCRIPT, str(data), str(tmp_path / "new.jsonl")])
    assert (data / "collections" / "crash" / "replacing").exists()  # killed mid-run: the next open recovers
    after = stored(data, "crash")
    assert not any(PENDING_FIELD in p for payloads in after.values() for p in payloads)
    assert all([p["chunk"] for p in payloads] == list(range(len(payloads))) for payloads in after.values())
    texts = _texts(after)
    states = {d: "new" if texts.get(d) == new.get(d) else "old" if texts.get(d) == old.get(d) else "mixed"
              for d in old.keys() | new.keys()}
    assert "mixed" not in states.values(), states
    if stage == "slice":  # only the first slice of the changed chunks was written: most changes not yet
        assert sum(states[d] == "old" for d in changed) >= 2, states
    else:  # every new version was written and the old ones deleted: all new once recovered
        assert texts == new
    index_corpus(EdgeCatalog(data), "crash", [tmp_path / "new.jsonl"], embedder, chunk_size=24, chunk_overlap=4)
    assert _texts(stored(data, "crash")) == new

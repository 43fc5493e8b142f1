"""Hybrid search where a user touches it: ``funnel index --lexical bm25`` / ``search --mode --fusion`` /
``info`` / ``collections copy`` (CliRunner), the Python API, HTTP (a real uvicorn on 127.0.0.1), the
client and the framework adapters. The real model; the engine-level checks are in test_hybrid.py.

The corpus: the topic documents, plus six spare-part notes alike but for their part numbers
(KW2290, KW2209, ...). The dense model mixes up near-identical codes: for "KW9022" it ranks
KW2290's note first (measured with all-MiniLM-L6-v2); BM25 matches the exact code, so lexical search
and the rank/score fusions (rrf, dbsf) put KW9022's note first. ``union`` only adds BM25's candidates
to the dense shortlist and lets the dense re-score rank them: it cannot fix this dense mistake (the
note is already in the shortlist), and the test says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from conftest import assert_cli_error, topic_records, write_jsonl

from cli import main
from retriever import Retriever
from retriever.errors import InvalidPlanError
from retriever.ingest.indexer import index_corpus
from retriever.query.fusion import Fusion
from retriever.service import BackgroundServer, ServiceConfig
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.spec import Layout

CODES = ["KW2290", "KW2209", "KW2299", "KX2290", "KW9022", "KW2920"]
QUERY = "KW9022"  # the one chunk that holds it is BM25's only hit: no tie in any fusion
TARGET = "part-kw9022"
DENSE_FIRST = "part-kw2290"  # what the dense funnel ranks first for QUERY


def records() -> list[dict]:
    parts = [{"_id": f"part-{code.lower()}", "title": "Spare parts",
              "text": f"Spare part {code} for the cooling pump ships from the regional warehouse in {i + 2} weeks.",
              "metadata": {"topic": "parts"}} for i, code in enumerate(CODES)]
    return topic_records() + parts


def invoke(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), *map(str, args)])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.output
    return result


def search_json(data_dir: Path, *args: str) -> dict:
    (line,) = [json.loads(x) for x in ok(invoke(data_dir, "search", QUERY, "-c", "parts", "--json", "-k", "3",
                                                *args)).stdout.splitlines() if x.strip()]
    return line


# --- CLI --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The corpus indexed once through ``funnel index --lexical bm25``."""
    root = tmp_path_factory.mktemp("hybrid-cli")
    corpus = write_jsonl(root / "corpus.jsonl", records())
    data = root / "data"
    ok(invoke(data, "index", corpus, "-c", "parts", "--lexical", "bm25", "--no-progress"))
    return data, corpus


def test_cli_index_and_info_record_the_lexical_index(built):
    data, corpus = built
    info = json.loads(ok(invoke(data, "info", "parts", "--json")).stdout)
    assert (info["lexical"], info["lexical_analyzer"]) == ("bm25", "english")
    assert info["default_mode"] == "hybrid" and info["default_fusion"] == str(Fusion())
    # the table wraps long values: compare its words, borders and line breaks dropped
    human = " ".join(w for w in ok(invoke(data, "info", "parts")).stdout.split() if w != "│")
    assert "lexical index bm25 (english analyzer)" in human, human
    assert f"search mode hybrid by default; hybrid fusion {Fusion()} (the default;" in human, human
    listed = json.loads(ok(invoke(data, "collections", "--json")).stdout)
    assert listed[0]["lexical"] == "bm25"
    # re-indexing without --lexical keeps the collection's index; another analyzer is refused
    ok(invoke(data, "index", corpus, "-c", "parts", "--no-progress"))
    assert EdgeCatalog(data).read_spec("parts").lexical == "bm25"
    assert_cli_error(invoke(data, "index", corpus, "-c", "parts", "--lexical-analyzer", "plain", "--no-progress"),
                     "has a bm25 index (english analyzer)", "cannot change that in place",
                     "funnel collections copy parts parts-bm25 --lexical bm25 --lexical-analyzer plain")


def test_cli_search_modes_and_fusions(built):
    data, _ = built
    dense = search_json(data, "--mode", "dense")
    assert (dense["mode"], dense["fusion"]) == ("dense", None)
    assert dense["hits"][0]["doc_id"] == DENSE_FIRST and TARGET in [h["doc_id"] for h in dense["hits"]]
    assert search_json(data)["mode"] == "hybrid"  # the default of a collection with a lexical index
    assert search_json(data, "--plan", "64:40")["mode"] == "dense"  # a plan is the dense funnel's
    lexical = search_json(data, "--mode", "lexical")
    assert (lexical["mode"], lexical["fusion"], lexical["plan"]) == ("lexical", None, None)
    assert lexical["hits"][0]["doc_id"] == TARGET
    for fusion in ("rrf", "dbsf", "union"):
        hybrid = search_json(data, "--mode", "hybrid", "--fusion", fusion)
        assert hybrid["mode"] == "hybrid" and hybrid["fusion"].startswith(fusion), hybrid
        assert hybrid["plan"] and hybrid["plan"] != "exact"
        first = hybrid["hits"][0]["doc_id"]
        assert first == (DENSE_FIRST if fusion == "union" else TARGET), (fusion, hybrid["hits"])
    assert search_json(data, "--fusion", "rrf")["mode"] == "hybrid"  # a fusion implies hybrid
    human = ok(invoke(data, "search", QUERY, "-c", "parts", "--mode", "hybrid", "--fusion", "rrf")).stdout
    assert f"hybrid {Fusion('rrf')}: BM25 and plan " in human
    assert "lexical: BM25 alone" in ok(invoke(data, "search", QUERY, "-c", "parts", "--mode", "lexical")).stdout


def test_cli_mode_errors(built, tmp_path):
    data, corpus = built
    assert_cli_error(invoke(data, "search", QUERY, "-c", "parts", "--mode", "dense", "--fusion", "rrf"),
                     "--fusion combines the two sides of a hybrid search, not a dense one")
    assert_cli_error(invoke(data, "search", QUERY, "-c", "parts", "--mode", "hybrid", "--adaptive"),
                     "adaptive search is dense only, not hybrid")
    assert_cli_error(invoke(data, "search", QUERY, "-c", "parts", "--mode", "lexical", "--plan", "64:40"),
                     "a lexical search has no funnel plan")
    assert_cli_error(invoke(data, "search", QUERY, "-c", "parts", "--mode", "fuzzy"), "--mode", "fuzzy")
    assert_cli_error(invoke(data, "search", QUERY, "-c", "parts", "--fusion", "max"), "--fusion", "max")
    assert_cli_error(invoke(tmp_path / "d", "index", corpus, "-c", "x", "--lexical-analyzer", "plain"),
                     "--lexical-analyzer applies to a lexical index: add --lexical bm25")
    assert_cli_error(invoke(tmp_path / "d", "index", corpus, "-c", "x", "--lexical", "bm26"), "--lexical")


def test_cli_collections_copy_keeps_the_lexical_index(built, tmp_path):
    data, _ = built
    ok(invoke(data, "collections", "copy", "parts", "parts-copy"))
    spec = EdgeCatalog(data).read_spec("parts-copy")
    assert (spec.lexical, spec.lexical_analyzer) == ("bm25", "english")
    copied = json.loads(ok(invoke(data, "search", QUERY, "-c", "parts-copy", "--mode", "lexical", "--json")).stdout)
    assert copied["hits"][0]["doc_id"] == TARGET
    # local mode has no english analyzer: one clear line, and no half-made collection
    local = f"path:{tmp_path / 'qdrant-local'}"
    assert_cli_error(invoke(data, "collections", "copy", "parts", "parts", "--to-url", local),
                     "local mode", "no 'english' lexical analyzer", "--lexical-analyzer plain")


# --- Python API, HTTP, client, adapters -------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory, embedder):
    """The corpus with a BM25 index (and a second collection without one), and a server over the first."""
    root = tmp_path_factory.mktemp("hybrid-serve")
    corpus = write_jsonl(root / "corpus.jsonl", records())
    catalog = EdgeCatalog(root / "data")
    index_corpus(catalog, "parts", [corpus], embedder, layout=Layout(lexical="bm25"))
    index_corpus(catalog, "dense-only", [corpus], embedder)
    collection = catalog.open("parts")
    server = BackgroundServer(collection, lambda: embedder, ServiceConfig())
    with server, catalog.open("dense-only") as dense_only:
        yield server, Retriever(dense_only, embedder)
    collection.close()


def test_api_modes_fusions_and_errors(served):
    server, dense_only = served
    retriever: Retriever = server.state.retriever
    assert retriever.search(QUERY, k=3, mode="dense")[0].doc_id == DENSE_FIRST
    default = retriever.search(QUERY, k=3)  # hybrid, the default of a collection with a lexical index
    assert [h.id for h in default] == [h.id for h in retriever.search(QUERY, k=3, mode="hybrid", fusion=Fusion())]
    assert retriever.search(QUERY, k=3, mode="lexical")[0].doc_id == TARGET
    for fusion in ("rrf", "dbsf", Fusion("rrf", rrf_k=10, lexical_weight=2.0)):
        assert retriever.search(QUERY, k=3, mode="hybrid", fusion=fusion)[0].doc_id == TARGET
    # union: every hit comes from the dense shortlist or BM25's top lexical_limit, ranked by the dense score
    union = retriever.search(QUERY, k=5, fusion=Fusion("union", lexical_limit=2))
    assert union[0].doc_id == DENSE_FIRST and TARGET in [h.doc_id for h in union]
    exact = retriever.search(QUERY, k=len(records()), exact=True)
    assert [h.score for h in union] == pytest.approx([next(e.score for e in exact if e.id == h.id) for h in union],
                                                     abs=1e-5)
    # the filter holds in both lexical and hybrid modes
    for mode in ("lexical", "hybrid"):
        hits = retriever.search("pump KW9022 volcano", k=5, mode=mode, filter={"metadata.topic": "volcanoes"})
        assert [h.doc_id for h in hits] == ["volcano"], mode
    with pytest.raises(InvalidPlanError, match="collection 'dense-only' has no lexical index, so no lexical search"):
        dense_only.search(QUERY, mode="lexical")
    with pytest.raises(InvalidPlanError, match="adaptive search is dense only, not hybrid"):
        retriever.search(QUERY, mode="hybrid", adaptive=True)
    with pytest.raises(InvalidPlanError, match="a fusion combines the two sides of a hybrid search, not a dense one"):
        retriever.search(QUERY, mode="dense", fusion="rrf")
    with pytest.raises(InvalidPlanError, match="unknown search mode 'fuzzy'"):
        retriever.search(QUERY, mode="fuzzy")


def post(server: BackgroundServer, **body) -> httpx.Response:
    return httpx.post(f"{server.url}/search", json=body, timeout=60)


def test_http_modes_and_fusions(served):
    server, _ = served
    for mode, fusion, first in (("dense", None, DENSE_FIRST), ("lexical", None, TARGET), ("hybrid", "rrf", TARGET),
                                ("hybrid", "dbsf", TARGET), ("hybrid", "union", DENSE_FIRST)):
        body = {"query": QUERY, "k": 3, "mode": mode} | ({"fusion": fusion} if fusion else {})
        response = post(server, **body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["mode"] == mode and answer["results"][0]["hits"][0]["doc_id"] == first, answer
        assert (answer["fusion"] or "").startswith(fusion or "") and (answer["fusion"] is None) == (fusion is None)
        assert (answer["plan"] is None) == (mode == "lexical")
    direct = server.state.retriever.search(QUERY, k=3, mode="hybrid", fusion="rrf")
    hits = post(server, query=QUERY, k=3, fusion="rrf").json()["results"][0]["hits"]
    assert [h["id"] for h in hits] == [h.id for h in direct]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in direct], abs=1e-6)
    info = httpx.get(f"{server.url}/collections/parts").json()
    assert (info["lexical"], info["lexical_analyzer"], info["default_mode"]) == ("bm25", "english", "hybrid")
    assert info["default_fusion"] == str(Fusion())


@pytest.mark.parametrize("body, status, type_, fragment", [
    ({"mode": "fuzzy"}, 422, "validation", "mode"),
    ({"fusion": "max"}, 422, "validation", "fusion"),
    ({"mode": "dense", "fusion": "rrf"}, 400, "invalid_plan", "not a dense one"),
    ({"mode": "lexical", "plan": "64:40"}, 400, "invalid_plan", "a lexical search has no funnel plan"),
    ({"mode": "hybrid", "adaptive": True}, 400, "invalid_plan", "adaptive search is dense only"),
])
def test_http_refuses_bad_modes(served, body, status, type_, fragment):
    server, _ = served
    response = post(server, query=QUERY, **body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_ and fragment in error["message"], error


def test_client_and_adapters_pass_mode_and_fusion(served):
    from retriever.integrations import langchain as lc
    from retriever.integrations import llamaindex as li
    from retriever.service.client import FunnelClient

    server, _ = served
    with FunnelClient(server.url) as client:
        assert client.search(QUERY, k=3, mode="lexical")[0].doc_id == TARGET
        assert [r[0].doc_id for r in client.search_batch([QUERY, QUERY], k=3, mode="hybrid", fusion="dbsf")] == [
            TARGET, TARGET]
        with pytest.raises(InvalidPlanError, match="not a dense one"):
            client.search(QUERY, mode="dense", fusion="rrf")
        for searcher in (client, server.state.retriever):
            docs = lc.FunnelRetriever(searcher=searcher, k=3, mode="lexical").invoke(QUERY)
            assert docs[0].metadata["doc_id"] == TARGET
            docs = lc.FunnelRetriever(searcher=searcher, k=3).invoke(QUERY, mode="hybrid", fusion="rrf")
            assert docs[0].metadata["doc_id"] == TARGET
            nodes = li.FunnelRetriever(searcher, k=3, mode="hybrid", fusion="dbsf").retrieve(QUERY)
            assert nodes[0].node.metadata["doc_id"] == TARGET


def test_lexical_search_loads_no_model(tmp_path):
    """BM25 alone needs no model: a collection whose model cannot even be loaded is searched lexically
    from the CLI and from ``Retriever.open(lexical_only=True)``; every other mode needs the model."""
    import numpy as np

    from retriever.ingest.chunking import chunk_id
    from retriever.store.base import PointBatch
    from retriever.store.spec import CollectionSpec

    data = tmp_path / "data"
    spec = CollectionSpec(name="nomodel", model="no-such-model", model_fingerprint="f" * 16, model_dim=8, dims=(4, 8),
                          chunk_size=64, chunk_overlap=8, lexical="bm25")
    rows = records()
    vectors = {d: np.eye(len(rows), d, dtype=np.float32) + 0.01 for d in (4, 8)}
    payloads = [{"text": r["text"], "doc_id": r["_id"], "title": r["title"], "chunk": 0, "metadata": r["metadata"]}
                for r in rows]
    with EdgeCatalog(data).create(spec) as coll:
        coll.upsert(PointBatch([chunk_id(r["_id"], 0) for r in rows], vectors, payloads))
        coll.finish_indexing()
    found = json.loads(ok(invoke(data, "search", QUERY, "-c", "nomodel", "--mode", "lexical", "--json")).stdout)
    assert found["hits"][0]["doc_id"] == TARGET
    assert_cli_error(invoke(data, "search", QUERY, "-c", "nomodel", "--mode", "hybrid"), "no-such-model")
    with Retriever.open("nomodel", data_dir=data, lexical_only=True) as retriever:
        assert retriever.search(QUERY, mode="lexical")[0].doc_id == TARGET
        assert retriever.search(QUERY)[0].doc_id == TARGET  # without a model, the default mode is lexical
        for mode in ("hybrid", "dense"):
            with pytest.raises(InvalidPlanError, match="opened for lexical search only"):
                retriever.search(QUERY, mode=mode)


def test_schemathesis_search_finds_no_server_error_with_a_lexical_index(served):
    """POST /search over a collection with a BM25 index (every mode and fusion can run): schema-valid
    and schema-violating requests, never a 5xx, always the documented shape (test_serve.py runs the
    same over every operation of a dense-only collection)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    from retriever.service.openapi import render

    server, _ = served
    schema = schemathesis.openapi.from_dict(json.loads(render()))
    operation = next(r.ok() for r in schema.get_all_operations() if r.ok().label == "POST /search")
    statuses: list[int] = []
    for generation in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

        @settings(max_examples=25, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation))
        def run(case):  # noqa: ANN001
            response = case.call(base_url=server.url, timeout=60)
            assert response.status_code < 500, (case.body, response.text)
            case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                     response_schema_conformance])
            statuses.append(response.status_code)

        run()
    assert 200 in statuses and any(400 <= s < 500 for s in statuses)

"""Issue 22: every surface (CLI, Python API, HTTP, LangChain and LlamaIndex) and calibration, on a
collection where the funnel is really approximate and the HNSW graph is really walked.

The other surface tests use 12–64 documents, below every shortlist: there a funnel equals exact search
by construction. Here: 2,000 financial-qa-10k passages (2,0xx chunks), the real model, indexed once
through ``funnel index`` (which calibrates at its end, with the shipped candidate sets), and searched
with shortlists of 20 to 200, far below the collection. Qdrant Edge builds no graph below 10 MB of
vectors per segment (40,000 points at 64 dims) and scans below its full-scan threshold, so this
module lowers both (``INDEXING_THRESHOLD_KB``, ``FULL_SCAN_THRESHOLD_KB``, as ``test_hnsw_funnel``
does) and checks that the graph is on disk and that a narrow walk of it misses exact hits. Every
assertion below fails if the funnel silently became exact search (a narrow plan would then find all of
exact's hits) or if the graph were not walked (a narrow width would then find them too).

Needs ``../shared/data/financial-qa-10k`` (the team's data, not in a clone): skipped, saying so, without.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import SHARED_FINQA, write_jsonl

import retriever.store.edge.collection as edge_store
from cli import main
from retriever.calibration.plans import calibrate, recall_against
from retriever.integrations import langchain as lc
from retriever.integrations import llamaindex as li
from retriever.query.ladder import vector_name
from retriever.query.plan import parse_plan
from retriever.query.spec import Hit
from retriever.retriever import Retriever
from retriever.service import BackgroundServer, ServiceConfig
from retriever.service.client import FunnelClient
from retriever.store.edge.catalog import EdgeCatalog

pytestmark = pytest.mark.timeout(900)  # the module's fixture indexes 2,000 passages (~1-2 min on 2 cores)

NAME = "fin"
PASSAGES = 2_000
K = 10
LADDER = (64, 128, 256, 384)
NARROW = "64:20"  # 20 candidates of 2,000: must miss some of exact's top 10
FUNNEL = "64:300,128:150,256:50"  # 800 candidates scored in all: must find nearly all of them
FUNNEL_CANDIDATES = 300 + 300 + 150 + 50
# Stated recalls@10 against exact search on these 60 questions (base MiniLM, whose 64-dim prefix needs a
# long shortlist: measured NARROW 0.642, FUNNEL 0.972; 0.672 and 0.973 on the 100 held-out ones)
NARROW_AT_MOST = 0.90
FUNNEL_AT_LEAST = 0.95
KEY = "walked-key-0123456789"


@dataclass
class Walked:
    data: Path
    points: int
    summary: dict
    queries: list[str]  # 60 test questions about the indexed passages: the surfaces' queries
    held_out: list[str]  # 100 others: calibration's unseen queries
    query_file: Path


def _cli(data: Path, *args: str) -> Result:
    result = CliRunner().invoke(main, ["--data-dir", str(data), *map(str, args)])
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    return result


def _lines(result: Result) -> list[dict]:
    return [json.loads(x) for x in result.stdout.splitlines() if x.strip()]


def _hits(rows: list[dict]) -> list[list[Hit]]:
    return [[Hit(id=h["id"], score=h["score"], doc_id=h["doc_id"], chunk=h["chunk"], text=h["text"], title=h["title"],
                 metadata=h["metadata"]) for h in row["hits"]] for row in rows]


def _ids(results: list) -> list[list[str]]:
    return [[h.id for h in hits] for hits in results]


@pytest.fixture(scope="module")
def walked(tmp_path_factory, encoder_cache) -> Walked:
    """The first 2,000 passages of financial-qa-10k indexed by ``funnel index`` (graph thresholds lowered
    for this module), and test questions whose judged passage is among them."""
    if not (SHARED_FINQA / "corpus.jsonl").is_file():
        pytest.skip(f"needs the shared financial-qa-10k data at {SHARED_FINQA} (the team's data, not in a clone)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(edge_store, "INDEXING_THRESHOLD_KB", 1)
        mp.setattr(edge_store, "FULL_SCAN_THRESHOLD_KB", 1)
        root = tmp_path_factory.mktemp("walked")
        corpus, kept = root / "corpus.jsonl", set()
        with corpus.open("w", encoding="utf-8") as out, (SHARED_FINQA / "corpus.jsonl").open(encoding="utf-8") as src:
            for _, line in zip(range(PASSAGES), src):
                out.write(line)
                kept.add(json.loads(line)["_id"])
        texts = {q["_id"]: q["text"] for q in map(json.loads, (SHARED_FINQA / "queries.jsonl").open(encoding="utf-8"))}
        rows = [line.split("\t") for line in (SHARED_FINQA / "qrels" / "test.tsv").read_text().splitlines()[1:]]
        asked = list(dict.fromkeys(q for q, doc, _ in rows if doc in kept))
        assert len(asked) >= 160, len(asked)
        queries, held_out = [texts[q] for q in asked[:60]], [texts[q] for q in asked[60:160]]
        query_file = write_jsonl(root / "queries.jsonl", [{"_id": f"q{i}", "text": t} for i, t in enumerate(queries)])
        data = root / "data"
        (summary,) = _lines(_cli(data, "index", corpus, "-c", NAME, "--json", "--no-progress"))
        yield Walked(data, int(summary["points"]), summary, queries, held_out, query_file)


@pytest.fixture(scope="module")
def exact(walked) -> list[dict]:
    """``funnel search --exact`` of the 60 queries: every surface's reference."""
    return _lines(_cli(walked.data, "search", "-c", NAME, "--queries", walked.query_file, "--json", "--no-text",
                       "-k", K, "--exact"))


def _graph_files(collection_dir: Path, dim: int) -> list[Path]:
    return list((collection_dir / "shard" / "segments").glob(f"*/vector_index-{vector_name(dim)}/graph.bin"))


# --- the collection: a graph that is walked ------------------------------------------------------------


def test_the_graph_is_built_and_a_narrow_walk_of_it_is_approximate(walked, embedder):
    assert walked.points >= PASSAGES
    assert walked.points > 6 * parse_plan(FUNNEL, LADDER, K).stages[0].limit > 2 * FUNNEL_CANDIDATES
    with EdgeCatalog(walked.data).open(NAME) as coll:
        assert _graph_files(coll.path, 64), "no HNSW graph was built for the 64-dim vector"
        assert not coll.hnsw_is_full_scan(64)
        q = embedder.encode(walked.queries, LADDER)
        scan = coll.search_at(q[64], 64, K, exact=True)
        narrow = recall_against(coll.search_at(q[64], 64, K, exact=False, hnsw_ef=K), scan, K)
        wide = recall_against(coll.search_at(q[64], 64, K, exact=False, hnsw_ef=400), scan, K)
    # measured: 0.9 and 1.0 (the graph walked with ef=10, then ef=400, against a 64-dim scan)
    assert narrow < 0.98, f"a graph search with ef={K} found {narrow:.3f} of the 64-dim scan's top {K}: no graph walked"
    assert wide >= 0.98 and wide > narrow


# --- CLI ------------------------------------------------------------------------------------------------


def test_cli_funnel_search_is_approximate_and_close_to_exact(walked, exact):
    assert all(r["plan"] == "exact" and r["depth"]["candidates"] == walked.points for r in exact)
    reference = _hits(exact)
    narrow = _lines(_cli(walked.data, "search", "-c", NAME, "--queries", walked.query_file, "--json", "--no-text",
                         "-k", K, "--plan", NARROW))
    funnel = _lines(_cli(walked.data, "search", "-c", NAME, "--queries", walked.query_file, "--json", "--no-text",
                         "-k", K, "--plan", FUNNEL))
    assert {r["plan"] for r in narrow} == {f"{NARROW},384:{K}"} and {r["plan"] for r in funnel} == {f"{FUNNEL},384:{K}"}
    assert {(r["depth"]["stages"], r["depth"]["candidates"]) for r in narrow} == {(2, 40)}
    assert {(r["depth"]["stages"], r["depth"]["candidates"]) for r in funnel} == {(4, FUNNEL_CANDIDATES)}
    narrow_recall, funnel_recall = recall_against(_hits(narrow), reference, K), recall_against(_hits(funnel), reference, K)
    assert narrow_recall <= NARROW_AT_MOST, f"{NARROW} of {walked.points} points matched exact ({narrow_recall:.3f})"
    assert funnel_recall >= FUNNEL_AT_LEAST and funnel_recall > narrow_recall
    assert np.mean([f["hits"][0]["id"] == e["hits"][0]["id"] for f, e in zip(funnel, exact)]) >= 0.95
    for row in funnel:  # the last stage ranks by the full-dim cosine
        scores = [h["score"] for h in row["hits"]]
        assert len(scores) == K and scores == sorted(scores, reverse=True)


def test_cli_default_search_runs_the_index_calibration(walked, exact):
    """``funnel index`` calibrated on 200 stored chunks with the shipped candidates (a scan of 2,000
    points is among them, and timed first); the default search runs that plan and keeps its recall on
    the 60 unseen questions."""
    calibration = walked.summary["calibration"]
    assert calibration["calibrated"] and calibration["recall_vs_exact"] >= 0.98 and calibration["queries"] == 200
    (info,) = _lines(_cli(walked.data, "info", NAME, "--json"))
    assert info["plan_calibrated"] and info["points"] == walked.points
    assert info["default_plan_k10"] == calibration["plan"]
    default = _lines(_cli(walked.data, "search", "-c", NAME, "--queries", walked.query_file, "--json", "--no-text",
                          "-k", K, "--fixed"))
    assert {r["plan"] for r in default} == {calibration["plan"]}
    assert recall_against(_hits(default), _hits(exact), K) >= 0.95


# --- Python API -----------------------------------------------------------------------------------------


def test_python_api_gives_the_cli_results(walked, exact, embedder):
    funnel_cli = _lines(_cli(walked.data, "search", "-c", NAME, "--queries", walked.query_file, "--json", "--no-text",
                             "-k", K, "--plan", FUNNEL))
    with Retriever(EdgeCatalog(walked.data).open(NAME), embedder) as r:
        funnel = r.search_batch(walked.queries, k=K, plan=FUNNEL, with_text=False)
        narrow = r.search_batch(walked.queries, k=K, plan=NARROW, with_text=False)
        scanned = r.search_batch(walked.queries, k=K, exact=True, with_text=False)
    assert _ids(funnel) == _ids(_hits(funnel_cli)) and _ids(scanned) == _ids(_hits(exact))
    assert {(h.depth.stages, h.depth.candidates) for h in funnel} == {(4, FUNNEL_CANDIDATES)}
    assert {h.depth.candidates for h in scanned} == {walked.points}
    assert recall_against(narrow, scanned, K) <= NARROW_AT_MOST
    assert recall_against(funnel, scanned, K) >= FUNNEL_AT_LEAST


# --- calibration, with its shipped candidate sets ------------------------------------------------------------


def test_calibration_with_its_shipped_candidates_walks_the_graph_and_holds_on_unseen_queries(walked, embedder):
    """Untimed (the cost model alone), calibration of the walked collection keeps a funnel whose first
    stage is a fraction of the collection, having tried the short shortlists at narrower graph widths
    too (it saw a graph, and the width changed the recall it measured); the plan keeps its recall on
    100 unseen questions. Timed (as ``funnel calibrate`` and ``funnel index`` run it), it keeps the
    fastest passing candidate, which holds there too. Nothing of the calibration is patched. Measured:
    untimed 64:480,128:120,256:30 (recall 0.98 on the sample, 0.984 unseen), timed the 384-dim scan
    (a scan of 2,000 points is the fastest here; 1.0)."""
    sample, unseen = embedder.encode(walked.queries, LADDER), embedder.encode(walked.held_out, LADDER)
    with EdgeCatalog(walked.data).open(NAME) as coll:
        cheapest = calibrate(coll, sample, K, 0.98)
        reference = coll.search(unseen, None, K, with_text=False)
        held = recall_against(coll.search(unseen, cheapest.plan, K, with_text=False, hnsw_ef=cheapest.hnsw_ef),
                              reference, K)
        fastest = calibrate(coll, sample, K, 0.98, timed=True, budget_s=10.0)
        held_fastest = recall_against(coll.search(unseen, fastest.plan, K, with_text=False, hnsw_ef=fastest.hnsw_ef),
                                      reference, K)
    assert cheapest.met and len(cheapest.plan.stages) > 1, cheapest.tried
    assert cheapest.plan.stages[0].limit < walked.points / 4, cheapest.plan
    by_plan: dict[str, dict] = {}
    for t in cheapest.tried:
        by_plan.setdefault(t["plan"], {})[t["hnsw_ef"]] = t["recall_vs_exact"]
    widened = {p: r for p, r in by_plan.items() if len(r) > 1}
    assert widened, "no candidate was tried at a narrower graph width: calibration saw no graph"
    assert any(min(r.values()) < max(r.values()) for r in widened.values()), widened
    assert held >= 0.95, f"{cheapest.plan} at ef={cheapest.hnsw_ef}: recall {held:.3f} on unseen queries"
    assert fastest.met and held_fastest >= 0.95, (fastest.plan, held_fastest)


def test_funnel_calibrate_on_the_walked_graph_and_the_default_search_after_it(walked, exact):
    """``funnel calibrate`` (timed, shipped candidates) on the 100 held-out questions: it tries graph
    widths (it sees a graph) and times funnels against the scan; what it saves is what a default search
    runs, and that search keeps its recall on the 60 other questions."""
    held_out = write_jsonl(walked.data.parent / "held-out.jsonl",
                           [{"_id": f"h{i}", "text": t} for i, t in enumerate(walked.held_out)])
    (record,) = _lines(_cli(walked.data, "calibrate", NAME, "--queries", held_out, "--encoders", "none", "--json"))
    assert record["met"] and record["recall_vs_exact"] >= 0.98 and record["queries"] == 100
    assert any(t["hnsw_ef"] is not None for t in record["tried"]), "no graph width tried: calibration saw no graph"
    timed = [t for t in record["tried"] if "p50_ms" in t]
    assert any(len(parse_plan(t["plan"], LADDER, K).stages) > 1 for t in timed), timed
    (info,) = _lines(_cli(walked.data, "info", NAME, "--json"))
    assert info["default_plan_k10"] == record["plan"]
    default = _lines(_cli(walked.data, "search", "-c", NAME, "--queries", walked.query_file, "--json", "--no-text",
                          "-k", K, "--fixed"))
    assert {r["plan"] for r in default} == {record["plan"]}
    assert recall_against(_hits(default), _hits(exact), K) >= 0.95


# --- HTTP and the integrations ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(walked, embedder):
    """``funnel serve``'s app over the walked collection on a real 127.0.0.1 port (after the CLI and
    Python API tests: the embedded engine opens a collection once per process)."""
    collection = EdgeCatalog(walked.data).open(NAME)
    try:
        with BackgroundServer(collection, lambda: embedder, ServiceConfig(api_key=KEY)) as server:
            assert server.state.retriever is not None
            yield server
    finally:
        collection.close()


def test_http_search_gives_the_python_api_results(walked, exact, served):
    reference = served.state.retriever
    for plan, check in ((FUNNEL, lambda r: r >= FUNNEL_AT_LEAST), (NARROW, lambda r: r <= NARROW_AT_MOST)):
        results = []
        for start in range(0, len(walked.queries), 30):  # a request holds at most 32 queries
            answer = httpx.post(f"{served.url}/search", headers={"X-API-Key": KEY}, timeout=120,
                                json={"queries": walked.queries[start:start + 30], "k": K, "plan": plan,
                                      "with_text": False})
            assert answer.status_code == 200, answer.text
            assert answer.json()["plan"] == f"{plan},384:{K}" and answer.json()["collection"] == NAME
            results += answer.json()["results"]
        rows = [{"hits": r["hits"]} for r in results]
        stages = len(parse_plan(plan, LADDER, K).stages)
        assert {(r["depth"]["stages"], r["depth"]["candidates"] < walked.points) for r in results} == {(stages, True)}
        assert _ids(_hits(rows)) == _ids(reference.search_batch(walked.queries, k=K, plan=plan, with_text=False))
        assert check(recall_against(_hits(rows), _hits(exact), K)), plan


@pytest.mark.parametrize("over", ["in-process", "http"])
def test_langchain_and_llamaindex_give_the_python_api_results(walked, exact, served, over):
    reference, queries = served.state.retriever, walked.queries[:20]
    expected = reference.search_batch(queries, k=K, plan=FUNNEL)
    with FunnelClient(served.url, api_key=KEY, timeout=120) as client:
        searcher = reference if over == "in-process" else client
        docs = lc.FunnelRetriever(searcher=searcher, k=K, plan=FUNNEL).batch(queries)
        nodes = [li.FunnelRetriever(searcher, k=K, plan=FUNNEL).retrieve(q) for q in queries]
        narrow = lc.FunnelRetriever(searcher=searcher, k=K, plan=NARROW).batch(queries)
    assert [[d.id for d in row] for row in docs] == _ids(expected)
    assert [[n.node.node_id for n in row] for row in nodes] == _ids(expected)
    assert recall_against(expected, _hits(exact)[:20], K) >= FUNNEL_AT_LEAST - 0.05
    narrow_hits = [[Hit(id=d.id, score=0.0, doc_id="", chunk=0, text="", title="", metadata={}) for d in row]
                   for row in narrow]
    assert recall_against(narrow_hits, _hits(exact)[:20], K) <= NARROW_AT_MOST  # the integrations' plan is run

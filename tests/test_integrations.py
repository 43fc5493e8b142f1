"""The LangChain and LlamaIndex retrievers, on the real frameworks, in-process and against a real funnel
service: the same hits as ``Retriever.search``, in order, with scores; async paths; the frameworks'
own interfaces; the same domain errors in both modes; and the examples, run as scripts."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, TOPIC_QUERIES
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode
from topics_service import KEY, SEARCHERS, assert_same_hits, closed_port_url, searcher_of, topic_service

from retriever.errors import (
    BadInputError,
    DocumentNotFoundError,
    FunnelError,
    InvalidPlanError,
    MissingExtraError,
    ServiceUnreachableError,
    UnauthorizedError,
)
from retriever.integrations import langchain as lc
from retriever.integrations import llamaindex as li
from retriever.query.spec import Hit

QUERY = "Why do central banks raise interest rates?"
OPTIONS = [
    {"k": 4},
    {"k": 5, "exact": True},
    {"k": 4, "plan": "64:8,128:6"},
    {"k": 12, "filter": {"metadata.topic": "music"}},
    {"k": 3, "adaptive": False, "filter": {"metadata.year": {"gte": 2015}}},
]


@pytest.fixture(scope="module")
def served(tmp_path_factory, embedder):
    with topic_service(tmp_path_factory.mktemp("integrations"), embedder) as service:
        yield service


@pytest.fixture(scope="module", params=SEARCHERS)
def searcher(request, served):
    """The served collection's Retriever (in-process) or a FunnelClient on its server (HTTP)."""
    with searcher_of(request.param, served) as found:
        yield found


def expected(served, **options) -> list[Hit]:
    return served.retriever.search(QUERY, **options)


def hits_of_documents(docs: list[Document]) -> list[Hit]:
    """LangChain documents back to hits: funnel's fields out of the metadata, the rest is the document's."""
    hits = []
    for doc in docs:
        meta = dict(doc.metadata)
        fields = {name: meta.pop(name) for name in ("id", "doc_id", "chunk", "title", "score")}
        assert doc.id == fields["id"]
        hits.append(Hit(text=doc.page_content, metadata=meta, **fields))
    return hits


def hits_of_nodes(nodes: list[NodeWithScore]) -> list[Hit]:
    """LlamaIndex nodes back to hits."""
    hits = []
    for scored in nodes:
        node = scored.node
        assert isinstance(node, TextNode) and node.ref_doc_id == node.metadata["doc_id"]
        meta = dict(node.metadata)
        fields = {name: meta.pop(name) for name in ("doc_id", "chunk", "title")}
        hits.append(Hit(id=node.node_id, score=scored.score, text=node.text, metadata=meta, **fields))
    return hits


# --- LangChain ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(map(str, o)))
def test_langchain_invoke_returns_retriever_search_hits(served, searcher, options):
    retriever = lc.FunnelRetriever(searcher=searcher, **options)
    docs = retriever.invoke(QUERY)
    assert all(isinstance(doc, Document) for doc in docs) and docs
    assert_same_hits(hits_of_documents(docs), expected(served, **options))
    assert_same_hits(hits_of_documents(asyncio.run(retriever.ainvoke(QUERY))), expected(served, **options))


def test_langchain_document_shape(served, searcher):
    (doc,) = lc.FunnelRetriever(searcher=searcher, k=1).invoke("Which instrument has four strings and is played with a bow?")
    assert doc.page_content.startswith("The violin is a string instrument")
    assert doc.metadata == {"topic": "music", "year": 2017, "id": doc.id, "doc_id": "violin", "chunk": 0,
                            "title": "Music", "score": pytest.approx(doc.metadata["score"])}
    assert 0 < doc.metadata["score"] <= 1


def test_langchain_per_call_options_and_runnable_interface(served, searcher):
    retriever = lc.FunnelRetriever(searcher=searcher, k=5)
    docs = retriever.invoke(QUERY, k=2, filter={"metadata.topic": ["music", "space"]})
    assert_same_hits(hits_of_documents(docs), expected(served, k=2, filter={"metadata.topic": ["music", "space"]}))
    with pytest.raises(BadInputError, match="unknown search option.*top_k"):
        retriever.invoke(QUERY, top_k=3)
    queries = [q for _, q, _ in TOPIC_QUERIES]
    assert [docs[0].metadata["doc_id"] for docs in retriever.batch(queries)] == [d for _, _, d in TOPIC_QUERIES]
    chain = retriever | RunnableLambda(lambda docs: " | ".join(d.metadata["doc_id"] for d in docs))
    assert chain.invoke(QUERY).split(" | ") == [h.doc_id for h in expected(served, k=5)]


def test_langchain_concurrent_async_calls(served, searcher):
    retriever = lc.FunnelRetriever(searcher=searcher, k=1)
    queries = [q for _, q, _ in TOPIC_QUERIES] * 2

    async def run() -> list[list[Document]]:
        return await asyncio.gather(*(retriever.ainvoke(q) for q in queries))

    assert [docs[0].metadata["doc_id"] for docs in asyncio.run(run())] == [d for _, _, d in TOPIC_QUERIES] * 2


def test_langchain_vector_store_adds_and_deletes(served, searcher):
    """add_documents / similarity_search / delete over the same calls as Retriever.upsert / search / delete."""
    store = lc.FunnelVectorStore(searcher)
    matcha = Document("Matcha is a powdered green tea, whisked with hot water in a bowl.", metadata={"topic": "tea"},
                      id="lc-matcha")
    ids = store.add_documents([matcha, Document("Sencha is a steamed green tea from Shizuoka.")])
    try:
        assert ids[0] == "lc-matcha" and len(ids[1]) == 32  # a document without an id gets one
        top = store.similarity_search("powdered green tea whisked in a bowl", k=1)
        assert top[0].metadata["doc_id"] == "lc-matcha" and top[0].metadata["topic"] == "tea"
        assert top[0].page_content == matcha.page_content
        doc, score = store.similarity_search_with_score("steamed green tea", k=1)[0]
        assert doc.metadata["doc_id"] == ids[1] and score == doc.metadata["score"]
    finally:
        store.delete(ids)
    assert not {"lc-matcha", ids[1]} & {h.doc_id for h in served.retriever.search("green tea", k=5)}
    with pytest.raises(DocumentNotFoundError):
        store.delete(["lc-matcha"])
    with pytest.raises(BadInputError):
        store.delete([])
    store.add_texts(["Genmaicha is green tea with roasted rice."], ids=["lc-genmaicha"])
    with pytest.raises(DocumentNotFoundError):  # all or none, over HTTP too: nothing deleted
        store.delete(["lc-genmaicha", "lc-matcha"])
    assert served.retriever.collection.document_counts(["lc-genmaicha"]) == {"lc-genmaicha": 1}
    assert store.delete(["lc-genmaicha", "lc-matcha"], missing_ok=True)
    assert not served.retriever.collection.document_counts(["lc-genmaicha"])
    with pytest.raises(BadInputError, match="unknown delete option"):
        store.delete(["x"], everything=True)


# --- LlamaIndex --------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(map(str, o)))
def test_llamaindex_retrieve_returns_retriever_search_hits(served, searcher, options):
    retriever = li.FunnelRetriever(searcher, **options)
    nodes = retriever.retrieve(QUERY)
    assert all(isinstance(n, NodeWithScore) for n in nodes) and nodes
    assert_same_hits(hits_of_nodes(nodes), expected(served, **options))
    assert_same_hits(hits_of_nodes(asyncio.run(retriever.aretrieve(QUERY))), expected(served, **options))


def test_llamaindex_node_shape(searcher):
    (scored,) = li.FunnelRetriever(searcher, k=1).retrieve("Which instrument has four strings and is played with a bow?")
    node = scored.node
    assert node.ref_doc_id == "violin" and node.metadata["title"] == "Music" and 0 < scored.score <= 1
    llm_text = node.get_content(metadata_mode=MetadataMode.LLM)  # funnel's bookkeeping stays out of prompts
    assert "title: Music" in llm_text and "topic: music" in llm_text and "violin" not in llm_text.split("\n\n")[0]
    assert "doc_id" not in llm_text and "chunk" not in llm_text


# --- errors: the same in both modes -----------------------------------------------------------------


def test_a_refused_search_is_the_same_error_in_both_modes(searcher):
    for retriever in (lc.FunnelRetriever(searcher=searcher, adaptive=True),  # never calibrated
                      li.FunnelRetriever(searcher, plan="64:10,999:5")):     # a dim the collection lacks
        call = retriever.invoke if isinstance(retriever, lc.FunnelRetriever) else retriever.retrieve
        with pytest.raises(InvalidPlanError):
            call(QUERY)


@pytest.mark.parametrize("framework", ["langchain", "llamaindex"])
def test_wrong_api_key_and_unreachable_server(served, framework):
    adapter = lc.FunnelRetriever if framework == "langchain" else li.FunnelRetriever
    wrong = adapter.from_url(served.url, api_key="not-the-key")
    nobody = adapter.from_url(closed_port_url(), api_key=KEY)
    sync = "invoke" if framework == "langchain" else "retrieve"
    for retriever, error, message in ((wrong, UnauthorizedError, "wrong API key"),
                                      (nobody, ServiceUnreachableError, "cannot reach the funnel service")):
        with pytest.raises(error, match=message):
            getattr(retriever, sync)(QUERY)
        with pytest.raises(error, match=message):
            asyncio.run(getattr(retriever, f"a{sync}")(QUERY))
        retriever.close()


def test_a_searcher_of_another_kind_is_refused():
    with pytest.raises(BadInputError, match="searcher is a retriever.Retriever .* not str"):
        lc.FunnelRetriever(searcher="http://127.0.0.1:8000")
    with pytest.raises(BadInputError, match="not dict"):
        li.FunnelRetriever({})


@pytest.mark.parametrize("module, framework, extra", [
    ("retriever.integrations.langchain", "langchain_core", "langchain"),
    ("retriever.integrations.llamaindex", "llama_index", "llamaindex"),
])
def test_importing_an_adapter_without_its_extra_names_the_extra(monkeypatch, module, framework, extra):
    for name in [m for m in sys.modules if m == framework or m.startswith(f"{framework}.")] or [framework]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed: importing it fails
    monkeypatch.delitem(sys.modules, module)
    with pytest.raises(MissingExtraError, match=rf"not installed: pip install 'funnel-retriever\[{extra}\]'$") as caught:
        importlib.import_module(module)
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, FunnelError)


# --- the examples, run as scripts --------------------------------------------------------------------


def run_example(name: str, *args: str) -> list[dict]:
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "examples" / name), *args, "--json"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("name", ["langchain_rag.py", "llamaindex_rag.py"])
def test_examples_over_http(served, name):
    found = run_example(name, QUERY, "-k", "3", "--url", served.url, "--api-key", KEY)
    hits = expected(served, k=3)
    assert [f["metadata"].get("doc_id") or f["ref_doc_id"] for f in found] == [h.doc_id for h in hits]
    scores = [f["metadata"]["score"] if "score" in f["metadata"] else f["score"] for f in found]
    assert scores == pytest.approx([h.score for h in hits], abs=1e-6)


@pytest.fixture(scope="module")
def example_home(tmp_path_factory):
    """A data dir for the in-process examples; the first one to run builds the collection in it."""
    return tmp_path_factory.mktemp("examples")


@pytest.mark.parametrize("name", ["langchain_rag.py", "llamaindex_rag.py"])
def test_examples_in_process(example_home, embedder, name):
    corpus = REPO_ROOT / "examples" / "data" / "tiny_finance.jsonl"
    found = run_example(name, "What did NVIDIA invent in 1999?", "-k", "3", "--ticker", "NVDA",
                        "--data-dir", str(example_home), "--corpus", str(corpus))
    ids = [f["metadata"]["doc_id"] for f in found]
    assert ids[0] == "nvda-gpu" and len(ids) == 3 and all(f["metadata"]["ticker"] == "NVDA" for f in found)
    from retriever import Retriever
    from retriever.store.edge.catalog import EdgeCatalog

    with Retriever(EdgeCatalog(example_home).open("rag-example"), embedder) as reference:
        hits = reference.search("What did NVIDIA invent in 1999?", k=3, filter={"metadata.ticker": "NVDA"})
    assert ids == [h.doc_id for h in hits]

"""The LlamaIndex vector store, on the real framework, in-process and against a real funnel service:
nodes added through a ``VectorStoreIndex`` are funnel documents, found by ``query``, deleted by
``ref_doc_id`` (funnel's delete by metadata) and by node id; filters are translated or refused."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("llama_index.core", reason="needs llama-index-core (pip install 'funnel-retriever[llamaindex]')")

from llama_index.core import Document  # noqa: E402
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from topics_service import SEARCHERS, searcher_of, topic_service  # noqa: E402

from retriever.errors import BadInputError  # noqa: E402
from retriever.integrations import llamaindex as li  # noqa: E402

TEA = ("Matcha is a powdered green tea, whisked with hot water in a bowl. "
       "Sencha is a steamed green tea from Shizuoka, brewed at seventy degrees. "
       "Gyokuro is shaded for three weeks before the harvest, which makes it sweet.")


@pytest.fixture(scope="module")
def served(tmp_path_factory, embedder):
    with topic_service(tmp_path_factory.mktemp("llamaindex-store"), embedder) as service:
        yield service


@pytest.fixture(scope="module", params=SEARCHERS)
def searcher(request, served):
    with searcher_of(request.param, served) as found:
        yield found


def test_index_insert_query_and_delete_ref_doc(served, searcher):
    store = li.FunnelVectorStore(searcher)
    # small nodes: one sentence each, so that each node is one funnel document of one chunk
    splitter = SentenceSplitter(chunk_size=48, chunk_overlap=0)
    index = store.as_index(transformations=[splitter])
    tea_doc = Document(text=TEA, doc_id="li-tea.md", metadata={"topic": "tea", "year": 2024})
    expected = {n.node_id for n in splitter.get_nodes_from_documents([tea_doc])}
    index.insert(tea_doc)
    index.insert(Document(text="Espresso forces hot water through finely ground coffee.", doc_id="li-coffee.md",
                          metadata={"topic": "coffee", "year": 2020}))
    try:
        tea = served.retriever.collection.document_counts(where=_ref("li-tea.md"))  # its nodes, by ref_doc_id
        assert len(tea) == len(expected) > 1 and all(n == 1 for n in tea.values())  # a document of one chunk per node
        hits = index.as_retriever(similarity_top_k=2).retrieve("Which green teas are there?")
        assert hits[0].node.ref_doc_id == "li-tea.md" and hits[0].node.node_id in tea
        assert hits[0].node.get_content() in {n.get_content() for n in splitter.get_nodes_from_documents([tea_doc])}
        assert hits[0].node.metadata["topic"] == "tea"

        result = store.query(VectorStoreQuery(query_str="hot water", similarity_top_k=5, filters=MetadataFilters(
            filters=[MetadataFilter(key="year", value=2022, operator=FilterOperator.GTE)])))
        assert result.ids and all(n.metadata["year"] >= 2022 for n in result.nodes)
        assert len(result.ids) == len(set(result.ids)) == len(result.similarities)
        only_coffee = store.query(VectorStoreQuery(query_str="hot water", similarity_top_k=5,
                                                   doc_ids=["li-coffee.md"]))
        assert [n.ref_doc_id for n in only_coffee.nodes] == ["li-coffee.md"]

        index.delete_ref_doc("li-tea.md")
        assert not served.retriever.collection.document_counts(where=_ref("li-tea.md"))
        assert served.retriever.collection.document_counts(where=_ref("li-coffee.md"))  # the other one stays
        store.delete("li-tea.md")  # none left: nothing happens, no error
    finally:
        store.delete("li-tea.md")
        store.delete("li-coffee.md")
    assert not served.retriever.collection.document_counts(where=_ref("li-coffee.md"))
    assert served.retriever.collection.count() == 12  # the topic corpus, untouched


def _ref(ref_doc_id: str):
    from retriever.query.filters import parse_filter

    return parse_filter({"metadata.ref_doc_id": ref_doc_id})


def test_async_add_query_and_delete_nodes(served, searcher):
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    store = li.FunnelVectorStore(searcher)
    nodes = [TextNode(id_=f"li-node-{i}", text=text, metadata={"part": i},
                      relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="li-src")})
             for i, text in enumerate(["Glühwein is mulled red wine with cinnamon and cloves.",
                                       "Horchata is a drink of tiger nuts, water and sugar."])]

    async def run():
        ids = await store.async_add(nodes)
        found = await store.aquery(VectorStoreQuery(query_str="mulled wine with cloves", similarity_top_k=1))
        await store.adelete_nodes(node_ids=["li-node-0", "never-stored"])  # the unknown id is passed over
        after = await store.aquery(VectorStoreQuery(query_str="mulled wine with cloves", similarity_top_k=3,
                                                    node_ids=ids))
        await store.adelete("li-src")
        return ids, found, after

    ids, found, after = asyncio.run(run())
    assert ids == ["li-node-0", "li-node-1"]
    assert found.ids == ["li-node-0"] and found.nodes[0].ref_doc_id == "li-src"
    assert after.ids == ["li-node-1"]
    assert not served.retriever.collection.document_counts(["li-node-0", "li-node-1"])
    with pytest.raises(BadInputError, match="node_ids or filters"):
        store.delete_nodes()


@pytest.mark.parametrize("query, message", [
    (VectorStoreQuery(query_embedding=[0.1] * 384, similarity_top_k=3), "searches the query text"),
    (VectorStoreQuery(query_str="x", mode=VectorStoreQueryMode.MMR), "not mmr"),
    (VectorStoreQuery(query_str="x", filters=MetadataFilters(filters=[
        MetadataFilter(key="topic", value="tea", operator=FilterOperator.NE)])), "not '!='"),
    (VectorStoreQuery(query_str="x", filters=MetadataFilters(condition="or", filters=[
        MetadataFilter(key="a", value=1), MetadataFilter(key="b", value=2)])), "AND only"),
])
def test_refused_queries_say_why(searcher, query, message):
    with pytest.raises(BadInputError, match=message):
        li.FunnelVectorStore(searcher).query(query)


def test_funnel_filter_translation():
    filters = MetadataFilters(filters=[
        MetadataFilter(key="topic", value="tea"),
        MetadataFilter(key="year", value=2020, operator=FilterOperator.GTE),
        MetadataFilter(key="year", value=2025, operator=FilterOperator.LT),
        MetadataFilter(key="tag", value=["a", "b"], operator=FilterOperator.IN),
    ])
    assert li.funnel_filter(filters) == {"metadata.topic": "tea", "metadata.year": {"gte": 2020, "lt": 2025},
                                         "metadata.tag": ["a", "b"]}

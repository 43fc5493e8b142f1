"""LlamaIndex: :class:`FunnelRetriever`, a ``llama_index.core`` retriever over funnel search, and
:class:`FunnelVectorStore`, a vector store that adds, deletes (by ``ref_doc_id``) and queries nodes.

    from retriever.integrations.llamaindex import FunnelRetriever

    retriever = FunnelRetriever.from_collection("fin", k=5)              # in-process
    retriever = FunnelRetriever.from_url("http://127.0.0.1:8000", api_key=KEY, k=5)   # funnel serve
    nodes = retriever.retrieve("What did NVIDIA invent in 1999?")        # or await retriever.aretrieve(...)

Each hit is a ``NodeWithScore``: its score, and a ``TextNode`` (id: the chunk's point id; text: the
chunk's; metadata: the document's plus ``doc_id``, ``chunk``, ``title``; source node: the document).
``doc_id`` and ``chunk`` are kept out of the text an LLM or an embedding model sees. Works with
``RetrieverQueryEngine`` and the rest of LlamaIndex. Needs ``pip install 'funnel-retriever[llamaindex]'``.

    store = FunnelVectorStore(Retriever.open("notes"))                  # or FunnelVectorStore(FunnelClient(...))
    index = store.as_index()                                             # a VectorStoreIndex over it
    index.insert(Document(text="Green tea …", doc_id="tea.md"))          # LlamaIndex splits it into nodes
    index.as_retriever(similarity_top_k=3).retrieve("green tea temperature")
    index.delete_ref_doc("tea.md")                                       # every node of that document
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from retriever.errors import MissingExtraError

try:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.schema import (
        BaseNode,
        MetadataMode,
        NodeRelationship,
        NodeWithScore,
        QueryBundle,
        RelatedNodeInfo,
        TextNode,
    )
    from llama_index.core.vector_stores.types import (
        BasePydanticVectorStore,
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
        VectorStoreQuery,
        VectorStoreQueryMode,
        VectorStoreQueryResult,
    )
except ImportError as exc:
    raise MissingExtraError("funnel's LlamaIndex retriever", "llama-index-core", "llamaindex") from exc

from pydantic import PrivateAttr

from retriever.errors import BadInputError
from retriever.integrations.source import (
    Searcher,
    SearchOptions,
    adelete,
    adelete_where,
    asearch,
    aupsert,
    check_searcher,
    delete,
    delete_where,
    hit_metadata,
    search,
    upsert,
)
from retriever.query.spec import Hit
from retriever.service.client import DEFAULT_TIMEOUT_S, FunnelClient

_HIDDEN_KEYS = ["doc_id", "chunk"]  # bookkeeping: not part of the text an LLM or an embedding model sees


def to_node(hit: Hit) -> NodeWithScore:
    """A funnel hit as a LlamaIndex ``NodeWithScore``."""
    metadata = {key: value for key, value in hit_metadata(hit).items() if key not in ("id", "score")}
    node = TextNode(
        id_=hit.id, text=hit.text or "", metadata=metadata,
        excluded_llm_metadata_keys=list(_HIDDEN_KEYS), excluded_embed_metadata_keys=list(_HIDDEN_KEYS),
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=hit.doc_id)},
    )
    return NodeWithScore(node=node, score=hit.score)


class FunnelRetriever(BaseRetriever):
    """Funnel search as a LlamaIndex retriever: in-process on a :class:`~retriever.Retriever` or over
    HTTP through a :class:`~retriever.service.client.FunnelClient`.

    ``k``, ``plan`` / ``exact`` / ``adaptive``, ``filter`` and ``mode`` / ``fusion`` (dense, lexical or
    hybrid; union, rrf or dbsf) are :meth:`Retriever.search`'s options. Mistakes raise funnel's domain errors (:class:`~retriever.FunnelError`), the same in both modes.
    """

    def __init__(self, searcher: Searcher, k: int = 10, plan: str | None = None, exact: bool = False,
                 adaptive: bool | None = None, filter: dict[str, Any] | None = None,
                 callback_manager: CallbackManager | None = None, verbose: bool = False,
                 mode: str | None = None, fusion: str | None = None) -> None:
        self.searcher = check_searcher(searcher)
        self.options = SearchOptions(k, plan, exact, adaptive, filter, mode, fusion)
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @classmethod
    def from_collection(cls, name: str, data_dir: str | os.PathLike[str] | None = None, model: str | None = None,
                        device: str | None = None, **options: Any) -> FunnelRetriever:
        """Open collection ``name`` in this process (it holds the collection until :meth:`close`)."""
        from retriever.retriever import Retriever

        return cls(Retriever.open(name, data_dir=data_dir, model=model, device=device), **options)

    @classmethod
    def from_url(cls, url: str, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 **options: Any) -> FunnelRetriever:
        """Search the ``funnel serve`` at ``url`` (e.g. ``http://127.0.0.1:8000``)."""
        return cls(FunnelClient(url, api_key=api_key, timeout=timeout), **options)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [to_node(hit) for hit in search(self.searcher, query_bundle.query_str, self.options)]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [to_node(hit) for hit in await asearch(self.searcher, query_bundle.query_str, self.options)]

    def close(self) -> None:
        """Close the searcher (the in-process collection, or the client's connections)."""
        self.searcher.close()


REF_DOC_KEY = "ref_doc_id"  # the metadata key a node's source document id is stored under
_RANGES = {FilterOperator.GT: "gt", FilterOperator.GTE: "gte", FilterOperator.LT: "lt", FilterOperator.LTE: "lte"}
_MODES = {VectorStoreQueryMode.DEFAULT: None, VectorStoreQueryMode.HYBRID: "hybrid",
          VectorStoreQueryMode.TEXT_SEARCH: "lexical"}


def funnel_filter(filters: MetadataFilters | None) -> dict[str, Any]:
    """LlamaIndex ``MetadataFilters`` as a funnel filter on ``metadata.<key>``: AND of ``==``, ``in``
    and ``>`` / ``>=`` / ``<`` / ``<=``; anything else is refused (:class:`BadInputError`), never dropped."""
    if filters is None:
        return {}
    if filters.condition not in (None, FilterCondition.AND) and len(filters.filters) > 1:
        raise BadInputError(f"funnel filters combine conditions with AND only, not {filters.condition.value}")
    out: dict[str, Any] = {}
    for item in filters.filters:
        if not isinstance(item, MetadataFilter):
            raise BadInputError("funnel filters are one level of conditions: nested MetadataFilters are not supported")
        key = f"metadata.{item.key}"
        if item.operator == FilterOperator.EQ:
            out[key] = item.value
        elif item.operator == FilterOperator.IN:
            out[key] = list(item.value) if isinstance(item.value, (list, tuple)) else [item.value]
        elif item.operator in _RANGES:
            bounds = out.setdefault(key, {})
            if not isinstance(bounds, dict):
                raise BadInputError(f"metadata key {item.key!r} has both a value and a range condition")
            bounds[_RANGES[item.operator]] = item.value
        else:
            raise BadInputError(f"funnel filters support ==, in, >, >=, <, <=: not {item.operator.value!r} "
                                f"(on {item.key!r})")
    return out


def _document(node: BaseNode) -> dict[str, Any]:
    """A node as the funnel document it is stored as: id, text, metadata with its ``ref_doc_id``."""
    metadata = dict(node.metadata)
    if node.ref_doc_id is not None:
        metadata[REF_DOC_KEY] = node.ref_doc_id
    return {"doc_id": node.node_id, "text": node.get_content(metadata_mode=MetadataMode.NONE), "metadata": metadata}


class FunnelVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store over a funnel collection: each node is stored as one funnel document
    (id: the node's id; metadata: the node's plus ``ref_doc_id``), chunked and embedded by funnel
    with the collection's model (LlamaIndex's embeddings are not used); ``delete(ref_doc_id)`` removes
    every node of a source document (funnel's delete by metadata); ``query`` is funnel search of
    ``query_str`` (the store embeds queries itself: ``is_embedding_query`` is False).

    In-process on a :class:`~retriever.Retriever` or over HTTP on a
    :class:`~retriever.service.client.FunnelClient`; ``options`` are :class:`FunnelRetriever`'s search
    options (plan, exact, adaptive, filter, mode, fusion). A node funnel splits in several chunks
    (one longer than the collection's chunk size) is returned once, as its best chunk.
    """

    stores_text: bool = True
    is_embedding_query: bool = False
    flat_metadata: bool = True
    _searcher: Any = PrivateAttr()
    _options: SearchOptions = PrivateAttr()

    def __init__(self, searcher: Searcher, **options: Any) -> None:
        super().__init__(stores_text=True)
        self._searcher = check_searcher(searcher)
        self._options = SearchOptions().merged(options)

    @classmethod
    def class_name(cls) -> str:
        return "FunnelVectorStore"

    @property
    def client(self) -> Any:
        """The searcher: a :class:`~retriever.Retriever` or a :class:`FunnelClient`."""
        return self._searcher

    def as_index(self, **kwargs: Any) -> Any:
        """A ``VectorStoreIndex`` over this store, with a ``MockEmbedding``: LlamaIndex embeds nodes before
        it hands them to a store, and funnel embeds them again with the collection's model, so no real
        LlamaIndex embedding model is needed (nor used)."""
        from llama_index.core import VectorStoreIndex
        from llama_index.core.embeddings import MockEmbedding

        kwargs.setdefault("embed_model", MockEmbedding(embed_dim=1))
        return VectorStoreIndex.from_vector_store(self, **kwargs)

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Add or replace nodes (one funnel document each); returns their ids."""
        return upsert(self._searcher, [_document(node) for node in nodes])

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await aupsert(self._searcher, [_document(node) for node in nodes])

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of source document ``ref_doc_id`` (none stored: nothing happens)."""
        delete_where(self._searcher, {f"metadata.{REF_DOC_KEY}": _ref_doc_id(ref_doc_id)})

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await adelete_where(self._searcher, {f"metadata.{REF_DOC_KEY}": _ref_doc_id(ref_doc_id)})

    def delete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                     **delete_kwargs: Any) -> None:
        """Delete nodes by id (those not stored are passed over), or every node matching ``filters``."""
        if (node_ids is None) == (filters is None):
            raise BadInputError("give node_ids or filters to delete_nodes (one of them)")
        if node_ids is not None:
            delete(self._searcher, node_ids, missing_ok=True)
        else:
            delete_where(self._searcher, funnel_filter(filters))

    async def adelete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                            **delete_kwargs: Any) -> None:
        if (node_ids is None) == (filters is None):
            raise BadInputError("give node_ids or filters to delete_nodes (one of them)")
        if node_ids is not None:
            await adelete(self._searcher, node_ids, missing_ok=True)
        else:
            await adelete_where(self._searcher, funnel_filter(filters))

    def _search_options(self, query: VectorStoreQuery) -> tuple[str, SearchOptions]:
        if not isinstance(query.query_str, str) or not query.query_str:
            raise BadInputError("FunnelVectorStore searches the query text (query_str): funnel embeds it with the "
                                "collection's model, a query embedding alone cannot be searched")
        if query.mode not in _MODES:
            raise BadInputError(f"FunnelVectorStore query modes: default, hybrid, text_search; not {query.mode.value}")
        where = {**(self._options.filter or {}), **funnel_filter(query.filters)}
        if query.doc_ids:
            where[f"metadata.{REF_DOC_KEY}"] = list(query.doc_ids)
        if query.node_ids:
            where["doc_id"] = list(query.node_ids)
        mode = _MODES[query.mode] or self._options.mode
        return query.query_str, self._options.merged({"k": query.similarity_top_k, "filter": where or None,
                                                      "mode": mode})

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Funnel search of ``query.query_str``: ``similarity_top_k`` hits, ``filters`` / ``doc_ids`` /
        ``node_ids`` as funnel filters, mode default (the collection's), hybrid or text_search (BM25)."""
        text, options = self._search_options(query)
        return _result(search(self._searcher, text, options))

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        text, options = self._search_options(query)
        return _result(await asearch(self._searcher, text, options))

    def close(self) -> None:
        """Close the searcher (the in-process collection, or the client's connections)."""
        self._searcher.close()


def _ref_doc_id(ref_doc_id: Any) -> str:
    if not isinstance(ref_doc_id, str) or not ref_doc_id:
        raise BadInputError(f"ref_doc_id is a non-empty string, not {ref_doc_id!r}")
    return ref_doc_id


def _result(hits: list[Hit]) -> VectorStoreQueryResult:
    """Hits as LlamaIndex nodes, one per stored node (its best chunk), best first."""
    nodes: list[BaseNode] = []
    scores: list[float] = []
    seen: set[str] = set()
    for hit in hits:
        if hit.doc_id in seen:
            continue
        seen.add(hit.doc_id)
        metadata = dict(hit.metadata)
        ref = metadata.pop(REF_DOC_KEY, None)
        relationships = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=str(ref))} if ref is not None else {}
        nodes.append(TextNode(id_=hit.doc_id, text=hit.text or "", metadata=metadata, relationships=relationships))
        scores.append(hit.score)
    return VectorStoreQueryResult(nodes=nodes, similarities=scores, ids=[n.node_id for n in nodes])

"""LlamaIndex: :class:`FunnelRetriever`, a ``llama_index.core`` retriever over funnel search.

    from retriever.integrations.llamaindex import FunnelRetriever

    retriever = FunnelRetriever.from_collection("fin", k=5)              # in-process
    retriever = FunnelRetriever.from_url("http://127.0.0.1:8000", api_key=KEY, k=5)   # funnel serve
    nodes = retriever.retrieve("What did NVIDIA invent in 1999?")        # or await retriever.aretrieve(...)

Each hit is a ``NodeWithScore``: its score, and a ``TextNode`` (id: the chunk's point id; text: the
chunk's; metadata: the document's plus ``doc_id``, ``chunk``, ``title``; source node: the document).
``doc_id`` and ``chunk`` are kept out of the text an LLM or an embedding model sees. Works with
``RetrieverQueryEngine`` and the rest of LlamaIndex. Needs ``pip install 'funnel-retriever[llamaindex]'``.
"""

from __future__ import annotations

import os
from typing import Any

from retriever.errors import MissingExtraError

try:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.schema import (
        NodeRelationship,
        NodeWithScore,
        QueryBundle,
        RelatedNodeInfo,
        TextNode,
    )
except ImportError as exc:
    raise MissingExtraError("funnel's LlamaIndex retriever", "llama-index-core", "llamaindex") from exc

from retriever.integrations.source import (
    Searcher,
    SearchOptions,
    asearch,
    check_searcher,
    hit_metadata,
    search,
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

"""LangChain: :class:`FunnelRetriever`, a ``langchain_core`` retriever over funnel search, and
:class:`FunnelVectorStore`, a ``VectorStore`` that adds and deletes documents too.

    from retriever.integrations.langchain import FunnelRetriever

    retriever = FunnelRetriever.from_collection("fin", k=5)              # in-process
    retriever = FunnelRetriever.from_url("http://127.0.0.1:8000", api_key=KEY, k=5)   # funnel serve
    docs = retriever.invoke("What did NVIDIA invent in 1999?")           # or await retriever.ainvoke(...)

Each hit is a ``Document`` whose ``page_content`` is the chunk's text and whose ``metadata`` is the
document's metadata plus ``id``, ``doc_id``, ``chunk``, ``title`` and ``score`` (these win a name
clash). Needs ``pip install 'funnel-retriever[langchain]'``.

    store = FunnelVectorStore(Retriever.open("notes"))                   # or FunnelVectorStore(FunnelClient(...))
    store.add_documents([Document("Green tea …", metadata={"topic": "drinks"}, id="tea")])
    store.similarity_search("green tea temperature", k=3)
    store.delete(["tea"])
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from typing import Any

from retriever.errors import MissingExtraError

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.vectorstores import VectorStore
except ImportError as exc:
    raise MissingExtraError("funnel's LangChain retriever", "langchain-core", "langchain") from exc

from pydantic import ConfigDict, Field, field_validator

from retriever.errors import BadInputError
from retriever.integrations.source import SearchOptions, asearch, check_searcher, hit_metadata, search
from retriever.integrations.source import delete as delete_documents
from retriever.integrations.source import upsert as upsert_documents
from retriever.query.spec import Hit
from retriever.service.client import DEFAULT_TIMEOUT_S, FunnelClient


def to_document(hit: Hit) -> Document:
    """A funnel hit as a LangChain ``Document`` (metadata: the document's, then id, doc_id, chunk, title, score)."""
    return Document(page_content=hit.text or "", metadata=hit_metadata(hit), id=hit.id)


class FunnelRetriever(BaseRetriever):
    """Funnel search as a LangChain retriever: in-process on a :class:`~retriever.Retriever` or over
    HTTP through a :class:`~retriever.service.client.FunnelClient`.

    ``k``, ``plan`` / ``exact`` / ``adaptive``, ``filter`` and ``mode`` / ``fusion`` are
    :meth:`Retriever.search`'s options; a call may override them:
    ``retriever.invoke(query, k=3, filter={"metadata.ticker": "NVDA"}, mode="hybrid")``.
    Mistakes raise funnel's domain errors (:class:`~retriever.FunnelError`), the same in both modes.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: Any = Field(description="a retriever.Retriever (in-process) or a retriever.service.client.FunnelClient")
    k: int = Field(default=10, strict=True, description="hits per query")
    plan: str | None = Field(default=None, description="funnel plan DIM:LIMIT,… (default: the collection's)")
    exact: bool = Field(default=False, strict=True, description="exact search at the top dim instead")
    adaptive: bool | None = Field(default=None, strict=True, description="adaptive depth (default: the collection's)")
    filter: dict[str, Any] | None = Field(default=None, description="payload filter, e.g. {'metadata.ticker': 'NVDA'}")
    mode: str | None = Field(default=None, description="dense, lexical (BM25) or hybrid (default: the collection's)")
    fusion: str | None = Field(default=None, description="hybrid: union, rrf or dbsf (default: the collection's)")

    @field_validator("searcher")
    @classmethod
    def _check_searcher(cls, value: Any) -> Any:
        return check_searcher(value)

    @classmethod
    def from_collection(cls, name: str, data_dir: str | os.PathLike[str] | None = None, model: str | None = None,
                        device: str | None = None, **options: Any) -> FunnelRetriever:
        """Open collection ``name`` in this process (it holds the collection until :meth:`close`)."""
        from retriever.retriever import Retriever

        return cls(searcher=Retriever.open(name, data_dir=data_dir, model=model, device=device), **options)

    @classmethod
    def from_url(cls, url: str, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 **options: Any) -> FunnelRetriever:
        """Search the ``funnel serve`` at ``url`` (e.g. ``http://127.0.0.1:8000``)."""
        return cls(searcher=FunnelClient(url, api_key=api_key, timeout=timeout), **options)

    def _options(self, overrides: dict[str, Any]) -> SearchOptions:
        return SearchOptions(self.k, self.plan, self.exact, self.adaptive, self.filter, self.mode,
                             self.fusion).merged(overrides)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        return [to_document(hit) for hit in search(self.searcher, query, self._options(kwargs))]

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       **kwargs: Any) -> list[Document]:
        return [to_document(hit) for hit in await asearch(self.searcher, query, self._options(kwargs))]

    def close(self) -> None:
        """Close the searcher (the in-process collection, or the client's connections)."""
        self.searcher.close()


class FunnelVectorStore(VectorStore):
    """A LangChain ``VectorStore`` over a funnel collection: ``add_texts`` / ``add_documents`` upsert
    whole documents (chunked and embedded by funnel, with the collection's model: no LangChain
    ``Embeddings``), ``delete`` removes them, ``similarity_search`` is funnel search (its hits are
    chunks). In-process on a :class:`~retriever.Retriever` or over HTTP on a
    :class:`~retriever.service.client.FunnelClient`; search options as :class:`FunnelRetriever`'s.
    A document without an id gets a random one (returned)."""

    def __init__(self, searcher: Any, **options: Any) -> None:
        self.searcher = check_searcher(searcher)
        self.options = SearchOptions().merged(options)

    @property
    def embeddings(self) -> Embeddings | None:
        return None  # funnel embeds with the collection's own model

    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                  ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Add or replace one document per text (id: ``ids[i]``, else a random one); returns the ids."""
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise BadInputError(f"{len(texts)} texts need as many metadatas, not {len(metadatas)}")
        if ids is not None and len(ids) != len(texts):
            raise BadInputError(f"{len(texts)} texts need as many ids, not {len(ids)}")
        chosen = [(ids[i] if ids and ids[i] else uuid.uuid4().hex) for i in range(len(texts))]
        docs = [{"doc_id": doc_id, "text": text, "metadata": (metadatas[i] if metadatas else None)}
                for i, (doc_id, text) in enumerate(zip(chosen, texts))]
        return upsert_documents(self.searcher, docs)

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Add or replace LangChain documents (their ``id``, ``page_content`` and ``metadata``)."""
        ids = kwargs.pop("ids", None) or [doc.id or "" for doc in documents]
        return self.add_texts([d.page_content for d in documents], [dict(d.metadata) for d in documents], ids=ids)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id, all or none: an unknown id raises
        :class:`~retriever.errors.DocumentNotFoundError` and nothing is deleted (over HTTP: per request of
        up to 1,000 ids). ``missing_ok=True`` deletes the stored ones and passes over the others."""
        if not ids:
            raise BadInputError("give the ids of the documents to delete (deleting everything is funnel drop)")
        missing_ok = kwargs.pop("missing_ok", False)
        if kwargs:
            raise BadInputError(f"unknown delete option(s) {', '.join(sorted(kwargs))}: the option is missing_ok")
        delete_documents(self.searcher, ids, missing_ok)
        return True

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [to_document(hit) for hit in search(self.searcher, query, self.options.merged({"k": k, **kwargs}))]

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        hits = search(self.searcher, query, self.options.merged({"k": k, **kwargs}))
        return [(to_document(hit), hit.score) for hit in hits]

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings | None = None,
                   metadatas: list[dict[str, Any]] | None = None, *, ids: list[str] | None = None,
                   **kwargs: Any) -> FunnelVectorStore:
        """A store over ``searcher=`` (a Retriever or FunnelClient; ``embedding`` is not used: funnel
        embeds with the collection's model) with ``texts`` added."""
        searcher = kwargs.pop("searcher", None)
        if searcher is None:
            raise BadInputError("FunnelVectorStore.from_texts needs searcher= (a retriever.Retriever or a FunnelClient)")
        store = cls(searcher, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    def close(self) -> None:
        """Close the searcher (the in-process collection, or the client's connections)."""
        self.searcher.close()

"""A served topic collection for the client and integration tests: indexed once with the real model,
searched in-process through its :class:`Retriever` and over HTTP through a real uvicorn server on a
free 127.0.0.1 port (``BackgroundServer``: it returns once the server listens and the model is loaded,
so nothing waits on a sleep)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import TOPIC_DOCS, write_jsonl

from retriever import Retriever
from retriever.encoding.embedder import Embedder
from retriever.ingest.indexer import index_corpus
from retriever.service import BackgroundServer, ServiceConfig
from retriever.service.client import FunnelClient
from retriever.store.edge.catalog import EdgeCatalog

KEY = "integration-key-0123456789"
NAME = "topics"
SEARCHERS = ["in-process", "http"]  # how a test reaches the served collection (see searcher_of)


def records() -> list[dict]:
    """The topic corpus with metadata to filter on: topic (str) and year (int)."""
    return [{"_id": doc_id, "title": title, "text": text, "metadata": {"topic": title.lower(), "year": 2010 + i}}
            for i, (doc_id, title, text) in enumerate(TOPIC_DOCS)]


@dataclass
class Served:
    url: str
    retriever: Retriever  # the server's own, on the same collection: the in-process reference
    feedback: Path


@contextmanager
def topic_service(root: Path, embedder: Embedder) -> Iterator[Served]:
    corpus = write_jsonl(root / "corpus.jsonl", records())
    catalog = EdgeCatalog(root / "data")
    index_corpus(catalog, NAME, [corpus], embedder)
    collection = catalog.open(NAME)
    feedback = root / "feedback.jsonl"
    try:
        with BackgroundServer(collection, lambda: embedder, ServiceConfig(api_key=KEY, feedback_path=feedback)) as server:
            assert server.state.retriever is not None
            yield Served(server.url, server.state.retriever, feedback)
    finally:
        collection.close()


def closed_port_url() -> str:
    """The URL of a 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def silent_server() -> Iterator[str]:
    """A 127.0.0.1 port that accepts connections (the kernel completes them) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def assert_same_hits(got: list, expected: list) -> None:
    """The same hits in the same order: ids, documents, chunks, texts, titles, metadata, scores (1e-6)."""
    assert [h.id for h in got] == [h.id for h in expected]
    assert [(h.doc_id, h.chunk, h.text, h.title, h.metadata) for h in got] == \
        [(h.doc_id, h.chunk, h.text, h.title, h.metadata) for h in expected]
    assert [h.score for h in got] == pytest.approx([h.score for h in expected], abs=1e-6)


@contextmanager
def searcher_of(kind: str, served: Served) -> Iterator[Retriever | FunnelClient]:
    """The served collection's Retriever (``in-process``) or a FunnelClient on its server (``http``)."""
    if kind == "in-process":
        yield served.retriever
    else:
        with FunnelClient(served.url, api_key=KEY, timeout=60) as client:
            yield client

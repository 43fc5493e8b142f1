"""The chunks of a corpus exactly as ``funnel index`` makes them (same reader, same tokenizer windows).

Chunk size and overlap default as in :func:`retriever.ingest.indexer.build_spec`: the model's token window
minus its two special tokens, and an overlap of 32 tokens (at most a quarter of the chunk). Chunk
``(doc_id, index)`` here is the point ``funnel index`` stores for the same corpus and chunking.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from retriever.encoding.embedder import Embedder
from retriever.ingest.chunking import Chunk, TokenChunker, check_chunking
from retriever.ingest.corpus import Fields, ReadReport
from retriever.ingest.indexer import DEFAULT_CHUNK_OVERLAP
from retriever.ingest.intake import CorpusPath, ValidCorpus, open_corpus


@dataclass(frozen=True)
class ChunkSource:
    """A validated corpus and the chunker to split it; iterate for the chunks in corpus order."""

    corpus: ValidCorpus
    chunker: TokenChunker

    @property
    def report(self) -> ReadReport:
        return self.corpus.report

    def __iter__(self) -> Iterator[Chunk]:
        for doc in self.corpus.documents():
            yield from self.chunker.chunks(doc)


@contextmanager
def open_chunks(paths: Sequence[CorpusPath], embedder: Embedder, fields: Fields | None = None, skip_bad: bool = False,
                fmt: str | None = None, chunk_size: int | None = None, chunk_overlap: int | None = None,
                spool_dir: str | os.PathLike[str] | None = None) -> Iterator[ChunkSource]:
    """Validate the corpus (raises on a bad or empty one) and yield its chunk source."""
    check_chunking(chunk_size, chunk_overlap)
    size = chunk_size if chunk_size is not None else TokenChunker.default_size(embedder.max_tokens)
    overlap = chunk_overlap if chunk_overlap is not None else min(DEFAULT_CHUNK_OVERLAP, size // 4)
    chunker = TokenChunker(embedder.text_tokenizer, size, overlap, embedder.max_tokens)
    with open_corpus(paths, fields, skip_bad, fmt, spool_dir=spool_dir) as corpus:
        yield ChunkSource(corpus, chunker)

"""Token-based chunking with the model's own tokenizer, and stable chunk ids."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from .corpus import Document
from .errors import BadInputError

# Fixed namespace so that a chunk id depends only on (document id, chunk index).
CHUNK_NAMESPACE = uuid.UUID("6f1c3a52-9d0e-4c41-9b7e-2f5d8f0c1a77")
MIN_CHUNK_TOKENS = 8


def chunk_id(doc_id: str, index: int) -> str:
    """UUIDv5 of ``doc_id`` and ``index``: the same chunk gets the same point id on every run."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{doc_id}\x1f{index}"))


@dataclass(frozen=True)
class Chunk:
    """A window of a document's tokens, with the document's title and metadata."""

    id: str
    doc_id: str
    index: int
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The payload stored with the point."""
        return {
            "text": self.text,
            "doc_id": self.doc_id,
            "title": self.title,
            "chunk": self.index,
            "metadata": self.metadata,
        }


class TokenChunker:
    """Split documents into windows of at most ``size`` tokens that overlap by ``overlap`` tokens.

    Chunk texts are slices of the original text (by the tokenizer's character offsets), so no
    text is altered and nothing is ever truncated: a long document becomes more chunks.
    """

    def __init__(self, tokenizer: Any, size: int, overlap: int, max_tokens: int) -> None:
        budget = max_tokens - 2  # [CLS] and [SEP]
        if size < MIN_CHUNK_TOKENS or size > budget:
            raise BadInputError(
                f"invalid chunk size {size}: use {MIN_CHUNK_TOKENS}..{budget} tokens "
                f"(the model reads {max_tokens} tokens including 2 special tokens)"
            )
        if overlap < 0 or overlap >= size:
            raise BadInputError(f"invalid chunk overlap {overlap}: use 0..{size - 1} tokens")
        self.tokenizer = tokenizer
        self.size = size
        self.overlap = overlap

    @staticmethod
    def default_size(max_tokens: int) -> int:
        """The model's whole token budget minus its two special tokens."""
        return max_tokens - 2

    def split(self, doc: Document) -> list[Chunk]:
        """The chunks of one document, in order; windows start and end on word boundaries."""
        encoding = self.tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = encoding["offset_mapping"]
        if len(offsets) <= self.size:
            return [self._chunk(doc, 0, doc.text)]
        words = encoding.word_ids()

        def word_start(pos: int, floor: int) -> int:
            # The first token of the word that token ``pos`` belongs to, if that is after ``floor``;
            # a word longer than the whole window is cut where the window ends.
            snapped = pos
            while snapped > floor and words[snapped] is not None and words[snapped] == words[snapped - 1]:
                snapped -= 1
            return snapped if snapped > floor else pos

        chunks: list[Chunk] = []
        start, n = 0, len(offsets)
        while True:
            end = n if start + self.size >= n else word_start(start + self.size, start)
            chunks.append(self._chunk(doc, len(chunks), doc.text[offsets[start][0] : offsets[end - 1][1]]))
            if end == n:
                return chunks
            start = word_start(max(end - self.overlap, start + 1), start)

    @staticmethod
    def _chunk(doc: Document, index: int, text: str) -> Chunk:
        return Chunk(
            id=chunk_id(doc.id, index),
            doc_id=doc.id,
            index=index,
            text=text,
            title=doc.title,
            metadata=doc.metadata,
        )

"""Token-based chunking with the model's own tokenizer, and stable chunk ids."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from retriever.errors import BadInputError
from retriever.ingest.corpus import Document

# Fixed namespace so that a chunk id depends only on (document id, chunk index).
CHUNK_NAMESPACE = uuid.UUID("6f1c3a52-9d0e-4c41-9b7e-2f5d8f0c1a77")
MIN_CHUNK_TOKENS = 8
SLICE_CHARS = 32_768  # characters tokenized at a time (a slice ends before an ASCII whitespace)
# The most characters one token may stand for in a window: a tokenizer gives a "word" longer than it
# reads (WordPiece: 100 characters; 5 MB without whitespace) as one [UNK] token spanning all of it, so
# such a token counts as one per MAX_TOKEN_CHARS characters, and a chunk stays at most size × this long.
MAX_TOKEN_CHARS = 32
_CUT = re.compile(r"[ \t\n\r]")  # whitespace every tokenizer splits words on


POINT_ID_SCHEMES = ("int", "uuid")


def chunk_id(doc_id: str, index: int, scheme: str = "int", generation: int = 0) -> str:
    """The point id of chunk ``index`` of ``doc_id``: the same chunk gets the same id on every run.

    ``scheme="int"`` (collections made since integer ids): a 63-bit hash (BLAKE2b) of both, written
    in decimal; the engines store it as an unsigned integer, which they look up faster than a UUID.
    ``"uuid"`` (older collections): their UUIDv5.

    ``generation`` 0 is where a new document goes; a changed document's new version (``funnel index``,
    or an upsert through the API, :mod:`retriever.ingest.documents`) alternates between 0 and 1, so its
    new chunks never overwrite the old ones before those are deleted (the key of generation 1 ends in a non-digit, so it is
    never the key of another document's generation 0).
    """
    key = f"{doc_id}\x1f{index}" + ("" if generation == 0 else f"\x1fg{generation}")
    if scheme == "int":
        return str(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 1)
    return str(uuid.uuid5(CHUNK_NAMESPACE, key))


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


def check_chunking(size: int | None, overlap: int | None) -> None:
    """The checks of chunk size and overlap that need no model (the model's window is checked later)."""
    if size is not None and size < MIN_CHUNK_TOKENS:
        raise BadInputError(f"invalid chunk size {size}: use at least {MIN_CHUNK_TOKENS} tokens")
    if overlap is not None and (overlap < 0 or (size is not None and overlap >= size)):
        limit = f"0..{size - 1}" if size is not None else "0 or more"
        raise BadInputError(f"invalid chunk overlap {overlap}: use {limit} tokens")


def rust_tokenizer(tokenizer: Any) -> Any:
    """A ``tokenizers.Tokenizer`` that neither truncates nor pads: ``tokenizer`` itself, or the Rust
    tokenizer behind a transformers fast tokenizer (copied, so its settings stay the caller's)."""
    from tokenizers import Tokenizer

    if not isinstance(tokenizer, Tokenizer):
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise BadInputError("chunking needs a fast (Rust) tokenizer; this model has none")
        tokenizer = Tokenizer.from_str(backend.to_str())
        tokenizer.no_truncation()
        tokenizer.no_padding()
    return tokenizer


class TokenChunker:
    """Split documents into windows of at most ``size`` tokens that overlap by ``overlap`` tokens.

    Chunk texts are slices of the original text (by the tokenizer's character offsets), so no
    text is altered and nothing is ever truncated: a long document becomes more chunks.
    """

    def __init__(self, tokenizer: Any, size: int, overlap: int, max_tokens: int, id_scheme: str = "int") -> None:
        budget = max_tokens - 2  # [CLS] and [SEP]
        if size < MIN_CHUNK_TOKENS or size > budget:
            raise BadInputError(
                f"invalid chunk size {size}: use {MIN_CHUNK_TOKENS}..{budget} tokens "
                f"(the model reads {max_tokens} tokens including 2 special tokens)"
            )
        if overlap < 0 or overlap >= size:
            raise BadInputError(f"invalid chunk overlap {overlap}: use 0..{size - 1} tokens")
        self.tokenizer = rust_tokenizer(tokenizer)
        self.size = size
        self.overlap = overlap
        self.id_scheme = id_scheme  # how chunk ids are made (see chunk_id): the collection's point_ids

    @staticmethod
    def default_size(max_tokens: int) -> int:
        """The model's whole token budget minus its two special tokens."""
        return max_tokens - 2

    def split(self, doc: Document) -> list[Chunk]:
        """The chunks of one document, in order; windows start and end on word boundaries."""
        return list(self.chunks(doc))

    def chunks(self, doc: Document, slice_chars: int = SLICE_CHARS) -> Iterator[Chunk]:
        """The chunks of one document, lazily: the text is tokenized ``slice_chars`` at a time (cut
        on whitespace, so the tokens are those of the whole text), and tokens behind the current
        window are dropped, so a huge document needs memory for its text and one slice only."""
        tokens = _TokenStream(self.tokenizer, doc.text, slice_chars)
        if not tokens.has(self.size):
            yield self._chunk(doc, 0, doc.text)
            return

        def word_start(pos: int, floor: int) -> int:
            # The first token of the word that token ``pos`` belongs to, if that is after ``floor``;
            # a word longer than the whole window is cut where the window ends.
            snapped = pos
            while snapped > floor and tokens.word(snapped) is not None and tokens.word(snapped) == tokens.word(snapped - 1):
                snapped -= 1
            return snapped if snapped > floor else pos

        start, index = 0, 0
        while True:
            last = not tokens.has(start + self.size)
            end = tokens.count() if last else word_start(start + self.size, start)
            yield self._chunk(doc, index, doc.text[tokens.start(start) : tokens.end(end - 1)])
            if last:
                return
            index += 1
            start = word_start(max(end - self.overlap, start + 1), start)
            tokens.forget_before(start)

    def _chunk(self, doc: Document, index: int, text: str) -> Chunk:
        return Chunk(
            id=chunk_id(doc.id, index, self.id_scheme),
            doc_id=doc.id,
            index=index,
            text=text,
            title=doc.title,
            metadata=doc.metadata,
        )


class _TokenStream:
    """A document's tokens (character offsets and word ids), tokenized slice by slice on demand."""

    def __init__(self, tokenizer: Any, text: str, slice_chars: int) -> None:
        self.tokenizer = tokenizer
        self.text = text
        self.slice_chars = max(1, slice_chars)
        self.pos = 0  # characters tokenized so far
        self.base = 0  # index of the first token kept
        self.words_seen = 0  # word ids of earlier slices are offset by this
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.words: list[int | None] = []

    def _load(self) -> None:
        text, cut = self.text, min(len(self.text), self.pos + self.slice_chars)
        if cut < len(text):
            # End before the next whitespace; with none in the next slice_chars characters, cut
            # there (inside a run of non-space characters: the only place the tokens may differ).
            limit = min(len(text), cut + self.slice_chars)
            space = _CUT.search(text, cut, limit)
            cut = space.start() if space else limit
        encoding = self.tokenizer.encode(text[self.pos : cut], add_special_tokens=False)
        words = encoding.word_ids
        for (a, b), word in zip(encoding.offsets, words):
            if b - a > MAX_TOKEN_CHARS:  # a huge [UNK]: pieces a window may end between
                for piece in range(a, b, MAX_TOKEN_CHARS):
                    self.starts.append(piece + self.pos)
                    self.ends.append(min(b, piece + MAX_TOKEN_CHARS) + self.pos)
                    self.words.append(None)
                continue
            self.starts.append(a + self.pos)
            self.ends.append(b + self.pos)
            self.words.append(None if word is None else word + self.words_seen)
        self.words_seen += max((w for w in words if w is not None), default=-1) + 1
        self.pos = cut

    def has(self, i: int) -> bool:
        """Whether the text has a token ``i`` (tokenizing as far as needed to know)."""
        while i >= self.base + len(self.starts) and self.pos < len(self.text):
            self._load()
        return i < self.base + len(self.starts)

    def count(self) -> int:
        """The number of tokens of the whole text (tokenizes the rest)."""
        while self.pos < len(self.text):
            self._load()
        return self.base + len(self.starts)

    def start(self, i: int) -> int:
        return self.starts[i - self.base]

    def end(self, i: int) -> int:
        return self.ends[i - self.base]

    def word(self, i: int) -> int | None:
        return self.words[i - self.base]

    def forget_before(self, i: int) -> None:
        """Drop the tokens before ``i`` (in batches, so dropping stays cheap)."""
        drop = i - self.base
        if drop >= 4096:
            del self.starts[:drop], self.ends[:drop], self.words[:drop]
            self.base = i

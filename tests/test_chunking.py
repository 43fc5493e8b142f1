"""Token chunking with the real MiniLM tokenizer: windows, overlap, no truncation, stable ids."""

from __future__ import annotations

import math
import uuid

import pytest
from conftest import huge_text

from retriever.errors import BadInputError
from retriever.ingest.chunking import CHUNK_NAMESPACE, MIN_CHUNK_TOKENS, Chunk, TokenChunker, chunk_id
from retriever.ingest.corpus import Document

MAX_TOKENS = 256  # all-MiniLM-L6-v2 reads 256 tokens, [CLS] and [SEP] included


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def numbered_words(n: int) -> list[str]:
    return [f"word{i}" for i in range(n)]


# --- chunk ids -----------------------------------------------------------------------------------


def test_chunk_id_is_stable():
    # Pinned value: changing the hash or the scheme would orphan every stored point.
    assert chunk_id("doc-1", 0) == chunk_id("doc-1", 0, "int") == "7626413028046305929"


def test_uuid_chunk_id_is_a_stable_uuid5():
    cid = chunk_id("doc-1", 0, "uuid")
    assert cid == chunk_id("doc-1", 0, "uuid")
    assert cid == str(uuid.uuid5(CHUNK_NAMESPACE, "doc-1\x1f0"))
    assert uuid.UUID(cid).version == 5
    # Pinned value: changing the namespace or the scheme would orphan every stored point.
    assert cid == "48db2ce5-0bf0-562d-8b6f-cd7c56c1dae0"


@pytest.mark.parametrize("scheme", ["int", "uuid"])
def test_chunk_ids_differ_by_document_and_index(scheme):
    ids = {chunk_id(doc, i, scheme) for doc in ("a", "b", "a1", "1") for i in range(5)}
    assert len(ids) == 20
    # The separator keeps ("a1", 0) and ("a", 10) apart.
    assert chunk_id("a1", 0, scheme) != chunk_id("a", 10, scheme)


def test_integer_chunk_ids_are_63_bit_decimals_and_engine_ids():
    from retriever.store.base import engine_id

    ids = [chunk_id(f"doc-{i}", j, "int") for i in range(200) for j in range(5)]
    assert len(set(ids)) == len(ids) and all(i.isdecimal() for i in ids)
    assert all(0 <= int(i) < 2**63 for i in ids) and max(int(i) for i in ids) > 2**60  # the whole range is used
    assert chunk_id("doc-1", 0, "int") == chunk_id("doc-1", 0, "int")
    assert engine_id(ids[0]) == int(ids[0])
    uid = chunk_id("doc-1", 0, "uuid")
    assert engine_id(uid) == uid and len(uid) == 36


# --- validation ----------------------------------------------------------------------------------


def test_default_size():
    assert TokenChunker.default_size(MAX_TOKENS) == 254
    assert TokenChunker.default_size(512) == 510


@pytest.mark.parametrize(
    ("size", "overlap", "fragment"),
    [
        (MIN_CHUNK_TOKENS - 1, 0, "invalid chunk size 7: use 8..254 tokens"),
        (0, 0, "invalid chunk size 0"),
        (-5, 0, "invalid chunk size -5"),
        (255, 0, "invalid chunk size 255: use 8..254 tokens"),
        (10_000, 0, "invalid chunk size 10000"),
        (64, -1, "invalid chunk overlap -1: use 0..63 tokens"),
        (64, 64, "invalid chunk overlap 64: use 0..63 tokens"),
        (64, 100, "invalid chunk overlap 100"),
    ],
)
def test_invalid_size_or_overlap(tokenizer, size, overlap, fragment):
    with pytest.raises(BadInputError) as info:
        TokenChunker(tokenizer, size, overlap, MAX_TOKENS)
    assert fragment in str(info.value)


@pytest.mark.parametrize(("size", "overlap"), [(MIN_CHUNK_TOKENS, 0), (MIN_CHUNK_TOKENS, 7), (254, 32), (254, 253)])
def test_valid_size_and_overlap(tokenizer, size, overlap):
    chunker = TokenChunker(tokenizer, size, overlap, MAX_TOKENS)
    assert (chunker.size, chunker.overlap) == (size, overlap)


# --- splitting -----------------------------------------------------------------------------------


def test_short_document_is_one_chunk_with_its_exact_text(tokenizer):
    doc = Document(id="d", text="  Hello, world!  Two spaces. ", title="T", metadata={"k": "v"})
    (chunk,) = TokenChunker(tokenizer, 254, 32, MAX_TOKENS).split(doc)
    assert chunk == Chunk(id=chunk_id("d", 0), doc_id="d", index=0, text=doc.text, title="T", metadata={"k": "v"})
    assert chunk.payload() == {"text": doc.text, "doc_id": "d", "title": "T", "chunk": 0, "metadata": {"k": "v"}}


def test_document_of_exactly_size_tokens_is_one_chunk(tokenizer):
    text = " ".join(["cat"] * 20)
    assert n_tokens(tokenizer, text) == 20
    assert len(TokenChunker(tokenizer, 20, 5, MAX_TOKENS).split(Document("d", text))) == 1
    assert len(TokenChunker(tokenizer, 19, 5, MAX_TOKENS).split(Document("d", text))) == 2


@pytest.mark.parametrize(("size", "overlap"), [(16, 0), (16, 4), (32, 8), (254, 32)])
def test_windows_respect_size_overlap_and_cover_everything(tokenizer, size, overlap):
    words = numbered_words(400)
    doc = Document(id="long", text=" ".join(words), title="Long", metadata={"m": 1})
    chunks = TokenChunker(tokenizer, size, overlap, MAX_TOKENS).split(doc)

    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.id for c in chunks] == [chunk_id("long", i) for i in range(len(chunks))]
    assert all(c.doc_id == "long" and c.title == "Long" and c.metadata == {"m": 1} for c in chunks)
    total = n_tokens(tokenizer, doc.text)
    assert len(chunks) >= math.ceil(total / size)
    # Windows end and start on word boundaries; a "wordN" is at most 3 tokens, so each window
    # advances by at least size - overlap - 2 * (3 - 1) tokens.
    assert len(chunks) <= math.ceil(total / (size - overlap - 4)) + 1

    first_word_numbers = []
    previous_words: list[str] = []
    for chunk in chunks:
        assert n_tokens(tokenizer, chunk.text) <= size
        # Chunk texts are exact slices of the document, cut on word boundaries.
        assert chunk.text in doc.text
        chunk_words = chunk.text.split()
        assert set(chunk_words) <= set(words), "no word is cut in half"
        first_word_numbers.append(int(chunk_words[0][4:]))
        if previous_words:
            shared = [w for w in chunk_words if w in previous_words]
            if overlap == 0:
                assert shared == []
            else:
                assert shared, "consecutive chunks overlap"
                # The next window starts at the start of a word, so it may share up to one
                # word's extra pieces (2 for "wordN") beyond the overlap.
                assert n_tokens(tokenizer, " ".join(shared)) <= overlap + 2
        previous_words = chunk_words
    assert first_word_numbers == sorted(set(first_word_numbers)), "chunks advance through the text in order"
    assert chunks[0].text.startswith("word0 ")
    assert chunks[-1].text.endswith("word399")
    # Nothing is lost: every word lands in some chunk.
    assert {w for c in chunks for w in c.text.split()} == set(words)


def test_huge_document_is_chunked_not_truncated(tokenizer):
    text = huge_text(20_000)
    chunker = TokenChunker(tokenizer, 254, 32, MAX_TOKENS)
    chunks = chunker.split(Document(id="huge", text=text))
    total = n_tokens(tokenizer, text)
    assert total > 50_000
    assert len(chunks) >= math.ceil(total / 254)
    assert len(chunks) <= math.ceil(total / (254 - 32 - 4)) + 1
    covered = set()
    for chunk in chunks:
        covered.update(chunk.text.split())
    assert covered == set(text.split())
    assert chunks[-1].text.endswith(text.split()[-1])


def test_unicode_text_is_sliced_not_altered(tokenizer):
    text = " ".join(["naïve café — 東京 façade Ünïcödé 🚀 résumé."] * 40)
    chunks = TokenChunker(tokenizer, 24, 6, MAX_TOKENS).split(Document("u", text))
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.text in text
        assert chunk.text == chunk.text.strip()
    assert text.startswith(chunks[0].text) and text.endswith(chunks[-1].text)


def test_chunking_is_deterministic(tokenizer):
    doc = Document("d", " ".join(numbered_words(300)))
    chunker = TokenChunker(tokenizer, 40, 10, MAX_TOKENS)
    assert chunker.split(doc) == chunker.split(doc)


def test_word_longer_than_the_chunk_size(tokenizer):
    word = "pneumonoultramicroscopicsilicovolcanoconiosis"  # 17 word pieces
    text = f"start {word} end"
    total = n_tokens(tokenizer, text)
    chunks = TokenChunker(tokenizer, 8, 2, MAX_TOKENS).split(Document("w", text))
    # Windows of 8 tokens advancing by 6 need about ceil(19 / 6) = 4 chunks; one-token windows need 12.
    assert len(chunks) <= math.ceil(total / (8 - 2)) + 1, [c.text for c in chunks]


# --- streaming: a huge document is tokenized slice by slice, with the same chunks -------------------

ODD_WORDS = ["alpha", "beta,", "gamma.", "naïve", "東京", "🚀", "pneumonoultramicroscopicsilicovolcanoconiosis", "x",
             "(paren)", "a\tb", "line\n", "don't", "3.14", "été", "  ", "\x00", "ⅷ", "\r\n"]


@pytest.mark.parametrize("seed", range(12))
def test_slices_give_the_chunks_of_the_whole_text(tokenizer, seed):
    """Tokenizing slices cut before whitespace gives the tokens (so the chunks, so the chunk ids) of
    tokenizing the whole text at once: re-indexing an existing collection re-encodes nothing."""
    import random

    rnd = random.Random(seed)
    text = " ".join(rnd.choice(ODD_WORDS) for _ in range(rnd.randint(200, 1500)))
    size = rnd.choice([8, 16, 40, 254])
    chunker = TokenChunker(tokenizer, size, rnd.randint(0, size // 2), MAX_TOKENS)
    doc = Document("d", text)
    whole = list(chunker.chunks(doc, slice_chars=len(text) + 1))
    assert len(whole) > 1
    for slice_chars in (60, 100, 1000):
        assert list(chunker.chunks(doc, slice_chars=slice_chars)) == whole, slice_chars


def test_chunks_are_made_lazily_with_bounded_memory(tokenizer):
    """A 1 MB document: the first chunk comes before the whole text is tokenized, and the Python
    memory for tokens stays bounded (the whole text's token lists would take tens of MB)."""
    import tracemalloc

    text = huge_text(120_000)  # ~1 MB, ~420k tokens
    chunker = TokenChunker(tokenizer, 254, 32, MAX_TOKENS)
    chunks = chunker.chunks(Document("huge", text))
    first = next(chunks)
    assert first.index == 0 and text.startswith(first.text)
    tracemalloc.start()
    try:
        count, last = 1, first
        for last in chunks:  # noqa: B007 - the last chunk is checked below
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert last.index == count - 1 and text.endswith(last.text)
    assert count > 1500
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB of Python memory while chunking"

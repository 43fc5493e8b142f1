"""Index a corpus: read → chunk → encode once at the full dim → truncate per dim → upsert.

Everything that can be wrong with the input is found before the collection is touched: the
corpus is read once to validate and count it (see :mod:`retriever.ingest.intake`), then read again to
index it. Documents are chunked lazily and written in groups of about ``group_size`` chunks, each
document whole in one group (a huge one on its own, a group at a time), so memory stays bounded.
A changed document is written crash-safely (its new version beside the old, then the old deleted:
see :func:`write_group`), and only its changed chunks are encoded. Chunk ids are stable, so a re-run
(after a crash, or with the same corpus) writes nothing that is already stored.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from retriever.encoding.embedder import Embedder
from retriever.errors import BadInputError
from retriever.ingest.chunking import Chunk, TokenChunker, chunk_id
from retriever.ingest.corpus import Document, Fields
from retriever.ingest.intake import CorpusPath, ValidCorpus, open_corpus
from retriever.query.ladder import parse_ladder
from retriever.store.base import PENDING_FIELD, Catalog, Collection, PointBatch, pause_at
from retriever.store.spec import CollectionSpec, Layout

DEFAULT_BATCH_SIZE = 32
DEFAULT_CHUNK_OVERLAP = 32
DEFAULT_GROUP_SIZE = 2048  # chunks looked up together (stored payloads, stale chunks)
ENCODE_SLICE = 512  # chunks per encode call + upsert; large slices sort well by length
PROGRESS_STEPS = 20  # a group is encoded in about this many slices (of at least a batch), so progress moves


class IndexProgress(Protocol):
    """Receives progress from :func:`index_corpus` (the CLI draws a rich bar with it)."""

    def start(self, documents: int) -> None: ...

    def advance(self, documents: int, chunks: int) -> None: ...


@dataclass(frozen=True)
class IndexResult:
    """The summary of an index run."""

    collection: str
    documents: int
    chunks: int
    unchanged: int
    skipped_empty: int
    skipped_bad: int
    seconds: float
    points: int
    stale: int = 0  # stored documents not in the corpus (their source is gone), before any removal
    removed: int = 0  # of those, removed (sync=True)

    @property
    def skipped(self) -> int:
        return self.skipped_empty + self.skipped_bad


def model_id(model: str) -> str:
    """The name recorded for a model: a local path made absolute, any other name unchanged."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def build_spec(
    name: str,
    embedder: Embedder,
    dims: str | Sequence[int] | None,
    chunk_size: int | None,
    chunk_overlap: int | None,
    layout: Layout = Layout(),
) -> CollectionSpec:
    """Validate dims and chunking against the model and return the collection spec.

    Defaults: the model's whole token window, and an overlap of 32 tokens (at most a quarter of
    the chunk size).
    """
    ladder = parse_ladder(dims, embedder.dim)
    size = chunk_size if chunk_size is not None else TokenChunker.default_size(embedder.max_tokens)
    if chunk_overlap is None:
        chunk_overlap = min(DEFAULT_CHUNK_OVERLAP, size // 4)
    TokenChunker(embedder.text_tokenizer, size, chunk_overlap, embedder.max_tokens)  # validates
    return CollectionSpec(
        name=name,
        model=model_id(embedder.name),
        model_fingerprint=embedder.fingerprint,
        model_dim=embedder.dim,
        dims=ladder,
        chunk_size=size,
        chunk_overlap=chunk_overlap,
        hnsw_dims=ladder if layout.hnsw_all_dims else layout.hnsw_dims,
        quantization=layout.quantization,
        on_disk=layout.on_disk,
        lexical=layout.lexical,
        lexical_analyzer=layout.lexical_analyzer,
        encoder=embedder.encoder,
    )


@dataclass(frozen=True)
class ChunkCounts:
    """Chunks seen, and how many of them were already stored unchanged (not re-encoded)."""

    chunks: int = 0
    unchanged: int = 0

    def __add__(self, other: ChunkCounts) -> ChunkCounts:
        return ChunkCounts(self.chunks + other.chunks, self.unchanged + other.unchanged)


def _generations(doc_id: str, n: int, scheme: str) -> list[str]:
    """The ids of chunks 0..n of ``doc_id`` under generation 0, then under generation 1 (chunk n: the
    probe for a longer stored version)."""
    return [chunk_id(doc_id, i, scheme, g) for g in (0, 1) for i in range(n + 1)]


def _version_to_write(stored: dict[str, dict[str, Any]], doc_id: str, payloads: list[dict[str, Any]],
                      scheme: str) -> tuple[int, int | None] | None:
    """Where a document's new version goes: ``None`` when the stored version is these payloads exactly
    (nothing to write), else ``(generation, current)``: a new document (``current`` None) goes to
    generation 0, a changed one to the generation it is *not* stored in (``current``), so its old
    points stay whole until the new ones are."""
    heads = [g for g in (0, 1) if chunk_id(doc_id, 0, scheme, g) in stored]
    if not heads:
        return 0, None
    current, n = heads[0], len(payloads)
    same = (len(heads) == 1 and chunk_id(doc_id, n, scheme, current) not in stored
            and all(stored.get(chunk_id(doc_id, i, scheme, current)) == p for i, p in enumerate(payloads)))
    return None if same else (1 - current, current)


def _stored_copies(collection: Collection, reuse: dict[str, str]) -> dict[str, dict[int, np.ndarray]]:
    """The stored vectors of the chunks a new version keeps unchanged (``reuse``: new id → stored id),
    by new id; those the store cannot give whole are left out (and encoded)."""
    stored = collection.vectors(list(reuse.values())) if reuse else {}
    return {new: stored[old] for new, old in reuse.items() if old in stored}


def _write_marked(collection: Collection, embedder: Embedder, chunks: list[Chunk], marks: dict[str, int],
                  batch_size: int, on_written: Callable[[int, int], None] | None,
                  copies: dict[str, dict[int, np.ndarray]] | None = None) -> None:
    """Upsert ``chunks`` (under their own ids) with the pending mark of their document (``marks``: doc id
    → its version's chunk count): those in ``copies`` (by id) with the vectors given there, the others
    encoded, in slices sorted by length (a slice of like lengths pads little): at most
    :data:`ENCODE_SLICE`, at least ``batch_size`` chunks, about :data:`PROGRESS_STEPS` per call. Each
    slice is reported to ``on_written(chunks, documents)``, ``documents`` being those of ``marks`` whose
    every chunk given here is now written."""
    copies = copies or {}
    dims = collection.spec.dims
    copied = [c for c in chunks if c.id in copies]
    encoded = sorted((c for c in chunks if c.id not in copies), key=lambda c: len(c.text), reverse=True)
    left = dict.fromkeys(marks, 0)
    for c in chunks:
        left[c.doc_id] += 1
    reported = sum(n == 0 for n in left.values())
    step = min(ENCODE_SLICE, max(batch_size, -(-len(encoded) // PROGRESS_STEPS)))
    slices = [(copied[i : i + ENCODE_SLICE], False) for i in range(0, len(copied), ENCODE_SLICE)]
    slices += [(encoded[i : i + step], True) for i in range(0, len(encoded), step)]
    for part, encode in slices:
        if encode:
            vectors = embedder.encode([c.text for c in part], dims, batch_size=batch_size)
        else:
            vectors = {d: np.stack([copies[c.id][d] for c in part]) for d in dims}
        payloads = [dict(c.payload(), **{PENDING_FIELD: marks[c.doc_id]}) for c in part]
        collection.upsert(PointBatch(ids=[c.id for c in part], vectors=vectors, payloads=payloads))
        pause_at("slice")
        for c in part:
            left[c.doc_id] -= 1
        complete = sum(n == 0 for n in left.values())
        if on_written:
            on_written(len(part), complete - reported)
        reported = complete


def _commit(collection: Collection, replaced: list[str], written: list[str]) -> None:
    """Make the versions just written (``written``: their point ids) the stored ones: every other point
    of the ``replaced`` documents is deleted (one operation), then the pending marks are removed (one
    operation)."""
    if replaced:
        collection.delete_documents(replaced, keep=written)
        pause_at("deleted")
    collection.clear_pending(written)


def write_group(
    collection: Collection, embedder: Embedder, chunks: list[Chunk], batch_size: int,
    on_written: Callable[[int, int], None] | None = None,
) -> ChunkCounts:
    """Write the documents of ``chunks`` (every chunk of each, in order) whose stored version differs.

    A document whose stored payloads are these exactly is left alone (not re-encoded). Any other is
    written whole, as :meth:`~retriever.store.base.Collection.replace_document` does for one: its new
    version under the generation it is not stored in, each point marked pending with the version's
    size; then the old versions' points are deleted and the marks removed, one operation each for
    the whole group. A crash (kill -9) at any moment leaves, once the collection is recovered, every
    document in its old version or its new one, never a mix (see ``recover_pending``).
    Progress goes to ``on_written(chunks, documents)`` slice by slice (see :func:`_write_marked`).
    """
    scheme = collection.spec.point_ids
    by_doc: dict[str, list[Chunk]] = {}
    for c in chunks:
        by_doc.setdefault(c.doc_id, []).append(c)
    stored = collection.payloads([i for doc, cs in by_doc.items() for i in _generations(doc, len(cs), scheme)])
    new: list[Chunk] = []
    marks: dict[str, int] = {}
    replaced: list[str] = []
    reuse: dict[str, str] = {}  # new id → the stored id of the same chunk, unchanged: its vectors are copied
    for doc, cs in by_doc.items():
        version = _version_to_write(stored, doc, [c.payload() for c in cs], scheme)
        if version is None:
            continue
        generation, current = version
        for c in cs:
            new.append(replace(c, id=chunk_id(doc, c.index, scheme, generation)))
            if current is not None and stored.get(old := chunk_id(doc, c.index, scheme, current)) == c.payload():
                reuse[new[-1].id] = old
        marks[doc] = len(cs)
        if current is not None:
            replaced.append(doc)
    copies = _stored_copies(collection, reuse)
    _write_marked(collection, embedder, new, marks, batch_size, on_written, copies)
    _commit(collection, replaced, [c.id for c in new])
    if on_written and len(by_doc) > len(marks):
        on_written(len(chunks) - len(new), len(by_doc) - len(marks))  # the unchanged documents
    return ChunkCounts(chunks=len(chunks), unchanged=len(chunks) - len(new) + len(copies))


def write_large_document(collection: Collection, embedder: Embedder, chunker: TokenChunker, doc: Document,
                         batch_size: int, group_size: int,
                         on_written: Callable[[int, int], None] | None = None) -> ChunkCounts:
    """Write one document of more than ``group_size`` chunks as :func:`write_group` does, with bounded
    memory: its chunks are made twice, a group at a time, once to compare them with the stored
    version (payloads only) and, when it differs, once to encode and write them."""
    scheme = collection.spec.point_ids
    same = [True, True]  # chunks so far equal to the stored ones of generation 0, of generation 1
    heads: list[int] = []
    n = 0
    for block in _blocks(chunker.chunks(doc), group_size):
        ids = [chunk_id(doc.id, c.index, scheme, g) for g in (0, 1) for c in block]
        stored = collection.payloads(ids)
        if n == 0:
            heads = [g for g in (0, 1) if chunk_id(doc.id, 0, scheme, g) in stored]
        for g in (0, 1):
            same[g] = same[g] and all(stored.get(chunk_id(doc.id, c.index, scheme, g)) == c.payload() for c in block)
        n += len(block)
    probes = collection.payloads([chunk_id(doc.id, n, scheme, g) for g in (0, 1)])
    if len(heads) == 1 and same[heads[0]] and chunk_id(doc.id, n, scheme, heads[0]) not in probes:
        if on_written:
            on_written(n, 1)
        return ChunkCounts(chunks=n, unchanged=n)
    current = heads[0] if heads else None
    generation = 0 if current is None else 1 - current
    written = kept = 0
    for block in _blocks(chunker.chunks(doc), group_size):
        part = [replace(c, id=chunk_id(doc.id, c.index, scheme, generation)) for c in block]
        reuse: dict[str, str] = {}
        if current is not None:
            old = {c.index: chunk_id(doc.id, c.index, scheme, current) for c in block}
            stored = collection.payloads(list(old.values()))
            reuse = {p.id: old[c.index] for c, p in zip(block, part) if stored.get(old[c.index]) == c.payload()}
        copies = _stored_copies(collection, reuse)
        written, kept = written + len(part), kept + len(copies)
        last = written == n

        def report(chunks: int, documents: int, last: bool = last) -> None:
            if on_written:
                on_written(chunks, documents if last else 0)

        _write_marked(collection, embedder, part, {doc.id: n}, batch_size, report, copies)
    _commit(collection, [doc.id] if heads else [], [chunk_id(doc.id, i, scheme, generation) for i in range(n)])
    return ChunkCounts(chunks=n, unchanged=kept)


def _blocks(chunks: Iterable[Chunk], size: int) -> Iterator[list[Chunk]]:
    it = iter(chunks)
    while block := list(islice(it, size)):
        yield block


def index_chunks(
    collection: Collection,
    embedder: Embedder,
    chunker: TokenChunker,
    documents: Iterable[Document],
    batch_size: int = DEFAULT_BATCH_SIZE,
    group_size: int = DEFAULT_GROUP_SIZE,
    progress: IndexProgress | None = None,
) -> ChunkCounts:
    """Chunk, encode and upsert documents in groups of about ``group_size`` chunks, each document whole
    in one group; a document of more chunks is written on its own (:func:`write_large_document`).

    Every document is written crash-safely (see :func:`write_group`): the collection is marked as being
    written for the run (the embedded engine recovers an interrupted run when it next opens it), and
    what an earlier crash left is resolved first.
    """
    counts = ChunkCounts()
    group: list[Chunk] = []

    def reported(chunks: int, documents: int) -> None:
        if progress:
            progress.advance(documents, chunks)

    collection.recover_interrupted()
    collection.mark_replacing(True)
    for doc in documents:
        head = list(islice(chunker.chunks(doc), group_size + 1))
        if len(head) > group_size:
            if group:
                counts += write_group(collection, embedder, group, batch_size, reported)
                group = []
            counts += write_large_document(collection, embedder, chunker, doc, batch_size, group_size, reported)
            continue
        if group and len(group) + len(head) > group_size:
            counts += write_group(collection, embedder, group, batch_size, reported)
            group = []
        group += head
    if group:
        counts += write_group(collection, embedder, group, batch_size, reported)
    collection.mark_replacing(False)
    collection.finish_indexing()
    return counts


def index_corpus(
    catalog: Catalog,
    name: str,
    paths: Sequence[CorpusPath] | ValidCorpus,
    embedder: Embedder,
    dims: str | Sequence[int] | None = None,
    chunk_size: int | None = None,
    chunk_overlap: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    fields: Fields = Fields(),
    skip_bad: bool = False,
    progress: IndexProgress | None = None,
    layout: Layout = Layout(),
    fmt: str | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    sync: bool = False,
) -> IndexResult:
    """Validate everything, then index ``paths`` into collection ``name`` (created if missing).

    ``paths`` may be a :class:`~retriever.ingest.intake.ValidCorpus` already validated (the CLI validates
    before it loads the model); otherwise it is spooled (``-``, FIFOs) and validated here.

    The result counts the collection's *stale* documents: stored, but not in this corpus (their
    source was deleted or renamed, or the record was skipped as empty or bad). ``sync=True`` removes
    them, so the collection holds exactly the corpus; by default they stay (and stay searchable).
    """
    started = time.perf_counter()
    check_batch_size(batch_size)
    spec = build_spec(name, embedder, dims, chunk_size, chunk_overlap, layout)
    if isinstance(paths, ValidCorpus):
        return _index_valid(catalog, spec, paths, embedder, batch_size, progress, started, sync)
    with open_corpus(paths, fields, skip_bad, fmt, spool_dir) as corpus:
        return _index_valid(catalog, spec, corpus, embedder, batch_size, progress, started, sync)


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise BadInputError(f"invalid batch size {batch_size}: use 1 or more")


def stale_documents(collection: Collection, current: Iterable[str]) -> list[str]:
    """The stored documents whose id is not in ``current`` (a corpus's ids), sorted."""
    keep = set(current)
    return sorted(d for d in collection.document_counts() if d not in keep)


def _index_valid(catalog: Catalog, spec: CollectionSpec, corpus: ValidCorpus, embedder: Embedder, batch_size: int,
                 progress: IndexProgress | None, started: float, sync: bool = False) -> IndexResult:
    report = corpus.report
    with catalog.open_or_create(spec) as collection:
        # the stored collection's id scheme: one made before integer ids keeps its UUIDs
        chunker = TokenChunker(embedder.text_tokenizer, spec.chunk_size, spec.chunk_overlap, embedder.max_tokens,
                               collection.spec.point_ids)
        if progress:
            progress.start(report.documents)
        counts = index_chunks(collection, embedder, chunker, corpus.documents(), batch_size, progress=progress)
        stale = stale_documents(collection, report.seen_ids)
        if sync and stale:
            for start in range(0, len(stale), DEFAULT_GROUP_SIZE):
                collection.delete_documents(stale[start:start + DEFAULT_GROUP_SIZE])
            collection.flush()
        points = collection.count()
    return IndexResult(
        collection=spec.name,
        documents=report.documents,
        chunks=counts.chunks,
        unchanged=counts.unchanged,
        skipped_empty=report.skipped_empty,
        skipped_bad=report.skipped_bad,
        seconds=time.perf_counter() - started,
        points=points,
        stale=len(stale),
        removed=len(stale) if sync else 0,
    )

"""Index a corpus: read → chunk → encode once at the full dim → truncate per dim → upsert.

Everything that can be wrong with the input is found before the collection is touched: the
corpus is read once to validate and count it (see :mod:`retriever.ingest.intake`), then read again to
index it. Documents are chunked lazily and written in groups of about ``group_size`` chunks, a
huge document over several groups, so memory stays bounded. Chunk ids are stable, so a re-run
(after a crash, or with the same corpus) replaces points instead of adding them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from retriever.encoding.embedder import Embedder
from retriever.errors import BadInputError
from retriever.ingest.chunking import Chunk, TokenChunker, chunk_id
from retriever.ingest.corpus import Document, Fields
from retriever.ingest.intake import CorpusPath, ValidCorpus, open_corpus
from retriever.query.ladder import parse_ladder
from retriever.store.base import Catalog, Collection, PointBatch
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


def write_group(
    collection: Collection, embedder: Embedder, chunks: list[Chunk], batch_size: int,
    finished: dict[str, int] | None = None, on_written: Callable[[int, int], None] | None = None,
) -> ChunkCounts:
    """Upsert the chunks whose stored payload differs (or is missing); drop chunks a document lost.

    A document's chunks are numbered 0..n-1, so it has stale chunks exactly when a point for its
    chunk n exists: one look-up per document finds them, and only those documents are cleaned; a
    document last written by an upsert (its chunk 0 under generation 1) loses all its other points.
    ``finished`` maps the documents whose last chunk is in this group to their chunk count (only
    those are probed: a huge document spans several groups); default: every document in the group.
    Changed chunks are encoded and upserted in slices (sorted by length, at most
    :data:`ENCODE_SLICE`, at least ``batch_size`` chunks, about :data:`PROGRESS_STEPS` per group),
    each reported to ``on_written(chunks, documents)``, ``documents`` being the finished documents
    whose every changed chunk is now written: progress moves while a group is encoded.
    """
    if finished is None:
        finished = {}
        for c in chunks:
            finished[c.doc_id] = max(finished.get(c.doc_id, 0), c.index + 1)
    chunks_per_doc, scheme = finished, collection.spec.point_ids
    probes = {chunk_id(doc, n, scheme): doc for doc, n in chunks_per_doc.items()}
    # chunk 0 of a version an upsert wrote (generation 1, see retriever.ingest.documents): replaced below
    upserted = {chunk_id(doc, 0, scheme, 1): doc for doc in chunks_per_doc}
    payloads = {c.id: c.payload() for c in chunks}
    stored = collection.payloads(list(payloads) + list(probes) + list(upserted))
    changed = [c for c in chunks if stored.get(c.id) != payloads[c.id]]
    changed.sort(key=lambda c: len(c.text), reverse=True)  # a slice of like lengths pads little
    left = dict.fromkeys(chunks_per_doc, 0)  # changed chunks still to write, per finished document
    for c in changed:
        if c.doc_id in left:
            left[c.doc_id] += 1
    reported = 0
    step = min(ENCODE_SLICE, max(batch_size, -(-len(changed) // PROGRESS_STEPS)))
    for start in range(0, len(changed), step):
        part = changed[start : start + step]
        vectors = embedder.encode([c.text for c in part], collection.spec.dims, batch_size=batch_size)
        collection.upsert(PointBatch(ids=[c.id for c in part], vectors=vectors, payloads=[payloads[c.id] for c in part]))
        for c in part:
            if c.doc_id in left:
                left[c.doc_id] -= 1
        complete = sum(n == 0 for n in left.values())  # unchanged documents count from the first slice
        if on_written:
            on_written(len(part), complete - reported)
        reported = complete
    shrunk = {doc: chunks_per_doc[doc] for probe, doc in probes.items() if probe in stored}
    collection.delete_chunks_from(shrunk)
    for probe, doc in upserted.items():
        if probe in stored:
            collection.delete_documents([doc], keep=[chunk_id(doc, i, scheme) for i in range(chunks_per_doc[doc])])
    return ChunkCounts(chunks=len(chunks), unchanged=len(chunks) - len(changed))


def index_chunks(
    collection: Collection,
    embedder: Embedder,
    chunker: TokenChunker,
    documents: Iterable[Document],
    batch_size: int = DEFAULT_BATCH_SIZE,
    group_size: int = DEFAULT_GROUP_SIZE,
    progress: IndexProgress | None = None,
) -> ChunkCounts:
    """Chunk, encode and upsert documents in groups of at most ``group_size`` chunks.

    Chunks are made lazily, so a huge document is written over several groups with bounded
    memory; its stale chunks are looked for with the group that holds its last chunk.
    """
    pending: list[Chunk] = []
    finished: dict[str, int] = {}
    counts = ChunkCounts()

    def flush() -> None:
        nonlocal counts, pending, finished
        reported = 0

        documents = 0

        def written(n: int, docs: int) -> None:
            nonlocal reported, documents
            reported += n
            documents += docs
            if progress:
                progress.advance(docs, n)

        counts += write_group(collection, embedder, pending, batch_size, finished, written)
        rest = (len(finished) - documents, len(pending) - reported)  # unchanged chunks; documents without any
        if progress and rest != (0, 0):
            progress.advance(*rest)
        pending, finished = [], {}

    for doc in documents:
        n = 0
        for chunk in chunker.chunks(doc):
            if len(pending) >= group_size:
                flush()
            pending.append(chunk)
            n += 1
        finished[doc.id] = n
        if len(pending) >= group_size:
            flush()
    if pending:
        flush()
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

"""Documents one at a time: upsert (chunked and embedded as ``funnel index`` does), delete, list.

A document is the set of points whose payload ``doc_id`` is its id. A new document's chunk ``i`` goes
under the point id :func:`~retriever.ingest.chunking.chunk_id` ``(doc_id, i)`` (generation 0); a changed
one's new version goes under the *other* generation's ids, then the old points are deleted (here through
:meth:`~retriever.store.base.Collection.replace_document`; ``funnel index`` does the same a group of
documents at a time), so a crash leaves the old version or the new one, never a mix. An upsert of the
text (and title and metadata) already stored writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from retriever.encoding.embedder import Embedder
from retriever.errors import BadInputError, DocumentNotFoundError
from retriever.ingest.chunking import Chunk, TokenChunker, chunk_id
from retriever.ingest.corpus import Document
from retriever.ingest.indexer import DEFAULT_BATCH_SIZE, ENCODE_SLICE
from retriever.query.filters import PayloadFilter
from retriever.query.validation import show_value
from retriever.store.base import Collection, PointBatch
from retriever.store.limits import MAX_ID_CHARS, MAX_TITLE_CHARS, LimitError, check_string, storable_metadata

MAX_PAGE = 10_000  # documents one listing call returns at most
MAX_DELETE = 10_000  # documents one delete call takes at most

Status = Literal["created", "replaced", "unchanged"]


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert did to one document: ``created``, ``replaced`` or ``unchanged`` (nothing written)."""

    doc_id: str
    chunks: int
    status: Status


@dataclass(frozen=True)
class DocumentSummary:
    """A stored document: its id, how many chunks (points) it has, its title."""

    doc_id: str
    chunks: int
    title: str


@dataclass(frozen=True)
class DocumentPage:
    """One page of a collection's documents, sorted by id; ``total`` counts them all."""

    documents: list[DocumentSummary]
    total: int
    offset: int
    limit: int


def chunker_for(collection: Collection, embedder: Embedder) -> TokenChunker:
    """The chunker ``funnel index`` used for this collection: its chunk size and overlap, its id scheme."""
    spec = collection.spec
    return TokenChunker(embedder.text_tokenizer, spec.chunk_size, spec.chunk_overlap, embedder.max_tokens,
                        spec.point_ids)


def doc_id_arg(doc_id: Any, what: str = "a document id") -> str:
    """A document id as given by a caller: a non-empty string of at most :data:`MAX_ID_CHARS` characters."""
    if not isinstance(doc_id, str) or not doc_id:
        raise BadInputError(f"{what} is a non-empty string, not {show_value(doc_id)}")
    try:
        check_string(doc_id, what, MAX_ID_CHARS)
    except LimitError as exc:
        raise BadInputError(str(exc)) from None
    return doc_id


def make_document(doc_id: Any, text: Any, title: Any = None, metadata: Any = None) -> Document:
    """A document from a caller's values, checked against the limits the corpus readers apply."""
    doc_id = doc_id_arg(doc_id)
    if not isinstance(text, str):
        raise BadInputError(f"the text of document {doc_id[:80]!r} is a string, not {show_value(text)}")
    if not text.strip():
        raise BadInputError(f"the text of document {doc_id[:80]!r} is empty: nothing to index (delete the document "
                            "instead)")
    if title is not None and not isinstance(title, str):
        raise BadInputError(f"the title of document {doc_id[:80]!r} is a string or None, not {show_value(title)}")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise BadInputError(f"the metadata of document {doc_id[:80]!r} is a mapping or None, not "
                            f"{show_value(metadata)}")
    try:
        check_string(text, "the text")
        check_string(title or "", "the title", MAX_TITLE_CHARS)
        stored = storable_metadata({str(k): v for k, v in (metadata or {}).items()})
    except LimitError as exc:
        raise BadInputError(f"document {doc_id[:80]!r}: {exc}") from None
    return Document(id=doc_id, text=text, title=title or "", metadata=stored)


@dataclass(frozen=True)
class _Planned:
    doc: Document
    chunks: list[Chunk]  # under the ids the new version gets
    status: Status


def _plan(collection: Collection, chunker: TokenChunker, doc: Document) -> _Planned:
    """The document's chunks under the generation it is not stored in, and whether it changed."""
    scheme = collection.spec.point_ids
    collection.recover_pending([doc.id])  # a replacement a crash left: resolve it before choosing ids
    heads = collection.payloads([chunk_id(doc.id, 0, scheme, 0), chunk_id(doc.id, 0, scheme, 1)])
    current = next((g for g in (0, 1) if chunk_id(doc.id, 0, scheme, g) in heads), None)
    chunks = list(chunker.chunks(doc))
    if current is None:
        return _Planned(doc, chunks, "created")
    stored = collection.payloads([chunk_id(doc.id, c.index, scheme, current) for c in chunks])
    same = all(stored.get(chunk_id(doc.id, c.index, scheme, current)) == c.payload() for c in chunks)
    if same and collection.document_counts([doc.id]).get(doc.id) == len(chunks):
        return _Planned(doc, chunks, "unchanged")
    new = 1 - current
    return _Planned(doc, [replace(c, id=chunk_id(doc.id, c.index, scheme, new)) for c in chunks], "replaced")


def upsert_documents(collection: Collection, embedder: Embedder, documents: Iterable[Document],
                     batch_size: int = DEFAULT_BATCH_SIZE, chunker: TokenChunker | None = None) -> list[UpsertResult]:
    """Add or replace each document (one encode call for all of them), in order; each replacement is
    crash-safe on its own (see :meth:`~retriever.store.base.Collection.replace_document`)."""
    docs = list(documents)
    seen: set[str] = set()
    for doc in docs:
        if doc.id in seen:
            raise BadInputError(f"document {doc.id[:80]!r} is given twice: give each document once")
        seen.add(doc.id)
    chunker = chunker or chunker_for(collection, embedder)
    planned = [_plan(collection, chunker, doc) for doc in docs]
    texts = [c.text for p in planned if p.status != "unchanged" for c in p.chunks]
    dims = collection.spec.dims
    parts = [embedder.encode(texts[i:i + ENCODE_SLICE], dims, batch_size=batch_size)
             for i in range(0, len(texts), ENCODE_SLICE)]
    vectors = {d: _stack([part[d] for part in parts], d) for d in dims}
    start = 0
    for p in planned:
        if p.status == "unchanged":
            continue
        n = len(p.chunks)
        batch = PointBatch([c.id for c in p.chunks], {d: v[start:start + n] for d, v in vectors.items()},
                           [c.payload() for c in p.chunks])
        collection.replace_document(p.doc.id, batch)
        start += n
    collection.flush()
    return [UpsertResult(p.doc.id, len(p.chunks), p.status) for p in planned]


def _stack(parts: list[Any], dim: int) -> Any:
    import numpy as np

    return np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)


def doc_ids_arg(doc_ids: Any) -> list[str]:
    """Document ids as given by a caller: a list (not one string) of 1 to :data:`MAX_DELETE` ids, each
    once."""
    if isinstance(doc_ids, (str, bytes)) or not isinstance(doc_ids, Sequence):
        raise BadInputError(f"document ids are a list of strings, not {show_value(doc_ids)}")
    ids = [doc_id_arg(i) for i in doc_ids]
    if not ids or len(ids) > MAX_DELETE:
        raise BadInputError(f"give 1 to {MAX_DELETE:,} document ids, not {len(ids):,}")
    return list(dict.fromkeys(ids))


def missing_ok_arg(missing_ok: Any) -> bool:
    """A delete's ``missing_ok``, checked: ``True`` or ``False``, nothing that merely looks like one."""
    if not isinstance(missing_ok, bool):
        raise BadInputError(f"missing_ok is True or False, not {show_value(missing_ok)}")
    return missing_ok


def delete_documents(collection: Collection, doc_ids: Sequence[str], missing_ok: bool = False) -> dict[str, int]:
    """Delete these documents (every chunk of each, in one engine operation); returns the chunks each had.

    All or nothing: when any id is not stored, :class:`DocumentNotFoundError` names it and nothing is
    deleted; with ``missing_ok``, the stored ones are deleted and the others left out of the answer."""
    ids = doc_ids_arg(doc_ids)
    missing_ok = missing_ok_arg(missing_ok)
    counts = collection.document_counts(ids)
    missing = [i for i in ids if i not in counts]
    if missing_ok:
        ids = [i for i in ids if i in counts]
        if not ids:
            return {}
    elif missing:
        more = f" (nor {len(missing) - 1:,} more of the {len(ids):,} ids given)" if len(missing) > 1 else ""
        raise DocumentNotFoundError(f"no document {missing[0][:80]!r} in collection {collection.spec.name!r}{more}: "
                                    "nothing deleted")
    collection.delete_documents(ids)
    collection.flush()
    return {i: counts[i] for i in ids}


def delete_filter_arg(where: Any) -> PayloadFilter:
    """A delete's payload filter, checked: not empty (deleting every document is ``funnel drop``)."""
    from retriever.query.filters import parse_filter

    checked = parse_filter(where)
    if checked is None or not checked.conditions:
        raise BadInputError("give a filter that says which documents to delete (deleting every document is "
                            "funnel drop)")
    return checked


def delete_matching(collection: Collection, where: Any) -> dict[str, int]:
    """Delete every document one of whose chunks matches the payload filter ``where`` (e.g.
    ``{"metadata.source": "notes/tea.md"}``), each whole, in one engine operation; returns the chunks
    each had ({} when none matches: not an error).

    An empty filter is refused (deleting everything is ``funnel drop``), and so is one that matches more
    than :data:`MAX_DELETE` documents (nothing deleted: narrow it, or delete in several calls)."""
    checked = delete_filter_arg(where)
    matched = collection.document_counts(where=checked)
    if len(matched) > MAX_DELETE:
        raise BadInputError(f"the filter matches {len(matched):,} documents, more than the {MAX_DELETE:,} one delete "
                            "takes: nothing deleted (narrow the filter)")
    if not matched:
        return {}
    ids = sorted(matched)
    counts = collection.document_counts(ids)  # every chunk of each, not only those that matched
    collection.delete_documents(ids)
    collection.flush()
    return {i: counts[i] for i in ids if i in counts}


def page_args(limit: Any, offset: Any) -> tuple[int, int]:
    """A listing's ``limit`` (1 to :data:`MAX_PAGE`) and ``offset`` (0 or more), as integers."""
    for name, value, low in (("limit", limit, 1), ("offset", offset, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (name == "limit" and value > MAX_PAGE):
            upper = f" to {MAX_PAGE:,}" if name == "limit" else " or more"
            raise BadInputError(f"{name} is an integer {low}{upper}, not {show_value(value)}")
    return limit, offset


def list_documents(collection: Collection, limit: int = 100, offset: int = 0) -> DocumentPage:
    """The documents ``offset`` to ``offset + limit`` in id order, with their chunk counts and titles."""
    limit, offset = page_args(limit, offset)
    counts = collection.document_counts()
    ids = sorted(counts)[offset:offset + limit]
    scheme = collection.spec.point_ids
    heads = collection.payloads([chunk_id(d, 0, scheme, g) for d in ids for g in (0, 1)])
    titles = {str(p.get("doc_id")): str(p.get("title") or "") for p in heads.values()}
    return DocumentPage([DocumentSummary(d, counts[d], titles.get(d, "")) for d in ids], len(counts), offset, limit)


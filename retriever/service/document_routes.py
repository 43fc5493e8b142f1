"""The document routes: ``PUT`` / ``DELETE /collections/{name}/documents/{doc_id}``, ``GET …/documents`` and
``POST …/documents/delete`` (several documents, by id or by filter, in one engine operation).

Authenticated like ``/search`` (the API key guard covers every path but the open ones), bodies bounded
by the models and the body-size limit. Each operation runs on the search thread
(:attr:`MicroBatcher.executor`), between search batches, so a search never sees a document half
replaced; the replacement itself is crash-safe (see :meth:`~retriever.store.base.Collection.replace_document`).
A document id may hold ``/`` (e.g. ``misc/tea.md``); other reserved characters are percent-encoded.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from retriever.ingest.documents import doc_id_arg
from retriever.service.models import (
    MAX_HTTP_PAGE,
    DocumentDeleteResponse,
    DocumentListResponse,
    DocumentRequest,
    DocumentsDeleteRequest,
    DocumentsDeleteResponse,
    DocumentWriteResponse,
)
from retriever.service.routes import PROTECTED, Batcher, Service, _check_collection, _errors
from retriever.store.limits import MAX_ID_CHARS

router = APIRouter()
DocId = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS, description="the document's id")]


@router.put("/collections/{name}/documents/{doc_id:path}", response_model=DocumentWriteResponse,
            dependencies=PROTECTED, responses=_errors(400, 401, 404, 408, 413, 422, 500, 503, 507))
async def put_document(name: str, doc_id: DocId, body: DocumentRequest, service: Service,
                       batcher: Batcher) -> dict[str, Any]:
    """Add or replace a document, chunked and embedded as `funnel index` does; crash-safe (old or new, never a mix)."""
    start = time.perf_counter()
    state = _check_collection(service, name)
    doc_id_arg(doc_id, "the document id")
    retriever = state.ready()
    result = await asyncio.get_running_loop().run_in_executor(
        batcher.executor, lambda: retriever.upsert(doc_id, body.text, body.metadata, body.title))
    return {"collection": state.name, "doc_id": result.doc_id, "chunks": result.chunks, "status": result.status,
            "took_ms": round((time.perf_counter() - start) * 1000, 3)}


@router.delete("/collections/{name}/documents/{doc_id:path}", response_model=DocumentDeleteResponse,
               dependencies=PROTECTED, responses=_errors(400, 401, 404, 422, 500, 507))
async def delete_document(name: str, doc_id: DocId, service: Service, batcher: Batcher) -> dict[str, Any]:
    """Delete a document (every chunk); 404 `document_not_found` when it is not stored."""
    from retriever.ingest.documents import delete_documents

    state = _check_collection(service, name)
    doc_id_arg(doc_id, "the document id")
    removed = await asyncio.get_running_loop().run_in_executor(
        batcher.executor, delete_documents, state.collection, [doc_id])
    return {"collection": state.name, "doc_id": doc_id, "chunks": removed[doc_id]}


@router.post("/collections/{name}/documents/delete", response_model=DocumentsDeleteResponse,
             dependencies=PROTECTED, responses=_errors(400, 401, 404, 413, 422, 500, 507))
async def delete_many(name: str, body: DocumentsDeleteRequest, service: Service, batcher: Batcher) -> dict[str, Any]:
    """Delete several documents in one engine operation: by `doc_ids` (all or nothing: an id that is not stored
    is 404 `document_not_found` and nothing is deleted, unless `missing_ok`) or by `filter` (every document one
    of whose chunks matches)."""
    from retriever.ingest.documents import delete_documents, delete_matching

    start = time.perf_counter()
    state = _check_collection(service, name)
    ids = body.doc_ids

    def run() -> dict[str, int]:
        if ids is not None:
            return delete_documents(state.collection, ids, body.missing_ok)
        return delete_matching(state.collection, body.filter)

    removed = await asyncio.get_running_loop().run_in_executor(batcher.executor, run)
    missing = [i for i in dict.fromkeys(ids) if i not in removed] if ids is not None else []
    return {"collection": state.name, "deleted": removed, "missing": missing, "documents": len(removed),
            "chunks": sum(removed.values()), "took_ms": round((time.perf_counter() - start) * 1000, 3)}


@router.get("/collections/{name}/documents", response_model=DocumentListResponse, dependencies=PROTECTED,
            responses=_errors(400, 401, 404, 422, 500))
async def list_documents(
    name: str, service: Service, batcher: Batcher,
    limit: Annotated[int, Query(ge=1, le=MAX_HTTP_PAGE, description="documents to return")] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31, description="documents to skip first (in id order)")] = 0,
) -> dict[str, Any]:
    """The collection's documents in id order, with their chunk counts and titles, one page at a time."""
    from retriever.ingest.documents import list_documents as listing

    state = _check_collection(service, name)
    page = await asyncio.get_running_loop().run_in_executor(batcher.executor, listing, state.collection, limit,
                                                            offset)
    return {"collection": state.name, "total": page.total, "offset": page.offset, "limit": page.limit,
            "documents": [{"doc_id": d.doc_id, "chunks": d.chunks, "title": d.title} for d in page.documents]}

"""A collection's documents: ``funnel docs`` (list them, with chunk counts) and ``funnel delete`` (remove some)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from retriever.cli.options import catalog, collection_option, engine_options, json_option
from retriever.errors import CollectionLockedError

if TYPE_CHECKING:
    from retriever.ingest.documents import DocumentPage

MAX_SERVED_PAGE = 1000  # what GET /collections/{name}/documents returns at most (models.MAX_HTTP_PAGE)


@click.command()
@collection_option
@click.option("--limit", envvar="FUNNEL_DOCS_LIMIT", show_envvar=True, type=int, default=100,
              help="documents to list (1 to 10,000)")
@click.option("--offset", envvar="FUNNEL_DOCS_OFFSET", show_envvar=True, type=int, default=0,
              help="documents to skip first (in id order)")
@json_option
@engine_options
@click.pass_context
def docs(ctx: click.Context, collection: str, limit: int, offset: int, as_json: bool) -> None:
    """List a collection's documents in id order, with their chunk counts and titles (no model is loaded; a
    collection held by a running funnel serve is listed by that server)."""
    from retriever.cli.display import err, print_documents, print_json
    from retriever.ingest.documents import list_documents, page_args

    page_args(limit, offset)
    try:
        coll = catalog(ctx).open(collection)
    except CollectionLockedError:
        served = _served_page(ctx, collection, limit, offset)
        if served is None:
            raise
        page = served
    else:
        with coll:
            page = list_documents(coll, limit, offset)
    if as_json:
        print_json({"collection": collection, "total": page.total, "offset": page.offset, "limit": page.limit,
                    "documents": [{"doc_id": d.doc_id, "chunks": d.chunks, "title": d.title} for d in page.documents]})
        return
    print_documents(collection, page)
    shown_to = page.offset + len(page.documents)
    if shown_to < page.total:
        err.print(f"documents {page.offset + 1:,}–{shown_to:,} of {page.total:,}: --offset {shown_to} shows the next "
                  "ones", highlight=False)


@click.command()
@collection_option
@click.argument("doc_ids", nargs=-1, required=True)
@json_option
@engine_options
@click.pass_context
def delete(ctx: click.Context, collection: str, doc_ids: tuple[str, ...], as_json: bool) -> None:
    """Delete documents (every chunk of each) from a collection by id: all of them, or none when one
    is not stored."""
    from retriever.cli.display import err, plural, print_json
    from retriever.ingest.documents import delete_documents, doc_ids_arg

    ids = doc_ids_arg(list(doc_ids))
    try:
        coll = catalog(ctx).open(collection)
    except CollectionLockedError as exc:
        _refuse_served_delete(ctx, collection, exc)
        raise
    with coll:
        removed = delete_documents(coll, ids)
        points = coll.count()
    if as_json:
        print_json({"collection": collection, "deleted": removed, "points": points})
        return
    chunks = sum(removed.values())
    err.print(f"deleted {plural(len(removed), 'document')} ({plural(chunks, 'chunk')}) from {collection}; it holds "
              f"{plural(points, 'point')}", highlight=False)


def _served_page(ctx: click.Context, name: str, limit: int, offset: int) -> DocumentPage | None:
    """The warm path: the page from the ``funnel serve`` holding the collection, or ``None``: none does."""
    from retriever.cli.warm import served_by, served_client
    from retriever.errors import BadInputError

    server = served_by(ctx, name)
    if server is None:
        return None
    if limit > MAX_SERVED_PAGE:
        raise BadInputError(f"collection {name!r} is served by funnel serve at {server.url}, which lists at most "
                            f"{MAX_SERVED_PAGE:,} documents a page: lower --limit (and page with --offset)")
    with served_client(server, name) as client:
        return client.documents(limit, offset, collection=name)


def _refuse_served_delete(ctx: click.Context, name: str, exc: Exception) -> None:
    """A delete of a served collection: say where to delete instead (all-or-none cannot go over HTTP)."""
    from retriever.cli.warm import served_by
    from retriever.errors import CollectionLockedError

    server = served_by(ctx, name)
    if server is not None:
        raise CollectionLockedError(
            f"collection {name!r} is held by funnel serve at {server.url} (pid {server.pid}): delete through it "
            f"(DELETE {server.url}/collections/{name}/documents/ID, or FunnelClient.delete) or stop it first") from exc

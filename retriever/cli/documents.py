"""A collection's documents: ``funnel docs`` (list them, with chunk counts) and ``funnel delete`` (remove some)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
@click.argument("doc_ids", nargs=-1)
@click.option("--filter", "filter_json", default=None, metavar="JSON",
              help='delete every document one of whose chunks matches this payload filter instead (the syntax of '
              'funnel search --filter), e.g. \'{"metadata.source": "notes/tea.md"}\'')
@click.option("--missing-ok", is_flag=True, help="delete the ids that are stored and name the others, instead of "
              "refusing (and deleting nothing) when one is not stored")
@json_option
@engine_options
@click.pass_context
def delete(ctx: click.Context, collection: str, doc_ids: tuple[str, ...], filter_json: str | None, missing_ok: bool,
           as_json: bool) -> None:
    """Delete documents (every chunk of each) from a collection, by id or by --filter, in one engine
    operation: all the ids given, or none when one is not stored (unless --missing-ok). A collection
    held by a running funnel serve is deleted from through that server."""
    from retriever.cli.display import err, plural, print_json
    from retriever.cli.search import _filter, _raw_filter
    from retriever.errors import BadInputError
    from retriever.ingest.documents import delete_documents, delete_filter_arg, delete_matching, doc_ids_arg

    if bool(doc_ids) == (filter_json is not None):
        raise BadInputError("give the ids of the documents to delete, or --filter, not both" if doc_ids else
                            "give the ids of the documents to delete (or --filter JSON)")
    if missing_ok and filter_json is not None:
        raise BadInputError("--missing-ok goes with document ids (a filter never misses)")
    ids = doc_ids_arg(list(doc_ids)) if doc_ids else []
    where = delete_filter_arg(_filter(filter_json)) if filter_json is not None else None
    try:
        coll = catalog(ctx).open(collection)
    except CollectionLockedError:
        served = _served_delete(ctx, collection, ids, _raw_filter(filter_json), missing_ok)
        if served is None:
            raise
        removed, points = served
    else:
        with coll:
            removed = delete_matching(coll, where) if where is not None else delete_documents(coll, ids, missing_ok)
            points = coll.count()
    missing = [i for i in ids if i not in removed]
    if as_json:
        print_json({"collection": collection, "deleted": removed, "missing": missing, "points": points})
        return
    chunks = sum(removed.values())
    held = f"; it holds {plural(points, 'point')}" if points is not None else ""
    err.print(f"deleted {plural(len(removed), 'document')} ({plural(chunks, 'chunk')}) from {collection}{held}",
              highlight=False)
    if missing:
        shown = ", ".join(repr(i) for i in missing[:5]) + (f" and {len(missing) - 5:,} more" if len(missing) > 5 else "")
        err.print(f"not stored, so not deleted: {shown}", highlight=False, markup=False)


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


def _served_delete(ctx: click.Context, name: str, ids: list[str], where: dict[str, Any] | None,
                   missing_ok: bool) -> tuple[dict[str, int], int | None] | None:
    """The warm path of a delete: through the ``funnel serve`` holding the collection (one request, one
    engine operation there; at most 1,000 ids), or ``None``: none holds it. Returns what was deleted
    and the collection's points after."""
    from retriever.cli.warm import served_by, served_client
    from retriever.errors import BadInputError
    from retriever.service.client import MAX_DELETE_IDS

    server = served_by(ctx, name)
    if server is None:
        return None
    if len(ids) > MAX_DELETE_IDS:
        raise BadInputError(f"collection {name!r} is served by funnel serve at {server.url}, which deletes at most "
                            f"{MAX_DELETE_IDS:,} ids a request: give fewer (all or none holds per request)")
    with served_client(server, name) as client:
        removed = client.delete_where(where, collection=name) if where is not None else client.delete_many(
            ids, missing_ok, collection=name)
        points = next((c.points for c in client.collections() if c.name == name), None)
    return removed, points

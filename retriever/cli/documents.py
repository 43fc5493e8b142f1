"""A collection's documents: ``funnel docs`` (list them, with chunk counts) and ``funnel delete`` (remove some)."""

from __future__ import annotations

import click

from retriever.cli.options import catalog, collection_option, engine_options, json_option


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
    """List a collection's documents in id order, with their chunk counts and titles (no model is loaded)."""
    from retriever.cli.display import err, print_documents, print_json
    from retriever.ingest.documents import list_documents, page_args

    page_args(limit, offset)
    with catalog(ctx).open(collection) as coll:
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
    with catalog(ctx).open(collection) as coll:
        removed = delete_documents(coll, ids)
        points = coll.count()
    if as_json:
        print_json({"collection": collection, "deleted": removed, "points": points})
        return
    chunks = sum(removed.values())
    err.print(f"deleted {plural(len(removed), 'document')} ({plural(chunks, 'chunk')}) from {collection}; it holds "
              f"{plural(points, 'point')}", highlight=False)

"""``funnel search``: one query, or every query of a file, dense, lexical (BM25) or hybrid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from retriever.cli.options import (
    SKIP_BAD_QUERIES_FILE,
    collection_option,
    device_option,
    encoder_option,
    engine,
    engine_options,
    json_option,
    k_option,
    model_option,
    queries_option,
    skip_bad_option,
)
from retriever.errors import BadInputError, CollectionLockedError
from retriever.query.fusion import Fusion
from retriever.query.validation import OptionNames, check_search_options

if TYPE_CHECKING:
    from retriever.query.filters import PayloadFilter
    from retriever.query.spec import QuerySpec
    from retriever.retriever import Retriever

QUERY_BATCH = 512  # queries encoded and searched together in --queries mode
# The query options as `funnel search` spells them, for the library's errors.
FLAGS = OptionNames(plan="--plan", exact="--exact", adaptive="--adaptive", drop_adaptive="--adaptive",
                    fusion="--fusion", drop_fusion="--fusion", hybrid="--mode hybrid", dense="--mode dense")


def _print_results(retriever: Retriever, spec: QuerySpec, ids: list[str | None], texts: list[str],
                   as_json: bool) -> None:
    """Search ``texts`` in slices of :data:`QUERY_BATCH` and print each result (a JSON line or a table)."""
    from retriever.cli.display import print_hits, print_json
    from retriever.query.describe import describe_search

    described = describe_search(spec, retriever.collection.spec.top_dim)
    for start in range(0, len(texts), QUERY_BATCH):
        batch = texts[start : start + QUERY_BATCH]
        results = retriever.search_each(batch, [spec] * len(batch))
        for qid, text, hits in zip(ids[start:], batch, results):
            if as_json:
                record = {"query": text, "mode": described.mode, "fusion": described.fusion,
                          "plan": described.plan, "adaptive": described.adaptive, "depth": hits.depth.to_dict(),
                          "hits": [h.to_dict() for h in hits]}
                print_json(record if qid is None else {"query_id": qid} | record)
            else:
                print_hits(text, hits, described.label, hits.depth)


def _raw_filter(text: str | None) -> dict[str, Any] | None:
    """``--filter``'s JSON object (already checked by :func:`_filter`), to send to a server."""
    import json

    return None if text is None else json.loads(text)


def _filter(text: str | None) -> PayloadFilter | None:
    """``--filter``'s JSON object as a checked filter (a one-line error otherwise), before any model loads."""
    import json

    from retriever.errors import InvalidFilterError
    from retriever.query.filters import parse_filter

    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidFilterError(f"--filter is not JSON ({exc.msg} at character {exc.pos}): write a JSON object, "
                                 'e.g. \'{"metadata.topic": "music"}\'') from None
    return parse_filter(value)


@click.command()
@click.argument("query", required=False)
@collection_option
@k_option()
@click.option("--plan", envvar="FUNNEL_PLAN", show_envvar=True, default=None,
              help="funnel plan DIM:LIMIT,… e.g. 64:400,128:200,256:100 [default: see README]")
@click.option("--exact", is_flag=True, envvar="FUNNEL_EXACT", show_envvar=True,
              help="exact search at the top dim (the reference), no funnel")
@click.option("--adaptive/--fixed", "adaptive", envvar="FUNNEL_ADAPTIVE", show_envvar=True, default=None,
              help="adaptive: a cheap first pass, the full plan only for queries whose top k is not settled; "
              "fixed: the plan for every query [default: adaptive if funnel calibrate measured it faster]")
@click.option("--mode", envvar="FUNNEL_MODE", show_envvar=True, type=click.Choice(["dense", "lexical", "hybrid"]),
              default=None, help="dense: the funnel; lexical: BM25 alone; hybrid: both, fused as --fusion says "
              "(lexical and hybrid need a collection indexed with --lexical bm25) [default: dense without a "
              "lexical index; with one, hybrid unless funnel calibrate --qrels chose dense; hybrid with --fusion; "
              "dense with --plan, --exact or --adaptive]")
@click.option("--fusion", envvar="FUNNEL_FUSION", show_envvar=True, type=click.Choice(["union", "rrf", "dbsf"]),
              default=None, help="how --mode hybrid combines BM25 and the funnel: union (BM25's best join the "
              "funnel's shortlist, the re-score decides), rrf (reciprocal rank fusion) or dbsf (score fusion) "
              f"[default: the calibrated one, else {Fusion()}]")
@click.option("--filter", "filter_json", envvar="FUNNEL_FILTER", show_envvar=True, default=None, metavar="JSON",
              help='only chunks whose payload matches, as the HTTP API\'s filter: a JSON object, e.g. '
              '\'{"metadata.year": {"gte": 2020}, "metadata.ticker": ["NVDA", "AMD"]}\' (every condition must hold)')
@queries_option("BEIR queries.jsonl (- for standard input): search every query (one JSON line each with --json)")
@skip_bad_option(SKIP_BAD_QUERIES_FILE)
@click.option("--no-text", is_flag=True, envvar="FUNNEL_NO_TEXT", show_envvar=True,
              help="leave the chunk text out of the results")
@model_option
@device_option
@encoder_option
@json_option
@engine_options
@click.pass_context
def search(ctx: click.Context, query: str | None, collection: str, k: int, plan: str | None, exact: bool,
           adaptive: bool | None, mode: str | None, fusion: str | None, filter_json: str | None,
           queries_file: Path | None, skip_bad: bool,
           no_text: bool, model: str | None, device: str | None, encoder: str | None, as_json: bool) -> None:
    """Funnel-search QUERY (or every query of --queries) in a collection: dense, lexical (BM25) or hybrid."""
    from retriever.cli.display import report_skipped_queries
    from retriever.ingest.queries import read_queries
    from retriever.query.plan import validate_k
    from retriever.query.validation import validate_query
    from retriever.retriever import Retriever

    if (query is None) == (queries_file is None):
        raise BadInputError("give either a QUERY or --queries FILE.jsonl (- for standard input)")
    # before the collection opens and the model loads (query_spec checks them again there)
    check_search_options(plan, exact, adaptive, mode, fusion, FLAGS)
    validate_k(k)
    where = _filter(filter_json)
    if query is not None:
        ids: list[str | None] = [None]
        texts = [validate_query(query)]
    else:
        assert queries_file is not None
        found = read_queries(queries_file, skip_bad=skip_bad)
        report_skipped_queries(found, queries_file)
        ids, texts = list(found.ids), found.texts
    # BM25 alone needs no model: none is loaded
    try:
        retriever = Retriever.open(collection, model=model, device=device, engine=engine(ctx),
                                   lexical_only=mode == "lexical", encoder=encoder)
    except CollectionLockedError:
        if not _search_served(ctx, collection, ids, texts, ServedSearch(k, plan, exact, adaptive, mode, fusion,
                                                                        not no_text, _raw_filter(filter_json)), as_json):
            raise
        return
    with retriever:
        spec = retriever.query_spec(k, plan, exact, not no_text, where, adaptive, mode, fusion, names=FLAGS)
        _print_results(retriever, spec, ids, texts, as_json)


@dataclass(frozen=True)
class ServedSearch:
    """The search options, as sent to a server."""

    k: int
    plan: str | None
    exact: bool
    adaptive: bool | None
    mode: str | None
    fusion: str | None
    with_text: bool
    filter: dict[str, Any] | None = None  # --filter's JSON object, as the HTTP API takes it


def _search_served(ctx: click.Context, name: str, ids: list[str | None], texts: list[str], options: ServedSearch,
                   as_json: bool) -> bool:
    """The warm path: search through the ``funnel serve`` that holds the collection (no model loads
    here). False when no live server of this data directory holds it."""
    from retriever.cli.display import print_hits, print_json
    from retriever.cli.warm import served_by, served_client, wait_until_ready
    from retriever.service.client import MAX_K

    server = served_by(ctx, name)
    if server is None:
        return False
    if options.k > MAX_K:
        raise BadInputError(f"collection {name!r} is served by funnel serve at {server.url}, which answers at most "
                            f"k={MAX_K}: lower -k, or stop the server to search it here")
    with served_client(server, name) as client:
        wait_until_ready(client, name)
        for start in range(0, len(texts), QUERY_BATCH):
            batch = texts[start : start + QUERY_BATCH]
            answer = client.search_answer(batch, options.k, options.plan, options.exact, options.with_text, options.filter,
                                          options.adaptive, options.mode, options.fusion, collection=name)
            label = served_label(answer.mode, answer.plan, answer.adaptive, answer.fusion)
            for qid, text, hits in zip(ids[start:], batch, answer.results):
                if as_json:
                    record = {"query": text, "mode": answer.mode, "fusion": answer.fusion, "plan": answer.plan,
                              "adaptive": answer.adaptive, "depth": hits.depth.to_dict(),
                              "hits": [h.to_dict() for h in hits]}
                    print_json(record if qid is None else {"query_id": qid} | record)
                else:
                    print_hits(text, hits, label, hits.depth)
    return True


def served_label(mode: str, plan: str | None, adaptive: bool, fusion: str | None) -> str:
    """The caption of a served search's hits, from what the server says it ran (its ``describe_search`` fields)."""
    if mode == "lexical":
        label = "lexical: BM25 alone"
    elif plan == "exact":
        label = "exact search"
    elif adaptive:
        label = f"adaptive, widened to {plan} when unsettled"
    else:
        label = f"plan {plan}"
    return f"hybrid {fusion}: BM25 and {label}" if mode == "hybrid" else label

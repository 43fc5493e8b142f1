"""``funnel index``: chunk and embed a corpus into a collection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from retriever.cli.options import (
    catalog,
    chunking_options,
    collection_option,
    device_option,
    dims_option,
    encoder_option,
    engine_options,
    field_options,
    format_option,
    json_option,
    model_option,
    no_progress_option,
    placement_options,
    skip_bad_option,
)
from retriever.errors import BadInputError

if TYPE_CHECKING:
    from retriever.calibration.index_encoder import IndexEncoderChoice
    from retriever.encoding.embedder import Embedder
    from retriever.ingest.indexer import IndexResult
    from retriever.ingest.intake import ValidCorpus
    from retriever.store.base import Catalog
    from retriever.store.spec import CollectionSpec, Layout


@dataclass
class _Settings:
    """What ``funnel index`` was asked for, completed from an existing collection's spec."""

    model: str | None
    dims: str | None
    chunk_size: int | None
    chunk_overlap: int | None
    quantization: str | None
    on_disk: bool | None
    lexical: str | None
    lexical_analyzer: str | None

    def complete(self, existing: CollectionSpec | None) -> _Settings:
        """Fill what was not given from ``existing`` (indexing into it keeps its model, dims, chunking)."""
        if existing is None:
            if self.lexical_analyzer is not None and self.lexical in (None, "none"):
                raise BadInputError("--lexical-analyzer applies to a lexical index: add --lexical bm25")
            return self
        return _Settings(
            model=self.model or existing.model, dims=self.dims or ",".join(map(str, existing.dims)),
            chunk_size=self.chunk_size if self.chunk_size is not None else existing.chunk_size,
            chunk_overlap=self.chunk_overlap if self.chunk_overlap is not None else existing.chunk_overlap,
            quantization=self.quantization or existing.quantization,
            on_disk=existing.on_disk if self.on_disk is None else self.on_disk,
            lexical=self.lexical or (existing.lexical or "none"),
            lexical_analyzer=self.lexical_analyzer or existing.lexical_analyzer,
        )

    def check_lexical(self, name: str, existing: CollectionSpec | None) -> None:
        """Refuse, before the model loads, another lexical index than ``existing`` has: an engine
        cannot add or change one in place, so the line names the copy that does (no re-embedding)."""
        if existing is None:
            return
        had = existing.lexical or "none"
        analyzer = existing.lexical_analyzer if existing.lexical else None
        wanted = None if self.lexical == "none" else self.lexical_analyzer
        if self.lexical == had and (self.lexical == "none" or wanted == analyzer):
            return
        now = "no lexical index" if had == "none" else f"a {had} index ({analyzer} analyzer)"
        flags = "--lexical none" if self.lexical == "none" else f"--lexical {self.lexical} --lexical-analyzer {wanted}"
        raise BadInputError(
            f"collection {name!r} has {now}; the engine cannot change that in place. Copy it into a new "
            f"collection that has it (the vectors are copied, nothing is re-embedded; {name!r} stays as it is): "
            f"funnel collections copy {name} {name}-{'dense' if self.lexical == 'none' else self.lexical} {flags}")

    def layout(self, existing: CollectionSpec | None) -> Layout:
        from retriever.store.spec import Layout

        return Layout(quantization=self.quantization or "none", on_disk=bool(self.on_disk),
                      hnsw_all_dims=existing is not None and existing.hnsw_dims == existing.dims
                      and len(existing.dims) > 1,
                      hnsw_dims=existing.hnsw_dims if existing is not None else None,
                      lexical=None if self.lexical in (None, "none") else self.lexical,
                      lexical_analyzer=self.lexical_analyzer or "english")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@collection_option
@model_option
@dims_option("ascending dim ladder, e.g. 64,128,256,384 [default: 64,128,256 and the model's dim]")
@chunking_options("tokens per chunk [default: the model's max sequence length minus 2]",
                  "tokens shared by consecutive chunks [default: 32, at most a quarter of the chunk size]")
@click.option("--batch-size", envvar="FUNNEL_BATCH_SIZE", show_envvar=True, type=int, default=32,
              help="encoder batch size")
@field_options
@click.option("--metadata-field", "metadata_fields", envvar="FUNNEL_METADATA_FIELDS", show_envvar=True, multiple=True,
              help="extra field to keep in the payload's metadata (repeatable)")
@skip_bad_option()
@format_option
@click.option("--quantization", envvar="FUNNEL_QUANTIZATION", show_envvar=True,
              type=click.Choice(["none", "int8", "binary", "binary1.5", "binary2"]), default=None,
              help="a quantized copy of the graph's vector in RAM: int8 (scalar) or binary with 1, 1.5 or 2 bits per "
              "component [default: none, or the collection's]")
@click.option("--on-disk/--in-ram", "on_disk", envvar="FUNNEL_ON_DISK", show_envvar=True, default=None,
              help="keep the vectors search does not traverse on disk (memory-mapped) [default: in RAM, or the collection's]")
@click.option("--lexical", envvar="FUNNEL_LEXICAL", show_envvar=True, type=click.Choice(["none", "bm25"]),
              default=None, help="bm25: also a BM25-scored text index on the chunk text, for --mode lexical / hybrid "
              "search [default: none, or the collection's]")
@click.option("--lexical-analyzer", envvar="FUNNEL_LEXICAL_ANALYZER", show_envvar=True,
              type=click.Choice(["english", "plain"]), default=None,
              help="how the BM25 index splits text: english (lower-cased words, English stop words dropped, "
              "Snowball-stemmed) or plain (lower-cased words) [default: english, or the collection's]")
@click.option("--no-calibrate", is_flag=True, envvar="FUNNEL_NO_CALIBRATE", show_envvar=True,
              help="do not calibrate the collection's plan at the end [default: calibrate it on a sample of its "
              "own chunks when it holds 2,000 points or more, in about a fifth of the indexing time (5 to 60 s); "
              "see funnel calibrate]")
@click.option("--sync", is_flag=True, envvar="FUNNEL_SYNC", show_envvar=True,
              help="also remove the collection's documents that are not in PATHS (deleted or renamed sources) "
              "[default: keep them, and say how many there are]")
@device_option
@encoder_option
@json_option
@no_progress_option()
@engine_options
@placement_options
@click.pass_context
def index(ctx: click.Context, paths: tuple[Path, ...], collection: str, model: str | None, dims: str | None,
          chunk_size: int | None, chunk_overlap: int | None, batch_size: int, text_field: str, id_field: str | None,
          title_field: str, metadata_fields: tuple[str, ...], skip_bad: bool, fmt: str | None,
          quantization: str | None, on_disk: bool | None, lexical: str | None, lexical_analyzer: str | None,
          no_calibrate: bool, sync: bool, device: str | None, encoder: str | None, as_json: bool,
          no_progress: bool) -> None:
    """Chunk and embed PATHS (BEIR dir, JSONL, CSV, TSV, Parquet, .txt/.md dirs; - for stdin) into a collection.

    Re-running with the same corpus updates in place: changed documents are re-embedded, and
    documents no longer in the corpus are counted (--sync removes them). Indexing into an existing collection uses
    its model, dims and chunking unless others are given (then they must match). The corpus and
    the options are checked before the model loads.
    """
    from dataclasses import asdict

    from retriever.cli.display import IndexProgressBar, err, print_index_summary, print_json
    from retriever.encoding.embedder import DEFAULT_MODEL
    from retriever.ingest.chunking import check_chunking
    from retriever.ingest.corpus import Fields
    from retriever.ingest.indexer import check_batch_size, index_corpus
    from retriever.ingest.intake import open_corpus
    from retriever.store.paths import validate_collection_name

    validate_collection_name(collection)
    check_batch_size(batch_size)
    check_chunking(chunk_size, chunk_overlap)
    store = catalog(ctx)
    existing = store.read_spec(collection) if store.exists(collection) else None
    asked = _Settings(model, dims, chunk_size, chunk_overlap, quantization, on_disk, lexical, lexical_analyzer)
    settings = asked.complete(existing)
    settings.check_lexical(collection, existing)
    layout = settings.layout(existing)
    store.check_writable(collection, len(settings.dims.split(",")) if settings.dims else 4)
    fields = Fields(id=id_field, text=text_field, title=title_field, metadata=metadata_fields)
    with open_corpus(paths, fields, skip_bad, fmt, spool_dir=ctx.obj["data_dir"]) as corpus:
        embedder, choice = _embedder(settings.model or DEFAULT_MODEL, device, encoder, existing, corpus, settings.dims)
        if existing is not None and existing.encoder != embedder.encoder:
            err.print(f"note: {collection!r} was encoded with {existing.encoder}; new chunks are encoded with "
                      f"{embedder.describe} (the same model: searches match across encoders)", highlight=False)
        bar = IndexProgressBar(enabled=not no_progress)
        try:
            result = index_corpus(
                store, collection, corpus, embedder, dims=settings.dims, chunk_size=settings.chunk_size,
                chunk_overlap=settings.chunk_overlap, batch_size=batch_size, progress=bar,
                layout=layout, sync=sync,
            )
        finally:
            bar.stop()
    print_index_summary(result)
    calibration = None if no_calibrate else _calibrate_after(store, collection, result, embedder, as_json)
    if as_json:
        print_json(asdict(result) | {"skipped": result.skipped, "encoder": embedder.encoder,
                                     "encoder_choice": choice.record() if choice else None,
                                     "calibration": calibration})


def _calibrate_after(store: Catalog, name: str, result: IndexResult, embedder: Embedder,
                     quiet: bool) -> dict[str, Any]:
    """Calibrate the plan of the collection just written (see :mod:`retriever.calibration.after_index`);
    what was done, for ``--json``."""
    import time

    from retriever.calibration.after_index import BY, SAMPLE, budget_for, reason_to_skip
    from retriever.calibration.run import CalibrationRequest, run_calibration
    from retriever.cli.display import err
    from retriever.retriever import Retriever

    coll = store.open(name)
    changed = result.chunks > result.unchanged or result.removed > 0
    reason = reason_to_skip(coll, changed)
    if reason is not None:  # said in --json only: a small or unchanged collection needs no line
        coll.close()
        return {"calibrated": False, "reason": reason}
    started = time.perf_counter()
    request = CalibrationRequest(sample=SAMPLE, budget_s=budget_for(result.seconds), by=BY)
    run = run_calibration(Retriever(coll, embedder), request)
    seconds = round(time.perf_counter() - started, 1)
    if not quiet:
        err.print(f"calibrated the plan on {run.plan.queries} stored chunks in {seconds:.1f} s: {run.plan.plan} "
                  f"keeps recall@10 {run.plan.recall:.3f} of exact search (funnel info {name} shows it; "
                  "--no-calibrate skips this)", highlight=False, markup=False)
    return {"calibrated": True, "seconds": seconds, "plan": str(run.plan.plan), "recall_vs_exact": run.plan.recall,
            "queries": run.plan.queries}


def _embedder(model: str, device: str | None, encoder: str | None, existing: CollectionSpec | None,
              corpus: ValidCorpus, dims: str | None) -> tuple[Embedder, IndexEncoderChoice | None]:
    """The embedder to index with. Without ``--encoder`` on a CPU: the encoder an existing collection was
    built with (where it runs here), else for a large corpus the fastest that keeps fp32's top 10 on a
    sample of it (:mod:`retriever.calibration.index_encoder`), else fp32."""
    from retriever.calibration.index_encoder import MIN_DOCUMENTS, choose_index_encoder, corpus_sample
    from retriever.cli.display import err
    from retriever.encoding.embedder import Embedder
    from retriever.encoding.names import AUTO, TORCH, available
    from retriever.query.ladder import parse_ladder

    embedder = Embedder(model, device=device, encoder=encoder)
    if encoder not in (None, AUTO) or embedder.encoder == TORCH:
        return embedder, None
    if existing is not None:
        if existing.encoder not in (embedder.encoder, TORCH) and available(existing.encoder):
            return Embedder(model, device=device, encoder=existing.encoder), None
        return embedder, None
    if corpus.report.documents < MIN_DOCUMENTS:
        return embedder, None
    choice, chosen = choose_index_encoder(embedder, corpus_sample(corpus), parse_ladder(dims, embedder.dim))
    if choice.candidate is not None:
        keep = f" (--encoder {choice.reference} keeps fp32)" if chosen is not embedder else ""
        measured = (f", measured on {choice.sample} of the corpus's documents in {choice.seconds:.1f} s"
                    if choice.sample else "")
        err.print(f"encoder: {chosen.describe}{measured}: {choice.reason}{keep}", highlight=False)
    return chosen, choice

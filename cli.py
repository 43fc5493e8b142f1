"""funnel's command line: a click group with one small function per command.

Every option can also be set from an environment variable (shown in ``--help``). Domain errors
(:class:`retriever.errors.FunnelError`) become one line on stderr and exit code 1; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from retriever.errors import BadInputError, FunnelError
from retriever.query.fusion import Fusion

if TYPE_CHECKING:
    from retriever.calibration.layouts import LayoutTrial
    from retriever.store.base import Catalog
    from retriever.store.layout import LayoutChoice

QUERY_BATCH = 512  # queries encoded and searched together in --queries mode
MODEL_HELP = "sentence-transformers model name or local path [default: all-MiniLM-L6-v2, or the collection's]"


def _one_line_usage_error(exc: click.UsageError) -> click.ClickException:
    """A usage error as one line and exit code 1 (click's own: usage, hint and error, exit code 2)."""
    names, ctx = [], exc.ctx
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    command = " ".join(["funnel", *reversed(names)])
    return click.ClickException(f"{exc.format_message()} (see '{command} --help')")


class FunnelGroup(click.Group):
    """Turns domain errors, usage errors and OS errors into one clear line and exit code 1."""

    def make_context(self, info_name, args, parent=None, **extra):  # click's signature
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _one_line_usage_error(exc) from exc

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _one_line_usage_error(exc) from exc
        except (FunnelError, OSError) as exc:
            if ctx.meta.get("funnel.debug"):
                raise
            message = exc if isinstance(exc, FunnelError) else _os_error_line(exc)
            click.echo(f"Error: {message}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted: re-run the same command to finish (re-indexing is idempotent).", err=True)
            ctx.exit(130)


def _os_error_line(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def _store_engine_option(key: str):  # noqa: ANN202
    """Keep an engine option in ``ctx.meta`` (shared by the group and its commands): given on either,
    it applies; given on both, the command's wins."""
    def store(ctx: click.Context, _param: click.Parameter, value):  # noqa: ANN001, ANN202
        if value is not None and value is not False:
            ctx.meta[f"funnel.{key}"] = value
        return value
    return store


def engine_options(f):  # noqa: ANN001, ANN201
    """--qdrant-url, --qdrant-api-key, --prefer-grpc: on the group and on every command that uses a store."""
    f = click.option("--prefer-grpc", is_flag=True, envvar="QDRANT_PREFER_GRPC", show_envvar=True, expose_value=False,
                     callback=_store_engine_option("prefer_grpc"),
                     help="talk to the Qdrant server over gRPC (port 6334) instead of REST")(f)
    f = click.option("--qdrant-api-key", envvar="QDRANT_API_KEY", show_envvar=True, default=None, expose_value=False,
                     callback=_store_engine_option("qdrant_api_key"), help="API key of the Qdrant server")(f)
    return click.option("--qdrant-url", envvar="QDRANT_URL", show_envvar=True, default=None, expose_value=False,
                        callback=_store_engine_option("qdrant_url"),
                        help="Qdrant server (http(s)://HOST:6333), or path:DIR / :memory: for qdrant-client's local "
                        "mode [default: the embedded engine in the data dir]")(f)


def placement_options(f):  # noqa: ANN001, ANN201
    """--shards, --replication-factor, --write-consistency: how a new server collection is spread."""
    for name, env, text in (
        ("--write-consistency", "FUNNEL_WRITE_CONSISTENCY", "copies that must acknowledge a write"),
        ("--replication-factor", "FUNNEL_REPLICATION_FACTOR", "copies of each shard in a cluster"),
        ("--shards", "FUNNEL_SHARDS", "shards of a new server collection (funnel plans stay collection-wide)"),
    ):
        f = click.option(name, envvar=env, show_envvar=True, type=int, default=None, expose_value=False,
                         callback=_store_engine_option(name.lstrip("-").replace("-", "_")),
                         help=f"{text} [default: the server's]")(f)
    return f


def _engine(ctx: click.Context, url: str | None = None, data_dir: Path | None = None, placement: bool = True):  # noqa: ANN202
    """The engine the command talks to; ``url`` / ``data_dir`` override the options (``""``: embedded)."""
    from retriever.store.config import EngineConfig, Placement

    meta = ctx.meta
    spread = Placement(meta.get("funnel.shards"), meta.get("funnel.replication_factor"),
                       meta.get("funnel.write_consistency")) if placement else Placement()
    return EngineConfig(data_dir=data_dir or ctx.obj["data_dir"],
                        url=meta.get("funnel.qdrant_url") if url is None else url,
                        api_key=meta.get("funnel.qdrant_api_key"), prefer_grpc=bool(meta.get("funnel.prefer_grpc")),
                        placement=spread)


def _catalog(ctx: click.Context, url: str | None = None, data_dir: Path | None = None, placement: bool = True):  # noqa: ANN202
    """The command's catalog, closed when the command ends."""
    from retriever.store.factory import open_catalog

    return ctx.with_resource(open_catalog(_engine(ctx, url, data_dir, placement)))


@click.group(cls=FunnelGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--data-dir",
    envvar="FUNNEL_HOME",
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where collections live [default: $XDG_DATA_HOME/funnel or ~/.local/share/funnel]",
)
@click.option("--debug", is_flag=True, envvar="FUNNEL_DEBUG", show_envvar=True, help="show tracebacks on errors")
@engine_options
@click.version_option(package_name="funnel")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, debug: bool) -> None:
    """funnel: Matryoshka funnel search on Qdrant for RAG applications."""
    from retriever.store.paths import default_data_dir

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ctx.ensure_object(dict)
    ctx.obj["data_dir"] = data_dir or default_data_dir()
    ctx.meta["funnel.debug"] = debug


collection_option = click.option(
    "-c", "--collection", envvar="FUNNEL_COLLECTION", show_envvar=True, required=True, help="collection name"
)
model_option = click.option("--model", envvar="FUNNEL_MODEL", show_envvar=True, default=None, help=MODEL_HELP)
device_option = click.option(
    "--device", envvar="FUNNEL_DEVICE", show_envvar=True, default=None, help="cuda, mps or cpu [default: best available]"
)
ENCODER_HELP = ("what runs the model: torch, onnx, onnx-int8, openvino, openvino-int8 (the last four on the CPU, "
                "exported once and cached) [default: auto: torch on a GPU; on a CPU the encoder funnel calibrate chose, "
                "else openvino]")
encoder_option = click.option("--encoder", envvar="FUNNEL_ENCODER", show_envvar=True, default=None,
                              type=click.Choice(["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]),
                              help=ENCODER_HELP)
json_option = click.option(
    "--json", "as_json", is_flag=True, envvar="FUNNEL_JSON", show_envvar=True, help="print JSON instead of a table"
)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@collection_option
@model_option
@click.option("--dims", envvar="FUNNEL_DIMS", show_envvar=True, default=None,
              help="ascending dim ladder, e.g. 64,128,256,384 [default: 64,128,256 and the model's dim]")
@click.option("--chunk-size", envvar="FUNNEL_CHUNK_SIZE", show_envvar=True, type=int, default=None,
              help="tokens per chunk [default: the model's max sequence length minus 2]")
@click.option("--chunk-overlap", envvar="FUNNEL_CHUNK_OVERLAP", show_envvar=True, type=int, default=None,
              help="tokens shared by consecutive chunks [default: 32, at most a quarter of the chunk size]")
@click.option("--batch-size", envvar="FUNNEL_BATCH_SIZE", show_envvar=True, type=int, default=32,
              help="encoder batch size")
@click.option("--text-field", envvar="FUNNEL_TEXT_FIELD", show_envvar=True, default="text", help="field with the text")
@click.option("--id-field", envvar="FUNNEL_ID_FIELD", show_envvar=True, default=None,
              help="field with the document id [default: _id or id, else file:line]")
@click.option("--title-field", envvar="FUNNEL_TITLE_FIELD", show_envvar=True, default="title", help="field with the title")
@click.option("--metadata-field", "metadata_fields", envvar="FUNNEL_METADATA_FIELDS", show_envvar=True, multiple=True,
              help="extra field to keep in the payload's metadata (repeatable)")
@click.option("--skip-bad", is_flag=True, envvar="FUNNEL_SKIP_BAD", show_envvar=True,
              help="skip (and count) malformed records instead of stopping")
@click.option("--format", "fmt", envvar="FUNNEL_FORMAT", show_envvar=True,
              type=click.Choice(["jsonl", "csv", "tsv", "parquet", "text"]), default=None,
              help="read every PATH as this format [default: from the suffix; jsonl for - (stdin)]")
@click.option("--quantization", envvar="FUNNEL_QUANTIZATION", show_envvar=True, type=click.Choice(["none", "int8", "binary", "binary1.5", "binary2"]), default=None,
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
@device_option
@encoder_option
@json_option
@click.option("--no-progress", is_flag=True, envvar="FUNNEL_NO_PROGRESS", show_envvar=True, help="no progress bar")
@engine_options
@placement_options
@click.pass_context
def index(ctx: click.Context, paths: tuple[Path, ...], collection: str, model: str | None, dims: str | None,
          chunk_size: int | None, chunk_overlap: int | None, batch_size: int, text_field: str, id_field: str | None,
          title_field: str, metadata_fields: tuple[str, ...], skip_bad: bool, fmt: str | None,
          quantization: str | None, on_disk: bool | None, lexical: str | None, lexical_analyzer: str | None,
          device: str | None, encoder: str | None, as_json: bool, no_progress: bool) -> None:
    """Chunk and embed PATHS (BEIR dir, JSONL, CSV, TSV, Parquet, .txt/.md dirs; - for stdin) into a collection.

    Re-running with the same corpus updates in place. Indexing into an existing collection uses
    its model, dims and chunking unless others are given (then they must match). The corpus and
    the options are checked before the model loads.
    """
    from dataclasses import asdict

    from retriever.cli.display import IndexProgressBar, err, print_index_summary, print_json
    from retriever.encoding.embedder import DEFAULT_MODEL, Embedder
    from retriever.ingest.chunking import check_chunking
    from retriever.ingest.corpus import Fields
    from retriever.ingest.indexer import check_batch_size, index_corpus
    from retriever.ingest.intake import open_corpus
    from retriever.store.paths import validate_collection_name
    from retriever.store.spec import Layout

    validate_collection_name(collection)
    check_batch_size(batch_size)
    check_chunking(chunk_size, chunk_overlap)
    catalog = _catalog(ctx)
    existing = catalog.read_spec(collection) if catalog.exists(collection) else None
    if existing is not None:
        model = model or existing.model
        dims = dims or ",".join(map(str, existing.dims))
        chunk_size = chunk_size if chunk_size is not None else existing.chunk_size
        chunk_overlap = chunk_overlap if chunk_overlap is not None else existing.chunk_overlap
        quantization = quantization or existing.quantization
        on_disk = existing.on_disk if on_disk is None else on_disk
        lexical = lexical or (existing.lexical or "none")
        lexical_analyzer = lexical_analyzer or existing.lexical_analyzer
    elif lexical_analyzer is not None and lexical in (None, "none"):
        raise BadInputError("--lexical-analyzer applies to a lexical index: add --lexical bm25")
    layout = Layout(quantization=quantization or "none", on_disk=bool(on_disk),
                    hnsw_all_dims=existing is not None and existing.hnsw_dims == existing.dims and len(existing.dims) > 1,
                    hnsw_dims=existing.hnsw_dims if existing is not None else None,
                    lexical=None if lexical in (None, "none") else lexical,
                    lexical_analyzer=lexical_analyzer or "english")
    catalog.check_writable(collection, len(dims.split(",")) if dims else 4)
    fields = Fields(id=id_field, text=text_field, title=title_field, metadata=metadata_fields)
    with open_corpus(paths, fields, skip_bad, fmt, spool_dir=ctx.obj["data_dir"]) as corpus:
        embedder = Embedder(model or DEFAULT_MODEL, device=device, encoder=encoder)
        if existing is not None and existing.encoder != embedder.encoder:
            err.print(f"note: {collection!r} was encoded with {existing.encoder}; new chunks are encoded with "
                      f"{embedder.describe} (the same model: searches match across encoders)", highlight=False)
        bar = IndexProgressBar(enabled=not no_progress)
        try:
            result = index_corpus(
                catalog, collection, corpus, embedder, dims=dims, chunk_size=chunk_size,
                chunk_overlap=chunk_overlap, batch_size=batch_size, progress=bar, layout=layout,
            )
        finally:
            bar.stop()
    print_index_summary(result)
    if as_json:
        print_json(asdict(result) | {"skipped": result.skipped})


def _report_skipped_queries(found, path: Path) -> None:  # noqa: ANN001 - retriever.ingest.queries.QueryFile
    from retriever.cli.display import err

    if found.skipped_empty:
        err.print(f"skipped {found.skipped_empty:,} empty queries in {path}", highlight=False)
    if found.skipped_bad:
        err.print(f"skipped {found.skipped_bad:,} bad queries in {path} (first: {found.first_bad})", highlight=False,
                  markup=False)


@main.command()
@click.argument("query", required=False)
@collection_option
@click.option("-k", "k", envvar="FUNNEL_K", show_envvar=True, type=int, default=10, help="results per query")
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
@click.option("--queries", "queries_file", envvar="FUNNEL_QUERIES", show_envvar=True,
              type=click.Path(path_type=Path), default=None,
              help="BEIR queries.jsonl: search every query (one JSON line each with --json)")
@click.option("--skip-bad", is_flag=True, envvar="FUNNEL_SKIP_BAD", show_envvar=True,
              help="--queries: skip (and count) malformed or unusable queries instead of stopping")
@click.option("--no-text", is_flag=True, envvar="FUNNEL_NO_TEXT", show_envvar=True,
              help="leave the chunk text out of the results")
@model_option
@device_option
@encoder_option
@json_option
@engine_options
@click.pass_context
def search(ctx: click.Context, query: str | None, collection: str, k: int, plan: str | None, exact: bool,
           adaptive: bool | None, mode: str | None, fusion: str | None, queries_file: Path | None, skip_bad: bool,
           no_text: bool, model: str | None, device: str | None, encoder: str | None, as_json: bool) -> None:
    """Funnel-search QUERY (or every query of --queries) in a collection: dense, lexical (BM25) or hybrid."""
    from retriever.cli.display import print_hits, print_json
    from retriever.errors import InvalidPlanError
    from retriever.ingest.queries import read_queries
    from retriever.query.plan import validate_k
    from retriever.query.validation import validate_query
    from retriever.retriever import Retriever

    if (query is None) == (queries_file is None):
        raise BadInputError("give either a QUERY or --queries FILE.jsonl")
    if exact and plan is not None and plan.strip():
        raise InvalidPlanError("give --plan or --exact, not both: an exact search has no funnel plan")
    if adaptive and (exact or (plan is not None and plan.strip())):
        raise InvalidPlanError("give --adaptive or --plan / --exact, not both: adaptive search chooses its own depth")
    if fusion is not None and mode not in (None, "hybrid"):
        raise InvalidPlanError(f"--fusion combines the two sides of a hybrid search, not a {mode} one: "
                               "use --mode hybrid or drop --fusion")
    if adaptive and mode not in (None, "dense"):
        raise InvalidPlanError(f"adaptive search is dense only, not {mode}: drop --adaptive or use --mode dense")
    validate_k(k)
    if query is not None:
        validate_query(query)
        ids: list[str | None] = [None]
        texts = [query]
    else:
        assert queries_file is not None
        found = read_queries(queries_file, skip_bad=skip_bad)
        _report_skipped_queries(found, queries_file)
        ids, texts = list(found.ids), found.texts
    # BM25 alone needs no model: none is loaded
    with Retriever.open(collection, model=model, device=device, engine=_engine(ctx),
                        lexical_only=mode == "lexical", encoder=encoder) as retriever:
        spec = retriever.query_spec(k, plan, exact, not no_text, None, adaptive, mode, fusion)
        funnel = spec.plan
        rule = getattr(spec, "rule", None)
        fused = str(spec.fusion) if spec.mode == "hybrid" and spec.fusion is not None else None
        if spec.mode == "lexical":
            label = "lexical: BM25 alone"
        elif funnel is None:
            label = f"exact {retriever.collection.spec.top_dim}-dim search"
        elif rule is not None:
            label = f"adaptive: plan {rule.first}, widened to {funnel} when unsettled"
        else:
            label = f"plan {funnel}"
        if spec.mode == "hybrid":
            label = f"hybrid {fused}: BM25 and {label}"
        for start in range(0, len(texts), QUERY_BATCH):
            batch = texts[start : start + QUERY_BATCH]
            results = retriever.search_each(batch, [spec] * len(batch))
            for qid, text, hits in zip(ids[start:], batch, results):
                if as_json:
                    record = {"query": text, "mode": spec.mode, "fusion": fused,
                              "plan": None if spec.mode == "lexical" else "exact" if funnel is None else str(funnel),
                              "adaptive": rule is not None, "depth": hits.depth.to_dict(),
                              "hits": [h.to_dict() for h in hits]}
                    print_json(record if qid is None else {"query_id": qid} | record)
                else:
                    print_hits(text, hits, label, hits.depth)


@main.command()
@click.option("--train", "train", envvar="FUNNEL_TRAIN", show_envvar=True, required=True,
              help="pairs: JSONL/CSV/Parquet with anchor/positive[/negative], a BEIR dir with qrels/train.tsv, "
                   "or a Hugging Face dataset name")
@click.option("--output", envvar="FUNNEL_TUNE_OUTPUT", show_envvar=True, required=True,
              type=click.Path(path_type=Path), help="directory for the tuned model")
@click.option("--base-model", envvar="FUNNEL_BASE_MODEL", show_envvar=True, default=None,
              help="model to start from, e.g. a model funnel tune saved (re-tuning) [default: all-MiniLM-L6-v2]")
@click.option("--replay", envvar="FUNNEL_REPLAY", show_envvar=True, default=None,
              help="earlier pairs to mix back in while re-tuning, so the model keeps what it learned")
@click.option("--replay-ratio", envvar="FUNNEL_REPLAY_RATIO", show_envvar=True, type=float, default=None,
              help="replayed pairs per new pair (a seeded sample of --replay) [default: 1.0 with --replay]")
@click.option("--dims", envvar="FUNNEL_DIMS", show_envvar=True, default=None,
              help="Matryoshka ladder [default: 64,128,256 and the model's dim]")
@click.option("--eval", "eval_dir", envvar="FUNNEL_EVAL", show_envvar=True, default=None,
              type=click.Path(path_type=Path), help="BEIR dir to evaluate on (its test split)")
@click.option("--eval-split", envvar="FUNNEL_EVAL_SPLIT", show_envvar=True, type=float, default=0.1,
              help="without --eval: fraction of the pairs held out for evaluation")
@click.option("--epochs", envvar="FUNNEL_EPOCHS", show_envvar=True, type=int, default=1)
@click.option("--batch-size", envvar="FUNNEL_TUNE_BATCH_SIZE", show_envvar=True, type=int, default=32,
              help="pairs per batch (in-batch negatives)")
@click.option("--lr", envvar="FUNNEL_LR", show_envvar=True, type=float, default=1e-4, help="learning rate")
@click.option("--loss", envvar="FUNNEL_LOSS", show_envvar=True, type=click.Choice(["mnrl", "cached-mnrl"]),
              default="mnrl", help="inner loss of MatryoshkaLoss (cached-mnrl: large batches in little memory)")
@click.option("--mini-batch-size", envvar="FUNNEL_MINI_BATCH_SIZE", show_envvar=True, type=int, default=32,
              help="cached-mnrl: texts per forward pass (memory), not the batch")
@click.option("--hard-negatives", envvar="FUNNEL_HARD_NEGATIVES", show_envvar=True, type=int, default=0,
              help="mine N hard negatives per pair")
@click.option("--guard", envvar="FUNNEL_GUARD", show_envvar=True, default=None, type=click.Path(path_type=Path),
              help="out-of-domain BEIR dir evaluated before and after (warns if tuning hurt it)")
@click.option("--best-dim", envvar="FUNNEL_BEST_DIM", show_envvar=True, type=int, default=None,
              help="keep the checkpoint with the best NDCG@10 at this dim [default: the smallest]")
@click.option("--anchor-column", envvar="FUNNEL_ANCHOR_COLUMN", show_envvar=True, default="anchor")
@click.option("--positive-column", envvar="FUNNEL_POSITIVE_COLUMN", show_envvar=True, default="positive")
@click.option("--negative-column", envvar="FUNNEL_NEGATIVE_COLUMN", show_envvar=True, default="negative")
@click.option("--seed", envvar="FUNNEL_SEED", show_envvar=True, type=int, default=42)
@click.option("--resume", is_flag=True, envvar="FUNNEL_RESUME", show_envvar=True,
              help="continue an interrupted run from its last checkpoint")
@click.option("--overwrite", is_flag=True, envvar="FUNNEL_OVERWRITE", show_envvar=True,
              help="replace an existing output directory")
@click.option("--export", "export_text", envvar="FUNNEL_TUNE_EXPORT", show_envvar=True, default=None,
              help="also write these fast encoders of the tuned model beside it (OUTPUT/funnel-export/), e.g. "
              "openvino,onnx; all: every one installed (openvino-int8 is calibrated on the training pairs' passages)")
@device_option
@json_option
def tune(train: str, output: Path, base_model: str | None, replay: str | None, replay_ratio: float | None,
         dims: str | None, eval_dir: Path | None,
         eval_split: float, epochs: int, batch_size: int, lr: float, loss: str, mini_batch_size: int,
         hard_negatives: int, guard: Path | None, best_dim: int | None, anchor_column: str, positive_column: str,
         negative_column: str, seed: int, resume: bool, overwrite: bool, export_text: str | None,
         device: str | None, as_json: bool) -> None:
    """Fine-tune an embedding model with MatryoshkaLoss; report NDCG@10 per dim before and after."""
    from retriever.cli.display import err, out, print_json
    from retriever.encoding.embedder import DEFAULT_MODEL
    from retriever.encoding.names import parse_encoders
    from tuner.pairs import PairColumns
    from tuner.report import guard_table, rich_table
    from tuner.training import TuneConfig
    from tuner.training import tune as run_tune

    config = TuneConfig(
        train=train, output=output, base_model=base_model or DEFAULT_MODEL, dims=dims, eval_dir=eval_dir,
        eval_split=eval_split, epochs=epochs, batch_size=batch_size, lr=lr, loss=loss,
        mini_batch_size=mini_batch_size, hard_negatives=hard_negatives, guard=guard, best_dim=best_dim,
        resume=resume, overwrite=overwrite, seed=seed, device=device,
        columns=PairColumns(anchor_column, positive_column, negative_column), replay=replay, replay_ratio=replay_ratio,
    )
    exports = [e for e in parse_encoders(export_text) if e != "torch"] if export_text else []
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's own output must not mix with --json
        result = run_tune(config, log=lambda line: err.print(line, highlight=False, markup=False))
    written = []
    if exports:
        from retriever.encoding.embedder import export_beside
        from tuner.pairs import load_pairs

        calibration = None
        if "openvino-int8" in exports:
            pairs_set, _ = load_pairs(train, config.columns)
            calibration = list(pairs_set["positive"][:300])
        written = [str(p) for p in export_beside(Path(result.output), exports, calibration)]
    if as_json:
        print_json(result.to_dict() | ({"exports": written} if exports else {}))
        return
    out.print(rich_table(result))
    if (table := guard_table(result)) is not None:
        out.print(table)
    if result.guard_worse:
        err.print(f"[yellow]warning:[/] tuning made the guard set worse at dims {result.guard_worse}")
    err.print(f"trained {result.train_seconds:,.0f} s ({result.samples_per_second:,.1f} samples/s) on {result.device}; "
              f"model saved to {result.output}", highlight=False)
    for folder in written:
        err.print(f"fast encoder written: {folder}", highlight=False)


@main.group()
def pairs() -> None:
    """Make training pairs for funnel tune: from a raw corpus, from search misses, from /feedback."""


@pairs.command("generate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", envvar="FUNNEL_PAIRS_OUT", show_envvar=True, required=True, type=click.Path(path_type=Path),
              help="pairs JSONL to write (anchor, positive, doc_id, chunk); an existing one is resumed")
@click.option("--method", envvar="FUNNEL_PAIRS_METHOD", show_envvar=True, type=click.Choice(["llm", "offline"]),
              default=None, help="llm: ask an OpenAI-compatible server; offline: no server "
              "[default: llm with --llm-url, else offline]")
@click.option("--offline", "offline", envvar="FUNNEL_PAIRS_OFFLINE", show_envvar=True,
              type=click.Choice(["ict", "smollm2"]), default="smollm2",
              help="offline method: smollm2 (SmolLM2-135M-Instruct in-process; pip install 'funnel[local-llm]') or "
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
@click.option("--limit", envvar="FUNNEL_PAIRS_LIMIT", show_envvar=True, type=int, default=None,
              help="a seeded random sample of this many chunks [default: all]")
@click.option("--seed", envvar="FUNNEL_SEED", show_envvar=True, type=int, default=42)
@click.option("--model", envvar="FUNNEL_MODEL", show_envvar=True, default=None,
              help="embedding model whose tokenizer chunks the corpus, as funnel index does [default: all-MiniLM-L6-v2]")
@click.option("--chunk-size", envvar="FUNNEL_CHUNK_SIZE", show_envvar=True, type=int, default=None,
              help="tokens per chunk [default: as funnel index]")
@click.option("--chunk-overlap", envvar="FUNNEL_CHUNK_OVERLAP", show_envvar=True, type=int, default=None,
              help="tokens shared by consecutive chunks [default: as funnel index]")
@click.option("--text-field", envvar="FUNNEL_TEXT_FIELD", show_envvar=True, default="text", help="field with the text")
@click.option("--id-field", envvar="FUNNEL_ID_FIELD", show_envvar=True, default=None,
              help="field with the document id [default: _id or id, else file:line]")
@click.option("--title-field", envvar="FUNNEL_TITLE_FIELD", show_envvar=True, default="title", help="field with the title")
@click.option("--skip-bad", is_flag=True, envvar="FUNNEL_SKIP_BAD", show_envvar=True,
              help="skip (and count) malformed records instead of stopping")
@click.option("--format", "fmt", envvar="FUNNEL_FORMAT", show_envvar=True,
              type=click.Choice(["jsonl", "csv", "tsv", "parquet", "text"]), default=None,
              help="read every PATH as this format [default: from the suffix; jsonl for - (stdin)]")
@device_option
@json_option
@click.pass_context
def pairs_generate(ctx: click.Context, paths: tuple[Path, ...], out: Path, method: str | None, offline: str,
                   questions_per_chunk: int, llm_url: str | None, llm_model: str | None, llm_api_key: str | None,
                   prompt_file: Path | None, concurrency: int, rate_limit: float, timeout: float, retries: int,
                   temperature: float, limit: int | None, seed: int, model: str | None, chunk_size: int | None,
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

    method = method or ("llm" if llm_url else "offline")
    llm = LLMSettings(url=llm_url or "", model=llm_model or "", api_key=llm_api_key, temperature=temperature,
                      timeout_s=timeout, retries=retries, rate_limit=rate_limit or None)
    config = GenerateConfig(method=method, offline=offline, questions_per_chunk=questions_per_chunk, limit=limit,
                            seed=seed, concurrency=concurrency, prompt=load_prompt(prompt_file),
                            llm=llm if method == "llm" else None, device=device)
    config.check()
    resume_state(check_output(out))  # a file that cannot be resumed into fails before the model loads
    fields = Fields(id=id_field, text=text_field, title=title_field)
    embedder = Embedder(model or DEFAULT_MODEL, device="cpu")  # the tokenizer only: chunking as funnel index
    with open_chunks(paths, embedder, fields, skip_bad, fmt, chunk_size, chunk_overlap,
                     spool_dir=ctx.obj["data_dir"]) as chunks:
        try:
            report = generate_pairs(chunks, out, config, progress=_GenerateProgress())
        except KeyboardInterrupt:
            click.echo(f"Interrupted: the pairs written so far are in {out}; re-run the same command to resume.",
                       err=True)
            ctx.exit(130)
    dropped = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in sorted(report.dropped.items())) or "none"
    if report.generated == 0 and report.no_questions:
        from retriever.errors import PairsError

        raise PairsError(f"no usable question for any of the {report.no_questions:,} chunks (questions dropped: "
                         f"{dropped}); check --llm-model and --prompt-file")
    err.print(f"{config.label}: {report.pairs:,} pairs from {report.generated:,} chunks of "
              f"{chunks.report.documents:,} documents in {report.seconds:,.1f} s "
              f"({report.chunks_per_second:,.2f} chunks/s); {report.resumed:,} chunks already in {out}; "
              f"{report.no_questions:,} chunks without a usable question; questions dropped: {dropped}",
              highlight=False, markup=False)
    if as_json:
        print_json(report.to_dict())


@pairs.command("misses")
@collection_option
@click.option("--queries", "queries_file", envvar="FUNNEL_QUERIES", show_envvar=True, required=True,
              type=click.Path(path_type=Path), help="BEIR queries.jsonl (or any query file funnel search reads)")
@click.option("--qrels", envvar="FUNNEL_QRELS", show_envvar=True, required=True, type=click.Path(path_type=Path),
              help="BEIR qrels TSV with a header (query-id, corpus-id, score); score > 0 is relevant")
@click.option("--out", envvar="FUNNEL_PAIRS_OUT", show_envvar=True, required=True, type=click.Path(path_type=Path),
              help="pairs JSONL to write (replaced on success)")
@click.option("-k", "k", envvar="FUNNEL_K", show_envvar=True, type=int, default=10,
              help="a query is missed when no relevant document is in its top k")
@click.option("--skip-bad", is_flag=True, envvar="FUNNEL_SKIP_BAD", show_envvar=True,
              help="skip (and count) malformed or unusable queries instead of stopping")
@model_option
@device_option
@encoder_option
@json_option
@click.pass_context
def pairs_misses(ctx: click.Context, collection: str, queries_file: Path, qrels: Path, out: Path, k: int,
                 skip_bad: bool, model: str | None, device: str | None, encoder: str | None, as_json: bool) -> None:
    """Pairs from the judged queries whose relevant document the collection does not return in the top k."""
    from dataclasses import asdict

    from retriever.cli.display import err, print_json
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
    _report_skipped_queries(found, queries_file)
    with Retriever.open(collection, model=model, device=device, engine=_engine(ctx), encoder=encoder) as retriever:
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
@click.option("--out", envvar="FUNNEL_PAIRS_OUT", show_envvar=True, required=True, type=click.Path(path_type=Path),
              help="pairs JSONL to write (replaced on success)")
@click.option("--skip-bad", is_flag=True, envvar="FUNNEL_SKIP_BAD", show_envvar=True,
              help="skip (and count) malformed lines instead of stopping")
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
    with Retriever.open(collection, model=model, device=device, engine=_engine(ctx)) as retriever:
        made = feedback_pairs(retriever.collection, entries, report)
    write_pairs(out, made)
    err.print(f"{report.lines:,} feedback lines → {report.pairs:,} pairs in {out}; skipped: {report.missing_chunks:,} "
              f"chunks no longer in {collection!r}, {report.duplicates:,} repeats, {report.other_collection:,} for "
              f"other collections, {report.bad_lines:,} malformed", highlight=False, markup=False)
    if as_json:
        print_json(asdict(report) | {"out": str(out)})


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


@main.command()
@click.option("--data", "data", envvar="FUNNEL_BENCH_DATA", show_envvar=True, required=True,
              type=click.Path(path_type=Path), help="BEIR directory (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)")
@click.option("--model", "models", envvar="FUNNEL_BENCH_MODELS", show_envvar=True, multiple=True,
              help="model name or path, repeatable [default: all-MiniLM-L6-v2]")
@click.option("--dims", envvar="FUNNEL_DIMS", show_envvar=True, default=None,
              help="dim ladder [default: 64,128,256 and the model's dim]")
@click.option("--plans", "plans", envvar="FUNNEL_BENCH_PLANS", show_envvar=True, multiple=True,
              help="funnel plan to measure, repeatable: DIM:LIMIT,…, 'default', 'auto' (calibrated) or 'adaptive' "
              "(calibrated adaptive search) [default: default, auto and adaptive]")
@click.option("-k", "--k", "k", envvar="FUNNEL_K", show_envvar=True, type=int, default=10, help="results per query")
@click.option("--quantization", envvar="FUNNEL_BENCH_QUANTIZATION", show_envvar=True, default="none",
              help="comma-separated storage variants to measure: none, int8, binary, binary1.5, binary2")
@click.option("--split", envvar="FUNNEL_BENCH_SPLIT", show_envvar=True, default="test", help="qrels split")
@click.option("--max-queries", envvar="FUNNEL_BENCH_MAX_QUERIES", show_envvar=True, type=int, default=None,
              help="use only the first N judged queries [default: all]")
@click.option("--target", envvar="FUNNEL_BENCH_TARGET", show_envvar=True, type=float, default=0.98,
              help="recall@k against exact that 'auto' must reach")
@click.option("--out", envvar="FUNNEL_BENCH_OUT", show_envvar=True, type=click.Path(path_type=Path),
              default=Path("bench-results"), help="directory for results.json, results.md and the plots")
@click.option("--no-memory", is_flag=True, envvar="FUNNEL_BENCH_NO_MEMORY", show_envvar=True,
              help="skip the resident-memory probe (a fresh process per collection)")
@click.option("--modes", envvar="FUNNEL_BENCH_MODES", show_envvar=True, default="",
              help="comma-separated search-mode rows to add: lexical, hybrid-union, hybrid-rrf, hybrid-dbsf (the bench "
              "collection then gets a BM25 index, and an independent bm25s baseline row is added) [default: none]")
@click.option("--fusion-split", envvar="FUNNEL_BENCH_FUSION_SPLIT", show_envvar=True, default=None,
              help="also calibrate the hybrid fusion on this qrels split's judged queries (e.g. train) and add a "
              "hybrid-calibrated row")
@click.option("--encoders", "encoders_text", envvar="FUNNEL_BENCH_ENCODERS", show_envvar=True, default=None,
              help="instead: compare encoder backends of the (first) model, e.g. torch,onnx,onnx-int8,openvino,"
              "openvino-int8 or all: NDCG@10 per dim, recall vs the first one, query p50/p99, passages/s, load time, "
              "size (OUT/encoders.json, OUT/encoders.md)")
@device_option
@json_option
@click.option("--no-progress", is_flag=True, envvar="FUNNEL_NO_PROGRESS", show_envvar=True, help="no progress bars")
@engine_options
@placement_options
@click.pass_context
def bench(ctx: click.Context, data: Path, models: tuple[str, ...], dims: str | None, plans: tuple[str, ...], k: int,
          quantization: str, split: str, max_queries: int | None, target: float, out: Path, no_memory: bool,
          modes: str, fusion_split: str | None, encoders_text: str | None, device: str | None, as_json: bool,
          no_progress: bool) -> None:
    """Measure quality, latency and storage per dim, funnel plan and quantization on a BEIR split.

    Per dim alone (exact and HNSW) and per plan: NDCG/Recall/MRR@k, recall@k against the exact
    top-dim result, latency p50/p95/p99 and QPS; bytes per vector, on disk, resident memory.
    Indexes the corpus into bench collections in the data dir (a later run reuses them) and writes
    OUT/results.json, OUT/results.md, OUT/ndcg_vs_bytes.png and OUT/ndcg_vs_latency.png.
    """
    import json

    from retriever.bench.machine import machine
    from retriever.bench.report import markdown, plot, rich_tables
    from retriever.bench.runner import BenchConfig, run_bench
    from retriever.cli.display import BenchProgressBar, err, print_json
    from retriever.cli.display import out as stdout
    from retriever.encoding.embedder import DEFAULT_MODEL
    from retriever.ingest.beir import check_layout

    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file, not a directory")
    if encoders_text is not None:
        _bench_encoders(data, models[0] if models else DEFAULT_MODEL, encoders_text, split, dims, k, max_queries,
                        out, as_json)
        return
    if fusion_split and fusion_split.strip():
        check_layout(data, fusion_split.strip())
    config = BenchConfig(
        data=check_layout(data, split), models=models or (DEFAULT_MODEL,), dims=dims,
        plans=tuple(p.strip() for p in plans) or ("default", "auto", "adaptive"), k=k,
        quantizations=tuple(q.strip() for q in quantization.split(",") if q.strip()), split=split,
        max_queries=max_queries, target=target, device=device, memory=not no_memory,
        modes=tuple(m.strip() for m in modes.split(",") if m.strip()),
        fusion_split=fusion_split.strip() if fusion_split and fusion_split.strip() else None,
    )
    progress = BenchProgressBar(enabled=not no_progress)
    try:
        results = run_bench(config, _catalog(ctx), progress)
    finally:
        progress.stop()
    results["machine"] = machine("funnel")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(results))
    plots = plot(results, out)
    if as_json:
        print_json(results)
    else:
        for table in rich_tables(results, width=stdout.width):
            stdout.print(table)
    err.print(f"wrote {out / 'results.json'}, {out / 'results.md'}, " + ", ".join(str(p) for p in plots))


@main.command()
@click.argument("name")
@click.option("--queries", "queries_file", envvar="FUNNEL_QUERIES", show_envvar=True, type=click.Path(path_type=Path),
              default=None, help="queries to calibrate on (JSONL with a text field, e.g. BEIR queries.jsonl) "
              "[default: a sample of the stored chunks]")
@click.option("-k", "k", envvar="FUNNEL_K", show_envvar=True, type=int, default=10, help="results per query")
@click.option("--target", envvar="FUNNEL_CALIBRATE_TARGET", show_envvar=True, type=float, default=0.98,
              help="recall@k against exact search the plan must keep")
@click.option("--sample", envvar="FUNNEL_CALIBRATE_SAMPLE", show_envvar=True, type=click.IntRange(10, 5000),
              default=200, help="queries (or stored chunks) to calibrate on")
@click.option("--skip-bad", is_flag=True, envvar="FUNNEL_SKIP_BAD", show_envvar=True,
              help="--queries: skip (and count) malformed or unusable queries instead of stopping")
@click.option("--qrels", "qrels_file", envvar="FUNNEL_QRELS", show_envvar=True, type=click.Path(path_type=Path),
              default=None, help="relevance judgements of --queries (BEIR qrels TSV): also choose the hybrid fusion "
              "(and whether hybrid is the default mode) by NDCG on the judged queries; needs a --lexical index")
@click.option("--layouts", "layouts_text", envvar="FUNNEL_CALIBRATE_LAYOUTS", show_envvar=True, default=None,
              help="also measure other storage layouts on copies of the collection and choose the fastest that keeps "
              "the target: auto (a graph on each ladder dim, none/int8/binary) or DIM:QUANTIZATION[:disk|:ram],… "
              "(quantization none, int8, binary, binary1.5, binary2)")
@click.option("--apply", "apply_layout", is_flag=True, envvar="FUNNEL_CALIBRATE_APPLY", show_envvar=True,
              help="with --layouts: re-lay the collection in place into the chosen layout (embedded engine only)")
@click.option("--encoders", "encoders_text", envvar="FUNNEL_CALIBRATE_ENCODERS", show_envvar=True, default="all",
              help="encoders to measure on the collection's chunks and queries (speed, and fidelity to fp32 torch); the "
              "fastest faithful one becomes the default for its queries: all (every one installed), a list such as "
              "openvino,onnx-int8, or none [default: all; none on a GPU]")
@model_option
@device_option
@encoder_option
@json_option
@engine_options
@click.pass_context
def calibrate(ctx: click.Context, name: str, queries_file: Path | None, k: int, target: float, sample: int,
              skip_bad: bool, qrels_file: Path | None, layouts_text: str | None, apply_layout: bool,
              encoders_text: str, model: str | None, device: str | None, encoder: str | None,
              as_json: bool) -> None:
    """Find and save the fastest funnel plan that keeps recall@k against exact search ≥ TARGET.

    Candidate plans are checked against exact search on real queries (--queries) or on stored
    chunks used as queries; the cheapest passing plan of each stage structure is timed here and the
    fastest is saved with the collection: later searches without --plan use it (scaled to their k).
    With --layouts, other storage layouts are measured the same way on scratch copies, and --apply
    swaps the collection into the chosen one.
    """
    from retriever.calibration.adaptive import calibrate_adaptive
    from retriever.calibration.fusion import calibrate_fusion
    from retriever.calibration.layouts import apply_layout as apply_layout_to
    from retriever.calibration.layouts import calibrate_layouts
    from retriever.calibration.plans import calibrate as run_calibration
    from retriever.calibration.plans import calibrated_plan
    from retriever.cli.display import err, print_json, print_layouts
    from retriever.ingest.beir import read_qrels
    from retriever.ingest.queries import read_queries
    from retriever.query.plan import validate_k
    from retriever.retriever import Retriever

    validate_k(k)
    texts: list[str] = []
    relevant: list[set[str]] = []
    if qrels_file is not None and queries_file is None:
        raise BadInputError("--qrels judges the --queries: give both")
    catalog, layouts = _calibrate_layouts_options(ctx, name, layouts_text, apply_layout)
    if queries_file is not None:  # read before the model loads: a bad file fails at once
        found = read_queries(queries_file, skip_bad=skip_bad, limit=None if qrels_file else sample)
        _report_skipped_queries(found, queries_file)
        texts = found.texts
        if qrels_file is not None:
            judged = read_qrels(qrels_file)
            pairs = [(t, judged[q]) for q, t in zip(found.ids, texts) if judged.get(q)][:sample]
            if not pairs:
                raise BadInputError(f"{qrels_file} judges none of the queries in {queries_file} (no matching query-id "
                                    "with a positive score)")
            texts, relevant = [t for t, _ in pairs], [r for _, r in pairs]
    encoders = _calibrate_encoders_option(encoders_text, device)
    with Retriever.open(name, model=model, device=device, engine=_engine(ctx), encoder=encoder) as r:
        if relevant and not r.collection.spec.lexical:
            raise BadInputError(f"collection {name!r} has no lexical index, so no fusion to calibrate: index it with "
                                "--lexical bm25, or drop --qrels")
        if texts:
            vectors = r.embedder.encode(texts, r.collection.spec.dims)
            source = f"{len(texts)} queries from {queries_file}"
        else:
            batch = next(iter(r.collection.points(batch_size=sample)), None)
            if batch is None:
                raise BadInputError(f"collection {name!r} is empty: index something first")
            vectors = batch.vectors
            source = f"{len(batch.ids)} stored chunks used as queries"
        reference = r.collection.search(vectors, None, k, with_text=False)
        result = run_calibration(r.collection, vectors, k, target, reference=reference, timed=True)
        adaptive = calibrate_adaptive(r.collection, vectors, result.plan, reference, target, fixed_ef=result.hnsw_ef)
        record = result.record(source) | {"adaptive": adaptive.record()}
        fusion = None
        previous = (r.collection.calibration() or {}).get("hybrid")
        if previous is not None and not relevant:
            record["hybrid"] = previous  # a plan-only re-calibration keeps the fusion chosen from judged queries
        if relevant:
            plan_record = result.record(source)
            fusion = calibrate_fusion(r.collection, vectors, texts, relevant, k,
                                      lambda depth: calibrated_plan(plan_record, r.collection.spec.dims, depth))
            record["hybrid"] = fusion.record(f"{len(texts)} judged queries from {queries_file} / {qrels_file}")
        relaid = None
        if layouts:
            assert catalog is not None
            relaid = calibrate_layouts(catalog, r.collection, layouts, vectors, k, target, reference=reference,
                                       current_plan=result.plan, current_ef=result.hnsw_ef, keep_chosen=apply_layout,
                                       on_trial=None if as_json else _layout_progress)
            record["layouts"] = relaid.record()
        elif (previous_layouts := (r.collection.calibration() or {}).get("layouts")) is not None:
            record["layouts"] = previous_layouts  # a plan-only re-calibration keeps the last layout measurements
        chosen_encoder = None
        if encoders:
            from retriever.calibration.encoders import calibrate_for_collection

            chosen_encoder = calibrate_for_collection(
                r, encoders, texts, relevant, k, sample, f"{len(texts)} queries from {queries_file}",
                on_trial=None if as_json else _encoder_progress)
            if chosen_encoder is not None:
                record["encoder"] = chosen_encoder.record()
            elif not as_json:
                err.print("encoders: not measured (the stored chunks hold no text)", highlight=False)
        elif (previous_encoder := (r.collection.calibration() or {}).get("encoder")) is not None:
            record["encoder"] = previous_encoder
        try:
            r.collection.save_calibration(record)
        except BaseException:
            if relaid is not None and relaid.built is not None and catalog is not None:
                catalog.discard_scratch(*relaid.built)
            raise
    if relaid is not None and relaid.built is not None:
        assert catalog is not None
        record = apply_layout_to(catalog, name, relaid, source,
                                 {key: record[key] for key in ("hybrid", "encoder") if key in record} or None)
    if as_json:
        print_json(record | {"tried": result.tried, "adaptive_tried": adaptive.tried}
                   | ({"fusion_tried": fusion.tried} if fusion else {}))
        return
    verdict = "reaches" if result.met else "does NOT reach (no candidate did; this is the best one)"
    relaid_now = relaid is not None and relaid.applied
    layout_note = f" (layout {relaid.current.layout})" if relaid is not None else ""
    width = f" (graph ef {result.hnsw_ef})" if result.hnsw_ef else ""
    err.print(f"calibrated {name}{layout_note} on {source}: plan [bold]{result.plan}[/]{width} {verdict} recall@{k} "
              f"{result.recall:.3f} against exact (target {target})"
              + ("" if relaid_now else "; saved as the collection's default plan"))
    a = adaptive
    err.print(f"adaptive: first plan {a.rule.first} (ef {a.rule.first_ef or 'default'}), widen when "
              f"{a.rule.signal} < {a.rule.threshold:.4f} ({a.widened_share:.0%} widened); recall@{k} {a.recall:.3f}, "
              f"mean {a.adaptive.mean:.2f} ms vs fixed {a.fixed.mean:.2f} ms: "
              + ("[bold]the default[/]" if a.pays else "not the default (not faster at the target)"))
    if fusion is not None:
        nd = fusion.ndcg
        err.print(f"hybrid: best fusion {fusion.fusion} NDCG@{k} {nd['hybrid']:.4f} vs dense {nd['dense']:.4f}, "
                  f"lexical {nd['lexical']:.4f} on {fusion.queries} judged queries: default mode "
                  f"[bold]{fusion.default_mode}[/]")
    if relaid is not None:
        print_layouts(relaid, name)
    if chosen_encoder is not None:
        ce = chosen_encoder
        best = next(t for t in ce.trials if t.encoder == ce.query)
        err.print(f"encoders: queries with [bold]{ce.query}[/] ({best.precision}, {best.query_p50_ms:.2f} ms a query, "
                  f"recall@{k} vs fp32 {best.recall_vs_fp32:.3f}) from now on; fastest faithful for indexing: "
                  f"{ce.document}", highlight=False)


def _bench_encoders(data: Path, model: str, text: str, split: str, dims: str | None, k: int,
                    max_queries: int | None, out: Path, as_json: bool) -> None:
    """``funnel bench --encoders``: the encoder comparison, written to OUT/encoders.{json,md}."""
    import json

    from retriever.bench.encoders import markdown_table, run_encoder_bench
    from retriever.bench.machine import machine
    from retriever.cli.display import err, print_json
    from retriever.cli.display import out as stdout
    from retriever.encoding.names import parse_encoders
    from retriever.ingest.beir import check_layout

    encoders = parse_encoders(text)
    check_layout(data, split)

    def row_done(row: dict) -> None:
        if not as_json:
            err.print(f"{row['encoder']} ({row['precision']}): NDCG@10 {row['ndcg@10']}, {row['query_p50_ms']:.2f} ms "
                      f"a query, {row['passages_per_s']:,.0f} passages/s", highlight=False, markup=False)

    result = run_encoder_bench(data, model, encoders, split, dims, k, max_queries, on_row=row_done)
    result["machine"] = machine("funnel")
    out.mkdir(parents=True, exist_ok=True)
    (out / "encoders.json").write_text(json.dumps(result, indent=2))
    table = markdown_table(result)
    ran = result["machine"]
    commit = (ran["git"] or {}).get("commit", "")[:12] or "unknown"
    (out / "encoders.md").write_text(f"# Encoders on {data} ({split}, {result['queries']} queries, "
                                     f"{result['passages']:,} passages), model {model}\n\n`{ran['command']}` — "
                                     f"{ran['date']}, commit `{commit}`, {ran['cpu']}, {ran['cpu_count']} cores\n\n"
                                     f"{table}")
    if as_json:
        print_json(result)
    else:
        stdout.print(table, highlight=False, markup=False)


def _calibrate_encoders_option(text: str, device: str | None) -> list[str]:
    """``calibrate --encoders``: the encoders to measure (none on a GPU unless listed)."""
    from retriever.encoding.names import parse_encoders

    text = text.strip()
    if text == "none" or (text == "all" and device is not None and not device.startswith("cpu")):
        return []
    return parse_encoders(text)


def _encoder_progress(trial) -> None:  # noqa: ANN001 - retriever.calibration.encoders.EncoderTrial
    from retriever.cli.display import err

    if trial.error:
        err.print(f"encoder {trial.encoder}: not measured ({trial.error})", highlight=False, markup=False)
        return
    ndcg = f", NDCG {trial.ndcg:.4f}" if trial.ndcg is not None else ""
    err.print(f"encoder {trial.encoder} ({trial.precision}): {trial.query_p50_ms:.2f} ms a query, "
              f"{trial.passages_per_s:,.0f} passages/s, recall vs fp32 {trial.recall_vs_fp32:.3f}{ndcg}",
              highlight=False, markup=False)


def _calibrate_layouts_options(ctx: click.Context, name: str, text: str | None,
                               apply: bool) -> tuple[Catalog | None, list[LayoutChoice]]:
    """``calibrate --layouts/--apply``, checked before the model loads: the catalog and the layouts."""
    from retriever.calibration.layouts import check_apply
    from retriever.store.layout import parse_layouts

    if text is None:
        if apply:
            raise BadInputError("--apply re-lays the collection into the layout --layouts chooses: give --layouts too")
        return None, []
    catalog = _catalog(ctx)
    layouts = parse_layouts(text, catalog.read_spec(name))
    if apply:
        check_apply(catalog, name)
    return catalog, layouts


def _layout_progress(trial: LayoutTrial) -> None:
    from retriever.cli.display import err

    built = "measured in place" if trial.build_s is None else f"built in {trial.build_s:.1f} s"
    err.print(f"layout {trial.layout}{' (current)' if trial.current else ''}: plan {trial.plan}, recall "
              f"{trial.recall:.3f}, p50 {trial.p50_ms:.2f} ms ({built})", highlight=False, markup=False)


@main.command()
@collection_option
@click.option("--host", envvar="FUNNEL_HOST", show_envvar=True, default="127.0.0.1",
              help="address to listen on (0.0.0.0 exposes it to the network: set an API key)")
@click.option("--port", envvar="FUNNEL_PORT", show_envvar=True, type=click.IntRange(0, 65535), default=8000)
@click.option("--api-key", envvar="FUNNEL_API_KEY", show_envvar=True, default=None,
              help="require this key in the X-API-Key header (all endpoints but /healthz and the docs)")
@click.option("--max-batch", envvar="FUNNEL_MAX_BATCH", show_envvar=True, type=click.IntRange(1, 256), default=32,
              help="queries encoded together at most (1 = no micro-batching)")
@click.option("--max-wait-ms", envvar="FUNNEL_MAX_WAIT_MS", show_envvar=True, type=click.FloatRange(0, 100),
              default=2.0, help="under load, wait this long for more queries to join a batch")
@click.option("--feedback-file", envvar="FUNNEL_FEEDBACK_FILE", show_envvar=True, default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="JSONL file for POST /feedback [default: DATA_DIR/feedback/COLLECTION.jsonl]")
@click.option("--read-timeout", envvar="FUNNEL_READ_TIMEOUT", show_envvar=True, type=click.FloatRange(0.1, 3600),
              default=10.0, help="seconds for a request's head, then its body, to arrive in full; else the connection is closed "
              "(a late body gets 408 first)")
@click.option("--log-level", envvar="FUNNEL_LOG_LEVEL", show_envvar=True, default="info",
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@model_option
@device_option
@encoder_option
@engine_options
@click.pass_context
def serve(ctx: click.Context, collection: str, host: str, port: int, api_key: str | None, max_batch: int,
          max_wait_ms: float, feedback_file: Path | None, read_timeout: float, log_level: str, model: str | None,
          device: str | None, encoder: str | None) -> None:
    """Serve funnel search over HTTP (FastAPI on uvicorn): /search, /collections/NAME, /healthz, /feedback."""
    from retriever.cli.display import err
    from retriever.service import ServiceConfig
    from retriever.service import serve as run_server
    from retriever.store.paths import validate_collection_name

    validate_collection_name(collection)
    if api_key is not None and not api_key.strip():
        raise BadInputError("--api-key is empty: give a key or leave the option out")
    config = ServiceConfig(api_key=api_key, max_batch=max_batch, max_wait_ms=max_wait_ms, feedback_path=feedback_file,
                           read_timeout=read_timeout)
    run_server(_engine(ctx), collection, host=host, port=port, model=model, device=device, config=config, encoder=encoder,
               log_level=log_level,
               on_listening=lambda url: err.print(f"serving {collection!r} on {url} (docs: {url}/docs); "
                                                  "the model is loading, /healthz says when it is ready",
                                                  highlight=False))


@main.group(invoke_without_command=True)
@json_option
@engine_options
@click.pass_context
def collections(ctx: click.Context, as_json: bool) -> None:
    """List the collections (of the data directory, or of the Qdrant server); 'copy' copies one."""
    from retriever.cli.display import err, print_collections, print_json, spec_dict

    if ctx.invoked_subcommand is not None:
        return
    catalog = _catalog(ctx)
    specs, unreadable = [], {}
    for name in catalog.names():
        try:
            specs.append(catalog.read_spec(name))
        except FunnelError as exc:  # one broken collection must not hide the others
            unreadable[name] = str(exc)
            err.print(f"warning: {exc}", highlight=False, markup=False, soft_wrap=True)
    if as_json:
        listed = [spec_dict(s) for s in specs] + [{"name": n, "error": e} for n, e in unreadable.items()]
        print_json(sorted(listed, key=lambda item: item["name"]))
    else:
        print_collections(specs, sorted(unreadable))


def _engine_url(value: str | None) -> tuple[str | None, Path | None]:
    """A --from-url / --to-url value as (url, data dir): ``embedded`` / ``embedded:DIR`` → ("", dir)."""
    if value is None:
        return None, None
    if value == "embedded" or value.startswith("embedded:"):
        rest = value[len("embedded:"):] if ":" in value else ""
        return "", Path(rest).expanduser() if rest else None
    return value, None


@collections.command("copy")
@click.argument("source")
@click.argument("target")
@click.option("--from-url", envvar="FUNNEL_COPY_FROM", show_envvar=True, default=None,
              help="engine to copy from: http(s)://HOST:6333, path:DIR, embedded or embedded:DATA_DIR "
              "[default: the command's engine]")
@click.option("--to-url", envvar="FUNNEL_COPY_TO", show_envvar=True, default=None,
              help="engine to copy into, same forms [default: the command's engine]")
@click.option("--batch-size", envvar="FUNNEL_COPY_BATCH_SIZE", show_envvar=True, type=int, default=512,
              help="points per batch")
@click.option("--verify-sample", envvar="FUNNEL_COPY_VERIFY_SAMPLE", show_envvar=True, type=click.IntRange(0, 1000),
              default=20, help="stored points used as exact-search queries on both sides to check the copy")
@click.option("--layout", "layout_text", envvar="FUNNEL_COPY_LAYOUT", show_envvar=True, default=None,
              help="give TARGET another storage layout, DIM:QUANTIZATION[:disk|:ram] (graph dim; none, int8, binary, "
              "binary1.5 or binary2), e.g. the one funnel calibrate --layouts chose; the calibration is then not "
              "copied (calibrate TARGET) [default: the source's]")
@json_option
@engine_options
@placement_options
@click.pass_context
def copy(ctx: click.Context, source: str, target: str, from_url: str | None, to_url: str | None, batch_size: int,
         verify_sample: int, layout_text: str | None, as_json: bool) -> None:
    """Copy collection SOURCE to TARGET, between any two engines: points, spec and calibration.

    Resumable: re-run the same command after an interruption. Checked at the end: point counts and
    the exact-search top 10 of sample points agree. The placement options apply to TARGET.
    """
    from dataclasses import asdict

    from retriever.cli.display import err, print_json
    from retriever.store.copy import copy_collection
    from retriever.store.layout import parse_layout

    src_url, src_dir = _engine_url(from_url)
    dst_url, dst_dir = _engine_url(to_url)
    src = _catalog(ctx, src_url, src_dir, placement=False)
    dst = _catalog(ctx, dst_url, dst_dir)
    layout = parse_layout(layout_text, src.read_spec(source)) if layout_text is not None else None
    result = copy_collection(src, source, dst, target, batch_size=batch_size, verify_sample=verify_sample,
                             layout=layout)
    if as_json:
        print_json(asdict(result) | {"from": src.location, "to": dst.location})
        return
    err.print(f"copied {source} ({src.location}) → {target} ({dst.location}): {result.points:,} points, "
              f"{result.written:,} written, {result.unchanged:,} already there; calibration "
              f"{'copied' if result.calibration else 'none' if layout is None else f'not copied (new layout {layout}: run funnel calibrate {target})'}; checked {result.verified_queries} exact searches "
              f"in {result.seconds:.1f} s", highlight=False, markup=False)


@main.command()
@click.argument("name")
@json_option
@engine_options
@click.pass_context
def info(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show a collection: points, dims, model, default plan, bytes on disk."""
    from retriever.calibration.defaults import (
        adaptive_by_default,
        adaptive_rule_for,
        default_mode_for,
        default_plan_for,
        fusion_for,
        query_encoder_for,
    )
    from retriever.calibration.record import calibrated_fusion
    from retriever.cli.display import print_info, print_json, spec_dict
    from retriever.encoding.embedder import resolve_encoder

    with _catalog(ctx).open(name) as coll:
        details = coll.info()
        record = coll.calibration()
        plan = str(default_plan_for(coll, 10))
        rule = adaptive_rule_for(coll, 10)
        adaptive_default = adaptive_by_default(coll)
        mode = default_mode_for(coll)
        fusion = fusion_for(coll, None) if details.spec.lexical else None
        location = coll.location
        calibrated_encoder = query_encoder_for(coll, None, None)
    query_encoder = calibrated_encoder or resolve_encoder(None, None)
    encoder_how = "calibrated" if calibrated_encoder else "the default here; funnel calibrate measures the others"
    section = (record or {}).get("adaptive") if rule is not None else None
    fusion_calibrated = calibrated_fusion(record) is not None
    if as_json:
        print_json(spec_dict(details.spec) | {"points": details.points, "disk_bytes": details.disk_bytes,
                                               "default_plan_k10": plan, "plan_calibrated": record is not None,
                                               "adaptive_default": adaptive_default, "adaptive": section,
                                               "default_mode": mode,
                                               "default_fusion": None if fusion is None else str(fusion),
                                               "fusion_calibrated": fusion is not None and fusion_calibrated,
                                               "hybrid": (record or {}).get("hybrid") if details.spec.lexical else None,
                                               "query_encoder": query_encoder,
                                               "query_encoder_calibrated": calibrated_encoder is not None,
                                               "location": location, "path": location})
        return
    hybrid = None
    if fusion is not None:
        hybrid = (f"{mode} by default; hybrid fusion {fusion} "
                  + ("(calibrated)" if fusion_calibrated else "(the default; funnel calibrate --qrels chooses one)"))
    if rule is None or not isinstance(section, dict):
        adaptive = "not calibrated (run funnel calibrate)"
    else:
        adaptive = (f"{'the default' if adaptive_default else 'not the default (--adaptive to use it)'}: "
                    f"first plan {rule.first}, widen when {rule.signal} < {rule.threshold:.4f} "
                    f"({section.get('widened_share', 0):.0%} widened, mean {section.get('mean_ms_adaptive', 0):.2f} ms "
                    f"vs fixed {section.get('mean_ms_fixed', 0):.2f} ms)")
    print_info(details, plan + (" (calibrated)" if record is not None else " (rule; run funnel calibrate)"), location,
               adaptive, hybrid, f"{query_encoder} ({encoder_how})")


@main.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, envvar="FUNNEL_YES", show_envvar=True, help="do not ask for confirmation")
@engine_options
@click.pass_context
def drop(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete a collection and its data."""
    catalog = _catalog(ctx)
    if not catalog.exists(name):
        catalog.read_spec(name)  # a clear error for an unknown name before asking
    if not yes and not click.confirm(f"Delete collection {name!r} and all its points?", err=True):
        raise click.Abort()
    catalog.drop(name)
    click.echo(f"dropped {name}", err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Options shared by several commands, each declared once, and the engine the engine options choose.

Every option can also be set from an environment variable (shown in ``--help``). The engine
options (``--qdrant-url``, ``--qdrant-api-key``, ``--prefer-grpc``) and the placement options
(``--shards``, ``--replication-factor``, ``--write-consistency``) are kept in ``ctx.meta``, so they
apply whether given on the group or on the command (the command's wins); :func:`engine` and
:func:`catalog` build what the command talks to from them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from retriever.store.base import Catalog
    from retriever.store.config import EngineConfig

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]

MODEL_HELP = "sentence-transformers model name or local path [default: all-MiniLM-L6-v2, or the collection's]"
ENCODER_HELP = ("what runs the model: torch, onnx, onnx-int8, openvino, openvino-bf16, openvino-int8 (all but torch "
                "on the CPU, exported once and cached) [default: auto: torch on a GPU; on a CPU the encoder funnel "
                "calibrate chose, else openvino (fp32)]")
ENCODERS = ["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8"]
FORMATS = ["jsonl", "csv", "tsv", "parquet", "text"]

# --skip-bad: what is skipped depends on what the command reads
SKIP_BAD_RECORDS = "skip (and count) malformed records instead of stopping"
SKIP_BAD_QUERIES = "skip (and count) malformed or unusable queries instead of stopping"
SKIP_BAD_QUERIES_FILE = "--queries: " + SKIP_BAD_QUERIES
SKIP_BAD_LINES = "skip (and count) malformed lines instead of stopping"

collection_option = click.option(
    "-c", "--collection", envvar="FUNNEL_COLLECTION", show_envvar=True, required=True, help="collection name"
)


def model_option_with(help: str) -> Decorator:
    """``--model``, with the command's own help."""
    return click.option("--model", envvar="FUNNEL_MODEL", show_envvar=True, default=None, help=help)


model_option = model_option_with(MODEL_HELP)
device_option = click.option(
    "--device", envvar="FUNNEL_DEVICE", show_envvar=True, default=None, help="cuda, mps or cpu [default: best available]"
)
encoder_option = click.option("--encoder", envvar="FUNNEL_ENCODER", show_envvar=True, default=None,
                              type=click.Choice(ENCODERS), help=ENCODER_HELP)
json_option = click.option(
    "--json", "as_json", is_flag=True, envvar="FUNNEL_JSON", show_envvar=True, help="print JSON instead of a table"
)
format_option = click.option("--format", "fmt", envvar="FUNNEL_FORMAT", show_envvar=True,
                             type=click.Choice(FORMATS), default=None,
                             help="read every PATH as this format [default: from the suffix; jsonl for - (stdin)]")
seed_option = click.option("--seed", envvar="FUNNEL_SEED", show_envvar=True, type=int, default=42)


def k_option(help: str = "results per query", long: bool = False) -> Decorator:
    """``-k`` (and ``--k`` where ``long``): results per query, or what the command does with its top k."""
    names = ("-k", "--k", "k") if long else ("-k", "k")
    return click.option(*names, envvar="FUNNEL_K", show_envvar=True, type=int, default=10, help=help)


def skip_bad_option(help: str = SKIP_BAD_RECORDS) -> Decorator:
    """``--skip-bad``: skip and count what cannot be read instead of stopping (``help`` says what)."""
    return click.option("--skip-bad", is_flag=True, envvar="FUNNEL_SKIP_BAD", show_envvar=True, help=help)


def dims_option(help: str) -> Decorator:
    """``--dims``: the Matryoshka ladder."""
    return click.option("--dims", envvar="FUNNEL_DIMS", show_envvar=True, default=None, help=help)


def no_progress_option(help: str = "no progress bar") -> Decorator:
    return click.option("--no-progress", is_flag=True, envvar="FUNNEL_NO_PROGRESS", show_envvar=True, help=help)


def chunking_options(size_help: str, overlap_help: str) -> Decorator:
    """``--chunk-size`` and ``--chunk-overlap``, in tokens."""
    def apply(f: F) -> F:
        f = click.option("--chunk-overlap", envvar="FUNNEL_CHUNK_OVERLAP", show_envvar=True, type=int, default=None,
                         help=overlap_help)(f)
        return click.option("--chunk-size", envvar="FUNNEL_CHUNK_SIZE", show_envvar=True, type=int, default=None,
                            help=size_help)(f)
    return apply


def field_options(f: F) -> F:
    """``--text-field``, ``--id-field``, ``--title-field``: where a corpus record keeps what funnel needs."""
    f = click.option("--title-field", envvar="FUNNEL_TITLE_FIELD", show_envvar=True, default="title",
                     help="field with the title")(f)
    f = click.option("--id-field", envvar="FUNNEL_ID_FIELD", show_envvar=True, default=None,
                     help="field with the document id [default: _id or id, else file:line]")(f)
    return click.option("--text-field", envvar="FUNNEL_TEXT_FIELD", show_envvar=True, default="text",
                        help="field with the text")(f)


def queries_option(help: str, required: bool = False) -> Decorator:
    """``--queries``: a query file (BEIR queries.jsonl or any JSONL with a text field)."""
    return click.option("--queries", "queries_file", envvar="FUNNEL_QUERIES", show_envvar=True, required=required,
                        type=click.Path(path_type=Path), default=None, help=help)


def qrels_option(help: str, name: str = "qrels", required: bool = False) -> Decorator:
    """``--qrels``: BEIR relevance judgements (TSV with a header)."""
    return click.option("--qrels", name, envvar="FUNNEL_QRELS", show_envvar=True, required=required,
                        type=click.Path(path_type=Path), default=None, help=help)


def pairs_out_option(help: str = "pairs JSONL to write (replaced on success)") -> Decorator:
    return click.option("--out", envvar="FUNNEL_PAIRS_OUT", show_envvar=True, required=True,
                        type=click.Path(path_type=Path), help=help)


# --- engine and placement options --------------------------------------------------------------


def _store_engine_option(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Keep an engine option in ``ctx.meta`` (shared by the group and its commands): given on either,
    it applies; given on both, the command's wins."""
    def store(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is not None and value is not False:
            ctx.meta[f"funnel.{key}"] = value
        return value
    return store


def engine_options(f: F) -> F:
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


def placement_options(f: F) -> F:
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


def engine(ctx: click.Context, url: str | None = None, data_dir: Path | None = None,
           placement: bool = True) -> EngineConfig:
    """The engine the command talks to; ``url`` / ``data_dir`` override the options (``""``: embedded)."""
    from retriever.store.config import EngineConfig, Placement

    meta = ctx.meta
    spread = Placement(meta.get("funnel.shards"), meta.get("funnel.replication_factor"),
                       meta.get("funnel.write_consistency")) if placement else Placement()
    return EngineConfig(data_dir=data_dir or ctx.obj["data_dir"],
                        url=meta.get("funnel.qdrant_url") if url is None else url,
                        api_key=meta.get("funnel.qdrant_api_key"), prefer_grpc=bool(meta.get("funnel.prefer_grpc")),
                        placement=spread)


def catalog(ctx: click.Context, url: str | None = None, data_dir: Path | None = None,
            placement: bool = True) -> Catalog:
    """The command's catalog, closed when the command ends."""
    from retriever.store.factory import open_catalog

    return ctx.with_resource(open_catalog(engine(ctx, url, data_dir, placement)))

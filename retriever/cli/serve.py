"""``funnel serve``: funnel search over HTTP (see :mod:`retriever.service`)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from retriever.cli.options import (
    device_option,
    encoder_option,
    engine,
    engine_options,
    model_option,
)
from retriever.errors import BadInputError


@click.command()
@click.option("-c", "--collection", "collections", multiple=True, metavar="NAME",
              help="a collection to serve; repeat it to serve several (-c a -c b) [FUNNEL_COLLECTION: one name]")
@click.option("--all", "serve_all", is_flag=True, envvar="FUNNEL_SERVE_ALL", show_envvar=True,
              help="serve every collection of the data directory (funnel bench's scratch bench-… ones left out)")
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
              help="JSONL file for POST /feedback, shared by the served collections (each line names its own) "
              "[default: DATA_DIR/feedback/COLLECTION.jsonl, one per collection]")
@click.option("--read-timeout", envvar="FUNNEL_READ_TIMEOUT", show_envvar=True, type=click.FloatRange(0.1, 3600),
              default=10.0, help="seconds for a request's head, then its body, to arrive in full; else the connection is closed "
              "(a late body gets 408 first)")
@click.option("--max-body-kib", envvar="FUNNEL_MAX_BODY_KIB", show_envvar=True, type=click.IntRange(1, 64 * 1024),
              default=256, help="largest request body, in KiB (a PUT document's text is in its body); above: 413")
@click.option("--log-level", envvar="FUNNEL_LOG_LEVEL", show_envvar=True, default="info",
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--access-log", is_flag=True, envvar="FUNNEL_ACCESS_LOG", show_envvar=True,
              help="log one line per request on standard output (client, request line, status) [default: off]")
@click.option("--docs-assets", envvar="FUNNEL_DOCS_ASSETS", show_envvar=True, default=None,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="directory with swagger-ui-bundle.js, swagger-ui.css and redoc.standalone.js for /docs and /redoc "
              "[default: the fastapi-offline package's, when installed: pip install 'funnel-retriever[docs]']")
@model_option
@device_option
@encoder_option
@engine_options
@click.pass_context
def serve(ctx: click.Context, collections: tuple[str, ...], serve_all: bool, host: str, port: int, api_key: str | None, max_batch: int,
          max_wait_ms: float, feedback_file: Path | None, read_timeout: float, max_body_kib: int, log_level: str,
          access_log: bool, docs_assets: Path | None, model: str | None, device: str | None,
          encoder: str | None) -> None:
    """Serve funnel search over HTTP (FastAPI on uvicorn): /search, /collections (each one's /search, /documents),
    /healthz, /feedback. One collection (-c NAME), several (-c a -c b) or all of them (--all)."""
    from retriever.cli.display import err
    from retriever.service import ServiceConfig
    from retriever.service import serve as run_server

    names = _served_names(ctx, collections, serve_all)
    if api_key is not None and not api_key.strip():
        raise BadInputError("--api-key is empty: give a key or leave the option out")
    if api_key is None and os.environ.get("FUNNEL_API_KEY") is not None:
        # click reads an empty variable as unset: the server would start without a key, silently
        raise BadInputError("FUNNEL_API_KEY is set but empty: give a key or unset it (no key: a server anyone can use)")
    config = ServiceConfig(api_key=api_key, max_batch=max_batch, max_wait_ms=max_wait_ms, feedback_path=feedback_file,
                           read_timeout=read_timeout, max_body_bytes=max_body_kib * 1024, access_log=access_log,
                           docs_assets=docs_assets)
    shown = repr(names[0]) if len(names) == 1 else f"{len(names)} collections ({', '.join(names)})"
    run_server(engine(ctx), names, host=host, port=port, model=model, device=device, config=config, encoder=encoder,
               log_level=log_level,
               on_listening=lambda url: err.print(f"serving {shown} on {url} (docs: {url}/docs); "
                                                  "the model is loading, /healthz says when it is ready",
                                                  highlight=False, soft_wrap=True))


def _served_names(ctx: click.Context, collections: tuple[str, ...], serve_all: bool) -> list[str]:
    """The collections to serve: -c (repeated), FUNNEL_COLLECTION, or --all."""
    from retriever.cli.options import catalog
    from retriever.store.paths import validate_collection_name

    if serve_all and collections:
        raise BadInputError("give -c NAME (repeated for several) or --all, not both")
    if serve_all:
        names = [n for n in catalog(ctx).names() if not n.startswith("bench-")]
        if not names:
            raise BadInputError("no collections to serve: create one with funnel index PATH -c NAME")
        return names
    if not collections and (from_env := os.environ.get("FUNNEL_COLLECTION")):
        collections = (from_env,)
    if not collections:
        raise BadInputError("give the collection to serve: -c NAME (repeat -c for several, or --all)")
    return [validate_collection_name(n) for n in dict.fromkeys(collections)]

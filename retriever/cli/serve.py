"""``funnel serve``: funnel search over HTTP (see :mod:`retriever.service`)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from retriever.cli.options import (
    collection_option,
    device_option,
    encoder_option,
    engine,
    engine_options,
    model_option,
)
from retriever.errors import BadInputError


@click.command()
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
def serve(ctx: click.Context, collection: str, host: str, port: int, api_key: str | None, max_batch: int,
          max_wait_ms: float, feedback_file: Path | None, read_timeout: float, max_body_kib: int, log_level: str,
          access_log: bool, docs_assets: Path | None, model: str | None, device: str | None,
          encoder: str | None) -> None:
    """Serve funnel search over HTTP (FastAPI on uvicorn): /search, /collections/NAME (and its /documents),
    /healthz, /feedback."""
    from retriever.cli.display import err
    from retriever.service import ServiceConfig
    from retriever.service import serve as run_server
    from retriever.store.paths import validate_collection_name

    validate_collection_name(collection)
    if api_key is not None and not api_key.strip():
        raise BadInputError("--api-key is empty: give a key or leave the option out")
    if api_key is None and os.environ.get("FUNNEL_API_KEY") is not None:
        # click reads an empty variable as unset: the server would start without a key, silently
        raise BadInputError("FUNNEL_API_KEY is set but empty: give a key or unset it (no key: a server anyone can use)")
    config = ServiceConfig(api_key=api_key, max_batch=max_batch, max_wait_ms=max_wait_ms, feedback_path=feedback_file,
                           read_timeout=read_timeout, max_body_bytes=max_body_kib * 1024, access_log=access_log,
                           docs_assets=docs_assets)
    run_server(engine(ctx), collection, host=host, port=port, model=model, device=device, config=config, encoder=encoder,
               log_level=log_level,
               on_listening=lambda url: err.print(f"serving {collection!r} on {url} (docs: {url}/docs); "
                                                  "the model is loading, /healthz says when it is ready",
                                                  highlight=False))

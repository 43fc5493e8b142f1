"""Run the service on uvicorn: in the foreground (``funnel serve``) or on a thread (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn

from retriever.encoding.embedder import Embedder
from retriever.errors import FunnelError
from retriever.interrupts import answered, heard
from retriever.retriever import open_embedder
from retriever.service.announce import announce, local_url, withdraw
from retriever.service.app import create_app
from retriever.service.feedback import default_feedback_dir
from retriever.service.security import MAX_HEAD_BYTES
from retriever.service.state import EmbedderCache, ServedCollections, ServiceConfig, ServiceState
from retriever.store.base import Collection
from retriever.store.config import EngineConfig
from retriever.store.factory import open_catalog

log = logging.getLogger("funnel.service")


def _log_to_stderr(log_level: str) -> None:
    """The service's own log lines (model loaded, load failed, unexpected errors) in uvicorn's format."""
    logger = logging.getLogger("funnel")
    logger.setLevel(log_level.upper())
    if not logger.handlers:
        from uvicorn.logging import DefaultFormatter

        handler = logging.StreamHandler()
        handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def guarded_protocol(head_timeout: float | None, max_head_bytes: int = MAX_HEAD_BYTES) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools or h11), plus a size bound and a timeout on the request head.

    A head above ``max_head_bytes`` gets 431 and the connection closes before the app (and its API key
    check) sees it: httptools has no bound (800 MB of headers on one connection were held), h11 gets
    the same one. A head must arrive within ``head_timeout`` seconds (``None``: no limit) of the
    connection or the previous response, else the connection closes (uvicorn 0.54 has no such timeout:
    a client sending nothing or half a head held it forever). Bodies: see ``security.BodySizeLimit``.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class GuardedProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
        _head_timer: asyncio.TimerHandle | None = None
        _armed_cycle: Any = None
        _head_bytes = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # Bytes that did not complete a head count towards the bound (the parser keeps the
            # headers it has seen); a new cycle means the head arrived: what follows is its body.
            if self._waiting_for_head(self._armed_cycle):
                self._head_bytes += len(data)
                if self._head_bytes > max_head_bytes and not self.transport.is_closing():
                    self.transport.write(_head_too_large(max_head_bytes))
                    self.transport.close()

        def _arm(self) -> None:
            self._armed_cycle = self.cycle
            self._head_bytes = 0
            if head_timeout is None:
                return
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(head_timeout, self._head_late, self.cycle)

        def _waiting_for_head(self, cycle_when_armed: Any) -> bool:
            # A new request head completed (a new cycle), or a request is still being answered: not waiting.
            cycle = self.cycle
            return cycle is cycle_when_armed and (cycle is None or cycle.response_complete)

        def _head_late(self, cycle_when_armed: Any) -> None:
            self._head_timer = None
            if self._waiting_for_head(cycle_when_armed) and not self.transport.is_closing():
                self.transport.close()

    return GuardedProtocol


def head_timeout_protocol(seconds: float) -> type[asyncio.Protocol]:
    """:func:`guarded_protocol` with a head timeout of ``seconds`` and the default head size bound."""
    return guarded_protocol(seconds)


def _head_too_large(max_head_bytes: int) -> bytes:
    body = json.dumps({"error": {"type": "headers_too_large",
                                 "message": f"request head above {max_head_bytes:,} bytes"}}).encode()
    return (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class _Server(uvicorn.Server):
    """uvicorn's server, whose signal handler also tells :mod:`retriever.interrupts` (the event loop
    takes the signals' wakeup fd while it runs): a Ctrl-C while a model loads ends ``funnel serve`` at once."""

    def handle_exit(self, sig: int, frame: Any) -> None:  # noqa: ANN401 - the signal module's frame
        if sig == signal.SIGINT:
            answered()  # once the model is ready, Ctrl-C is the graceful stop (exit 0), not the watcher's 130
        heard(sig)
        super().handle_exit(sig, frame)


def _uvicorn_config(app, log_level: str, config: ServiceConfig) -> uvicorn.Config:  # noqa: ANN001
    # One process owns the embedded collection: never more than one worker.
    made = uvicorn.Config(app, log_level=log_level, access_log=config.access_log, workers=1, lifespan="on",
                          server_header=False, timeout_graceful_shutdown=5,
                          http=guarded_protocol(config.read_timeout, config.max_head_bytes),
                          h11_max_incomplete_event_size=config.max_head_bytes)
    if config.access_log:  # asked for: logged whatever --log-level says of the other lines
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    return made


def serve(
    engine: EngineConfig | str | os.PathLike[str],
    name: str | Sequence[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    model: str | None = None,
    device: str | None = None,
    config: ServiceConfig | None = None,
    encoder: str | None = None,
    log_level: str = "info",
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Open the collection ``name`` (or each of a list of names; fails at once if another process holds
    one), then serve until stopped.

    ``engine`` names the store (an :class:`EngineConfig`, or the embedded engine's data directory);
    ``encoder`` runs the model (see :meth:`retriever.retriever.Retriever.open`); collections of the
    same model share one. On the embedded engine the server announces itself in the data directory
    (see :mod:`~retriever.service.announce`) until it stops, so that the CLI uses it warm.

    The models load in the background (``/healthz`` says 503 meanwhile); if one cannot load, the error
    is logged once and the server keeps running: ``/healthz`` answers 503 ``failed`` with the error's
    message and that collection's searches 503 ``not_ready``, as documented, so a supervisor or load
    balancer sees why. Ctrl-C (SIGINT) stops it gracefully and returns; SIGTERM also shuts down
    gracefully, then uvicorn re-raises it (exit status 143).
    """
    if not isinstance(engine, EngineConfig):
        engine = EngineConfig(data_dir=Path(engine))
    names = [name] if isinstance(name, str) else list(dict.fromkeys(name))
    collections = _open_all(engine, names)
    config = _configured(config or ServiceConfig(), engine, host, port, len(names), log_level)
    announcement = None
    try:
        embedders = EmbedderCache(model, device, encoder, open_embedder)
        served = ServedCollections([ServiceState(c, embedders.loader(c)) for c in collections])
        app = create_app(config, served)
        uconfig = _uvicorn_config(app, log_level, config)
        uconfig.host, uconfig.port = host, port
        server = _Server(uconfig)
        sock = _bind(host, port)
        url = f"http://{host}:{sock.getsockname()[1]}"
        if not engine.url:  # the embedded engine: the data directory's collections are locked by this process
            announcement = announce(engine.data_dir, local_url(host, sock.getsockname()[1]), names,
                                    config.api_key is not None)
            app.state.announcement = announcement
        if on_listening is not None:
            on_listening(url)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown: a normal stop
            pass
    finally:
        withdraw(announcement)
        for collection in collections:
            collection.close()


def _configured(config: ServiceConfig, engine: EngineConfig, host: str, port: int, served: int,
                log_level: str) -> ServiceConfig:
    """The config with its default feedback directory; the log set up, with a warning when there is no key."""
    if config.feedback_path is None and config.feedback_dir is None:
        config = replace(config, feedback_dir=default_feedback_dir(engine.data_dir))
    _log_to_stderr(log_level)
    if config.api_key is None:
        log.warning("no API key: anyone who can reach %s:%s can search %s and write feedback "
                    "(set --api-key or FUNNEL_API_KEY)", host, port,
                    "this collection" if served == 1 else "these collections")
    return config


def _open_all(engine: EngineConfig, names: list[str]) -> list[Collection]:
    """Open every named collection, or none: the first that cannot be opened closes the others."""
    collections: list[Collection] = []
    with open_catalog(engine) as catalog:
        try:
            for one in names:
                collections.append(catalog.open(one))
        except BaseException:
            for opened in collections:
                opened.close()
            raise
    return collections


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets; without it every response pays
    # Nagle + delayed-ACK (~40 ms on Linux).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FunnelError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class BackgroundServer:
    """The service on a free 127.0.0.1 port, on a thread; a context manager. ``url`` is its address.

    It serves ``collection``, or each of a list of collections (all with ``load_embedder``'s model);
    ``state`` is the first one's :class:`ServiceState`, ``served`` all of them.
    """

    def __init__(self, collection: Collection | Sequence[Collection], load_embedder: Callable[[], Embedder],
                 config: ServiceConfig | None = None, feedback_dir: Path | None = None) -> None:
        if config is None:
            config = ServiceConfig()
        if config.feedback_path is None and config.feedback_dir is None and feedback_dir is not None:
            config = replace(config, feedback_dir=feedback_dir)
        collections = [collection] if isinstance(collection, Collection) else list(collection)
        self.served = ServedCollections([ServiceState(c, load_embedder) for c in collections])
        self.state = next(iter(self.served))
        self.app = create_app(config, self.served)
        self.server = uvicorn.Server(_uvicorn_config(self.app, "warning", config))
        self._sock = _bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]},
                                        name="funnel-test-server", daemon=True)

    def start(self, wait_ready: bool = True, timeout: float = 120.0) -> BackgroundServer:
        """Start serving (once); wait until it listens and, with ``wait_ready``, until the model is loaded."""
        if self._thread.is_alive():
            return self
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        if wait_ready:
            self.served.wait_loaded(max(0.0, deadline - time.monotonic()))
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""The CLI's warm path: a collection held by a running ``funnel serve`` is used through that server.

An embedded collection is locked by the process that opened it. When a command finds its
collection locked, it looks for the server of the same data directory that announced it holds the
collection (:func:`retriever.service.announce.find_server`) and, when one answers, sends the search
or the info request to it over HTTP (:class:`~retriever.service.client.FunnelClient`): no model is
loaded here, and the answer is the server's. Without such a server the command fails as before
("in use by another process"). A server with an API key gets ``FUNNEL_API_KEY``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from retriever.errors import BadInputError

if TYPE_CHECKING:
    from retriever.service.announce import Announced
    from retriever.service.client import FunnelClient

WAIT_READY_S = 300.0  # a server still loading its model: how long a CLI command waits for it


def served_by(ctx: click.Context, name: str) -> Announced | None:
    """The live ``funnel serve`` of the command's data directory that holds collection ``name``, or
    ``None`` (also on a Qdrant server, where collections are not locked by a process)."""
    from retriever.cli.options import engine
    from retriever.service.announce import find_server

    config = engine(ctx)
    if config.url:
        return None
    return find_server(config.data_dir, name)


def client_for(server: Announced, name: str) -> FunnelClient:
    """A client of ``server``, with ``FUNNEL_API_KEY`` when it needs a key (else one clear error)."""
    from retriever.service.client import FunnelClient

    key = os.environ.get("FUNNEL_API_KEY") or None
    if server.api_key and key is None:
        raise BadInputError(f"collection {name!r} is served by funnel serve at {server.url} (pid {server.pid}), "
                            "which needs an API key: set FUNNEL_API_KEY to it to use that server from here")
    return FunnelClient(server.url, api_key=key if server.api_key else None, timeout=120.0)


@contextmanager
def served_client(server: Announced, name: str, say: bool = True) -> Iterator[FunnelClient]:
    """A client of ``server`` (see :func:`client_for`), after one stderr line saying the server answers
    (``say``); a refused key is told as such."""
    from retriever.errors import UnauthorizedError

    client = client_for(server, name)
    if say:
        announce_use(server, name)
    try:
        with client:
            yield client
    except UnauthorizedError as exc:
        raise UnauthorizedError(f"funnel serve at {server.url}, which holds collection {name!r}, refused "
                                f"FUNNEL_API_KEY: {exc}") from None


def announce_use(server: Announced, name: str) -> None:
    """One line on stderr: this answer comes from the server, not from a cold open."""
    from retriever.cli.display import err

    err.print(f"collection {name!r} is held by funnel serve (pid {server.pid}): answered by {server.url}",
              highlight=False, markup=False, soft_wrap=True)


def wait_until_ready(client: FunnelClient, name: str) -> None:
    """Wait (saying so) while the server still loads its model."""
    from retriever.cli.display import err

    health = client.health()
    if health.status == "loading":
        err.print(f"funnel serve at {client.base_url} is still loading its model; waiting for collection {name!r}",
                  highlight=False, markup=False)
        client.wait_ready(WAIT_READY_S)

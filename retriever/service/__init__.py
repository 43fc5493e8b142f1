"""The HTTP service: FastAPI on uvicorn over one or more collections (``funnel serve``).

The names below are imported when first used, so that the CLI's warm path (which needs only
:mod:`retriever.service.announce` and :mod:`retriever.service.client`) does not import FastAPI.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retriever.service.app import create_app
    from retriever.service.runner import BackgroundServer, serve
    from retriever.service.state import ServiceConfig, ServiceState

__all__ = ["BackgroundServer", "ServiceConfig", "ServiceState", "create_app", "serve"]
_HOMES = {"create_app": "app", "BackgroundServer": "runner", "serve": "runner", "ServiceConfig": "state",
          "ServiceState": "state"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"retriever.service.{_HOMES[name]}"), name)

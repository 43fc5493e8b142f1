"""The HTTP service: FastAPI on uvicorn over one collection (``funnel serve``)."""

from .app import create_app
from .runner import BackgroundServer, serve
from .state import ServiceConfig, ServiceState

__all__ = ["BackgroundServer", "ServiceConfig", "ServiceState", "create_app", "serve"]

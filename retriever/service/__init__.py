"""The HTTP service: FastAPI on uvicorn over one collection (``funnel serve``)."""

from retriever.service.app import create_app
from retriever.service.runner import BackgroundServer, serve
from retriever.service.state import ServiceConfig, ServiceState

__all__ = ["BackgroundServer", "ServiceConfig", "ServiceState", "create_app", "serve"]

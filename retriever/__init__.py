"""funnel's retriever: embedding, corpus reading and chunking, stores, funnel search."""

from .errors import FunnelError
from .plan import FunnelPlan, Stage
from .retriever import Retriever
from .store import CollectionSpec, Hit

__all__ = ["CollectionSpec", "FunnelError", "FunnelPlan", "Hit", "Retriever", "Stage"]

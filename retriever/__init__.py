"""funnel's retriever: embedding, corpus reading and chunking, stores, funnel search.

``Retriever`` is imported lazily, so that modules which need no engine (the tuner, the corpus
reader, the errors) can be imported without loading one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retriever.errors import FunnelError
from retriever.query.plan import FunnelPlan, Stage
from retriever.query.spec import Hit
from retriever.store.spec import CollectionSpec

if TYPE_CHECKING:
    from retriever.retriever import Retriever

__all__ = ["CollectionSpec", "FunnelError", "FunnelPlan", "Hit", "Retriever", "Stage"]


def __getattr__(name: str) -> Any:
    if name == "Retriever":
        from retriever.retriever import Retriever

        return Retriever
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

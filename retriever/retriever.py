"""The Python API: open a collection with its model and funnel-search it.

>>> from retriever import Retriever
>>> with Retriever.open("fin") as r:
...     hits = r.search("What did NVIDIA invent in 1999?", k=5)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from .calibrate import calibrated_plan
from .edge_store import EdgeCatalog
from .embedder import Embedder
from .errors import BadInputError, ModelMismatchError
from .filters import PayloadFilter, parse_filter
from .paths import default_data_dir
from .plan import FunnelPlan, default_plan, parse_plan, validate_k
from .store import Collection, Hit, QuerySpec

FilterSpec = PayloadFilter | Mapping[str, Any] | None

MAX_QUERY_CHARS = 4096
MAX_BATCH = 10_000


def validate_query(query: str) -> str:
    """Return a usable query, or raise :class:`BadInputError` for empty or huge ones."""
    if not isinstance(query, str) or not query.strip():
        raise BadInputError("empty query: give some text to search for")
    if len(query) > MAX_QUERY_CHARS:
        raise BadInputError(f"query too long: {len(query)} characters (at most {MAX_QUERY_CHARS})")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInputError("query is not valid Unicode text (it has lone surrogate code points)") from None
    return query


def default_plan_for(collection: Collection, k: int) -> FunnelPlan:
    """The collection's calibrated plan scaled to ``k`` when it has one, else the default rule."""
    record = collection.calibration()
    if record is None:
        return default_plan(collection.spec.dims, k)
    return calibrated_plan(record, collection.spec.dims, k)


class Retriever:
    """A collection and the model that built it, ready to search."""

    def __init__(self, collection: Collection, embedder: Embedder) -> None:
        if embedder.fingerprint != collection.spec.model_fingerprint:
            raise ModelMismatchError(
                f"collection {collection.spec.name!r} was built with model {collection.spec.model!r} "
                f"(fingerprint {collection.spec.model_fingerprint}); {embedder.name!r} has fingerprint "
                f"{embedder.fingerprint}: search it with the model that built it"
            )
        self.collection = collection
        self.embedder = embedder

    @classmethod
    def open(
        cls,
        name: str,
        data_dir: str | os.PathLike[str] | None = None,
        model: str | None = None,
        device: str | None = None,
    ) -> Retriever:
        """Open collection ``name`` from the data directory with its recorded model (or ``model``)."""
        collection = EdgeCatalog(data_dir or default_data_dir()).open(name)
        try:
            return cls(collection, Embedder(model or collection.spec.model, device=device))
        except Exception:
            collection.close()
            raise

    @property
    def name(self) -> str:
        return self.collection.spec.name

    def plan(self, plan: str | FunnelPlan | None, k: int) -> FunnelPlan:
        """Parse a plan spec for this collection; ``None`` → the default plan for k.

        The default is the collection's saved calibration (``funnel calibrate``) scaled to k, else
        the documented rule (:func:`retriever.plan.default_plan`).
        """
        if isinstance(plan, FunnelPlan):
            return parse_plan(str(plan), self.collection.spec.dims, k)
        if plan is None or not plan.strip():
            return default_plan_for(self.collection, k)
        return parse_plan(plan, self.collection.spec.dims, k)

    def query_spec(
        self,
        k: int = 10,
        plan: str | FunnelPlan | None = None,
        exact: bool = False,
        with_text: bool = True,
        filter: FilterSpec = None,
    ) -> QuerySpec:
        """Check k, plan and filter for this collection and bundle them (raises :class:`BadInputError`)."""
        validate_k(k)
        where = filter if isinstance(filter, PayloadFilter) or filter is None else parse_filter(filter)
        return QuerySpec(None if exact else self.plan(plan, k), k, with_text, where or None)

    def search(
        self,
        query: str,
        k: int = 10,
        plan: str | FunnelPlan | None = None,
        exact: bool = False,
        with_text: bool = True,
        filter: FilterSpec = None,
    ) -> list[Hit]:
        """Funnel-search one query; ``exact=True`` runs the exact top-dim search instead.

        ``filter`` restricts the hits by payload, e.g. ``{"metadata.year": {"gte": 2020}}``
        (see :mod:`retriever.filters`).
        """
        return self.search_batch([query], k=k, plan=plan, exact=exact, with_text=with_text, filter=filter)[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        plan: str | FunnelPlan | None = None,
        exact: bool = False,
        with_text: bool = True,
        batch_size: int = 64,
        filter: FilterSpec = None,
    ) -> list[list[Hit]]:
        """Search many queries the same way: one encode call, one engine batch."""
        spec = self.query_spec(k, plan, exact, with_text, filter)
        return self.search_each(queries, [spec] * len(queries), batch_size=batch_size)

    def search_each(self, queries: Sequence[str], specs: Sequence[QuerySpec], batch_size: int = 64) -> list[list[Hit]]:
        """Search many queries, each its own way (see :meth:`query_spec`): one encode, one engine batch."""
        if not queries:
            raise BadInputError("empty query batch")
        if len(queries) > MAX_BATCH:
            raise BadInputError(f"too many queries in one batch: {len(queries)} (at most {MAX_BATCH})")
        if len(specs) != len(queries):
            raise BadInputError(f"{len(queries)} queries but {len(specs)} query specs")
        for q in queries:
            validate_query(q)
        vectors = self.embedder.encode(list(queries), self.collection.spec.dims, batch_size=batch_size)
        return self.collection.search_each(vectors, specs)

    def close(self) -> None:
        self.collection.close()

    def __enter__(self) -> Retriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

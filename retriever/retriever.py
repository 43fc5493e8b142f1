"""The Python API: open a collection with its model and funnel-search it.

>>> from retriever import Retriever
>>> with Retriever.open("fin") as r:
...     hits = r.search("What did NVIDIA invent in 1999?", k=5)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from retriever.calibration.defaults import (
    adaptive_by_default,
    adaptive_rule_for,
    default_ef_for,
    default_mode_for,
    default_plan_for,
    fusion_for,
    query_encoder_for,
)
from retriever.encoding.embedder import Embedder
from retriever.errors import BadInputError, InvalidPlanError, ModelMismatchError
from retriever.ingest.documents import (
    DocumentPage,
    UpsertResult,
    chunker_for,
    delete_documents,
    delete_matching,
    list_documents,
    make_document,
    upsert_documents,
)
from retriever.query.adaptive import AdaptiveSpec
from retriever.query.filters import PayloadFilter, parse_filter
from retriever.query.fusion import Fusion, check_mode
from retriever.query.plan import FunnelPlan, parse_plan, validate_k
from retriever.query.result import SearchResult
from retriever.query.spec import QuerySpec
from retriever.query.validation import (
    OptionNames,
    bool_option,
    check_search_options,
    int_option,
    show_value,
    validate_queries,
)
from retriever.search import search_each as adaptive_search_each
from retriever.store.base import Collection
from retriever.store.config import EngineConfig
from retriever.store.factory import open_catalog
from retriever.store.paths import default_data_dir, validate_collection_name

FilterSpec = PayloadFilter | Mapping[str, Any] | None


def _plan_given(plan: Any) -> bool:
    return plan is not None and not (isinstance(plan, str) and not plan.strip())


def open_embedder(collection: Collection, model: str | None, device: str | None, encoder: str | None) -> Embedder:
    """The embedder for ``collection``'s queries (see :func:`query_encoder_for`); ``openvino-int8``
    exported here for the first time is calibrated on a sample of the collection's own chunks."""
    from retriever.calibration.encoders import sample_texts

    chosen = query_encoder_for(collection, encoder, device)
    calibration = sample_texts(collection) if chosen == "openvino-int8" else None
    return Embedder(model or collection.spec.model, device=device, encoder=chosen, calibration_texts=calibration)


class NoModel:
    """The embedder of a :class:`Retriever` opened with ``lexical_only=True``: BM25 needs no model, so
    none is loaded; anything that would embed a query is refused."""

    def __init__(self, collection: Collection) -> None:
        self.name = collection.spec.model
        self.fingerprint = collection.spec.model_fingerprint

    def encode(self, *args: Any, **kwargs: Any) -> dict[int, np.ndarray]:
        raise InvalidPlanError("this Retriever was opened for lexical search only (lexical_only=True): "
                               "open it with its model for dense or hybrid search")


class Retriever:
    """A collection and the model that built it, ready to search."""

    def __init__(self, collection: Collection, embedder: Embedder | NoModel) -> None:
        if embedder.fingerprint != collection.spec.model_fingerprint:
            raise ModelMismatchError(
                f"collection {collection.spec.name!r} was built with model {collection.spec.model!r} "
                f"(fingerprint {collection.spec.model_fingerprint}); {embedder.name!r} has fingerprint "
                f"{embedder.fingerprint}: search it with the model that built it"
            )
        self.collection = collection
        self.embedder = embedder
        self._chunker: Any = None

    @classmethod
    def open(
        cls,
        name: str,
        data_dir: str | os.PathLike[str] | None = None,
        model: str | None = None,
        device: str | None = None,
        qdrant_url: str | None = None,
        qdrant_api_key: str | None = None,
        prefer_grpc: bool = False,
        engine: EngineConfig | None = None,
        lexical_only: bool = False,
        encoder: str | None = None,
    ) -> Retriever:
        """Open collection ``name`` with its recorded model (or ``model``).

        ``encoder`` runs the model's queries (``torch``, ``onnx``, ``onnx-int8``, ``openvino``,
        ``openvino-int8``); default: the one ``funnel calibrate`` chose for this collection, else
        torch on a GPU and the fastest full-precision export on a CPU.

        ``lexical_only=True`` loads no model: only ``mode="lexical"`` (BM25) searches run; any
        other raises :class:`InvalidPlanError`.

        From the embedded engine in ``data_dir``, or from the Qdrant server at ``qdrant_url``
        (``http(s)://…``, or ``path:DIR`` / ``:memory:`` for qdrant-client's local mode); ``engine``
        gives the whole :class:`~retriever.store.config.EngineConfig` instead. No environment variable is
        read here (the CLI reads ``QDRANT_URL``; ``EngineConfig.from_env()`` does the same).
        """
        validate_collection_name(name)
        if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
            raise BadInputError(f"data_dir is a path (str or os.PathLike), not {show_value(data_dir)}")
        for option, value in (("model", model), ("device", device), ("qdrant_url", qdrant_url),
                              ("qdrant_api_key", qdrant_api_key), ("encoder", encoder)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise BadInputError(f"{option} is a non-empty string or None, not {show_value(value)}")
        if engine is not None and not isinstance(engine, EngineConfig):
            raise BadInputError(f"engine is an EngineConfig or None, not {show_value(engine)}")
        engine = engine or EngineConfig(data_dir=Path(data_dir or default_data_dir()), url=qdrant_url,
                                        api_key=qdrant_api_key, prefer_grpc=bool_option("prefer_grpc", prefer_grpc))
        lexical_only = bool_option("lexical_only", lexical_only)
        with open_catalog(engine) as catalog:
            collection = catalog.open(name)
        try:
            if lexical_only:
                return cls(collection, NoModel(collection))
            return cls(collection, open_embedder(collection, model, device, encoder))
        except Exception:
            collection.close()
            raise

    @property
    def name(self) -> str:
        return self.collection.spec.name

    def plan(self, plan: str | FunnelPlan | None, k: int) -> FunnelPlan:
        """Parse a plan spec for this collection; ``None`` → the default plan for k.

        The default is the collection's saved calibration (``funnel calibrate``) scaled to k, else
        the documented rule (:func:`retriever.query.plan.default_plan`).
        """
        if isinstance(plan, FunnelPlan):
            return parse_plan(str(plan), self.collection.spec.dims, k)
        if plan is not None and not isinstance(plan, str):
            raise InvalidPlanError(
                f"a plan is a string like '64:400,128:200' or a FunnelPlan, not {show_value(plan)}"
            )
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
        adaptive: bool | None = None,
        mode: str | None = None,
        fusion: str | Fusion | None = None,
        names: OptionNames | None = None,
    ) -> QuerySpec:
        """Check k, plan, filter and mode for this collection and bundle them (raises :class:`BadInputError`).

        ``plan`` and ``exact=True`` together are refused (:class:`InvalidPlanError`): an exact search
        has no funnel, so the plan would be silently ignored; so is ``adaptive=True`` with either.
        ``adaptive=None`` searches adaptively when neither is given and the collection's calibration
        measured adaptive search faster (:func:`~retriever.calibration.defaults.adaptive_by_default`); the
        result is then an :class:`~retriever.query.adaptive.AdaptiveSpec`.

        ``mode`` (see :mod:`retriever.query.fusion`): ``dense``, ``lexical`` or ``hybrid``; ``None`` → the
        collection's default (:func:`~retriever.calibration.defaults.default_mode_for`), or ``hybrid`` when a ``fusion`` is given.
        ``lexical`` and ``hybrid`` need a collection indexed with ``--lexical bm25``; ``fusion``
        (``union``, ``rrf``, ``dbsf`` or a :class:`~retriever.query.fusion.Fusion`) only applies to
        ``hybrid``; the ``plan`` (or ``exact``) of a hybrid search is the dense side's. ``names``: how the
        errors call the options (the CLI's flags; default: these arguments).
        """
        self._check_open()
        k = validate_k(int_option("k", k))
        exact = bool_option("exact", exact)
        with_text = bool_option("with_text", with_text)
        if adaptive is not None:
            adaptive = bool_option("adaptive", adaptive)
        mode = self._mode(mode, plan, exact, adaptive, fusion, names)
        if mode == "lexical" and (exact or _plan_given(plan)):
            raise InvalidPlanError("a lexical search has no funnel plan: drop the plan / exact")
        where = parse_filter(filter)  # a mapping or a hand-built PayloadFilter, checked the same way
        if mode == "lexical":
            return QuerySpec(None, k, with_text, where, mode="lexical")
        if mode == "hybrid":
            chosen = fusion_for(self.collection, fusion)
            dense = None if exact else self.plan(plan, chosen.plan_depth(k))
            return QuerySpec(dense, k, with_text, where, hnsw_ef=self._ef(plan, dense), mode="hybrid", fusion=chosen)
        if adaptive is None:
            adaptive = not exact and not _plan_given(plan) and adaptive_by_default(self.collection)
        if adaptive:
            return self._adaptive_spec(k, with_text, where)
        chosen_plan = None if exact else self.plan(plan, k)
        return QuerySpec(chosen_plan, k, with_text, where, hnsw_ef=self._ef(plan, chosen_plan))

    def _mode(self, mode: str | None, plan: Any, exact: bool, adaptive: bool | None, fusion: Any,
              names: OptionNames | None) -> str:
        """The search mode asked for, else the default for these options and this collection; refused
        (:class:`InvalidPlanError`) where the model, the fusion or the collection's index cannot run it."""
        if mode is None and isinstance(self.embedder, NoModel):
            mode = "lexical"  # opened without a model: BM25 is all it can run
        if mode is None:
            mode = "hybrid" if fusion is not None else (
                "dense" if adaptive or exact or _plan_given(plan) else default_mode_for(self.collection))
        mode = check_mode(mode)
        if isinstance(self.embedder, NoModel) and mode != "lexical":
            raise InvalidPlanError(f"this Retriever was opened for lexical search only (lexical_only=True), not "
                                   f"{mode}: open it with its model")
        check_search_options(plan, exact, adaptive, mode, fusion, names)
        if mode != "dense" and not self.collection.spec.lexical:
            raise InvalidPlanError(f"collection {self.name!r} has no lexical index, so no {mode} search: index it "
                                   "with --lexical bm25 (into a new collection)")
        return mode

    def _adaptive_spec(self, k: int, with_text: bool, where: PayloadFilter | None) -> AdaptiveSpec:
        """An adaptive search with the collection's calibrated rule and its plan as the deep pass."""
        rule = adaptive_rule_for(self.collection, k)
        if rule is None:
            raise InvalidPlanError(f"collection {self.name!r} has no adaptive calibration: run "
                                   "funnel calibrate first")
        deep = self.plan(None, k)
        return AdaptiveSpec(deep, k, with_text, where, hnsw_ef=self._ef(None, deep), rule=rule)

    def _ef(self, given: Any, plan: FunnelPlan | None) -> int | None:
        """The calibrated graph width for the collection's own plan; a given plan keeps the default rule."""
        if plan is None or _plan_given(given):
            return None
        return default_ef_for(self.collection, plan)

    def search(
        self,
        query: str,
        k: int = 10,
        plan: str | FunnelPlan | None = None,
        exact: bool = False,
        with_text: bool = True,
        filter: FilterSpec = None,
        adaptive: bool | None = None,
        mode: str | None = None,
        fusion: str | Fusion | None = None,
    ) -> SearchResult:
        """Funnel-search one query; ``exact=True`` runs the exact top-dim search instead.

        ``filter`` restricts the hits by payload, e.g. ``{"metadata.year": {"gte": 2020}}``
        (see :mod:`retriever.query.filters`). ``adaptive`` (see :meth:`query_spec`): ``True`` spends
        depth only where the ranking is not settled. The result is a list of hits whose
        ``.depth`` says how deep the search went. ``mode`` and ``fusion`` (see :meth:`query_spec`):
        ``mode="hybrid"`` adds BM25 to the funnel, ``mode="lexical"`` runs BM25 alone.
        """
        return self.search_batch([query], k=k, plan=plan, exact=exact, with_text=with_text, filter=filter,
                                 adaptive=adaptive, mode=mode, fusion=fusion)[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        plan: str | FunnelPlan | None = None,
        exact: bool = False,
        with_text: bool = True,
        batch_size: int = 64,
        filter: FilterSpec = None,
        adaptive: bool | None = None,
        mode: str | None = None,
        fusion: str | Fusion | None = None,
    ) -> list[SearchResult]:
        """Search many queries the same way: one encode call, one engine batch (two when adaptive)."""
        texts = validate_queries(queries)
        spec = self.query_spec(k, plan, exact, with_text, filter, adaptive, mode, fusion)
        return self.search_each(texts, [spec] * len(texts), batch_size=batch_size)

    def search_each(self, queries: Sequence[str], specs: Sequence[QuerySpec], batch_size: int = 64) -> list[SearchResult]:
        """Search many queries, each its own way (see :meth:`query_spec`): one encode, one engine batch
        (and a second one for the adaptive queries that widen). Each result carries its ``.depth``."""
        self._check_open()
        texts = validate_queries(queries)
        batch_size = int_option("batch_size", batch_size)
        if batch_size < 1:
            raise BadInputError(f"batch_size must be at least 1, not {batch_size}")
        if isinstance(specs, (str, bytes)) or not isinstance(specs, Sequence) or len(specs) != len(texts):
            raise BadInputError(f"{len(texts)} queries need as many QuerySpecs (from query_spec())")
        if not all(isinstance(spec, QuerySpec) for spec in specs):
            raise BadInputError("specs are QuerySpec objects (from query_spec())")
        specs = [spec if spec.mode == "dense" else replace(spec, text=text) for spec, text in zip(specs, texts)]
        if all(spec.mode == "lexical" for spec in specs):  # BM25 alone: no embedding needed
            dims = self.collection.spec.dims
            vectors = {dim: np.zeros((len(texts), dim), dtype=np.float32) for dim in dims}
        else:
            vectors = self.embedder.encode(texts, self.collection.spec.dims, batch_size=batch_size)
        return adaptive_search_each(self.collection, vectors, specs)

    def _check_open(self) -> None:
        """Refuse to search a closed Retriever before any work (encoding the queries)."""
        if self.collection.closed:
            raise BadInputError(f"this Retriever of collection {self.name!r} is closed: open it again "
                                "(Retriever.open) to search")

    # --- documents -------------------------------------------------------------------------------

    def upsert(self, doc_id: str, text: str, metadata: Mapping[str, Any] | None = None,
               title: str | None = None) -> UpsertResult:
        """Add document ``doc_id``, or replace it: chunked and embedded as ``funnel index`` does (the
        collection's chunk size, overlap and ladder, this model; the BM25 index follows the text).

        A replacement is crash-safe: killed at any moment, the collection holds the old version or the
        new one, never a mix (see :meth:`~retriever.store.base.Collection.replace_document`). The same
        text, title and metadata again writes nothing (``status="unchanged"``).
        """
        return self.upsert_many([{"doc_id": doc_id, "text": text, "metadata": metadata, "title": title}])[0]

    def upsert_many(self, documents: Iterable[Mapping[str, Any]], batch_size: int = 32) -> list[UpsertResult]:
        """:meth:`upsert` for several documents (mappings with ``doc_id``, ``text`` and optional
        ``metadata`` and ``title``), encoded together; every one is checked before any is written."""
        if isinstance(self.embedder, NoModel):
            raise BadInputError("this Retriever was opened with lexical_only=True: it has no model to embed "
                                "documents with; open it with its model to upsert")
        if isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, Iterable):
            raise BadInputError(f"documents are a list of mappings, not {show_value(documents)}")
        docs = []
        for item in documents:
            if not isinstance(item, Mapping):
                raise BadInputError(f"a document is a mapping with doc_id and text, not {show_value(item)}")
            unknown = set(item) - {"doc_id", "text", "metadata", "title"}
            if unknown:
                raise BadInputError(f"unknown document field {sorted(map(str, unknown))[0]!r} (doc_id, text, "
                                    "metadata, title)")
            docs.append(make_document(item.get("doc_id"), item.get("text"), item.get("title"), item.get("metadata")))
        if self._chunker is None:
            self._chunker = chunker_for(self.collection, self.embedder)
        return upsert_documents(self.collection, self.embedder, docs, int_option("batch_size", batch_size),
                                self._chunker)

    def delete(self, doc_ids: str | Sequence[str], missing_ok: bool = False) -> dict[str, int]:
        """Delete documents by id (one id, or a list of up to 10,000), every chunk of each, in one engine
        operation; returns the chunks each had. All or nothing: an id that is not stored raises
        :class:`~retriever.errors.DocumentNotFoundError` and nothing is deleted; with ``missing_ok``, the
        stored ones are deleted and the others are absent from the answer."""
        return delete_documents(self.collection, [doc_ids] if isinstance(doc_ids, str) else doc_ids, missing_ok)

    def delete_where(self, filter: Mapping[str, Any] | PayloadFilter) -> dict[str, int]:
        """Delete every document one of whose chunks matches the payload ``filter`` (the syntax of
        :meth:`search`'s, e.g. ``{"metadata.source": "tea.md"}``), each whole, in one engine operation;
        returns the chunks each had (``{}`` when none matches). An empty filter, or one matching more
        than 10,000 documents, is refused with nothing deleted."""
        return delete_matching(self.collection, filter)

    def documents(self, limit: int = 100, offset: int = 0) -> DocumentPage:
        """The collection's documents ``offset`` to ``offset + limit`` in id order, with their chunk
        counts and titles, and how many there are in all (``.total``)."""
        return list_documents(self.collection, limit, offset)

    def close(self) -> None:
        self.collection.close()

    def __enter__(self) -> Retriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The store interface: a catalog of collections, and a collection that stores and funnel-searches.

One interface, two engines: Qdrant Edge in-process (:mod:`retriever.edge_store`) and a Qdrant
server or cluster through ``qdrant-client`` (:mod:`retriever.server_store`); open one with
:func:`retriever.catalog.open_catalog`. Callers never know which engine they hold. A collection
records the :class:`CollectionSpec` that built it.
"""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from retriever.errors import InvalidDimsError, ModelMismatchError, StoreError
from retriever.filters import PayloadFilter
from retriever.hybrid import Fusion, check_lexical
from retriever.plan import FunnelPlan

SPEC_VERSION = 1
QUANTIZATIONS = ("none", "int8", "binary", "binary1.5", "binary2")
# Oversampling of a quantized graph stage that is a plan's only stage (it is rescored with the original
# vectors): the coarser the codes, the more candidates their order needs to hold the true top ones.
# ``None``: the engine's default (no oversampling). A stage that a later one re-scores is not rescored.
# int8 2.0: what the tuned Edge HNSW + int8 peer chose on 200k real MiniLM vectors (benchmarks/results/peers-*).
QUANTIZED_OVERSAMPLING: dict[str, float | None] = {"int8": 2.0, "binary": 4.0, "binary1.5": 3.0, "binary2": 2.0}
# The graph search width of a shortlist stage is max(MIN_HNSW_EF, its limit), on every engine.
MIN_HNSW_EF = 128


class CollectionExistsError(StoreError):
    """Creating a collection that exists (perhaps made by another process a moment ago)."""


@dataclass(frozen=True)
class Layout:
    """Storage options chosen at index time (see :class:`CollectionSpec`)."""

    quantization: str = "none"
    on_disk: bool = False
    hnsw_all_dims: bool = False
    lexical: str | None = None
    hnsw_dims: tuple[int, ...] | None = None  # the graph's dims, when not the default (see CollectionSpec)
    lexical_analyzer: str = "english"


@dataclass(frozen=True)
class CollectionSpec:
    """What built a collection: model (name + content hash), dim ladder, chunking and storage layout.

    Storage layout: ``hnsw_dims`` are the dims with an HNSW graph (default: the coarsest only; the
    others are only scored for shortlisted candidates; ``()`` means no graph at all).
    ``quantization`` adds a quantized copy, held in RAM, of the vector that carries the graph (the
    first of ``hnsw_dims``; the coarsest when there is none): ``int8`` (scalar), ``binary`` (1 bit
    per component), ``binary1.5`` / ``binary2`` (Qdrant's 1.5- and 2-bit binary encodings).
    ``on_disk=True`` keeps on disk every original vector that search does not traverse (the rerank
    vectors, and the coarsest one too when it is quantized): memory-mapped, read on demand through
    the page cache, not loaded when the collection opens.

    ``encoder`` is the backend (:mod:`retriever.encoding`) that encoded the documents when the
    collection was made; any backend of the same model may add to it or search it.

    ``lexical="bm25"`` adds a BM25-scored full-text index on the chunk text (see
    :mod:`retriever.hybrid`), tokenized by ``lexical_analyzer``: ``english`` (lower-case words,
    English stop words removed, Snowball-stemmed) or ``plain`` (lower-case words).
    """

    name: str
    model: str
    model_fingerprint: str
    model_dim: int
    dims: tuple[int, ...]
    chunk_size: int
    chunk_overlap: int
    hnsw_dims: tuple[int, ...] | None = None
    quantization: str = "none"
    on_disk: bool = False
    engine: str = "edge"
    version: int = SPEC_VERSION
    lexical: str | None = None
    lexical_analyzer: str = "english"
    point_ids: str = "int"
    encoder: str = "torch"  # the encoder backend that wrote its first points (older collections: torch)

    def __post_init__(self) -> None:
        graph_dims = self.dims[:1] if self.hnsw_dims is None else self.hnsw_dims
        object.__setattr__(self, "hnsw_dims", graph_dims)  # None: the default, and specs older than layouts
        if self.quantization not in QUANTIZATIONS:
            raise InvalidDimsError(f"unknown quantization {self.quantization!r} (choose from {', '.join(QUANTIZATIONS)})")
        if not set(graph_dims) <= set(self.dims):
            raise InvalidDimsError(f"HNSW dims {list(graph_dims)} are not all in the ladder {list(self.dims)}")
        check_lexical(self.lexical, self.lexical_analyzer)
        if self.point_ids not in ("int", "uuid"):
            raise InvalidDimsError(f"unknown point id scheme {self.point_ids!r} (choose from int, uuid)")

    @property
    def top_dim(self) -> int:
        return self.dims[-1]

    @property
    def quantized_dims(self) -> tuple[int, ...]:
        """Dims whose vector has a quantized copy: the graph's dim (the first of ``hnsw_dims``, else the
        coarsest), when quantization is on."""
        return (self.hnsw_dims or self.dims)[:1] if self.quantization != "none" else ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> CollectionSpec:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CollectionSpec:
        data = dict(data)
        data["dims"] = tuple(data["dims"])
        data.setdefault("point_ids", "uuid")  # collections made before integer ids
        if data.get("hnsw_dims") is not None:
            data["hnsw_dims"] = tuple(data["hnsw_dims"])
        return cls(**data)

    def check_compatible(self, other: CollectionSpec) -> None:
        """Raise :class:`ModelMismatchError` unless ``other`` would write the same kind of points."""
        if other.model_fingerprint != self.model_fingerprint:
            raise ModelMismatchError(
                f"collection {self.name!r} was built with model {self.model!r} "
                f"(fingerprint {self.model_fingerprint}); {other.model!r} (fingerprint "
                f"{other.model_fingerprint}) is another model: use that model or a new collection"
            )
        if other.dims != self.dims:
            raise ModelMismatchError(
                f"collection {self.name!r} stores dims {list(self.dims)}, not {list(other.dims)}: "
                "use the same --dims or a new collection"
            )
        if (other.chunk_size, other.chunk_overlap) != (self.chunk_size, self.chunk_overlap):
            raise ModelMismatchError(
                f"collection {self.name!r} was chunked with size {self.chunk_size} / overlap "
                f"{self.chunk_overlap}, not {other.chunk_size} / {other.chunk_overlap}: "
                "use the same chunking or a new collection"
            )
        layout = ("hnsw_dims", "quantization", "on_disk", "lexical", "lexical_analyzer")
        if any(getattr(other, f) != getattr(self, f) for f in layout):
            mine = ", ".join(f"{f}={getattr(self, f)}" for f in layout)
            theirs = ", ".join(f"{f}={getattr(other, f)}" for f in layout)
            raise ModelMismatchError(
                f"collection {self.name!r} has storage layout {mine}, not {theirs}: "
                "use the same layout options or a new collection"
            )


def engine_id(point_id: str) -> int | str:
    """A point id as the engines take it: a decimal id (see :func:`retriever.chunking.chunk_id`) as an
    unsigned integer, a UUID as its string. Ids are strings everywhere above the stores."""
    return int(point_id) if point_id.isascii() and point_id.isdecimal() else point_id


@dataclass(frozen=True)
class Hit:
    """One search result: a chunk of a document with its score."""

    id: str
    doc_id: str
    chunk: int
    score: float
    text: str | None
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ranked(hits: list[Hit]) -> list[Hit]:
    """Hits best first, points with equal scores (e.g. the same text twice) by id: every engine
    returns tied points in the same order (the engines' own tie orders differ)."""
    return sorted(hits, key=lambda h: (-h.score, h.id))


@dataclass(frozen=True)
class QuerySpec:
    """How to search one query: funnel plan (``None`` = exact), k, payload text, payload filter, and
    the graph search width of the first stage (``None``: ``max(128, its limit)``).

    ``mode`` (see :mod:`retriever.hybrid`): ``dense`` (the funnel), ``lexical`` (BM25 over the
    chunk text; needs ``text``) or ``hybrid`` (both, combined as ``fusion`` says; needs ``text``).
    """

    plan: FunnelPlan | None
    k: int
    with_text: bool = True
    filter: PayloadFilter | None = None
    hnsw_ef: int | None = None
    mode: str = "dense"
    fusion: Fusion | None = None
    text: str | None = None

    @property
    def fusion_or_default(self) -> Fusion:
        return self.fusion or Fusion()

    def dense_list(self) -> QuerySpec:
        """The dense side of a fused (``rrf``/``dbsf``) hybrid search, as a dense search: the plan as
        given when it returns at least the fusion's dense depth (the retriever plans it for that
        depth), else the same stages widened to it; an exact search returns that depth."""
        depth = self.fusion_or_default.depths(self.k)[0]
        if self.plan is not None and self.plan.k >= depth:
            depth = self.plan.k
        return replace(self, plan=None if self.plan is None else self.plan.with_k(depth), k=depth, mode="dense")


@dataclass(frozen=True)
class PointBatch:
    """Points to upsert: ids, one (n × dim) L2-normalised matrix per ladder dim, payloads."""

    ids: Sequence[str]
    vectors: dict[int, np.ndarray]
    payloads: Sequence[dict[str, Any]]


@dataclass(frozen=True)
class CollectionInfo:
    """What ``funnel info`` shows."""

    spec: CollectionSpec
    points: int
    disk_bytes: int | None  # None: not available (a server does not say what one collection takes)


class Collection(ABC):
    """An open collection. Use as a context manager, or call :meth:`close`."""

    spec: CollectionSpec

    @abstractmethod
    def upsert(self, batch: PointBatch) -> None:
        """Insert or replace points (same id → replaced, so re-indexing is idempotent)."""

    @abstractmethod
    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored payloads of those ids that exist."""

    @abstractmethod
    def delete_chunks_from(self, first_stale: dict[str, int]) -> None:
        """Delete, per document id, its chunks whose index is >= the given one (left from a longer version)."""

    def search(
        self,
        queries: dict[int, np.ndarray],
        plan: FunnelPlan | None,
        k: int,
        with_text: bool = True,
        filter: PayloadFilter | None = None,
        hnsw_ef: int | None = None,
    ) -> list[list[Hit]]:
        """Search a batch of queries (one (n × dim) matrix per ladder dim), all the same way.

        ``plan=None`` runs an exact full-scan search at the top dim (the reference); otherwise the
        funnel runs as one nested-prefetch query per query. ``filter`` restricts the candidates;
        ``hnsw_ef`` overrides the graph search width of the first stage.
        """
        n = len(next(iter(queries.values())))
        return self.search_each(queries, [QuerySpec(plan, k, with_text, filter, hnsw_ef)] * n)

    @abstractmethod
    def search_each(self, queries: dict[int, np.ndarray], specs: Sequence[QuerySpec]) -> list[list[Hit]]:
        """Search a batch of queries, row ``i`` as ``specs[i]`` says, in one engine call."""

    @abstractmethod
    def search_at(
        self, queries: np.ndarray, dim: int, k: int, exact: bool, hnsw_ef: int | None = None, with_text: bool = False
    ) -> list[list[Hit]]:
        """Search with one dim's vector alone: a full scan (``exact``) or its HNSW graph."""

    @abstractmethod
    def points(self, batch_size: int = 1024) -> Iterator[PointBatch]:
        """Every point with its vectors and payload, in batches (to copy a collection)."""

    @abstractmethod
    def calibration(self) -> dict[str, Any] | None:
        """The saved plan calibration (see :mod:`retriever.calibrate`), or ``None``."""

    @abstractmethod
    def save_calibration(self, record: dict[str, Any]) -> None:
        """Save a plan calibration; later searches without a plan use it."""

    @abstractmethod
    def count(self) -> int:
        """Number of points."""

    @abstractmethod
    def disk_bytes(self) -> int | None:
        """Bytes the collection takes on disk; ``None`` where the engine cannot say (a server)."""

    @abstractmethod
    def vector_disk_bytes(self) -> dict[int, int]:
        """Bytes on disk per ladder dim: that named vector's storage, graph and quantized copy
        (empty where the engine cannot say)."""

    @abstractmethod
    def flush(self) -> None:
        """Make every upsert so far durable."""

    @abstractmethod
    def finish_indexing(self) -> None:
        """Flush and build indexes after a bulk load."""

    @abstractmethod
    def close(self) -> None:
        """Release the collection (and its lock)."""

    @property
    def location(self) -> str:
        """Where the collection lives, for people: a directory, or a server URL and name."""
        return ""

    def lexical_disk_bytes(self) -> int | None:
        """Bytes on disk of the lexical (BM25 text) index; ``None`` where the engine cannot say or
        the collection has none."""
        return None

    def hnsw_is_full_scan(self, dim: int) -> bool:
        """Whether a graph search at ``dim`` is really a full scan (the engine scans small segments)."""
        return False

    def info(self) -> CollectionInfo:
        return CollectionInfo(spec=self.spec, points=self.count(), disk_bytes=self.disk_bytes())

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Catalog(ABC):
    """The collections of one engine (a data directory, or a Qdrant server). A context manager:
    :meth:`close` releases the connection (a no-op for the embedded engine)."""

    @property
    def location(self) -> str:
        """Where the collections live, for people (a data directory, a server URL)."""
        return ""

    @property
    def local_dir(self) -> Path | None:
        """The local directory of an embedded engine's data (scratch files, memory probes); ``None``
        for a server, whose collections' memory lives in another process."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine connection; collections opened from it stay usable until closed."""

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def names(self) -> list[str]:
        """Names of the existing collections, sorted."""

    @abstractmethod
    def exists(self, name: str) -> bool:
        """Whether a collection of that name exists."""

    @abstractmethod
    def read_spec(self, name: str) -> CollectionSpec:
        """The spec of an existing collection, without opening (or locking) it."""

    @abstractmethod
    def create(self, spec: CollectionSpec) -> Collection:
        """Create an empty collection for ``spec`` and open it."""

    def check_writable(self, name: str | None = None, dims: int = 1) -> None:  # noqa: B027 - optional hook
        """Raise :class:`~retriever.errors.StoreError` unless collection ``name`` (or a new one with
        ``dims`` named vectors) can take new points (cheap: it runs before a model is loaded)."""

    @abstractmethod
    def open(self, name: str) -> Collection:
        """Open an existing collection."""

    @abstractmethod
    def drop(self, name: str) -> None:
        """Delete a collection and everything in it."""

    # -- scratch collections and in-place replacement (``funnel calibrate --layouts/--apply``) -----

    def scratch(self, name: str) -> tuple[Catalog, str]:
        """Where to build a temporary collection standing in for ``name`` (a layout trial, or its new
        layout before :meth:`swap_in`): a catalog and the name there. Default: this catalog, under a
        new name ``NAME.scratch-XXXXXXXX`` (listed while it exists); remove it with :meth:`discard_scratch`."""
        suffix = f".scratch-{uuid.uuid4().hex[:8]}"
        return self, f"{name[: 64 - len(suffix)]}{suffix}"

    def discard_scratch(self, scratch: Catalog, name: str) -> None:
        """Remove a scratch collection of :meth:`scratch` and all it wrote (nothing there: nothing to do)."""
        if scratch.exists(name):
            scratch.drop(name)

    def clear_stale_scratch(self, name: str) -> None:  # noqa: B027 - optional hook
        """Remove what killed runs left of ``name``'s scratch collections (call it while holding ``name``)."""

    @property
    def can_swap_in(self) -> bool:
        """Whether :meth:`swap_in` can replace a collection in place on this engine."""
        return False

    def swap_in(self, name: str, scratch: Catalog, scratch_name: str) -> None:
        """Replace collection ``name`` by the scratch collection, at once, and delete the old one."""
        from retriever.errors import InPlaceUnsupportedError

        raise InPlaceUnsupportedError(
            f"collection {name!r} cannot be replaced in place on {self.location or 'this engine'}: copy it into a "
            "new name with the new layout instead (funnel collections copy, then index or search that name)")

    def open_or_create(self, spec: CollectionSpec) -> Collection:
        """Open ``spec.name`` if it exists (refusing another model/ladder/chunking), else create it."""
        if not self.exists(spec.name):
            try:
                return self.create(spec)
            except CollectionExistsError:
                pass  # another process created it meanwhile: open it (or learn that it is in use)
        collection = self.open(spec.name)
        try:
            collection.spec.check_compatible(spec)
        except Exception:
            collection.close()
            raise
        return collection

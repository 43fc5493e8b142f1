"""The store interface: a catalog of collections, and a collection that stores and funnel-searches.

One interface, two engines: Qdrant Edge in-process (:mod:`retriever.store.edge.collection`) and a Qdrant
server or cluster through ``qdrant-client`` (:mod:`retriever.server_store`); open one with
:func:`retriever.store.factory.open_catalog`. Callers never know which engine they hold. A collection
records the :class:`CollectionSpec` that built it.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retriever.errors import StoreError
from retriever.query.filters import PayloadFilter
from retriever.query.plan import FunnelPlan
from retriever.query.spec import Hit, QuerySpec
from retriever.store.spec import (
    CollectionSpec,
)


class CollectionExistsError(StoreError):
    """Creating a collection that exists (perhaps made by another process a moment ago)."""


def engine_id(point_id: str) -> int | str:
    """A point id as the engines take it: a decimal id (see :func:`retriever.ingest.chunking.chunk_id`) as an
    unsigned integer, a UUID as its string. Ids are strings everywhere above the stores."""
    return int(point_id) if point_id.isascii() and point_id.isdecimal() else point_id


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
        """The saved calibration record as stored (a JSON object), or ``None``; read it through
        :func:`retriever.calibration.record.read_record`, which checks it. A stored value that is not
        a record (not a JSON object, nested too deeply) raises
        :class:`~retriever.errors.DamagedCalibrationError`."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (the collection can no longer be searched)."""
        return False

    @property
    def calibration_location(self) -> str:
        """Where the calibration record is kept, for people (a file, a server collection's metadata key)."""
        return f"{self.location} (calibration record)"

    @abstractmethod
    def save_calibration(self, record: dict[str, Any]) -> None:
        """Save a calibration record (the stored form, :meth:`CalibrationRecord.to_dict`), replacing the
        one saved; later searches without a plan use it."""

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

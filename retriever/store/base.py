"""The store interface: a catalog of collections, and a collection that stores and funnel-searches.

One interface, two engines: Qdrant Edge in-process (:mod:`retriever.store.edge.collection`) and a Qdrant
server or cluster through ``qdrant-client`` (:mod:`retriever.server_store`); open one with
:func:`retriever.store.factory.open_catalog`. Callers never know which engine they hold. A collection
records the :class:`CollectionSpec` that built it.
"""

from __future__ import annotations

import os
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
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

PENDING_FIELD = "pending"  # payload key of a replacement's points until it is committed: the replacement's size
PAUSE_ENV = "FUNNEL_TEST_PAUSE_UPSERT"  # test hook "STAGE:MARKER": at STAGE, touch MARKER and sleep (to be killed)
PAUSE_STAGES = ("partial", "written", "deleted", "slice")  # "slice": after an index run's first upsert


def pause_at(stage: str) -> None:
    """The crash tests' hook (see :data:`PAUSE_ENV`): a no-op unless the variable names ``stage``."""
    hook = os.environ.get(PAUSE_ENV, "")
    if hook.partition(":")[0] != stage:
        return
    marker = hook.partition(":")[2]
    if marker:
        with open(marker, "w") as fh:
            fh.write(f"{os.getpid()}\n")
    time.sleep(60)


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


def ladder_vectors(dims: Sequence[int], named: Any) -> dict[int, np.ndarray] | None:
    """A point's vectors as an engine returned them (vector name → list of floats), checked: one finite
    vector of the right length per ladder dim, else ``None`` (an engine's answer is not trusted)."""
    from retriever.query.ladder import vector_name

    if not isinstance(named, Mapping):
        return None
    out: dict[int, np.ndarray] = {}
    for dim in dims:
        try:
            vector = np.asarray(named.get(vector_name(dim)), dtype=np.float32)
        except (TypeError, ValueError):
            return None
        if vector.shape != (dim,) or not np.isfinite(vector).all():
            return None
        out[dim] = vector
    return out


@dataclass(frozen=True)
class PendingPoint:
    """A point of a replacement that was not committed (see :meth:`Collection.replace_document`)."""

    id: str
    doc_id: str
    chunks: int  # how many points the whole replacement has

    @classmethod
    def of(cls, point_id: Any, payload: Mapping[str, Any] | None) -> PendingPoint:
        """The pending point an engine returned: its id and its payload's ``doc_id`` and pending mark."""
        payload = payload or {}
        return cls(str(point_id), str(payload.get("doc_id")), int(payload[PENDING_FIELD]))


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
    def vectors(self, ids: Sequence[str]) -> dict[str, dict[int, np.ndarray]]:
        """The stored ladder vectors (dim → vector) of those ids that exist and whose every vector is
        whole (see :func:`ladder_vectors`); the others are absent."""

    # --- documents: the points that share a payload ``doc_id`` ----------------------------------

    @abstractmethod
    def document_counts(self, doc_ids: Sequence[str] | None = None,
                        where: PayloadFilter | None = None) -> dict[str, int]:
        """Points per document id, of ``doc_ids`` (those stored; the others are absent) or of every document;
        with ``where``, only the points that match it are counted (a document none of whose points match
        is absent)."""

    @abstractmethod
    def delete_documents(self, doc_ids: Sequence[str], keep: Sequence[str] = ()) -> None:
        """Delete every point of these documents but the points ``keep`` (ids), in one engine operation."""

    @abstractmethod
    def delete_points(self, ids: Sequence[str]) -> None:
        """Delete these points (ids that do not exist are ignored)."""

    @abstractmethod
    def pending_points(self, doc_ids: Sequence[str] | None = None) -> list[PendingPoint]:
        """The points still marked :data:`PENDING_FIELD` (of ``doc_ids``, or all)."""

    @abstractmethod
    def clear_pending(self, ids: Sequence[str]) -> None:
        """Remove the :data:`PENDING_FIELD` mark from these points, in one engine operation."""

    def mark_replacing(self, active: bool) -> None:  # noqa: B027 - optional hook
        """Record that a replacement (or an index run) is under way (``active``) or done, where the engine
        can keep such a note cheaply (Edge: a file beside the shard), so that the next open recovers a
        crashed one."""

    def recover_interrupted(self) -> int:
        """:meth:`recover_pending` for every document, unless the engine knows that nothing was
        interrupted (Edge recovers when it opens a collection whose note says so); before an index run."""
        return self.recover_pending()

    def replace_document(self, doc_id: str, batch: PointBatch) -> None:
        """Replace every point of ``doc_id`` by ``batch``, whose ids no stored point of it has; a crash
        (kill -9) at any moment leaves, once recovered, the old version or the new one, never a mix.

        1. the new points are written with :data:`PENDING_FIELD` = their number;
        2. every other point of the document is deleted (one operation);
        3. the mark is cleared (one operation).

        :meth:`recover_pending` finishes a replacement whose new points are all stored (2 and 3 again)
        and deletes one whose new points are not; it runs when the embedded engine opens a collection
        after a crash, and before any replacement of the same document. Call it for ``doc_id`` before
        choosing the new ids (they must not be those of a pending replacement).
        """
        n = len(batch.ids)
        marked = PointBatch(batch.ids, batch.vectors, [dict(p, **{PENDING_FIELD: n}) for p in batch.payloads])
        self.mark_replacing(True)
        if n > 1 and os.environ.get(PAUSE_ENV, "").startswith("partial:"):
            self.upsert(PointBatch(marked.ids[:1], {d: v[:1] for d, v in marked.vectors.items()}, marked.payloads[:1]))
            pause_at("partial")
        self.upsert(marked)
        pause_at("written")
        self.delete_documents([doc_id], keep=batch.ids)
        pause_at("deleted")
        self.clear_pending(batch.ids)
        self.mark_replacing(False)

    def recover_pending(self, doc_ids: Sequence[str] | None = None) -> int:
        """Resolve the replacements a crash interrupted (of ``doc_ids``, or all): a complete one is
        committed, an incomplete one deleted. Returns how many documents it resolved."""
        by_doc: dict[str, list[PendingPoint]] = {}
        for point in self.pending_points(doc_ids):
            by_doc.setdefault(point.doc_id, []).append(point)
        for doc, points in by_doc.items():
            ids = [p.id for p in points]
            if all(p.chunks == len(points) for p in points):
                self.delete_documents([doc], keep=ids)
                self.clear_pending(ids)
            else:
                self.delete_points(ids)
        if doc_ids is None:
            self.mark_replacing(False)
        return len(by_doc)

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

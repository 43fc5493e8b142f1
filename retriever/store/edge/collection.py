"""Qdrant Edge (``qdrant-edge-py``): the embedded engine, one shard directory per collection.

Layout: ``<data dir>/collections/<name>/collection.json`` (the spec) and ``…/<name>/shard/`` (the
Edge shard, with its write-ahead log). A collection is created in a hidden temporary directory and
renamed into place, so a crash never leaves a half-made collection under its name. The shard holds
a single-writer lock: a second process that opens it gets :class:`CollectionLockedError`.
Search requests are built by :mod:`retriever.store.edge.requests`; the data directory of collections is
:class:`retriever.store.edge.catalog.EdgeCatalog`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from qdrant_edge import (
    BinaryQuantizationConfig,
    BinaryQuantizationEncoding,
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeVectorParams,
    FacetRequest,
    FieldCondition,
    Filter,
    HasIdCondition,
    HnswIndexConfig,
    IsEmptyCondition,
    MatchAny,
    Memory,
    PayloadSchemaType,
    Point,
    Query,
    QueryBatchRequest,
    QueryRequest,
    ScalarQuantizationConfig,
    ScalarType,
    ScrollRequest,
    SnowballLanguage,
    SnowballParams,
    TextIndexParams,
    TokenizerType,
    UpdateOperation,
)
from qdrant_edge import Language as StopwordLanguage

from retriever.errors import CollectionLockedError, DamagedCalibrationError, FunnelError, StoreError
from retriever.query.dbsf import Expanded
from retriever.query.filters import PayloadFilter
from retriever.query.fusion import TEXT_FIELD
from retriever.query.ladder import vector_name
from retriever.query.spec import Hit, QuerySpec, ranked
from retriever.store.base import (
    PENDING_FIELD,
    Collection,
    PendingPoint,
    PointBatch,
    engine_id,
    ladder_vectors,
)
from retriever.store.edge.disk import dir_bytes, require_free_space, sparse_bytes, storage_error
from retriever.store.edge.locks import Holder
from retriever.store.edge.requests import EdgeRequests, edge_filter, to_hit
from retriever.store.limits import (
    MAX_CALIBRATION_BYTES,
    MAX_CALIBRATION_DEPTH,
    POINT_OVERHEAD_BYTES,
    WRITE_AMPLIFICATION,
    json_kind,
    json_text_depth,
)
from retriever.store.spec import CollectionSpec

SPEC_FILE = "collection.json"
CALIBRATION_FILE = "calibration.json"
SHARD_DIR = "shard"
REPLACING_FILE = "replacing"  # present while a replacement or an index run is under way (see Collection.mark_replacing)
SCRATCH_PREFIX = ".scratch~"  # hidden scratch catalogs: collections/.scratch~NAME~XXXXXXXX/
HNSW_M = 16
HNSW_EF_CONSTRUCT = 100
FULL_SCAN_THRESHOLD_KB = 10_000
# Segments with fewer vector KB than this get no HNSW graph (searched by full scan); None = the
# engine's default (10 MB). Tests lower it, with FULL_SCAN_THRESHOLD_KB, so that a small collection
# is really searched through its graph.
INDEXING_THRESHOLD_KB: int | None = None
INT8_QUANTILE = 0.99
BINARY_ENCODINGS = {"binary": BinaryQuantizationEncoding.OneBit, "binary1.5": BinaryQuantizationEncoding.OneAndHalfBits,
                    "binary2": BinaryQuantizationEncoding.TwoBits}
INDEXED_FIELDS = {"doc_id": PayloadSchemaType.Keyword, "chunk": PayloadSchemaType.Integer}


def _quantization(spec: CollectionSpec) -> ScalarQuantizationConfig | BinaryQuantizationConfig:
    """The quantized copy (held in RAM) of the graph's vector: int8 scalar or a binary encoding."""
    if spec.quantization == "int8":
        return ScalarQuantizationConfig(ScalarType.Int8, quantile=INT8_QUANTILE, memory=Memory.Pinned)
    return BinaryQuantizationConfig(encoding=BINARY_ENCODINGS[spec.quantization], memory=Memory.Pinned)


def edge_config(spec: CollectionSpec) -> EdgeConfig:
    """One cosine named vector per dim, laid out as the spec says (see :class:`CollectionSpec`)."""
    vectors = {}
    for dim in spec.dims:
        graph = dim in (spec.hnsw_dims or ())
        quantized = dim in spec.quantized_dims
        vectors[vector_name(dim)] = EdgeVectorParams(
            size=dim,
            distance=Distance.Cosine,
            memory=Memory.Cold if spec.on_disk and (quantized or not graph) else None,
            quantization_config=_quantization(spec) if quantized else None,
            hnsw_config=HnswIndexConfig(
                m=HNSW_M if graph else 0,
                ef_construct=HNSW_EF_CONSTRUCT,
                full_scan_threshold=FULL_SCAN_THRESHOLD_KB,
            ),
        )
    optimizers = None if INDEXING_THRESHOLD_KB is None else EdgeOptimizersConfig(indexing_threshold=INDEXING_THRESHOLD_KB)
    return EdgeConfig(vectors=vectors, optimizers=optimizers)


def text_index(spec: CollectionSpec) -> TextIndexParams:
    """The BM25-scored text index of a collection with ``lexical="bm25"`` (see :class:`CollectionSpec`)."""
    if spec.lexical_analyzer == "english":
        return TextIndexParams(tokenizer=TokenizerType.Word, lowercase=True, scoring=True,
                               stopwords=StopwordLanguage.English,
                               stemmer=SnowballParams(SnowballLanguage.English))
    return TextIndexParams(tokenizer=TokenizerType.Word, lowercase=True, scoring=True)


def engine_error(exc: Exception, name: str) -> FunnelError:
    """The domain error for an engine failure on collection ``name``: in use elsewhere, a full,
    read-only or forbidden disk (:class:`~retriever.errors.StorageUnavailableError`), else a :class:`StoreError`."""
    text = str(exc)
    storage = storage_error(exc, f"collection {name!r}")
    if storage is not None:
        return storage
    if "WouldBlock" in text:
        return CollectionLockedError(
            f"collection {name!r} is in use by another process (an index, search or serve run); "
            "wait for it to finish or stop it"
        )
    return StoreError(f"collection {name!r}: engine error: {text.splitlines()[0] if text else type(exc).__name__}")


def _any_doc(doc_ids: Sequence[str]) -> FieldCondition:
    return FieldCondition("doc_id", match=MatchAny(list(dict.fromkeys(doc_ids))))


def release_freed_memory() -> None:
    """Give the C heap's freed pages back to the OS (glibc only; a no-op elsewhere).

    Loading a shard replays its write-ahead log; glibc keeps the freed replay buffers (~0.3 MB per
    stored dim, e.g. 255 MB for a 768-dim vector) as resident memory unless trimmed.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


_OPEN_HERE: set[Path] = set()  # the collection directories this process holds open


def open_here(path: Path) -> bool:
    """Whether this process holds the collection at ``path`` open (the engine's lock refuses a second
    open in the same process just as in another: the message tells them apart)."""
    return path.resolve() in _OPEN_HERE


class EdgeCollection(Collection):
    """An open Edge shard with the collection's spec."""

    def __init__(self, path: Path, spec: CollectionSpec, shard: EdgeShard, holder: Holder | None = None) -> None:
        self._holder = holder  # this process's hold on the collection (see locks.hold), released at close
        self._held = path.resolve()
        _OPEN_HERE.add(self._held)
        self.path = path
        self.spec = spec
        self.requests = EdgeRequests(spec)
        self._shard: EdgeShard | None = shard
        # (file stamp, record or why the file is not one)
        self._calibration: tuple[tuple[int, int, int], dict[str, Any] | DamagedCalibrationError] | None = None

    @property
    def shard(self) -> EdgeShard:
        if self._shard is None:
            raise StoreError(f"collection {self.spec.name!r} is closed")
        return self._shard

    def _require_space(self, points: int, payload_bytes: int, what: str) -> None:
        per_point = sum(self.spec.dims) * 4 + POINT_OVERHEAD_BYTES
        needed = (points * per_point + payload_bytes) * WRITE_AMPLIFICATION + sparse_bytes(self.path)
        require_free_space(self.path, needed, f"{what} in collection {self.spec.name!r}")

    def upsert(self, batch: PointBatch) -> None:
        payload_bytes = sum(len(json.dumps(p, ensure_ascii=False)) for p in batch.payloads)
        self._require_space(len(batch.ids), payload_bytes, f"{len(batch.ids):,} points")
        names = {dim: vector_name(dim) for dim in self.spec.dims}
        # float64 rows: their elements are Python floats, which the binding reads fastest (float32
        # elements cost a conversion each; measured 0.39 s vs 0.27 s per 5,000 points of 1,216 dims)
        rows = {dim: np.asarray(batch.vectors[dim], dtype=np.float64) for dim in self.spec.dims}
        try:
            points = [
                Point(engine_id(point_id), {names[dim]: rows[dim][i] for dim in self.spec.dims}, payload)
                for i, (point_id, payload) in enumerate(zip(batch.ids, batch.payloads))
            ]
            self.shard.update(UpdateOperation.upsert_points(points))
        except Exception as exc:  # noqa: BLE001 - engine errors become StoreError
            raise engine_error(exc, self.spec.name) from exc

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        try:
            records = self.shard.retrieve([engine_id(i) for i in ids], with_payload=True, with_vector=False)
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, self.spec.name) from exc
        return {str(r.id): r.payload or {} for r in records}

    def vectors(self, ids: Sequence[str]) -> dict[str, dict[int, np.ndarray]]:
        if not ids:
            return {}
        try:
            records = self.shard.retrieve([engine_id(i) for i in ids], with_payload=False, with_vector=True)
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, self.spec.name) from exc
        found = {str(r.id): ladder_vectors(self.spec.dims, r.vector) for r in records}
        return {i: v for i, v in found.items() if v is not None}

    def _update(self, operation: UpdateOperation) -> None:
        try:
            self.shard.update(operation)
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, self.spec.name) from exc

    def document_counts(self, doc_ids: Sequence[str] | None = None,
                        where: PayloadFilter | None = None) -> dict[str, int]:
        if doc_ids is not None and not doc_ids:
            return {}
        must: list[Any] = [_any_doc(doc_ids)] if doc_ids is not None else []
        matching = edge_filter(where)
        must += list(matching.must or []) if matching is not None else []
        limit = len(set(doc_ids)) if doc_ids is not None else self.count()
        try:
            found = self.shard.facet(FacetRequest("doc_id", limit=max(1, limit), exact=True,
                                                  filter=Filter(must=must) if must else None))
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, self.spec.name) from exc
        return {str(hit.value): int(hit.count) for hit in found.hits if hit.count > 0}  # deleted values stay, at 0

    def delete_documents(self, doc_ids: Sequence[str], keep: Sequence[str] = ()) -> None:
        if not doc_ids:
            return
        spared: list[Any] | None = [HasIdCondition({engine_id(i) for i in keep})] if keep else None
        self._update(UpdateOperation.delete_points_by_filter(Filter(must=[_any_doc(doc_ids)], must_not=spared)))

    def delete_points(self, ids: Sequence[str]) -> None:
        if ids:
            self._update(UpdateOperation.delete_points([engine_id(i) for i in ids]))

    def pending_points(self, doc_ids: Sequence[str] | None = None) -> list[PendingPoint]:
        if doc_ids is not None and not doc_ids:
            return []
        where = Filter(must=[_any_doc(doc_ids)] if doc_ids is not None else None,
                       must_not=[IsEmptyCondition(PENDING_FIELD)])
        found: list[PendingPoint] = []
        offset = None
        while True:
            try:
                records, offset = self.shard.scroll(ScrollRequest(offset=offset, limit=1024, filter=where,
                                                                  with_payload=["doc_id", PENDING_FIELD]))
            except Exception as exc:  # noqa: BLE001
                raise engine_error(exc, self.spec.name) from exc
            found += [PendingPoint.of(r.id, r.payload) for r in records]
            if offset is None:
                return found

    def clear_pending(self, ids: Sequence[str]) -> None:
        if ids:
            self._update(UpdateOperation.delete_payload([engine_id(i) for i in ids], [PENDING_FIELD]))

    def mark_replacing(self, active: bool) -> None:
        """A file beside the shard while a replacement runs: the next open recovers (a crash) only then."""
        marker = self.path / REPLACING_FILE
        try:
            if active:
                marker.touch()
            else:
                self.shard.flush()  # the committed replacement is on disk before its note goes
                marker.unlink(missing_ok=True)
        except OSError as exc:
            subject = f"collection {self.spec.name!r}: cannot write {marker}"
            raise storage_error(exc, subject) or StoreError(f"{subject} ({exc.strerror or exc})") from None

    @property
    def replacing(self) -> bool:
        """Whether a replacement was under way when the collection was last closed (a crash)."""
        return (self.path / REPLACING_FILE).exists()

    def recover_interrupted(self) -> int:
        return self.recover_pending() if self.replacing else 0

    def _run(self, requests: list[QueryRequest], with_text: Sequence[bool]) -> list[list[Hit]]:
        try:
            if len(requests) == 1:
                results = [self.shard.query(requests[0])]
            else:
                results = self.shard.query_batch(QueryBatchRequest(requests))
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, self.spec.name) from exc
        return [ranked([to_hit(p, text) for p in points]) for points, text in zip(results, with_text)]

    def search_each(self, queries: dict[int, np.ndarray], specs: Sequence[QuerySpec]) -> list[list[Hit]]:
        try:  # the binding checks values (e.g. filter integers) when a request is built
            expanded = Expanded(specs)  # a DBSF search: two engine queries, fused here
            requests = [self.requests.request(queries, row, spec) for row, spec in expanded.parts]
        except (TypeError, ValueError, OverflowError) as exc:
            raise engine_error(exc, self.spec.name) from exc
        return expanded.combine(self._run(requests, [spec.with_text for _, spec in expanded.parts]))

    def search_at(
        self, queries: np.ndarray, dim: int, k: int, exact: bool, hnsw_ef: int | None = None, with_text: bool = False
    ) -> list[list[Hit]]:
        using = vector_name(dim)
        params = self.requests.stage_params(dim, k, exact, hnsw_ef, refined=False)
        payload = self.requests.payload(with_text)
        requests = [
            QueryRequest(limit=k, query=Query.Nearest(row.tolist(), using=using), params=params, with_payload=payload)
            for row in queries
        ]
        return self._run(requests, [with_text] * len(requests))

    def points(self, batch_size: int = 1024) -> Iterator[PointBatch]:
        names = {dim: vector_name(dim) for dim in self.spec.dims}
        offset = None
        while True:
            try:
                records, offset = self.shard.scroll(
                    ScrollRequest(offset=offset, limit=batch_size, with_payload=True, with_vector=True)
                )
            except Exception as exc:  # noqa: BLE001
                raise engine_error(exc, self.spec.name) from exc
            if records:
                vectors = {
                    dim: np.asarray([cast(dict, r.vector)[name] for r in records], dtype=np.float32)
                    for dim, name in names.items()
                }
                yield PointBatch([str(r.id) for r in records], vectors, [r.payload or {} for r in records])
            if offset is None:
                return

    def calibration(self) -> dict[str, Any] | None:
        """The saved calibration, read again only when the file changed (a search consults it several
        times per query: re-reading it cost ~50 µs a query). Treat the result as read-only. A file that
        is not a calibration record (over :data:`MAX_CALIBRATION_BYTES`, not JSON, nested deeper than
        :data:`MAX_CALIBRATION_DEPTH`, not an object) raises :class:`DamagedCalibrationError`."""
        path = self.calibration_location
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            subject = f"collection {self.spec.name!r}: unreadable {path}"
            raise storage_error(exc, subject) or StoreError(f"{subject} ({exc})") from None
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if self._calibration is None or self._calibration[0] != stamp:
            self._calibration = (stamp, self._read_calibration(Path(path), stat.st_size))
        record = self._calibration[1]
        if isinstance(record, DamagedCalibrationError):
            raise record
        return record

    def _read_calibration(self, path: Path, size: int) -> dict[str, Any] | DamagedCalibrationError:
        """The record in ``path``, or the error that says why it is not one (remembered like a record)."""
        def damaged(what: str) -> DamagedCalibrationError:
            return DamagedCalibrationError(self.spec.name, str(path), what)

        if size > MAX_CALIBRATION_BYTES:
            return damaged(f"{size:,} bytes (a record is at most {MAX_CALIBRATION_BYTES:,})")
        try:
            with path.open("rb") as fh:
                text = fh.read(MAX_CALIBRATION_BYTES + 1).decode("utf-8")
        except UnicodeDecodeError as exc:
            return damaged(f"not UTF-8 (byte {exc.start:,})")
        except OSError as exc:
            subject = f"collection {self.spec.name!r}: unreadable {path}"
            raise storage_error(exc, subject) or StoreError(f"{subject} ({exc})") from None
        if json_text_depth(text, MAX_CALIBRATION_DEPTH) > MAX_CALIBRATION_DEPTH:
            return damaged(f"JSON nested more than {MAX_CALIBRATION_DEPTH} levels deep")
        try:
            record = json.loads(text)
        except (ValueError, RecursionError) as exc:
            return damaged(f"not JSON ({exc})")
        if not isinstance(record, dict):
            return damaged(f"a JSON {json_kind(record)}, not an object")
        return record

    @property
    def calibration_location(self) -> str:
        return str(self.path / CALIBRATION_FILE)

    def save_calibration(self, record: dict[str, Any]) -> None:
        tmp = self.path / f".{CALIBRATION_FILE}.tmp"
        try:
            tmp.write_text(json.dumps(record, indent=2))
            os.replace(tmp, self.path / CALIBRATION_FILE)  # atomic: readers see the old or the new file
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            subject = f"collection {self.spec.name!r}: cannot save {self.path / CALIBRATION_FILE}"
            raise storage_error(exc, subject) or StoreError(f"{subject} ({exc.strerror or exc})") from None

    def count(self) -> int:
        return int(self.shard.info().points_count)

    def disk_bytes(self) -> int:
        return dir_bytes(self.path)

    @property
    def location(self) -> str:
        return str(self.path)

    def hnsw_is_full_scan(self, dim: int) -> bool:
        """Below the full-scan threshold (vector KB) the engine scans instead of walking the graph."""
        return 4 * dim * self.count() < FULL_SCAN_THRESHOLD_KB * 1024

    def lexical_disk_bytes(self) -> int | None:
        """Sums the payload-index directories of the text field (``*-text-*``) over the segments."""
        if not self.spec.lexical:
            return None
        return sum(dir_bytes(part) for part in (self.path / SHARD_DIR / "segments").glob(f"*/payload_index/*-{TEXT_FIELD}-*"))

    def vector_disk_bytes(self) -> dict[int, int]:
        """Sums, over the shard's segments, the directories named ``*-dim<N>`` (storage and index)."""
        totals = {dim: 0 for dim in self.spec.dims}
        by_suffix = {f"-{vector_name(dim)}": dim for dim in self.spec.dims}
        for segment in (self.path / SHARD_DIR / "segments").glob("*"):
            for part in segment.glob("*"):
                for suffix, dim in by_suffix.items():
                    if part.name.endswith(suffix):
                        totals[dim] += dir_bytes(part) if part.is_dir() else part.stat().st_blocks * 512
        return totals

    def flush(self) -> None:
        self.shard.flush()

    def finish_indexing(self) -> None:
        # optimizing may rewrite the appended segment: room for one more copy of the vectors
        needed = self.count() * sum(self.spec.dims) * 4 + sparse_bytes(self.path)
        require_free_space(self.path, needed, f"optimizing collection {self.spec.name!r}")
        try:
            self.shard.flush()
            self.shard.optimize()
            self.shard.flush()
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, self.spec.name) from exc

    def close(self) -> None:
        if self._shard is not None:
            self._shard.close()
            self._shard = None
            _OPEN_HERE.discard(self._held)
            if self._holder is not None:
                self._holder.release()
                self._holder = None

    @property
    def closed(self) -> bool:
        return self._shard is None

"""A Qdrant server or cluster through ``qdrant-client``: the same store as :mod:`retriever.store.edge.collection`.

Schema: one cosine named vector per ladder dim (``dim64``, …), an HNSW graph only on the spec's
``hnsw_dims`` (``m=0`` on the others), optional int8 scalar or binary (1, 1.5 or 2 bits) quantization of the graph's vector (in RAM),
optional on-disk vectors, and keyword / integer payload indexes on ``doc_id`` / ``chunk``.

**Spec and calibration live with the collection, on the server**, in the collection's metadata
(Qdrant ≥ 1.16; qdrant-client's local mode keeps it too): ``funnel_spec`` (the
:class:`CollectionSpec`) and ``funnel_calibration`` (the saved plan calibration). Metadata rather
than a reserved point: a point would count in ``count``, come back from scrolls and searches, and
need a filter on every query. A collection without ``funnel_spec``, or without funnel's named
vectors, is another tool's: funnel refuses to use or drop it.

What the interface says in embedded terms means here: ``disk_bytes`` / ``vector_disk_bytes`` are
not available (``None`` / empty: the server does not report one collection's disk use); no lock
(any number of clients share a collection; local mode ``path:DIR`` holds one on its directory);
``flush`` is a no-op (writes are sent with ``wait=True``, so acknowledged means in the write-ahead
log); ``finish_indexing`` waits (bounded) for the server's optimizer to finish building indexes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from retriever.errors import CollectionNotFoundError, DamagedCalibrationError, StoreError
from retriever.query.dbsf import Expanded
from retriever.query.filters import PayloadFilter
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
from retriever.store.limits import MAX_CALIBRATION_DEPTH, json_kind, nesting_depth
from retriever.store.server.connection import NotFound
from retriever.store.server.requests import TEXT_FIELDS, ServerRequests, server_filter, to_hit
from retriever.store.spec import CollectionSpec

SPEC_KEY = "funnel_spec"
CALIBRATION_KEY = "funnel_calibration"
HNSW_M = 16
HNSW_EF_CONSTRUCT = 100
FULL_SCAN_THRESHOLD_KB = 10_000
INT8_QUANTILE = 0.99
UPSERT_CHUNK = 256  # points per request
UPSERT_THREADS = 4  # requests in flight (a server); local mode takes one at a time
OPTIMIZE_WAIT_S = 600.0
INDEXED_FIELDS = {"doc_id": "keyword", "chunk": "integer"}

if TYPE_CHECKING:
    from retriever.store.server.catalog import ServerCatalog


def vectors_config(spec: CollectionSpec) -> dict[str, Any]:
    """One cosine named vector per dim, laid out as the spec says (as :func:`edge_store.edge_config`)."""
    from qdrant_client import models

    vectors = {}
    for dim in spec.dims:
        graph = dim in (spec.hnsw_dims or ())
        quantized = dim in spec.quantized_dims
        vectors[vector_name(dim)] = models.VectorParams(
            size=dim,
            distance=models.Distance.COSINE,
            on_disk=True if spec.on_disk and (quantized or not graph) else None,
            hnsw_config=models.HnswConfigDiff(m=HNSW_M if graph else 0, ef_construct=HNSW_EF_CONSTRUCT,
                                              full_scan_threshold=FULL_SCAN_THRESHOLD_KB),
            quantization_config=quantization_config(spec) if quantized else None,
        )
    return vectors


def quantization_config(spec: CollectionSpec) -> Any:
    """The quantized copy (in RAM) of the graph's vector: int8 scalar or a binary encoding (as
    :func:`edge_store.edge_config`)."""
    from qdrant_client import models

    if spec.quantization == "int8":
        return models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, quantile=INT8_QUANTILE, always_ram=True))
    encoding = {"binary": models.BinaryQuantizationEncoding.ONE_BIT,
                "binary1.5": models.BinaryQuantizationEncoding.ONE_AND_HALF_BITS,
                "binary2": models.BinaryQuantizationEncoding.TWO_BITS}[spec.quantization]
    return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True, encoding=encoding))


def text_index(spec: CollectionSpec) -> Any:
    """The BM25-scored text index of a ``lexical="bm25"`` collection (as :func:`edge_store.text_index`)."""
    from qdrant_client import models

    english = spec.lexical_analyzer == "english"
    return models.TextIndexParams(
        type=models.TextIndexType.TEXT, tokenizer=models.TokenizerType.WORD, lowercase=True, scoring=True,
        stopwords=models.Language.ENGLISH if english else None,
        stemmer=models.SnowballParams(type=models.Snowball.SNOWBALL, language=models.SnowballLanguage.ENGLISH)
        if english else None,
    )


def _any_doc(doc_ids: Sequence[str]) -> Any:
    from qdrant_client import models

    return models.FieldCondition(key="doc_id", match=models.MatchAny(any=list(dict.fromkeys(doc_ids))))


class ServerCollection(Collection):
    """A collection on a Qdrant server; holds the connection open until :meth:`close`."""

    def __init__(self, catalog: ServerCatalog, spec: CollectionSpec, metadata: dict[str, Any], shards: int) -> None:
        self._catalog: ServerCatalog | None = catalog
        self.spec = spec
        self.shards = shards
        self.requests = ServerRequests(spec, shards)
        self._calibration = metadata.get(CALIBRATION_KEY)
        self._calibration_checked: Any = None  # the record last checked, and what is wrong with it
        self._calibration_damage: str | None = None
        catalog._users += 1

    @property
    def closed(self) -> bool:
        return self._catalog is None

    @property
    def catalog(self) -> ServerCatalog:
        if self._catalog is None:
            raise StoreError(f"collection {self.spec.name!r} is closed")
        return self._catalog

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        name = self.spec.name
        try:
            return self.catalog.conn.call(f"{what} in collection {name!r}", fn, name, *args, **kwargs)
        except NotFound:
            raise CollectionNotFoundError(f"collection {name!r} no longer exists in {self.catalog.location}") from None

    @property
    def location(self) -> str:
        return f"{self.catalog.location} collection {self.spec.name}"

    # --- writing ---------------------------------------------------------------------------------

    def upsert(self, batch: PointBatch) -> None:
        from qdrant_client import models

        def send(start: int) -> None:
            end = start + UPSERT_CHUNK
            vectors = {vector_name(d): np.asarray(batch.vectors[d][start:end], dtype=np.float32).tolist()
                       for d in self.spec.dims}
            points = models.Batch(ids=[engine_id(i) for i in batch.ids[start:end]], vectors=vectors, payloads=list(batch.payloads[start:end]))
            self._call(f"upsert {len(points.ids):,} points", self.catalog.conn.client.upsert, points=points, wait=True)

        starts = range(0, len(batch.ids), UPSERT_CHUNK)
        if self.catalog.conn.local or len(starts) == 1:
            for start in starts:
                send(start)
            return
        with ThreadPoolExecutor(UPSERT_THREADS) as pool:
            list(pool.map(send, starts))  # list(): re-raise the first failure

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        records = self._call("read payloads", self.catalog.conn.client.retrieve, ids=[engine_id(i) for i in ids], with_payload=True,
                             with_vectors=False)
        return {str(r.id): r.payload or {} for r in records}

    def vectors(self, ids: Sequence[str]) -> dict[str, dict[int, np.ndarray]]:
        if not ids:
            return {}
        records = self._call("read vectors", self.catalog.conn.client.retrieve, ids=[engine_id(i) for i in ids],
                             with_payload=False, with_vectors=True)
        found = {str(r.id): ladder_vectors(self.spec.dims, r.vector) for r in records}
        return {i: v for i, v in found.items() if v is not None}

    # --- documents -------------------------------------------------------------------------------

    def document_counts(self, doc_ids: Sequence[str] | None = None,
                        where: PayloadFilter | None = None) -> dict[str, int]:
        from qdrant_client import models

        if doc_ids is not None and not doc_ids:
            return {}
        must = [_any_doc(doc_ids)] if doc_ids is not None else []
        matching = server_filter(where)
        must += list(matching.must or []) if matching is not None else []
        limit = len(set(doc_ids)) if doc_ids is not None else self.count()
        found = self._call("count documents", self.catalog.conn.client.facet, key="doc_id",
                           facet_filter=models.Filter(must=must) if must else None,
                           limit=max(1, limit), exact=True)
        return {str(hit.value): int(hit.count) for hit in found.hits if hit.count > 0}  # deleted values stay, at 0

    def delete_documents(self, doc_ids: Sequence[str], keep: Sequence[str] = ()) -> None:
        from qdrant_client import models

        if not doc_ids:
            return
        spared: list[Any] | None = [models.HasIdCondition(has_id=[engine_id(i) for i in keep])] if keep else None
        where = models.Filter(must=[_any_doc(doc_ids)], must_not=spared)
        self._call("delete documents", self.catalog.conn.client.delete,
                   points_selector=models.FilterSelector(filter=where), wait=True)

    def delete_points(self, ids: Sequence[str]) -> None:
        from qdrant_client import models

        if ids:
            self._call("delete points", self.catalog.conn.client.delete,
                       points_selector=models.PointIdsList(points=[engine_id(i) for i in ids]), wait=True)

    def pending_points(self, doc_ids: Sequence[str] | None = None) -> list[PendingPoint]:
        from qdrant_client import models

        if doc_ids is not None and not doc_ids:
            return []
        where = models.Filter(must=[_any_doc(doc_ids)] if doc_ids is not None else None,
                              must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=PENDING_FIELD))])
        found: list[PendingPoint] = []
        offset = None
        while True:
            records, offset = self._call("read pending points", self.catalog.conn.client.scroll, scroll_filter=where,
                                         limit=1024, offset=offset, with_payload=["doc_id", PENDING_FIELD],
                                         with_vectors=False)
            found += [PendingPoint.of(r.id, r.payload) for r in records]
            if offset is None:
                return found

    def clear_pending(self, ids: Sequence[str]) -> None:
        if ids:
            self._call("commit a replacement", self.catalog.conn.client.delete_payload, keys=[PENDING_FIELD],
                       points=[engine_id(i) for i in ids], wait=True)

    # --- searching -------------------------------------------------------------------------------

    def _run(self, requests: list[Any], with_text: Sequence[bool]) -> list[list[Hit]]:
        client = self.catalog.conn.client
        if len(requests) == 1:
            r = requests[0]
            response = self._call("search", client.query_points, query=r.query, using=r.using, prefetch=r.prefetch,
                                  query_filter=r.filter, search_params=r.params, limit=r.limit,
                                  with_payload=r.with_payload)
            results = [response.points]
        else:
            results = [res.points for res in self._call("search", client.query_batch_points, requests=requests)]
        return [ranked([to_hit(p, text) for p in points]) for points, text in zip(results, with_text)]

    def search_each(self, queries: dict[int, np.ndarray], specs: Sequence[QuerySpec]) -> list[list[Hit]]:
        try:
            expanded = Expanded(specs)  # a DBSF search: two engine queries, fused here
            requests = [self.requests.request(queries, row, spec) for row, spec in expanded.parts]
        except (TypeError, ValueError) as exc:  # the request models validate values
            raise StoreError(f"collection {self.spec.name!r}: cannot build the query: {exc}") from exc
        return expanded.combine(self._run(requests, [spec.with_text for _, spec in expanded.parts]))

    def search_at(
        self, queries: np.ndarray, dim: int, k: int, exact: bool, hnsw_ef: int | None = None, with_text: bool = False
    ) -> list[list[Hit]]:
        from qdrant_client import models

        params = self.requests.stage_params(dim, k, exact, hnsw_ef, refined=False)
        payload: bool | list[str] = True if with_text else TEXT_FIELDS
        requests = [models.QueryRequest(query=row.tolist(), using=vector_name(dim), limit=k, params=params,
                                        with_payload=payload) for row in queries]
        return self._run(requests, [with_text] * len(requests))

    def points(self, batch_size: int = 1024) -> Iterator[PointBatch]:
        names = {dim: vector_name(dim) for dim in self.spec.dims}
        offset = None
        while True:
            records, offset = self._call("read points", self.catalog.conn.client.scroll, limit=batch_size,
                                         offset=offset, with_payload=True, with_vectors=True)
            if records:
                vectors = {dim: np.asarray([r.vector[name] for r in records], dtype=np.float32)
                           for dim, name in names.items()}
                yield PointBatch([str(r.id) for r in records], vectors, [r.payload or {} for r in records])
            if offset is None:
                return

    # --- metadata and housekeeping ---------------------------------------------------------------

    def calibration(self) -> dict[str, Any] | None:
        """The calibration read when the collection was opened (or saved since, by this process)."""
        record = self._calibration
        if record is None:
            return None
        if self._calibration_checked is not record:  # checked once per record read or saved
            self._calibration_damage = None
            if not isinstance(record, dict):
                self._calibration_damage = f"a JSON {json_kind(record)}, not an object"
            elif nesting_depth(record, MAX_CALIBRATION_DEPTH) > MAX_CALIBRATION_DEPTH:
                self._calibration_damage = f"JSON nested more than {MAX_CALIBRATION_DEPTH} levels deep"
            self._calibration_checked = record
        if self._calibration_damage is not None:
            raise DamagedCalibrationError(self.spec.name, self.calibration_location, self._calibration_damage)
        return dict(record)

    @property
    def calibration_location(self) -> str:
        return f"(metadata {CALIBRATION_KEY!r} of {self.location})"

    def save_calibration(self, record: dict[str, Any]) -> None:
        metadata = {SPEC_KEY: asdict(self.spec), CALIBRATION_KEY: record}
        self._call("save the calibration", self.catalog.conn.client.update_collection, metadata=metadata)
        self._calibration = record

    def count(self) -> int:
        return int(self._call("count points", self.catalog.conn.client.count, exact=True).count)

    def disk_bytes(self) -> int | None:
        return None

    def vector_disk_bytes(self) -> dict[int, int]:
        return {}

    def hnsw_is_full_scan(self, dim: int) -> bool:
        """Local mode always scans; a server scans a segment below the full-scan threshold."""
        if self.catalog.conn.local:
            return True
        return 4 * dim * self.count() / self.shards < FULL_SCAN_THRESHOLD_KB * 1024

    def flush(self) -> None:
        """Nothing to do: every write was acknowledged with ``wait=True``."""

    def finish_indexing(self) -> None:
        """Wait (at most :data:`OPTIMIZE_WAIT_S`) until the server's optimizer has built the indexes."""
        from qdrant_client import models

        deadline = time.monotonic() + OPTIMIZE_WAIT_S
        while time.monotonic() < deadline:
            info = self._call("read the status", self.catalog.conn.client.get_collection)
            if info.status != models.CollectionStatus.YELLOW:
                return
            time.sleep(0.5)

    def close(self) -> None:
        if self._catalog is not None:
            catalog, self._catalog = self._catalog, None
            catalog._release()

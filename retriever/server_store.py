"""A Qdrant server or cluster through ``qdrant-client``: the same store as :mod:`retriever.edge_store`.

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
from typing import Any

import numpy as np

from retriever.catalog import EngineConfig
from retriever.errors import CollectionNotFoundError, ForeignCollectionError, StoreError
from retriever.hybrid import TEXT_FIELD
from retriever.ladder import vector_name
from retriever.paths import validate_collection_name
from retriever.server_client import NotFound, ServerConnection, not_found
from retriever.server_query import TEXT_FIELDS, ServerRequests, to_hit
from retriever.store import (
    Catalog,
    Collection,
    CollectionExistsError,
    CollectionSpec,
    Hit,
    PointBatch,
    QuerySpec,
    engine_id,
    ranked,
)

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


class ServerCollection(Collection):
    """A collection on a Qdrant server; holds the connection open until :meth:`close`."""

    def __init__(self, catalog: ServerCatalog, spec: CollectionSpec, metadata: dict[str, Any], shards: int) -> None:
        self._catalog: ServerCatalog | None = catalog
        self.spec = spec
        self.shards = shards
        self.requests = ServerRequests(spec, shards)
        self._calibration = metadata.get(CALIBRATION_KEY)
        catalog._users += 1

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

    def delete_chunks_from(self, first_stale: dict[str, int]) -> None:
        from qdrant_client import models

        if not first_stale:
            return
        stale = models.Filter(should=[
            models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc)),
                                models.FieldCondition(key="chunk", range=models.Range(gte=n))])
            for doc, n in first_stale.items()])
        self._call("delete stale chunks", self.catalog.conn.client.delete,
                   points_selector=models.FilterSelector(filter=stale), wait=True)

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
            requests = [self.requests.request(queries, row, spec) for row, spec in enumerate(specs)]
        except (TypeError, ValueError) as exc:  # the request models validate values
            raise StoreError(f"collection {self.spec.name!r}: cannot build the query: {exc}") from exc
        return self._run(requests, [spec.with_text for spec in specs])

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
        return dict(record) if isinstance(record, dict) else None

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


class ServerCatalog(Catalog):
    """The funnel collections on one Qdrant server (or local-mode directory)."""

    def __init__(self, config: EngineConfig) -> None:
        assert config.url is not None
        self.config = config
        self.conn = ServerConnection(config.url, config.api_key, config.prefer_grpc, config.timeout)
        self._users = 1  # this catalog; every open collection adds one
        self._closed = False
        try:
            self.conn.check_version()
        except Exception:
            self.close()
            raise

    @property
    def location(self) -> str:
        return self.conn.location

    def _release(self) -> None:
        self._users -= 1
        if self._users == 0:
            self.conn.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()

    def _metadata(self, name: str) -> tuple[dict[str, Any], Any] | None:
        """(metadata, collection info) of ``name``, or ``None`` if there is no such collection."""
        try:
            info = self.conn.call(f"read collection {name!r}", self.conn.client.get_collection, name)
        except NotFound:
            return None
        return dict(info.config.metadata or {}), info

    def _all_names(self) -> list[str]:
        response = self.conn.call("list collections", self.conn.client.get_collections)
        return sorted(c.name for c in response.collections)

    def names(self) -> list[str]:
        """The collections funnel made (those with a funnel spec); other tools' are left out."""
        found = []
        for name in self._all_names():
            meta = self._metadata(name)
            if meta is not None and isinstance(meta[0].get(SPEC_KEY), dict):
                found.append(name)
        return found

    def exists(self, name: str) -> bool:
        """Whether the name is taken on the server (by funnel or by another tool)."""
        validate_collection_name(name)
        return self.conn.call(f"check collection {name!r}", self.conn.client.collection_exists, name)

    def _spec_of(self, name: str, metadata: dict[str, Any], info: Any) -> CollectionSpec:
        raw = metadata.get(SPEC_KEY)
        if not isinstance(raw, dict):
            raise ForeignCollectionError(f"collection {name!r} in {self.location} was not created by funnel (no "
                                         f"{SPEC_KEY} in its metadata): funnel neither uses nor drops it")
        try:
            spec = CollectionSpec.from_dict(raw)
        except (TypeError, ValueError, KeyError) as exc:
            raise StoreError(f"collection {name!r}: unreadable {SPEC_KEY} in {self.location} ({exc})") from None
        vectors = info.config.params.vectors
        sizes = {n: getattr(v, "size", None) for n, v in vectors.items()} if isinstance(vectors, dict) else {}
        missing = [vector_name(d) for d in spec.dims if sizes.get(vector_name(d)) != d]
        if missing:
            raise ForeignCollectionError(f"collection {name!r} in {self.location} lacks funnel's named vectors "
                                         f"{', '.join(missing)} for its dims {list(spec.dims)}")
        return spec

    def read_spec(self, name: str) -> CollectionSpec:
        validate_collection_name(name)
        meta = self._metadata(name)
        if meta is None:
            raise not_found(name, self.location, self.names())
        return self._spec_of(name, *meta)

    def check_writable(self, name: str | None = None, dims: int = 1) -> None:
        """Reach the server (and check the name is funnel's) before a model loads."""
        if name is not None and self.exists(name):
            self.read_spec(name)
        else:
            self._all_names()

    def create(self, spec: CollectionSpec) -> ServerCollection:
        from qdrant_client import models

        name = validate_collection_name(spec.name)
        if spec.lexical and spec.lexical_analyzer != "plain" and self.conn.local:
            # local mode scores text queries only on an index with the default tokenization (lower-cased
            # words): it would accept this index and then fail every lexical search
            raise StoreError(f"qdrant-client's local mode ({self.location}) has no {spec.lexical_analyzer!r} "
                             "lexical analyzer (no stop words or stemming): use --lexical-analyzer plain, the "
                             "embedded engine or a Qdrant server")
        if self.exists(name):
            raise CollectionExistsError(f"collection {name!r} already exists in {self.location}")
        placement = self.config.placement
        try:
            self.conn.call(f"create collection {name!r}", self.conn.client.create_collection, name,
                           vectors_config=vectors_config(spec), shard_number=placement.shards,
                           replication_factor=placement.replication_factor,
                           write_consistency_factor=placement.write_consistency, metadata={SPEC_KEY: asdict(spec)})
        except StoreError as exc:
            if "already exists" in str(exc):
                raise CollectionExistsError(f"collection {name!r} already exists in {self.location}") from None
            raise
        try:
            schema = {"keyword": models.PayloadSchemaType.KEYWORD, "integer": models.PayloadSchemaType.INTEGER}
            for field_name, kind in INDEXED_FIELDS.items():
                self.conn.call(f"index payload field {field_name!r}", self.conn.client.create_payload_index, name,
                               field_name=field_name, field_schema=schema[kind], wait=True)
            if spec.lexical:
                self.conn.call("create the BM25 text index", self.conn.client.create_payload_index, name,
                               field_name=TEXT_FIELD, field_schema=text_index(spec), wait=True)
        except Exception:
            self.conn.call(f"drop half-made collection {name!r}", self.conn.client.delete_collection, name)
            raise
        return self.open(name)

    def open(self, name: str) -> ServerCollection:
        validate_collection_name(name)
        meta = self._metadata(name)
        if meta is None:
            raise not_found(name, self.location, self.names())
        metadata, info = meta
        spec = self._spec_of(name, metadata, info)
        shards = int(getattr(info.config.params, "shard_number", None) or 1)
        return ServerCollection(self, spec, metadata, shards)

    def drop(self, name: str) -> None:
        """Delete a funnel collection; another tool's collection is refused, not deleted."""
        self.read_spec(name)
        try:
            self.conn.call(f"drop collection {name!r}", self.conn.client.delete_collection, name)
        except NotFound:
            raise not_found(name, self.location, self.names()) from None

"""A Qdrant server's catalog: the collections funnel made on it (see :mod:`retriever.store.server.collection`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from retriever.errors import ForeignCollectionError, StoreError
from retriever.query.fusion import TEXT_FIELD
from retriever.query.ladder import vector_name
from retriever.store.base import Catalog, CollectionExistsError
from retriever.store.config import EngineConfig
from retriever.store.paths import validate_collection_name
from retriever.store.server.collection import (
    INDEXED_FIELDS,
    SPEC_KEY,
    ServerCollection,
    text_index,
    vectors_config,
)
from retriever.store.server.connection import NotFound, ServerConnection, not_found
from retriever.store.spec import CollectionSpec


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
                             "lexical analyzer (no stop words or stemming): give the collection the plain "
                             "analyzer (funnel index or funnel collections copy: --lexical-analyzer plain), or "
                             "use the embedded engine or a Qdrant server")
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

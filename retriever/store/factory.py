"""One factory for the store: which engine a command or the Python API talks to.

Without a Qdrant URL, the embedded engine (Qdrant Edge) in the data directory; with one, a Qdrant
server or cluster through ``qdrant-client``. URL forms:

- ``http://HOST:6333`` / ``https://HOST:6333``: a Qdrant server (REST; ``prefer_grpc`` switches to
  gRPC on port 6334);
- ``path:DIR``: qdrant-client's *local mode* on a directory (the same client calls, executed in
  Python without a server: for tests and trials; it searches by brute force, ignores HNSW and
  quantization settings, and has no shards);
- ``:memory:``: local mode in memory (gone when the process ends).

Nothing above the store imports an engine module: they are imported here, lazily.
"""

from __future__ import annotations

from retriever.store.base import Catalog
from retriever.store.config import (
    EngineConfig,
)


def open_catalog(config: EngineConfig | None = None) -> Catalog:
    """The catalog that ``config`` names (default: the embedded engine in the default data dir)."""
    config = config or EngineConfig()
    if config.embedded:
        from retriever.store.edge.catalog import EdgeCatalog

        return EdgeCatalog(config.data_dir)
    from retriever.store.server.catalog import ServerCatalog

    return ServerCatalog(config)

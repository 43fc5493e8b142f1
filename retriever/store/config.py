"""Which engine a command or the Python API talks to: :class:`EngineConfig` and :class:`Placement`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from retriever.errors import BadInputError
from retriever.store.paths import default_data_dir

WRITE_CONSISTENCY_MAX = 100
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Placement:
    """How a new server collection is spread over a cluster: shards, copies of each shard, and how
    many copies must acknowledge a write. ``None`` leaves the server's default."""

    shards: int | None = None
    replication_factor: int | None = None
    write_consistency: int | None = None

    def __post_init__(self) -> None:
        for name in ("shards", "replication_factor", "write_consistency"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise BadInputError(f"invalid {name.replace('_', ' ')} {value!r}: use an integer of 1 or more")
        if self.write_consistency is not None and self.replication_factor is not None \
                and self.write_consistency > self.replication_factor:
            raise BadInputError(f"invalid write consistency {self.write_consistency}: at most the replication "
                                f"factor ({self.replication_factor})")

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.shards, self.replication_factor, self.write_consistency))


@dataclass(frozen=True)
class EngineConfig:
    """Where collections live: ``url`` (a Qdrant server, ``path:DIR`` or ``:memory:``), else the
    embedded engine in ``data_dir``."""

    data_dir: Path = field(default_factory=default_data_dir)
    url: str | None = None
    api_key: str | None = None
    prefer_grpc: bool = False
    timeout: float = DEFAULT_TIMEOUT_S
    placement: Placement = Placement()

    def __post_init__(self) -> None:
        url = (self.url or "").strip() or None
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        if url is not None:
            check_url(url)
        elif self.placement.given:
            raise BadInputError("--shards, --replication-factor and --write-consistency need a Qdrant server "
                                "(--qdrant-url): the embedded engine has one shard")
        if self.api_key is not None and not self.api_key.strip():
            raise BadInputError("the Qdrant API key is empty: give a key or leave it out")

    @property
    def embedded(self) -> bool:
        return self.url is None

    @classmethod
    def from_env(cls, data_dir: str | os.PathLike[str] | None = None) -> EngineConfig:
        """``QDRANT_URL`` / ``QDRANT_API_KEY`` from the environment (what the CLI reads too)."""
        return cls(data_dir=Path(data_dir) if data_dir is not None else default_data_dir(),
                   url=os.environ.get("QDRANT_URL"), api_key=os.environ.get("QDRANT_API_KEY") or None)


def check_url(url: str) -> str:
    """Return ``url`` if it names an engine, else raise :class:`BadInputError`."""
    if url == ":memory:" or url.startswith(("http://", "https://")):
        return url
    if url.startswith("path:") and url[len("path:"):].strip():
        return url
    raise BadInputError(f"invalid Qdrant URL {url!r}: use http(s)://HOST:PORT, path:DIR (qdrant-client local "
                        "mode on a directory) or :memory:")

"""The collection spec: the ladder, model, layout and lexical index a collection was built with."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from retriever.errors import InvalidDimsError, ModelMismatchError
from retriever.query.fusion import check_lexical

SPEC_VERSION = 1
QUANTIZATIONS = ("none", "int8", "binary", "binary1.5", "binary2")
# Oversampling of a quantized graph stage that is a plan's only stage (it is rescored with the original
# vectors): the coarser the codes, the more candidates their order needs to hold the true top ones.
# ``None``: the engine's default (no oversampling). A stage that a later one re-scores is not rescored.
# int8 2.0: what the tuned Edge HNSW + int8 peer chose on 200k real MiniLM vectors (benchmarks/results/peers-*).
QUANTIZED_OVERSAMPLING: dict[str, float | None] = {"int8": 2.0, "binary": 4.0, "binary1.5": 3.0, "binary2": 2.0}
# The graph search width of a shortlist stage is max(MIN_HNSW_EF, its limit), on every engine.
MIN_HNSW_EF = 128


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
    :mod:`retriever.query.fusion`), tokenized by ``lexical_analyzer``: ``english`` (lower-case words,
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

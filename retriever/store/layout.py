"""Storage layouts a collection can be re-laid into: which dim carries the graph, how that vector is
quantized, and whether the vectors search does not traverse stay on disk.

Written ``DIM:QUANTIZATION[:disk|:ram]``, e.g. ``128:int8`` or ``256:binary2:disk``; ``auto`` is a
graph on every ladder dim (the top one too: a full-vector graph, which wins where the prefixes are
weak), each with ``none``, ``int8`` and ``binary``. Used by
``funnel calibrate --layouts`` (:mod:`retriever.calibration.layouts`) and ``funnel collections copy --layout``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from retriever.errors import InvalidLayoutError
from retriever.store.spec import QUANTIZATIONS, CollectionSpec

AUTO_QUANTIZATIONS = ("none", "int8", "binary")


@dataclass(frozen=True)
class LayoutChoice:
    """A storage layout: a graph on ``graph_dim`` alone, its vector quantized as ``quantization``, and
    the other vectors on disk when ``on_disk`` (see :class:`~retriever.store.CollectionSpec`)."""

    graph_dim: int
    quantization: str = "none"
    on_disk: bool = False

    def __str__(self) -> str:
        return f"{self.graph_dim}:{self.quantization}" + (":disk" if self.on_disk else "")

    @classmethod
    def of(cls, spec: CollectionSpec) -> LayoutChoice:
        """The layout a collection has (its first graph dim stands for the graph)."""
        return cls((spec.hnsw_dims or spec.dims)[0], spec.quantization, spec.on_disk)

    def apply_to(self, spec: CollectionSpec) -> CollectionSpec:
        """``spec`` with this layout (model, ladder, chunking and lexical index unchanged)."""
        if self.graph_dim not in spec.dims:
            raise InvalidLayoutError(f"layout {self}: {self.graph_dim} is not a dim of the collection's ladder "
                                     f"{list(spec.dims)}")
        return dataclasses.replace(spec, hnsw_dims=(self.graph_dim,), quantization=self.quantization,
                                   on_disk=self.on_disk)

    def same_as(self, spec: CollectionSpec) -> bool:
        """Whether ``spec`` is laid out this way already."""
        return self.apply_to(spec) == spec


def parse_layout(text: str, spec: CollectionSpec) -> LayoutChoice:
    """One ``DIM:QUANTIZATION[:disk|:ram]`` for this collection (default: its own on-disk choice)."""
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or not parts[0].strip().isdigit():
        raise InvalidLayoutError(f"invalid layout {text.strip()!r}: write DIM:QUANTIZATION[:disk|:ram], e.g. "
                                 f"{spec.dims[0]}:int8 or {spec.dims[min(1, len(spec.dims) - 1)]}:binary")
    dim, quantization = int(parts[0]), parts[1].strip()
    if dim not in spec.dims:
        raise InvalidLayoutError(f"invalid layout {text.strip()!r}: {dim} is not a dim of the collection's ladder "
                                 f"{', '.join(map(str, spec.dims))}")
    if quantization not in QUANTIZATIONS:
        raise InvalidLayoutError(f"invalid layout {text.strip()!r}: unknown quantization {quantization!r} "
                                 f"(choose from {', '.join(QUANTIZATIONS)})")
    on_disk = spec.on_disk
    if len(parts) == 3:
        if parts[2].strip() not in ("disk", "ram"):
            raise InvalidLayoutError(f"invalid layout {text.strip()!r}: the third part is 'disk' or 'ram', "
                                     f"not {parts[2].strip()!r}")
        on_disk = parts[2].strip() == "disk"
    return LayoutChoice(dim, quantization, on_disk)


def parse_layouts(text: str, spec: CollectionSpec) -> list[LayoutChoice]:
    """``auto`` or a comma-separated list of layouts, without repeats, in the order given."""
    if text.strip() == "auto":
        return [LayoutChoice(d, q, spec.on_disk) for d in spec.dims for q in AUTO_QUANTIZATIONS]
    items = [t for t in text.split(",") if t.strip()]
    if not items:
        raise InvalidLayoutError("no layout given: write auto, or DIM:QUANTIZATION[:disk|:ram],… (e.g. 128:int8)")
    out: list[LayoutChoice] = []
    for item in items:
        layout = parse_layout(item, spec)
        if layout not in out:
            out.append(layout)
    return out

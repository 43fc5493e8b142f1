"""The Matryoshka dim ladder: which prefixes of an embedding are stored and searched."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retriever.errors import InvalidDimsError

DEFAULT_RUNGS = (64, 128, 256)


def default_ladder(full_dim: int) -> tuple[int, ...]:
    """64, 128, 256 (those below the model's dim) and the model's full dim."""
    return tuple(d for d in DEFAULT_RUNGS if d < full_dim) + (full_dim,)


def parse_ladder(spec: str | Sequence[int] | None, full_dim: int) -> tuple[int, ...]:
    """Parse ``"64,128,256,384"`` (or a sequence) into a validated, ascending ladder.

    ``None`` or ``""`` gives :func:`default_ladder`. The word ``full`` stands for the model's dim.
    Every dim must be a positive integer, strictly ascending, at most ``full_dim``.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return default_ladder(full_dim)
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    dims: list[int] = []
    for item in items:
        if isinstance(item, str) and item.lower() == "full":
            dims.append(full_dim)
            continue
        try:
            dims.append(int(item))
        except (TypeError, ValueError):
            raise InvalidDimsError(f"invalid dims {spec!r}: {item!r} is not an integer") from None
    if not dims:
        raise InvalidDimsError("invalid dims: give at least one dim")
    if any(d <= 0 for d in dims):
        raise InvalidDimsError(f"invalid dims {spec!r}: every dim must be positive")
    if any(b <= a for a, b in zip(dims, dims[1:])):
        raise InvalidDimsError(f"invalid dims {spec!r}: dims must be strictly ascending")
    if dims[-1] > full_dim:
        raise InvalidDimsError(f"invalid dims {spec!r}: {dims[-1]} is above the model's dim ({full_dim})")
    return tuple(dims)


def vector_name(dim: int) -> str:
    """The named vector that stores the first ``dim`` dims: ``dim64``, ``dim128``, …"""
    return f"dim{dim}"


def truncate_normalize(vectors: np.ndarray, dim: int) -> np.ndarray:
    """The first ``dim`` columns of each row, L2-normalised (float32)."""
    head = np.ascontiguousarray(vectors[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(head, axis=1, keepdims=True)
    return head / np.maximum(norms, 1e-12)

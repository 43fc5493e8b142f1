"""Funnel plans: a shortlist at a coarse dim, re-scored at growing dims, ending at the top dim.

A plan is a list of ``(dim, limit)`` stages. ``"64:400,128:200,256:100"`` on a 64/128/256/384
ladder with ``k=10`` means: take the 400 nearest by the 64-dim vector, re-score them at 128 dims
and keep 200, re-score at 256 and keep 100, re-score at 384 and return the top 10. The last stage
(the ladder's top dim, limit k) is implicit.

**Default plan** (when none is given): every ladder dim below the top one is a stage; the stage
just before the top keeps ``10·k`` candidates and each coarser stage keeps twice as many as the
next (``64:400,128:200,256:100`` for k=10). Limits never exceed :data:`MAX_SHORTLIST`.
"""

from __future__ import annotations

from dataclasses import dataclass

from retriever.errors import BadInputError, InvalidPlanError

MAX_K = 1000
MAX_SHORTLIST = 20_000
DEFAULT_TOP_FACTOR = 10


@dataclass(frozen=True)
class Stage:
    """Keep the ``limit`` best candidates by the first ``dim`` dims."""

    dim: int
    limit: int


@dataclass(frozen=True)
class FunnelPlan:
    """Stages from the coarsest dim to the top dim; the last stage's limit is k."""

    stages: tuple[Stage, ...]

    @property
    def k(self) -> int:
        return self.stages[-1].limit

    def __str__(self) -> str:
        return ",".join(f"{s.dim}:{s.limit}" for s in self.stages)

    def with_k(self, k: int) -> FunnelPlan:
        """The same stages returning ``k`` hits (a coarse stage keeps at least ``k``)."""
        *coarse, last = self.stages
        return FunnelPlan(tuple(Stage(s.dim, max(s.limit, k)) for s in coarse) + (Stage(last.dim, k),))


def validate_k(k: int) -> int:
    """Return ``k`` if ``1 <= k <= MAX_K``, else raise :class:`BadInputError`."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1 or k > MAX_K:
        raise BadInputError(f"invalid k {k!r}: k must be between 1 and {MAX_K}")
    return k


def default_plan(ladder: tuple[int, ...], k: int) -> FunnelPlan:
    """The documented default: ``10·k`` before the top dim, doubling towards the coarsest dim."""
    validate_k(k)
    coarse = ladder[:-1]
    stages = [
        Stage(dim, min(MAX_SHORTLIST, k * DEFAULT_TOP_FACTOR * 2 ** (len(coarse) - 1 - i)))
        for i, dim in enumerate(coarse)
    ]
    return FunnelPlan(tuple(stages) + (Stage(ladder[-1], k),))


def parse_plan(spec: str | None, ladder: tuple[int, ...], k: int) -> FunnelPlan:
    """Parse ``"64:400,128:200,256:100"`` for this ladder and k; ``None`` gives :func:`default_plan`.

    The top stage may be written out (``…,384:10``) but then its limit must equal k.
    Stage dims must be ladder dims, strictly ascending; limits must not grow and stay >= k.
    """
    validate_k(k)
    if spec is None or not spec.strip():
        return default_plan(ladder, k)
    stages: list[Stage] = []
    for part in spec.split(","):
        dim_s, sep, limit_s = part.strip().partition(":")
        try:
            if not sep:
                raise ValueError
            stage = Stage(int(dim_s), int(limit_s))
        except ValueError:
            raise InvalidPlanError(
                f"invalid plan {spec!r}: {part.strip()!r} is not DIM:LIMIT (e.g. 64:400,128:200,256:100)"
            ) from None
        stages.append(stage)
    top = ladder[-1]
    if stages[-1].dim == top:
        if stages[-1].limit != k:
            raise InvalidPlanError(f"invalid plan {spec!r}: the last stage {top}:{stages[-1].limit} disagrees with k={k}")
        stages.pop()
    stages.append(Stage(top, k))
    for s in stages:
        if s.dim not in ladder:
            raise InvalidPlanError(f"invalid plan {spec!r}: dim {s.dim} is not in the collection's dims {list(ladder)}")
        if s.limit < k:
            raise InvalidPlanError(f"invalid plan {spec!r}: stage {s.dim}:{s.limit} keeps fewer than k={k}")
        if s.limit > MAX_SHORTLIST:
            raise InvalidPlanError(f"invalid plan {spec!r}: stage {s.dim}:{s.limit} is above the limit {MAX_SHORTLIST}")
    for a, b in zip(stages, stages[1:]):
        if b.dim <= a.dim:
            raise InvalidPlanError(f"invalid plan {spec!r}: dims must be strictly ascending")
        if b.limit > a.limit:
            raise InvalidPlanError(f"invalid plan {spec!r}: stage {b.dim}:{b.limit} keeps more than the stage before it")
    return FunnelPlan(tuple(stages))

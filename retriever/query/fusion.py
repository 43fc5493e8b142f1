"""Hybrid search: a lexical (BM25) stage and the dense Matryoshka funnel in one engine query.

A collection indexed with ``--lexical bm25`` carries a BM25-scored full-text index on each
chunk's text (the engine computes BM25 itself: IDF over the collection, the real average chunk
length). A query then runs in one of three **modes**:

- ``dense``: the funnel alone (the default for a collection without a lexical index).
- ``lexical``: BM25 alone.
- ``hybrid``: both, combined by a **fusion** method:

  - ``union``: the ``lexical_limit`` best BM25 chunks join the funnel's coarse shortlist, and the
    Matryoshka re-score stages decide (lexical candidates enter *before* the dense re-ranking).
  - ``rrf``: reciprocal rank fusion of the dense funnel's top ``dense_limit`` and BM25's top
    ``lexical_limit`` (fused *after* the full-dim stage). Qdrant's formula, measured on both
    engines (tests/test_hybrid.py): score = Σ 1 / (rrf_k - 1 + rank / weight), ranks from 1, so
    the best point of a list with weight 1 gets 1 / rrf_k; a weight divides the rank, it does not
    multiply the score (weight 0 drops that list).
  - ``dbsf``: distribution-based score fusion of the same two lists (each list's scores mapped
    by (s - (μ - 3σ)) / 6σ, σ the sample standard deviation, not clamped; then summed). funnel
    fuses the two lists itself (:mod:`retriever.query.dbsf`): a BM25 list shorter than its depth is
    padded with the zeros its non-matching candidates score before μ and σ are taken, so a one-hit
    or tied list (σ = 0 in Qdrant's DBSF, which gives its hits a flat 0.5) ranks a rare term's
    only match first.

A collection indexed with ``--lexical bm25`` searches ``hybrid`` by default, with the fusion
below; ``funnel calibrate --qrels`` chooses the fusion (and whether ``hybrid`` or ``dense`` is the
default) for a collection from judged queries and stores it with the calibration.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from retriever.errors import InvalidPlanError

MODES = ("dense", "lexical", "hybrid")
FUSIONS = ("union", "rrf", "dbsf")
LEXICAL_KINDS = ("bm25",)
ANALYZERS = ("english", "plain")
# The text field a lexical index covers (the chunk text every point stores).
TEXT_FIELD = "text"
MAX_FUSION_LIMIT = 2000

# The documented fallback when a collection's fusion was never calibrated (``funnel calibrate
# --qrels``): DBSF of the top 20 of each side. Measured on financial-qa-10k with base MiniLM
# (benchmarks/results/hybrid/): DBSF beat every RRF setting tried by 0.012–0.035 NDCG@10 on the train
# queries, and 20-deep lists scored within 0.0031 of 100-deep ones, fetching a fifth of the candidates.
DEFAULT_FUSION = "dbsf"
DEFAULT_LEXICAL_LIMIT = 20
DEFAULT_DENSE_LIMIT = 20
DEFAULT_RRF_K = 60


@dataclass(frozen=True)
class Fusion:
    """How a hybrid query combines its lexical and dense candidates (see the module docstring).

    ``lexical_limit``: BM25 candidates (``union``: added to the shortlist; ``rrf``/``dbsf``: the
    depth of the fused BM25 list). ``dense_limit``: depth of the fused dense list (not used by
    ``union``). ``rrf_k`` and the two weights: ``rrf`` only. Limits below k are raised to k.
    """

    method: str = DEFAULT_FUSION
    lexical_limit: int = DEFAULT_LEXICAL_LIMIT
    dense_limit: int = DEFAULT_DENSE_LIMIT
    rrf_k: int = DEFAULT_RRF_K
    dense_weight: float = 1.0
    lexical_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in FUSIONS:
            raise InvalidPlanError(f"unknown fusion {self.method!r} (choose from {', '.join(FUSIONS)})")
        for name in ("lexical_limit", "dense_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FUSION_LIMIT:
                raise InvalidPlanError(f"fusion {name} must be an integer from 1 to {MAX_FUSION_LIMIT}, not {value!r}")
        # rrf_k=0 gives the best point of each list 1/0: Edge scores it inf (not JSON), local mode refuses it
        if isinstance(self.rrf_k, bool) or not isinstance(self.rrf_k, int) or not 1 <= self.rrf_k <= 10_000:
            raise InvalidPlanError(f"rrf_k must be an integer from 1 to 10000, not {self.rrf_k!r}")
        for name in ("dense_weight", "lexical_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and 0 <= value <= 100
            ):
                raise InvalidPlanError(f"fusion {name} must be a number from 0 to 100, not {value!r}")
        if self.dense_weight == 0 and self.lexical_weight == 0:
            raise InvalidPlanError("fusion weights cannot both be 0")

    def depths(self, k: int) -> tuple[int, int]:
        """(dense list depth, lexical list depth) for a top-``k`` query: each at least k."""
        return max(k, self.dense_limit), max(k, self.lexical_limit)

    def plan_depth(self, k: int) -> int:
        """Hits the dense side's plan returns for a top-``k`` query: k for ``union`` (its funnel
        ranks the union itself), else the depth of the fused dense list."""
        return k if self.method == "union" else self.depths(k)[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fusion:
        fields = ("method", "lexical_limit", "dense_limit", "rrf_k", "dense_weight", "lexical_weight")
        return cls(**{f: data[f] for f in fields if f in data})

    def __str__(self) -> str:
        if self.method == "union":
            return f"union(lexical={self.lexical_limit})"
        if self.method == "dbsf":
            return f"dbsf(dense={self.dense_limit},lexical={self.lexical_limit})"
        return (f"rrf(k={self.rrf_k},dense={self.dense_limit}x{self.dense_weight:g},"
                f"lexical={self.lexical_limit}x{self.lexical_weight:g})")


def check_mode(mode: Any) -> str:
    """Return a valid mode name, or raise :class:`InvalidPlanError`."""
    if not isinstance(mode, str) or mode not in MODES:
        raise InvalidPlanError(f"unknown search mode {mode!r} (choose from {', '.join(MODES)})")
    return mode


def check_lexical(kind: str | None, analyzer: str) -> None:
    """Raise :class:`InvalidPlanError` (a bad-input error) for an unknown lexical kind or analyzer."""
    if kind is not None and kind not in LEXICAL_KINDS:
        raise InvalidPlanError(f"unknown lexical index {kind!r} (choose from {', '.join(LEXICAL_KINDS)})")
    if analyzer not in ANALYZERS:
        raise InvalidPlanError(f"unknown lexical analyzer {analyzer!r} (choose from {', '.join(ANALYZERS)})")

"""Distribution-based score fusion (DBSF), computed by funnel from the two lists the engine returns.

Each list's scores are standardised by their own distribution and mapped by
``(s - (μ - 3σ)) / 6σ`` (σ the sample standard deviation, n - 1; not clamped), then a point's
mapped scores are summed over the lists that hold it — Qdrant's DBSF. Qdrant leaves a list whose
σ is 0 (one hit, or every hit tied) at a flat 0.5 per point, which buries the exact match of a rare
term: the only chunk holding "Schabowski" gets 0.5 while the dense list's best get 0.8–1.2.

funnel keeps the formula and makes it well-defined on short and tied lexical lists with one rule
that only states a fact: **a BM25 list shorter than the depth it was asked for holds every
candidate that matches a query term, and every other candidate's BM25 score is exactly 0.** Before
μ and σ are taken, such a list is padded with zeros up to that depth (or up to the number of
distinct points the two lists hold together, when the dense list came back short too: a small
collection, or a filter, with fewer candidates than the depth); the padding enters the statistics only, never the results. So:

- a one-hit BM25 list maps its hit to ``0.5 + (m - 1) / (6 √m)`` (m the padded length: 1.21 for
  the default depth 20), the largest value any point of an m-point list can get: no point found by
  the dense list alone (at most m points) outranks it;
- a short list of tied hits maps them above the middle, by how few they are (5 of 20: 0.78);
- a full-depth list (the usual case of a natural-language query) is fused exactly as Qdrant does.

A list whose σ is still 0 after padding (a single candidate, or a full-depth list of equal
scores) says nothing about its points relative to each other: each gets 0.5, as in Qdrant.
Dense lists are never padded (a cosine score outside the list is unknown, not 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from retriever.query.spec import Hit, QuerySpec, ranked

# The mapped score of every point of a list whose scores have no spread (σ = 0), as in Qdrant.
FLAT_SCORE = 0.5


def normalise(scores: Sequence[float], padded_to: int = 0) -> list[float]:
    """``scores`` mapped by ``(s - (μ - 3σ)) / 6σ``, with μ and σ (sample) taken over the scores and
    ``padded_to - len(scores)`` zeros (none when ``padded_to`` is not larger); :data:`FLAT_SCORE`
    for each score when σ is 0."""
    values = [float(s) for s in scores]
    if not values:
        return []
    n = max(len(values), padded_to)
    mean = sum(values) / n
    squares = sum((v - mean) ** 2 for v in values) + (n - len(values)) * mean * mean
    std = math.sqrt(squares / (n - 1)) if n > 1 else 0.0
    if std == 0.0 or not math.isfinite(std):
        return [FLAT_SCORE] * len(values)
    low = mean - 3 * std
    return [(v - low) / (6 * std) for v in values]


def dbsf(dense: Sequence[Hit], lexical: Sequence[Hit], depths: tuple[int, int], k: int) -> list[Hit]:
    """The top ``k`` of the DBSF of a dense list and a BM25 list (see the module docstring).

    ``depths``: how many hits each list was asked for (dense, BM25). A BM25 list shorter than its
    depth is padded with zeros to it, or, when the dense list came back short too (the collection or
    the filter holds fewer candidates), to the number of distinct points the two lists hold.
    """
    dense_depth, lexical_depth = depths
    pad = lexical_depth
    if len(dense) < dense_depth:
        pad = min(pad, len({h.id for h in dense} | {h.id for h in lexical}))
    fused: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for hits, padded_to in ((dense, 0), (lexical, pad)):
        for hit, score in zip(hits, normalise([h.score for h in hits], padded_to)):
            fused[hit.id] = fused.get(hit.id, 0.0) + score
            first.setdefault(hit.id, hit)
    out = [Hit(id=pid, doc_id=h.doc_id, chunk=h.chunk, score=fused[pid], text=h.text, title=h.title,
               metadata=h.metadata) for pid, h in first.items()]
    return ranked(out)[:k]


def is_dbsf(spec: QuerySpec) -> bool:
    """Whether a search fuses by DBSF (its two lists run as two engine queries, fused here)."""
    return spec.mode == "hybrid" and spec.fusion_or_default.method == "dbsf"


class Expanded:
    """A batch of specs as the engine queries it needs: one per spec, two per DBSF spec (its dense
    list and its BM25 list); :meth:`combine` turns the engine's results back into one per spec."""

    def __init__(self, specs: Sequence[QuerySpec]) -> None:
        self.parts: list[tuple[int, QuerySpec]] = []  # (query row, the engine query's spec)
        self._fused: list[tuple[tuple[int, int], int] | None] = []  # per spec: (its depths, k) when fused here
        for row, spec in enumerate(specs):
            if is_dbsf(spec):
                dense = spec.dense_list()
                depth = spec.fusion_or_default.depths(spec.k)[1]
                self.parts.append((row, dense))
                self.parts.append((row, replace(spec, plan=None, k=depth, mode="lexical", fusion=None)))
                self._fused.append(((dense.k, depth), spec.k))
            else:
                self.parts.append((row, spec))
                self._fused.append(None)

    def combine(self, results: Sequence[list[Hit]]) -> list[list[Hit]]:
        out: list[list[Hit]] = []
        it = iter(results)
        for fused in self._fused:
            if fused is None:
                out.append(next(it))
            else:
                dense, lexical = next(it), next(it)
                out.append(dbsf(dense, lexical, *fused))
        return out

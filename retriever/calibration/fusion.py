"""Fusion calibration: the hybrid fusion that ranks a collection's judged queries best.

``funnel calibrate NAME --qrels qrels.tsv --queries queries.jsonl`` runs every candidate fusion
(:func:`candidate_fusions`) on the judged queries, scores each by NDCG@k (sentence-transformers'
evaluator), and saves the best one with the collection's calibration, together with the default
mode: ``hybrid`` when the best fusion beats the dense funnel by at least :data:`MODE_MARGIN`
NDCG, else ``dense``. Among the fusions within :data:`TIE_TOLERANCE` NDCG of the best, the one
that fetches the fewest candidates wins (its lists are the cheapest to search and fuse), then the
earlier candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retriever.calibration.judge import Judge
from retriever.errors import BadInputError
from retriever.ingest.beir import BeirSplit
from retriever.query.fusion import Fusion
from retriever.query.plan import FunnelPlan
from retriever.query.spec import Hit, QuerySpec
from retriever.store.base import Collection

# Hybrid becomes the default only when it beats the dense funnel by this much NDCG@k on the
# judged queries (a smaller gain is within the noise of a few hundred queries).
MODE_MARGIN = 0.005
# Fusions this close to the best NDCG@k count as equally good (differences below the noise of a few
# hundred judged queries, as MODE_MARGIN): the one that fetches the fewest candidates is kept.
TIE_TOLERANCE = 0.005
UNION_LIMITS = (20, 50, 100, 200)
FUSED_LIMITS = (20, 50, 100)
RRF_KS = (10, 30, 60)
RRF_WEIGHTS = ((1.0, 1.0), (1.0, 0.5), (0.5, 1.0))


def candidate_fusions() -> list[Fusion]:
    """Every fusion calibration tries, cheapest first within each method."""
    fusions = [Fusion("union", lexical_limit=n) for n in UNION_LIMITS]
    for limit in FUSED_LIMITS:
        for rrf_k in RRF_KS:
            for dense_w, lexical_w in RRF_WEIGHTS:
                fusions.append(Fusion("rrf", lexical_limit=limit, dense_limit=limit, rrf_k=rrf_k,
                                      dense_weight=dense_w, lexical_weight=lexical_w))
        fusions.append(Fusion("dbsf", lexical_limit=limit, dense_limit=limit))
    return fusions


@dataclass(frozen=True)
class FusionCalibration:
    """The chosen fusion, the default mode, NDCG@k of dense / lexical / the chosen hybrid, and every try."""

    fusion: Fusion
    default_mode: str
    ndcg: dict[str, float]
    queries: int
    k: int
    tried: list[dict[str, Any]] = field(default_factory=list)

    def record(self, source: str) -> dict[str, Any]:
        """The calibration record's ``hybrid`` section."""
        return {"fusion": self.fusion.to_dict(), "default_mode": self.default_mode, "ndcg": self.ndcg,
                "k": self.k, "queries": self.queries, "margin": MODE_MARGIN, "source": source}


def judge_for(relevant: Sequence[set[str]], k: int) -> Judge:
    """A :class:`Judge` of queries ``q0…qn`` with these relevant document ids."""
    ids = [f"q{i}" for i in range(len(relevant))]
    split = BeirSplit(path=Path("."), split="calibrate", queries={q: q for q in ids},
                      relevant={q: set(r) for q, r in zip(ids, relevant)}, unknown_query_ids=0, unknown_corpus_ids=0)
    return Judge(split, ids, k)


def calibrate_fusion(
    collection: Collection,
    vectors: dict[int, np.ndarray],
    texts: Sequence[str],
    relevant: Sequence[set[str]],
    k: int,
    plan_for: Callable[[int], FunnelPlan | None],
) -> FusionCalibration:
    """Try every candidate fusion on judged queries; return the best (see the module docstring).

    ``relevant[i]`` holds the relevant document ids of ``texts[i]`` (whose vectors are row ``i``);
    ``plan_for(depth)`` is the dense side's plan for a list of that depth (as searches use it).
    """
    if not collection.spec.lexical:
        raise BadInputError(f"collection {collection.spec.name!r} has no lexical index: nothing to fuse "
                            "(index it with --lexical bm25)")
    if len(texts) == 0 or len(texts) != len(relevant):
        raise BadInputError("fusion calibration needs judged queries (each with its relevant documents)")
    judge = judge_for(relevant, k)

    def ndcg(specs: list[QuerySpec]) -> float:
        hits: list[list[Hit]] = collection.search_each(vectors, specs)
        return judge.metrics(hits)[f"ndcg@{k}"]

    def specs(mode: str, fusion: Fusion | None = None) -> list[QuerySpec]:
        plan = None if mode == "lexical" else plan_for(k if fusion is None else fusion.plan_depth(k))
        return [QuerySpec(plan, k, with_text=False, mode=mode, fusion=fusion, text=t) for t in texts]

    dense = ndcg(specs("dense"))
    lexical = ndcg(specs("lexical"))
    tried: list[dict[str, Any]] = []
    scored: list[tuple[float, Fusion]] = []
    for fusion in candidate_fusions():
        score = ndcg(specs("hybrid", fusion))
        tried.append({"fusion": str(fusion), f"ndcg@{k}": score})
        scored.append((score, fusion))
    top = max(score for score, _ in scored)
    score, chosen = min(((s, f) for s, f in scored if s >= top - TIE_TOLERANCE), key=lambda sf: fetched(sf[1], k))
    mode = "hybrid" if score >= dense + MODE_MARGIN else "dense"
    return FusionCalibration(chosen, mode, {"dense": dense, "lexical": lexical, "hybrid": score, "best": top},
                             len(texts), k, tried)


def fetched(fusion: Fusion, k: int) -> int:
    """Candidates a fusion fetches per query (its cost, for ties): the lexical list, plus the dense
    list where it is fused (a union re-scores its lexical candidates inside the dense funnel)."""
    dense, lexical = fusion.depths(k)
    return lexical if fusion.method == "union" else dense + lexical

"""DBSF as funnel fuses it (retriever/query/dbsf.py), pure logic: Qdrant's formula on full lists, and
well-defined on the lists where Qdrant's σ is 0 (one hit, all tied) or short. The engine-level and
end-to-end checks are in test_hybrid.py and test_hybrid_rare.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from retriever.query.dbsf import FLAT_SCORE, Expanded, dbsf, normalise
from retriever.query.fusion import Fusion
from retriever.query.plan import FunnelPlan, Stage
from retriever.query.spec import Hit, QuerySpec


def hits(prefix: str, scores: list[float]) -> list[Hit]:
    return [Hit(id=f"{prefix}{i}", doc_id=f"{prefix}{i}", chunk=0, score=s, text=None) for i, s in enumerate(scores)]


def test_a_full_list_is_qdrants_formula():
    scores = [0.91, 0.85, 0.80, 0.77, 0.60]
    values = np.array(scores)
    mean, std = values.mean(), values.std(ddof=1)
    np.testing.assert_allclose(normalise(scores, padded_to=5), (values - (mean - 3 * std)) / (6 * std), rtol=1e-12)
    np.testing.assert_allclose(normalise(scores), normalise(scores, padded_to=3))  # never truncated


def test_a_one_hit_list_is_the_top_of_its_padded_range():
    """Qdrant: 0.5. Padded to m: 0.5 + (m - 1) / (6 √m), the largest z any point of m can reach."""
    assert normalise([7.3]) == [FLAT_SCORE]  # nothing to pad: no spread
    for m in (2, 10, 20, 100):
        (got,) = normalise([7.3], padded_to=m)
        assert got == pytest.approx(0.5 + (m - 1) / (6 * math.sqrt(m)))
    assert normalise([7.3], padded_to=20)[0] == pytest.approx(1.2081, abs=1e-4)


def test_a_tied_list():
    assert normalise([2.0, 2.0, 2.0]) == [FLAT_SCORE] * 3  # full depth, all equal: σ = 0
    short = normalise([2.0] * 5, padded_to=20)  # 5 tied hits of 20: above the middle, all equal
    assert len(set(short)) == 1 and short[0] == pytest.approx(0.5 + 0.75 / (6 * math.sqrt(3.75 / 19)))
    assert normalise([2.0] * 5, padded_to=20)[0] < normalise([2.0] * 2, padded_to=20)[0]  # fewer: stronger


def test_empty_and_extreme_lists():
    assert normalise([]) == []
    assert normalise([], padded_to=20) == []
    f32 = float(np.finfo(np.float32).max)  # engine scores are float32: no overflow in float64
    assert all(math.isfinite(v) for v in normalise([f32, -f32, 0.0], padded_to=20))


def test_the_only_lexical_match_ranks_first_whatever_the_dense_list():
    rng = np.random.default_rng(0)
    for _ in range(200):
        dense = hits("d", sorted(rng.uniform(-0.2, 0.9, size=20).tolist(), reverse=True))
        dense[0] = Hit(id="d0", doc_id="d0", chunk=0, score=dense[0].score + rng.uniform(0, 2), text=None)  # outlier
        lexical = hits("x", [float(rng.uniform(0.5, 30))])
        fused = dbsf(dense, lexical, (20, 20), k=10)
        assert fused[0].id == "x0"
        assert len(fused) == 10 and [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)


def test_a_short_list_in_a_small_collection_pads_to_the_candidates():
    """Ten points in all (the dense list came back short): the padding stops at the ten candidates."""
    dense = hits("d", [0.9, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.1, 0.05])
    lexical = [Hit(id="d7", doc_id="d7", chunk=0, score=4.0, text="t")]
    fused = dbsf(dense, lexical, (20, 20), k=10)
    assert fused[0].id == "d7"
    assert fused[0].score == pytest.approx(normalise([h.score for h in dense])[7] + 0.5 + 9 / (6 * math.sqrt(10)))


def test_tied_full_depth_lists_and_a_point_in_both():
    dense = hits("d", [0.5] * 4)
    lexical = hits("d", [3.0] * 4)
    fused = dbsf(dense, lexical, (4, 4), k=10)
    assert [h.score for h in fused] == [2 * FLAT_SCORE] * 4
    assert [h.id for h in fused] == ["d0", "d1", "d2", "d3"]  # ties by id, as every search


def test_expanded_runs_two_queries_per_dbsf_spec_and_fuses_them_back():
    plan = FunnelPlan((Stage(16, 40), Stage(32, 10)))
    specs = [QuerySpec(plan, 10, mode="dense"),
             QuerySpec(plan, 10, mode="hybrid", fusion=Fusion("dbsf", lexical_limit=30, dense_limit=25), text="q"),
             QuerySpec(plan, 10, mode="hybrid", fusion=Fusion("rrf"), text="q")]
    expanded = Expanded(specs)
    assert [(row, s.mode, s.k) for row, s in expanded.parts] == [
        (0, "dense", 10), (1, "dense", 25), (1, "lexical", 30), (2, "hybrid", 10)]
    assert expanded.parts[2][1].plan is None and expanded.parts[1][1].plan.k == 25
    dense_list, lexical_list = hits("d", [0.9, 0.8, 0.7]), hits("x", [5.0])
    out = expanded.combine([hits("a", [1.0]), dense_list, lexical_list, hits("r", [0.03])])
    assert [h.id for h in out[0]] == ["a0"] and [h.id for h in out[2]] == ["r0"]
    assert out[1] == dbsf(dense_list, lexical_list, (25, 30), 10) and out[1][0].id == "x0"

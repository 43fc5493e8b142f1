"""Funnel plans and k: the documented default, parsing and every validation rule (pure logic)."""

from __future__ import annotations

import pytest

from retriever.errors import BadInputError, InvalidPlanError
from retriever.query.plan import MAX_K, MAX_SHORTLIST, FunnelPlan, Stage, default_plan, parse_plan, validate_k

LADDER = (64, 128, 256, 384)


def limits(plan: FunnelPlan) -> list[int]:
    return [s.limit for s in plan.stages]


def test_default_plan_matches_the_documented_example():
    plan = default_plan(LADDER, 10)
    assert str(plan) == "64:400,128:200,256:100,384:10"
    assert plan.stages == (Stage(64, 400), Stage(128, 200), Stage(256, 100), Stage(384, 10))
    assert plan.k == 10


@pytest.mark.parametrize("k", [1, 3, 10, 57, 100, 999, MAX_K])
def test_default_plan_shape(k):
    plan = default_plan(LADDER, k)
    assert [s.dim for s in plan.stages] == list(LADDER)
    assert plan.k == k
    ls = limits(plan)
    assert all(b <= a for a, b in zip(ls, ls[1:])), "limits never grow"
    assert all(limit >= k for limit in ls)
    assert all(limit <= MAX_SHORTLIST for limit in ls)
    assert ls[-2] == min(MAX_SHORTLIST, 10 * k)


def test_default_plan_caps_shortlists():
    plan = default_plan(LADDER, MAX_K)
    assert str(plan) == f"64:{MAX_SHORTLIST},128:{MAX_SHORTLIST},256:{10 * MAX_K},384:{MAX_K}"


def test_default_plan_on_short_ladders():
    assert str(default_plan((384,), 5)) == "384:5"
    assert str(default_plan((64, 384), 5)) == "64:50,384:5"
    assert str(default_plan((32, 64, 128), 2)) == "32:40,64:20,128:2"


@pytest.mark.parametrize("spec", [None, "", "  "])
def test_no_spec_gives_the_default(spec):
    assert parse_plan(spec, LADDER, 10) == default_plan(LADDER, 10)


@pytest.mark.parametrize(
    ("spec", "k", "expected"),
    [
        ("64:400,128:200,256:100", 10, "64:400,128:200,256:100,384:10"),
        ("64:400,128:200,256:100,384:10", 10, "64:400,128:200,256:100,384:10"),
        (" 64:400 , 256:50 ", 10, "64:400,256:50,384:10"),
        ("128:50", 5, "128:50,384:5"),
        ("384:7", 7, "384:7"),
        ("64:10", 10, "64:10,384:10"),
        (f"64:{MAX_SHORTLIST}", 1000, f"64:{MAX_SHORTLIST},384:1000"),
    ],
)
def test_parse_valid(spec, k, expected):
    plan = parse_plan(spec, LADDER, k)
    assert str(plan) == expected
    assert plan.k == k
    # A plan's string form parses back to the same plan.
    assert parse_plan(str(plan), LADDER, k) == plan


@pytest.mark.parametrize(
    "spec",
    ["64", "64:", ":400", "64:abc", "a:b", "64:400:5", "64=400", "64:400,,128:200", "64:400,", "64:4e2", "sixty-four:400"],
)
def test_malformed_plan(spec):
    with pytest.raises(InvalidPlanError) as info:
        parse_plan(spec, LADDER, 10)
    assert "is not DIM:LIMIT" in str(info.value)


@pytest.mark.parametrize(
    ("spec", "k", "fragment"),
    [
        ("100:400", 10, "dim 100 is not in the collection's dims [64, 128, 256, 384]"),
        ("512:100", 10, "dim 512 is not in the collection's dims"),
        ("64:5", 10, "keeps fewer than k=10"),
        ("64:-5", 10, "keeps fewer than k=10"),
        ("64:400,384:20", 10, "disagrees with k=10"),
        (f"64:{MAX_SHORTLIST + 1}", 10, f"above the limit {MAX_SHORTLIST}"),
        ("128:200,64:400", 10, "strictly ascending"),
        ("64:400,64:200", 10, "strictly ascending"),
        ("384:100,128:50", 10, "strictly ascending"),
        ("64:100,128:200", 10, "keeps more than the stage before it"),
    ],
)
def test_plan_that_does_not_fit(spec, k, fragment):
    with pytest.raises(InvalidPlanError) as info:
        parse_plan(spec, LADDER, k)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"invalid plan {spec!r}")


@pytest.mark.parametrize("k", [1, 2, 10, MAX_K])
def test_valid_k(k):
    assert validate_k(k) == k


@pytest.mark.parametrize("k", [0, -1, -10, MAX_K + 1, 100_000, True, False, 1.5, "10", None])
def test_invalid_k(k):
    with pytest.raises(BadInputError) as info:
        validate_k(k)
    assert f"k must be between 1 and {MAX_K}" in str(info.value)


@pytest.mark.parametrize("k", [0, 100_000])
def test_plans_validate_k(k):
    with pytest.raises(BadInputError):
        default_plan(LADDER, k)
    with pytest.raises(BadInputError):
        parse_plan("64:400", LADDER, k)


def test_invalid_plan_is_a_bad_input_error():
    assert issubclass(InvalidPlanError, BadInputError)
    assert InvalidPlanError.http_status == 400

"""The Matryoshka dim ladder: defaults, parsing and validation (pure logic)."""

from __future__ import annotations

import pytest

from retriever.errors import BadInputError, FunnelError, InvalidDimsError
from retriever.query.ladder import DEFAULT_RUNGS, default_ladder, parse_ladder, vector_name


@pytest.mark.parametrize(
    ("full_dim", "expected"),
    [
        (384, (64, 128, 256, 384)),
        (768, (64, 128, 256, 768)),
        (256, (64, 128, 256)),
        (128, (64, 128)),
        (100, (64, 100)),
        (64, (64,)),
        (32, (32,)),
    ],
)
def test_default_ladder(full_dim, expected):
    assert default_ladder(full_dim) == expected
    assert default_ladder(full_dim)[-1] == full_dim


@pytest.mark.parametrize("spec", [None, "", "   "])
def test_empty_spec_gives_default(spec):
    assert parse_ladder(spec, 384) == default_ladder(384) == (*DEFAULT_RUNGS, 384)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("64,128,256,384", (64, 128, 256, 384)),
        (" 64 , 384 ", (64, 384)),
        ("384", (384,)),
        ("32,full", (32, 384)),
        ("FULL", (384,)),
        ("1,2,3", (1, 2, 3)),
        ([64, 128, 384], (64, 128, 384)),
        ((128, 256), (128, 256)),
    ],
)
def test_parse_valid(spec, expected):
    assert parse_ladder(spec, 384) == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("128,64", "strictly ascending"),
        ("64,64,384", "strictly ascending"),
        ("64,384,256", "strictly ascending"),
        ("64,512", "above the model's dim (384)"),
        ("385", "above the model's dim (384)"),
        ("full,512", "above the model's dim"),
        ("0,64", "positive"),
        ("-64,384", "positive"),
        ("64,abc", "'abc' is not an integer"),
        ("64,,384", "'' is not an integer"),
        ("64;128", "is not an integer"),
        ("64.5,128", "is not an integer"),
        ([64, "x"], "is not an integer"),
    ],
)
def test_parse_invalid(spec, fragment):
    with pytest.raises(InvalidDimsError) as info:
        parse_ladder(spec, 384)
    assert fragment in str(info.value)
    assert "invalid dims" in str(info.value)


def test_invalid_dims_is_a_bad_input_error():
    assert issubclass(InvalidDimsError, BadInputError)
    assert issubclass(InvalidDimsError, FunnelError)
    assert InvalidDimsError.http_status == 400


def test_empty_sequence_is_a_clear_error():
    with pytest.raises(InvalidDimsError):
        parse_ladder([], 384)


def test_vector_name():
    assert vector_name(64) == "dim64"
    assert vector_name(384) == "dim384"
    assert len({vector_name(d) for d in default_ladder(384)}) == 4

"""Payload filters: which chunks a search may return, checked and engine-neutral.

A filter is a mapping from a payload field to a condition; every condition must hold (AND)::

    {"doc_id": "nvidia-10k",                 # exact match (string or int)
     "chunk": {"gte": 0, "lt": 2},           # numeric range (gt / gte / lt / lte)
     "metadata.year": {"gte": 2020},
     "metadata.ticker": ["NVDA", "AMD"]}     # any of these values (all strings or all ints)

Fields: ``doc_id`` and ``title`` (strings), ``chunk`` (int), and ``metadata.<key>`` (any of the
above; ``key`` is 1-64 letters, digits, ``_`` or ``-``). Anything else is refused with
:class:`InvalidFilterError`, and so are booleans: qdrant-edge-py 0.9 turns a boolean match value
into an integer that matches nothing, so a boolean filter is refused instead of returning no hits. Engines turn a :class:`PayloadFilter` into their own filter type.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from .errors import InvalidFilterError

MAX_CONDITIONS = 16
MAX_ANY_VALUES = 100
MAX_VALUE_CHARS = 512
RANGE_OPS = ("gt", "gte", "lt", "lte")
_METADATA_KEY = re.compile(r"^metadata\.[A-Za-z0-9_-]{1,64}$")
_STRING_FIELDS = ("doc_id", "title")
_INT_FIELDS = ("chunk",)

Scalar = Union[str, int]


@dataclass(frozen=True)
class Match:
    """The field equals ``value``."""

    value: Scalar


@dataclass(frozen=True)
class MatchAny:
    """The field equals one of ``values`` (all strings or all ints)."""

    values: tuple[str, ...] | tuple[int, ...]


@dataclass(frozen=True)
class Range:
    """The field is a number within the given bounds (``None`` = unbounded)."""

    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


Condition = Union[Match, MatchAny, Range]


@dataclass(frozen=True)
class PayloadFilter:
    """Conditions on payload fields, all of which must hold."""

    conditions: tuple[tuple[str, Condition], ...]

    def __bool__(self) -> bool:
        return bool(self.conditions)


def _kind(field: str) -> str:
    if field in _STRING_FIELDS:
        return "string"
    if field in _INT_FIELDS:
        return "int"
    if _METADATA_KEY.fullmatch(field):
        return "any"
    raise InvalidFilterError(
        f"unknown filter field {field[:80]!r}: use doc_id, chunk, title or metadata.<key> "
        "(key: 1-64 letters, digits, '_' or '-')"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _number(field: str, op: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidFilterError(f"filter {field!r}: {op} must be a finite number, not {value!r}")
    return float(value)


def _range(field: str, kind: str, spec: Mapping[str, Any]) -> Range:
    if kind == "string":
        raise InvalidFilterError(f"filter {field!r}: a string field takes a value or a list, not a range")
    unknown = [op for op in spec if op not in RANGE_OPS]
    if unknown or not spec:
        raise InvalidFilterError(
            f"filter {field!r}: a range takes gt, gte, lt and/or lte"
            + (f" (not {', '.join(map(repr, unknown))})" if unknown else "")
        )
    bounds = {op: _number(field, op, spec[op]) for op in RANGE_OPS if spec.get(op) is not None}
    if not bounds:
        raise InvalidFilterError(f"filter {field!r}: a range needs at least one bound")
    return Range(**bounds)


def _scalar(field: str, kind: str, value: Any) -> Scalar:
    if isinstance(value, bool):
        # qdrant-edge-py 0.9 turns a boolean match value into an integer, which then matches nothing:
        # refuse it rather than silently return no hits.
        raise InvalidFilterError(
            f"filter {field!r}: matching a boolean is not supported by the embedded engine "
            "(qdrant-edge-py 0.9); store the flag as a string or an integer"
        )
    if kind == "string" and isinstance(value, str):
        ok = True
    elif kind == "int":
        ok = _is_int(value)
    else:
        ok = kind == "any" and (isinstance(value, str) or _is_int(value))
    if not ok:
        wanted = {"string": "a string", "int": "an integer", "any": "a string or an integer"}[kind]
        hint = " (use a range for a float)" if isinstance(value, float) else ""
        raise InvalidFilterError(f"filter {field!r}: expected {wanted}, not {type(value).__name__} {value!r}{hint}")
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        raise InvalidFilterError(f"filter {field!r}: value longer than {MAX_VALUE_CHARS} characters")
    if isinstance(value, str) and not _is_unicode(value):
        raise InvalidFilterError(f"filter {field!r}: value is not valid Unicode text")
    return value


def _any(field: str, kind: str, values: list[Any]) -> MatchAny:
    if not values or len(values) > MAX_ANY_VALUES:
        raise InvalidFilterError(f"filter {field!r}: a list takes 1 to {MAX_ANY_VALUES} values")
    checked = [_scalar(field, kind, v) for v in values]
    if all(isinstance(v, str) for v in checked):
        return MatchAny(tuple(checked))  # type: ignore[arg-type]
    if all(_is_int(v) for v in checked):
        return MatchAny(tuple(checked))  # type: ignore[arg-type]
    raise InvalidFilterError(f"filter {field!r}: a list must hold only strings or only integers")


def parse_filter(spec: Mapping[str, Any] | None) -> PayloadFilter | None:
    """Check a ``{field: condition}`` mapping and return it as a :class:`PayloadFilter` (``None`` if empty)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise InvalidFilterError("a filter is an object of field: condition")
    if len(spec) > MAX_CONDITIONS:
        raise InvalidFilterError(f"too many filter conditions: {len(spec)} (at most {MAX_CONDITIONS})")
    conditions: list[tuple[str, Condition]] = []
    for field, value in spec.items():
        kind = _kind(field)
        if isinstance(value, Mapping):
            conditions.append((field, _range(field, kind, value)))
        elif isinstance(value, (list, tuple)):
            conditions.append((field, _any(field, kind, list(value))))
        else:
            conditions.append((field, Match(_scalar(field, kind, value))))
    return PayloadFilter(tuple(conditions)) if conditions else None

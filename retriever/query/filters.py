"""Payload filters: which chunks a search may return, checked and engine-neutral.

A filter is a mapping from a payload field to a condition; every condition must hold (AND)::

    {"doc_id": "nvidia-10k",                 # exact match (string or int)
     "chunk": {"gte": 0, "lt": 2},           # numeric range (gt / gte / lt / lte)
     "metadata.year": {"gte": 2020},
     "metadata.ticker": ["NVDA", "AMD"]}     # any of these values (all strings or all ints)

Fields: ``doc_id`` and ``title`` (strings), ``chunk`` (int), and ``metadata.<key>`` (any of the
above; ``key`` is 1-64 letters, digits, ``_`` or ``-``). Anything else is refused with
:class:`InvalidFilterError`, and so are integers outside the engine's signed 64-bit range (the
engine cannot take them: qdrant-edge-py raises ``TypeError`` while building the request, which
failed every query of a micro-batch), range bounds that are not finite floats, and booleans: qdrant-edge-py 0.9 turns a boolean match value
into an integer that matches nothing, so a boolean filter is refused instead of returning no hits. Engines turn a :class:`PayloadFilter` into their own filter type.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from retriever.errors import InvalidFilterError

MAX_CONDITIONS = 16
MAX_ANY_VALUES = 100
MAX_VALUE_CHARS = 512
RANGE_OPS = ("gt", "gte", "lt", "lte")
_METADATA_KEY = re.compile(r"^metadata\.[A-Za-z0-9_-]{1,64}$")
_STRING_FIELDS = ("doc_id", "title")
# The engine stores integers as signed 64-bit: a match value outside this range cannot be sent to it.
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
_INT_FIELDS = ("chunk",)

Scalar = str | int


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


Condition = Match | MatchAny | Range


@dataclass(frozen=True)
class PayloadFilter:
    """Conditions on payload fields, all of which must hold."""

    conditions: tuple[tuple[str, Condition], ...]

    def __bool__(self) -> bool:
        return bool(self.conditions)

    def checked(self) -> PayloadFilter | None:
        """This filter checked like :func:`parse_filter` checks a mapping (a hand-built one could hold anything)."""
        if not isinstance(self.conditions, tuple) or not all(
            isinstance(c, tuple) and len(c) == 2 for c in self.conditions
        ):
            raise InvalidFilterError("a PayloadFilter holds a tuple of (field, condition) pairs")
        if len(self.conditions) > MAX_CONDITIONS:
            raise InvalidFilterError(f"too many filter conditions: {len(self.conditions)} (at most {MAX_CONDITIONS})")
        return PayloadFilter(tuple((key, _condition(key, _as_spec(key, cond))) for key, cond in self.conditions)) or None


def _kind(field: Any) -> str:
    if not isinstance(field, str):
        raise InvalidFilterError(f"filter field names are strings, not {type(field).__name__} {_show(field)}")
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


def _show(value: Any) -> str:
    """``repr(value)`` cut to 80 characters; never fails (an int above 4,300 digits has no repr)."""
    if _is_int(value) and value.bit_length() > 256:
        return f"<an integer of {value.bit_length()} bits>"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still named
        text = f"a {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _number(field: str, op: str, value: Any) -> float:
    bad = InvalidFilterError(f"filter {field!r}: {op} must be a finite number, not {_show(value)}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy numbers too
        raise bad
    try:
        number = float(value)  # an int above ~1.8e308 has no float: OverflowError
    except OverflowError:
        raise bad from None
    if not math.isfinite(number):
        raise bad
    return number


def _range(field: str, kind: str, spec: Mapping[str, Any]) -> Range:
    if kind == "string":
        raise InvalidFilterError(f"filter {field!r}: a string field takes a value or a list, not a range")
    unknown = [op for op in spec if op not in RANGE_OPS]
    if unknown or not spec:
        raise InvalidFilterError(
            f"filter {field!r}: a range takes gt, gte, lt and/or lte"
            + (f" (not {', '.join(map(_show, unknown[:5]))})" if unknown else "")
        )
    bounds = {op: _number(field, op, spec[op]) for op in RANGE_OPS if spec.get(op) is not None}
    if not bounds:
        raise InvalidFilterError(f"filter {field!r}: a range needs at least one bound")
    return Range(**bounds)


def _scalar(field: str, kind: str, value: Any) -> Scalar:
    if not isinstance(value, (bool, int, str)) and isinstance(value, numbers.Integral):
        value = int(value)  # numpy.int64 and the like, as k takes them
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
        raise InvalidFilterError(f"filter {field!r}: expected {wanted}, not {type(value).__name__} {_show(value)}{hint}")
    if _is_int(value) and not INT_MIN <= value <= INT_MAX:
        raise InvalidFilterError(
            f"filter {field!r}: integer {_show(value)} is outside the engine's signed 64-bit range "
            f"({INT_MIN} to {INT_MAX})"
        )
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


def parse_filter(spec: Mapping[str, Any] | PayloadFilter | None) -> PayloadFilter | None:
    """Check a ``{field: condition}`` mapping and return it as a :class:`PayloadFilter` (``None`` if empty).

    A :class:`PayloadFilter` built by hand is checked the same way (its values could be anything).
    """
    if spec is None:
        return None
    if isinstance(spec, PayloadFilter):
        return spec.checked()
    if not isinstance(spec, Mapping):
        raise InvalidFilterError(
            f"a filter is a mapping of field: condition, not {type(spec).__name__} {_show(spec)}"
        )
    if len(spec) > MAX_CONDITIONS:
        raise InvalidFilterError(f"too many filter conditions: {len(spec)} (at most {MAX_CONDITIONS})")
    conditions = tuple((field, _condition(field, value)) for field, value in spec.items())
    return PayloadFilter(conditions) if conditions else None


def _condition(field: Any, value: Any) -> Condition:
    kind = _kind(field)
    if isinstance(value, Mapping):
        return _range(field, kind, value)
    if isinstance(value, (list, tuple)):
        return _any(field, kind, list(value))
    return Match(_scalar(field, kind, value))


def _as_spec(field: Any, cond: Any) -> Any:
    """A condition of a hand-built :class:`PayloadFilter` as the value :func:`parse_filter` reads."""
    if isinstance(cond, Match) and not isinstance(cond.value, (list, tuple, Mapping)):
        return cond.value
    if isinstance(cond, MatchAny) and isinstance(cond.values, (list, tuple)):
        return list(cond.values)
    if isinstance(cond, Range):
        return {op: getattr(cond, op) for op in RANGE_OPS if getattr(cond, op) is not None}
    raise InvalidFilterError(f"filter {_show(field)}: unknown condition {_show(cond)} (use Match(value), MatchAny(tuple of values) or Range)")

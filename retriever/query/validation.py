"""Checks on what a caller asks: a query, a batch of queries, integer and boolean options."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from retriever.errors import BadInputError, InvalidPlanError

MAX_QUERY_CHARS = 4096
MAX_BATCH = 10_000


def show_value(value: Any) -> str:
    """A short one-line description of a wrong argument: its type and (cut) repr."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - e.g. an int above 4,300 digits has no repr
        text = "…"
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {text}"


def validate_query(query: str) -> str:
    """Return a usable query, or raise :class:`BadInputError` for empty, huge or non-text ones."""
    if not isinstance(query, str):
        raise BadInputError(f"a query is a string, not {show_value(query)}")
    if not query.strip():
        raise BadInputError("empty query: give some text to search for")
    if len(query) > MAX_QUERY_CHARS:
        raise BadInputError(f"query too long: {len(query)} characters (at most {MAX_QUERY_CHARS})")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInputError("query is not valid Unicode text (it has lone surrogate code points)") from None
    return query


def validate_queries(queries: Sequence[str]) -> list[str]:
    """Return a batch of usable queries as a list; a string, or anything but a sequence of strings, is refused."""
    if isinstance(queries, (str, bytes, bytearray)):
        raise BadInputError(
            f"queries is a list of strings, not a single {type(queries).__name__}: use search() for one query"
        )
    if not isinstance(queries, Sequence):
        raise BadInputError(f"queries is a list of strings, not {show_value(queries)}")
    if not queries:
        raise BadInputError("empty query batch")
    if len(queries) > MAX_BATCH:
        raise BadInputError(f"too many queries in one batch: {len(queries)} (at most {MAX_BATCH})")
    return [validate_query(q) for q in queries]


def int_option(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise BadInputError(f"{name} is an integer, not bool {value!r}")
    try:
        return operator.index(value)  # int, numpy integers; not float or str
    except TypeError:
        raise BadInputError(f"{name} is an integer, not {show_value(value)}") from None


def bool_option(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadInputError(f"{name} is True or False, not {show_value(value)}")
    return value


@dataclass(frozen=True)
class OptionNames:
    """How a surface names the search options in its error messages: the Python API's words by
    default; the CLI passes its flags (``--plan``, ``--exact``, …)."""

    plan: str = "a plan"
    exact: str = "exact=True"
    adaptive: str = "adaptive=True"
    drop_adaptive: str = "adaptive"
    fusion: str = "a fusion"
    drop_fusion: str = "the fusion"
    hybrid: str = "mode='hybrid'"
    dense: str = "mode='dense'"


def check_search_options(plan: Any, exact: bool, adaptive: bool | None, mode: str | None, fusion: Any,
                         names: OptionNames | None = None) -> None:
    """Refuse search options that contradict each other (:class:`InvalidPlanError`), whatever the collection.

    ``plan`` counts when it is not ``None`` or blank, ``fusion`` when it is not ``None``; ``mode=None``
    (not chosen yet: the collection's default) contradicts nothing. Needs no collection, so a command
    can check before it opens one; :meth:`~retriever.Retriever.query_spec` checks the same.
    """
    names = names or OptionNames()
    plan_given = plan is not None and not (isinstance(plan, str) and not plan.strip())
    if exact and plan_given:
        raise InvalidPlanError(f"give {names.plan} or {names.exact}, not both: an exact search has no funnel plan")
    if adaptive and (exact or plan_given):
        raise InvalidPlanError(f"give {names.adaptive} or {names.plan} / {names.exact}, not both: adaptive search "
                               "chooses its own depth")
    if fusion is not None and mode not in (None, "hybrid"):
        raise InvalidPlanError(f"{names.fusion} combines the two sides of a hybrid search, not a {mode} one: "
                               f"use {names.hybrid} or drop {names.drop_fusion}")
    if adaptive and mode not in (None, "dense"):
        raise InvalidPlanError(f"adaptive search is dense only, not {mode}: drop {names.drop_adaptive} or use "
                               f"{names.dense}")

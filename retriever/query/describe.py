"""What a search ran, in words and as JSON fields: :func:`describe_search` of a :class:`QuerySpec`.

The one description the CLI prints above its hits and the service answers with (``plan``,
``adaptive``, ``mode``, ``fusion`` of a ``POST /search`` response).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retriever.query.adaptive import AdaptiveSpec
from retriever.query.spec import QuerySpec


@dataclass(frozen=True)
class SearchDescription:
    """How a search ran: ``plan`` is the funnel plan (adaptive: the widened queries' plan; hybrid: the
    dense side's), ``"exact"``, or ``None`` for a lexical search; ``fusion`` is the fusion with its
    parameters for a hybrid search, else ``None``; ``label`` says it all in one line."""

    mode: str
    plan: str | None
    adaptive: bool
    fusion: str | None
    label: str

    def fields(self) -> dict[str, Any]:
        """The JSON fields ``plan``, ``adaptive``, ``mode`` and ``fusion`` (in that order)."""
        return {"plan": self.plan, "adaptive": self.adaptive, "mode": self.mode, "fusion": self.fusion}


def describe_search(spec: QuerySpec, top_dim: int) -> SearchDescription:
    """Describe ``spec`` (from :meth:`Retriever.query_spec`) of a collection whose largest dim is ``top_dim``.

    Labels: ``lexical: BM25 alone``, ``exact {top_dim}-dim search``, ``adaptive: plan {first},
    widened to {plan} when unsettled``, ``plan {plan}``; a hybrid search's is
    ``hybrid {fusion}: BM25 and {the dense side's label}``.
    """
    funnel = spec.plan
    adaptive = isinstance(spec, AdaptiveSpec)
    rule = spec.rule if isinstance(spec, AdaptiveSpec) else None
    fusion = str(spec.fusion) if spec.mode == "hybrid" and spec.fusion is not None else None
    if spec.mode == "lexical":
        label = "lexical: BM25 alone"
    elif funnel is None:
        label = f"exact {top_dim}-dim search"
    elif rule is not None:
        label = f"adaptive: plan {rule.first}, widened to {funnel} when unsettled"
    else:
        label = f"plan {funnel}"
    if spec.mode == "hybrid":
        label = f"hybrid {fusion}: BM25 and {label}"
    plan = None if spec.mode == "lexical" else "exact" if funnel is None else str(funnel)
    return SearchDescription(mode=spec.mode, plan=plan, adaptive=adaptive, fusion=fusion, label=label)

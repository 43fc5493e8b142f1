"""The calibration record: what ``funnel calibrate`` saves with a collection, typed, and its readers.

A collection keeps one record (``calibration.json`` on the embedded engine, the ``funnel_calibration``
metadata key on a server), a JSON object of these parts:

- the **plan** (top-level keys ``plan``, ``k``, ``hnsw_ef``, …; see :mod:`retriever.calibration.plans`):
  the funnel plan calibrated at ``k``, which every search without a plan uses, scaled to its k;
- ``adaptive`` (:mod:`retriever.calibration.adaptive`): the adaptive rule and whether it pays;
- ``hybrid`` (:mod:`retriever.calibration.fusion`): the fusion and default mode chosen from judged queries;
- ``layouts`` (:mod:`retriever.calibration.layouts`): the storage layouts measured;
- ``encoder`` (:mod:`retriever.calibration.encoders`): the query and document encoders chosen.

Any part may be missing (a record written before it existed, or a calibration that did not measure it):
it is then ``None``. :meth:`CalibrationRecord.from_dict` reads every record written so far; keys it does
not know (a newer funnel's, or a value of an unexpected type) are kept in ``extra`` and written back
as they were by :meth:`CalibrationRecord.to_dict`, which writes the same JSON shape plus ``schema``
(:data:`SCHEMA_VERSION`). The store persists the plain dict; this module is its one reader and writer.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, TypeVar

from retriever.errors import BadInputError, CalibrationWarning, DamagedCalibrationError, InvalidPlanError
from retriever.query.adaptive import SIGNALS, AdaptiveRule, first_plan
from retriever.query.fusion import MODES, Fusion
from retriever.query.plan import MAX_SHORTLIST, FunnelPlan, Stage, default_plan, parse_plan, validate_k
from retriever.store.base import Collection
from retriever.store.limits import json_kind

SCHEMA_VERSION = 1
SCHEMA_KEY = "schema"

_PartT = TypeVar("_PartT", bound="Part")


def _value(*kinds: type, nullable: bool = False) -> Any:
    """A typed field of a part: ``None`` when the record does not hold it; ``nullable`` fields are
    written as ``null`` then (today's writers always write them), the others are left out."""
    return field(default=None, metadata={"kinds": kinds, "nullable": nullable})


def _fits(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # a bool is an int to isinstance, never to a record
        return bool in kinds
    return isinstance(value, kinds)


@dataclass(frozen=True, kw_only=True)
class Part:
    """One part of the record: typed fields, and ``extra``, the keys it does not know (or whose value
    has an unexpected type), kept as read so that nothing is lost when the record is written back."""

    extra: dict[str, Any] = field(default_factory=dict)
    prefix: ClassVar[str] = ""  # how the part's keys are named in messages: "" (top level) or "adaptive."

    @classmethod
    def typed(cls) -> dict[str, Mapping[str, Any]]:
        """Each typed field's name and metadata, in order (worked out once per class)."""
        found = cls.__dict__.get("_typed")
        if found is None:
            found = {f.name: f.metadata for f in fields(cls) if f.metadata}
            cls._typed = found  # type: ignore[attr-defined]
        return found

    @classmethod
    def from_dict(cls: type[_PartT], data: Mapping[str, Any]) -> _PartT:
        typed = cls.typed()
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            meta = typed.get(key)
            if meta is not None and (_fits(value, meta["kinds"]) or (value is None and meta["nullable"])):
                known[key] = value
            else:
                extra[key] = value
        return cls(**known, extra=extra)

    def problems(self, ladder: tuple[int, ...] | None) -> list[str]:
        """What is wrong with this part for a collection of ``ladder`` (``None``: what needs no ladder),
        each as ``key: what``; empty when the part can be used. Here: known keys with a value of the
        wrong type; each part adds its own checks."""
        found = []
        for key, value in self.extra.items():
            meta = self.typed().get(key)
            if meta is not None:
                kinds = " or ".join(_KIND_NAMES.get(kind, kind.__name__) for kind in meta["kinds"])
                found.append(f"{self.prefix}{key}: {_shown(value)} is not {kinds}")
        return found

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, meta in self.typed().items():
            value = getattr(self, name)
            if value is not None or (meta["nullable"] and name not in self.extra):
                out[name] = value
        return out | {key: value for key, value in self.extra.items() if key not in out}


_INT, _FLOAT, _STR, _BOOL = (int,), (int, float), (str,), (bool,)
_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "an object",
               list: "an array"}


def _shown(value: Any) -> str:
    """A stored value as a record's reader names it: its JSON, cut to 40 characters."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)


@dataclass(frozen=True, kw_only=True)
class PlanPart(Part):
    """The calibrated funnel plan (the record's top-level keys): ``plan`` calibrated at ``k``, its first
    stage walked with ``hnsw_ef`` (``None``: the default width), and how it was measured."""

    plan: str | None = _value(*_STR)
    k: int | None = _value(*_INT)
    hnsw_ef: int | None = _value(*_INT, nullable=True)
    recall_vs_exact: float | None = _value(*_FLOAT)
    target: float | None = _value(*_FLOAT)
    met: bool | None = _value(*_BOOL)
    queries: int | None = _value(*_INT)
    source: str | None = _value(*_STR)

    def scaled(self, ladder: tuple[int, ...], k: int) -> FunnelPlan:
        """This plan for ``k``: its stages, every limit scaled by ``k / self.k``; the default rule on
        ``ladder`` when the saved plan does not fit the ladder (never expected)."""
        validate_k(k)
        if self.plan is None or self.k is None:
            return default_plan(ladder, k)
        try:
            saved = parse_plan(self.plan, ladder, self.k)
        except (TypeError, ValueError, BadInputError):
            return default_plan(ladder, k)
        scale = k / saved.k
        stages = [Stage(s.dim, min(MAX_SHORTLIST, max(k, math.ceil(s.limit * scale)))) for s in saved.stages[:-1]]
        return FunnelPlan(tuple(stages) + (Stage(ladder[-1], k),))

    def problems(self, ladder: tuple[int, ...] | None) -> list[str]:
        found = super().problems(ladder)
        if found:
            return found
        if self.plan is None or self.k is None:
            return [f"{'plan' if self.plan is None else 'k'}: missing (a calibrated plan needs both plan and k)"]
        if self.hnsw_ef is not None and self.hnsw_ef < 1:
            found.append(f"hnsw_ef: {self.hnsw_ef} is not a graph width (at least 1, or null)")
        try:
            validate_k(self.k)
            if ladder is not None:
                parse_plan(self.plan, ladder, self.k)
        except BadInputError as exc:
            found.append(f"plan: {exc}")
        return found

    def ef_for(self, plan: FunnelPlan) -> int | None:
        """The first-stage graph width for ``plan`` (this plan scaled to another k), scaled like the
        shortlists and never below the first shortlist; ``None`` when none was saved."""
        if self.k is None or not isinstance(self.hnsw_ef, int) or self.hnsw_ef <= 0:
            return None
        return max(plan.stages[0].limit, math.ceil(self.hnsw_ef * plan.k / self.k))


@dataclass(frozen=True, kw_only=True)
class AdaptivePart(Part):
    """The ``adaptive`` section: the rule (pass-1 plan ``first_plan`` keeping ``k + probe``, widened
    when ``signal`` < ``threshold``) calibrated at ``k``, its measurements, and ``adaptive_pays``:
    whether searches without a plan run adaptively."""

    prefix: ClassVar[str] = "adaptive."

    k: int | None = _value(*_INT)
    first_plan: str | None = _value(*_STR)
    probe: int | None = _value(*_INT)
    signal: str | None = _value(*_STR)
    threshold: float | None = _value(*_FLOAT)
    first_ef: int | None = _value(*_INT, nullable=True)
    target: float | None = _value(*_FLOAT)
    recall_vs_exact: float | None = _value(*_FLOAT)
    widened_share: float | None = _value(*_FLOAT)
    mean_candidates: float | None = _value(*_FLOAT)
    mean_ms_fixed: float | None = _value(*_FLOAT)
    p50_ms_fixed: float | None = _value(*_FLOAT)
    mean_ms_adaptive: float | None = _value(*_FLOAT)
    p50_ms_adaptive: float | None = _value(*_FLOAT)
    adaptive_pays: bool | None = _value(*_BOOL)

    def problems(self, ladder: tuple[int, ...] | None) -> list[str]:
        found = super().problems(ladder)
        if found:
            return found
        missing = [key for key in ("k", "first_plan", "probe", "signal", "threshold") if getattr(self, key) is None]
        if missing:
            return [f"adaptive.{', adaptive.'.join(missing)}: missing (the adaptive rule needs it)"]
        assert self.threshold is not None and self.probe is not None and self.k is not None
        if not math.isfinite(self.threshold):
            found.append(f"adaptive.threshold: {_shown(self.threshold)} is not a finite number")
        if self.signal not in SIGNALS:
            found.append(f"adaptive.signal: {_shown(self.signal)} is not one of {', '.join(SIGNALS)}")
        if self.probe < 1:
            found.append(f"adaptive.probe: {self.probe} is below 1")
        if self.first_ef is not None and self.first_ef < 1:
            found.append(f"adaptive.first_ef: {self.first_ef} is not a graph width (at least 1, or null)")
        if found or ladder is None:
            return found
        try:
            validate_k(self.k)
            dims = [stage.dim for stage in self.rule_for(ladder, self.k).first.stages]
        except (ValueError, BadInputError) as exc:
            return [*found, f"adaptive.first_plan: {_shown(self.first_plan)} is not a plan ({exc})"]
        if any(dim not in ladder for dim in dims) or dims != sorted(set(dims)):
            found.append(f"adaptive.first_plan: {_shown(self.first_plan)} does not fit the collection's dims "
                         f"{list(ladder)}")
        return found

    def rule_for(self, ladder: tuple[int, ...], k: int) -> AdaptiveRule:
        """The rule for ``k``: shortlists and probe scaled by ``k / self.k`` (raises ``ValueError`` on
        an incomplete or malformed section)."""
        if self.k is None or self.probe is None or self.first_plan is None or self.signal is None \
                or self.threshold is None:
            raise ValueError("an incomplete adaptive section")
        scale = k / self.k
        probe = max(1, math.ceil(self.probe * scale))
        coarse = []
        for part in self.first_plan.split(",")[:-1]:
            dim, _, limit = part.partition(":")
            coarse.append((int(dim), math.ceil(int(limit) * scale)))
        ef = self.first_ef
        return AdaptiveRule(first_plan(coarse, ladder[-1], k, probe), probe, self.signal, float(self.threshold),
                            None if ef is None else max(k + probe, math.ceil(ef * scale)))


@dataclass(frozen=True, kw_only=True)
class HybridPart(Part):
    """The ``hybrid`` section: the fusion chosen from judged queries (a :class:`Fusion`'s dict), the
    default mode (``dense`` or ``hybrid``), NDCG@k of each mode, and how it was measured."""

    prefix: ClassVar[str] = "hybrid."

    fusion: dict[str, Any] | None = _value(dict)
    default_mode: str | None = _value(*_STR)
    ndcg: dict[str, float] | None = _value(dict)
    k: int | None = _value(*_INT)
    queries: int | None = _value(*_INT)
    margin: float | None = _value(*_FLOAT)
    source: str | None = _value(*_STR)

    def problems(self, ladder: tuple[int, ...] | None) -> list[str]:
        found = super().problems(ladder)
        if self.fusion is not None:
            try:
                Fusion.from_dict(self.fusion)
            except (InvalidPlanError, TypeError) as exc:
                found.append(f"hybrid.fusion: {_shown(self.fusion)} is not a fusion ({exc})")
        if self.default_mode is not None and self.default_mode not in MODES:
            found.append(f"hybrid.default_mode: {_shown(self.default_mode)} is not one of {', '.join(MODES)}")
        return found

    def chosen_fusion(self) -> Fusion | None:
        """The fusion as a :class:`Fusion`, or ``None`` when none (or an invalid one) is saved."""
        if self.fusion is None:
            return None
        try:
            return Fusion.from_dict(self.fusion)
        except (InvalidPlanError, TypeError):
            return None

    def chosen_mode(self) -> str | None:
        """The default mode chosen (``dense`` or ``hybrid``), or ``None``."""
        return self.default_mode if self.default_mode in MODES else None


@dataclass(frozen=True, kw_only=True)
class LayoutsPart(Part):
    """The ``layouts`` section: the storage layouts measured (``trials``, each a
    :class:`~retriever.calibration.layouts.LayoutTrial`'s dict), the current and chosen one, whether
    the collection was re-laid (``applied``) and the rule of the choice."""

    prefix: ClassVar[str] = "layouts."

    k: int | None = _value(*_INT)
    target: float | None = _value(*_FLOAT)
    queries: int | None = _value(*_INT)
    current: str | None = _value(*_STR)
    chosen: str | None = _value(*_STR)
    changed: bool | None = _value(*_BOOL)
    applied: bool | None = _value(*_BOOL)
    rule: str | None = _value(*_STR)
    trials: list[dict[str, Any]] | None = _value(list)


@dataclass(frozen=True, kw_only=True)
class EncoderPart(Part):
    """The ``encoder`` section: the query encoder chosen (fastest faithful single query), the document
    encoder recommended for indexing, the fidelity bounds and every encoder measured (``trials``)."""

    prefix: ClassVar[str] = "encoder."

    query: str | None = _value(*_STR)
    document: str | None = _value(*_STR)
    k: int | None = _value(*_INT)
    source: str | None = _value(*_STR)
    recall_floor: float | None = _value(*_FLOAT)
    ndcg_budget: float | None = _value(*_FLOAT)
    ndcg_fp32: float | None = _value(*_FLOAT, nullable=True)
    trials: list[dict[str, Any]] | None = _value(list)


SECTIONS: dict[str, type[Part]] = {"adaptive": AdaptivePart, "hybrid": HybridPart, "layouts": LayoutsPart,
                                   "encoder": EncoderPart}
_PLAN_KEYS = frozenset(PlanPart.typed())
_PART_NAMES = {"plan": "calibrated plan", "adaptive": "adaptive rule", "hybrid": "fusion and mode",
               "layouts": "layout measurements", "encoder": "query encoder"}


@dataclass(frozen=True, kw_only=True)
class CalibrationRecord:
    """A collection's calibration record (see the module docstring): each part ``None`` when missing.

    ``schema`` is the version the record was written with (``None``: before versions were written);
    ``extra`` holds the top-level keys this version does not know, written back as they were.
    """

    plan: PlanPart | None = None
    adaptive: AdaptivePart | None = None
    hybrid: HybridPart | None = None
    layouts: LayoutsPart | None = None
    encoder: EncoderPart | None = None
    schema: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    damage: tuple[tuple[str, str], ...] = ()  # (part, what is wrong), from checked(); never written

    @classmethod
    def unreadable(cls, what: str) -> CalibrationRecord:
        """A stored record that is not one at all (``what``: not JSON, not an object, …): no part usable."""
        return cls(damage=(("record", what),))

    def checked(self, ladder: tuple[int, ...] | None) -> CalibrationRecord:
        """This record as its readers use it on a collection of ``ladder`` (``None``: the checks that need
        none): each damaged part (:meth:`Part.problems`; a section that is not an object) removed, so its
        readers give the uncalibrated default, and ``damage`` listing what was wrong. Its :meth:`to_dict`
        holds the usable parts alone; the record :meth:`from_dict` read keeps every part as it was."""
        damage = list(self.damage)
        cleared: dict[str, Any] = {}
        for name in ("plan", *SECTIONS):
            part = getattr(self, name)
            if part is None:
                value = self.extra.get(name) if name in SECTIONS else None
                if value is not None:
                    damage.append((name, f"{name}: a JSON {json_kind(value)}, not an object"))
                continue
            problems = part.problems(ladder)
            if problems:
                damage += [(name, problem if len(problem) <= 200 else problem[:197] + "...") for problem in problems]
                cleared[name] = None
        if damage == list(self.damage):
            return self
        extra = {key: value for key, value in self.extra.items() if key not in SECTIONS}  # damaged sections
        return replace(self, damage=tuple(damage), extra=extra, **cleared)

    def warning(self, name: str, location: str) -> str | None:
        """The one line that says this record (of collection ``name``, kept at ``location``) is damaged and
        what searches do instead; ``None`` when it is not."""
        if not self.damage:
            return None
        parts = dict.fromkeys(part for part, _ in self.damage)
        if "record" in parts:
            fallback = "searching with the uncalibrated defaults"
        else:
            unused = " and ".join(_PART_NAMES[part] for part in parts)
            fallback = f"not using its {unused} (the uncalibrated defaults instead)"
        return (f"collection {name!r}: damaged calibration record {location}: "
                f"{'; '.join(what for _, what in self.damage)}; {fallback}; funnel calibrate {name} writes a new one")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationRecord:
        """Read a stored record (any written so far; see the module docstring)."""
        plan = {key: value for key, value in data.items() if key in _PLAN_KEYS}
        parts: dict[str, Any] = {name: part.from_dict(data[name]) for name, part in SECTIONS.items()
                                 if isinstance(data.get(name), dict)}
        schema = data.get(SCHEMA_KEY)
        extra = {key: value for key, value in data.items()
                 if key not in _PLAN_KEYS and key not in parts and key != SCHEMA_KEY}
        return cls(plan=PlanPart.from_dict(plan) if plan else None, schema=schema if _fits(schema, _INT) else None,
                   extra=extra, **parts)

    def to_dict(self) -> dict[str, Any]:
        """The stored form: today's JSON shape, with ``schema`` = :data:`SCHEMA_VERSION`."""
        out: dict[str, Any] = {SCHEMA_KEY: SCHEMA_VERSION}
        if self.plan is not None:
            out |= self.plan.to_dict()
        for name in SECTIONS:
            part = getattr(self, name)
            if part is not None:
                out[name] = part.to_dict()
        return out | {key: value for key, value in self.extra.items() if key not in out}

    def merged(self, previous: CalibrationRecord | None) -> CalibrationRecord:
        """This record, with each part it lacks taken from ``previous`` (a plan-only re-calibration keeps
        the fusion chosen from judged queries, the last layout measurements and the encoder chosen).
        Keys neither version knows are not carried over: they may describe what was re-measured."""
        if previous is None:
            return self
        return replace(self, **{name: getattr(previous, name) for name in ("plan", *SECTIONS)
                                if getattr(self, name) is None})

    def without(self, *parts: str) -> CalibrationRecord:
        """This record with these parts (``plan``, ``adaptive``, ``hybrid``, ``layouts``, ``encoder``) removed."""
        unknown = set(parts) - {"plan", *SECTIONS}
        if unknown:
            raise ValueError(f"no such part of a calibration record: {', '.join(sorted(unknown))}")
        cleared: dict[str, Any] = dict.fromkeys(parts)
        return replace(self, **cleared)

    def save_to(self, collection: Collection) -> None:
        """Save this record with ``collection`` (replacing the one it has)."""
        collection.save_calibration(self.to_dict())

    # --- the readers ------------------------------------------------------------------------------------

    def plan_for(self, ladder: tuple[int, ...], k: int) -> FunnelPlan:
        """The calibrated plan scaled to ``k`` (:meth:`PlanPart.scaled`), else the default rule on ``ladder``."""
        if self.plan is None:
            validate_k(k)
            return default_plan(ladder, k)
        return self.plan.scaled(ladder, k)

    def ef_for(self, plan: FunnelPlan) -> int | None:
        """The calibrated first-stage graph width for ``plan`` (the calibrated plan for some k), or ``None``."""
        return None if self.plan is None else self.plan.ef_for(plan)

    def adaptive_rule(self, ladder: tuple[int, ...], k: int) -> AdaptiveRule | None:
        """The calibrated adaptive rule scaled to ``k``, or ``None`` (never calibrated, or unreadable)."""
        if self.adaptive is None:
            return None
        try:
            return self.adaptive.rule_for(ladder, k)
        except (KeyError, TypeError, ValueError):
            return None

    def adaptive_pays(self) -> bool:
        """Whether the calibration measured adaptive search faster than the fixed plan."""
        return self.adaptive is not None and self.adaptive.adaptive_pays is True

    def fusion(self) -> Fusion | None:
        """The fusion chosen from judged queries, or ``None``."""
        return None if self.hybrid is None else self.hybrid.chosen_fusion()

    def mode(self) -> str | None:
        """The default mode chosen from judged queries (``dense`` or ``hybrid``), or ``None``."""
        return None if self.hybrid is None else self.hybrid.chosen_mode()

    def query_encoder(self) -> str | None:
        """The query encoder chosen by encoder calibration, or ``None``."""
        return None if self.encoder is None else self.encoder.query


_cache: tuple[dict[str, Any], tuple[int, ...] | None, CalibrationRecord] | None = None


def parse_record(raw: Mapping[str, Any] | None, ladder: tuple[int, ...] | None = None) -> CalibrationRecord | None:
    """:meth:`CalibrationRecord.from_dict` of a stored record, :meth:`~CalibrationRecord.checked` for
    ``ladder``; ``None`` for none. The last one read is remembered: a search reads its collection's
    record several times, and the embedded engine hands back the same dict until the file changes (a
    server, a copy of it: compared key by key)."""
    global _cache
    if raw is None:
        return None
    cached = _cache
    if cached is not None and cached[1] == ladder and cached[0] == raw:
        return cached[2]
    record = CalibrationRecord.from_dict(raw).checked(ladder)
    _cache = (dict(raw), ladder, record)
    return record


def read_record(collection: Collection) -> CalibrationRecord | None:
    """The collection's calibration record checked against its ladder, or ``None`` (never calibrated).

    Every reader of a collection's record goes through here. A damaged record comes back with its
    damaged parts removed (:meth:`CalibrationRecord.checked`; one that is not a record at all, with
    none: :meth:`CalibrationRecord.unreadable`), so searches fall back to the uncalibrated defaults,
    and a :class:`~retriever.errors.CalibrationWarning` says so (once per process and damage; the
    CLI prints it as one ``Warning:`` line)."""
    try:
        record = parse_record(collection.calibration(), collection.spec.dims)
    except DamagedCalibrationError as exc:
        record = CalibrationRecord.unreadable(exc.what)
    if record is not None and record.damage:
        line = record_warning(collection, record)
        if line not in _warned:  # not the warnings registry's: importing torch resets it
            _warned.add(line)
            warnings.warn(CalibrationWarning(line), stacklevel=2)
    return record


_warned: set[str | None] = set()


def record_warning(collection: Collection, record: CalibrationRecord | None) -> str | None:
    """The one-line warning for ``collection``'s (checked) record, or ``None`` when it is not damaged."""
    return None if record is None else record.warning(collection.spec.name, collection.calibration_location)


# --- readers of a stored (dict) record, for callers that hold one ------------------------------------------

def calibrated_plan(record: Mapping[str, Any], ladder: tuple[int, ...], k: int) -> FunnelPlan:
    """The stored record's plan for ``k`` (see :meth:`PlanPart.scaled`; a damaged plan: the default rule)."""
    parsed = parse_record(record, ladder)
    assert parsed is not None
    return parsed.plan_for(ladder, k)


def calibrated_ef(record: Mapping[str, Any], plan: FunnelPlan) -> int | None:
    """The stored record's first-stage graph width for ``plan`` (see :meth:`PlanPart.ef_for`)."""
    return CalibrationRecord.from_dict(record).checked(None).ef_for(plan)


def scale_rule(section: Mapping[str, Any], ladder: tuple[int, ...], k: int) -> AdaptiveRule:
    """A stored ``adaptive`` section's rule for ``k`` (see :meth:`AdaptivePart.rule_for`)."""
    return AdaptivePart.from_dict(section).rule_for(ladder, k)


def calibrated_fusion(record: Mapping[str, Any] | None) -> Fusion | None:
    """The fusion a stored record's calibration chose (its ``hybrid`` section), or ``None``."""
    parsed = parse_record(record)
    return None if parsed is None else parsed.fusion()


def calibrated_mode(record: Mapping[str, Any] | None) -> str | None:
    """The default mode a stored record's calibration chose from judged queries, or ``None``."""
    parsed = parse_record(record)
    return None if parsed is None else parsed.mode()

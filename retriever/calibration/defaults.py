"""The defaults policy: how a collection searches when the caller says nothing, from its calibration record.

The plan and graph width (the calibrated plan scaled to k, else the documented rule), whether to
search adaptively (only where calibration measured it faster) and with which rule, the mode and
fusion of a collection with a lexical index, and the query encoder. Each reads the collection's
:class:`~retriever.calibration.record.CalibrationRecord` through
:func:`~retriever.calibration.record.read_record`, which checks it: a damaged part is not used (the
uncalibrated default instead) and a :class:`~retriever.errors.CalibrationWarning` says so;
:func:`calibration_warning` gives that line to show with an answer (the HTTP service's).
"""

from __future__ import annotations

from retriever.calibration.plans import search_ladder
from retriever.calibration.record import read_record, record_warning
from retriever.errors import InvalidPlanError
from retriever.query.adaptive import AdaptiveRule
from retriever.query.fusion import FUSIONS, Fusion
from retriever.query.plan import FunnelPlan, default_plan
from retriever.store.base import Collection


def default_plan_for(collection: Collection, k: int) -> FunnelPlan:
    """The collection's calibrated plan scaled to ``k`` when it has one, else the default rule."""
    record = read_record(collection)
    if record is None or record.plan is None:  # never calibrated, or a damaged plan (read_record warned)
        return default_plan(search_ladder(collection.spec), k)  # from the graph's dim (the coarsest by default)
    return record.plan_for(collection.spec.dims, k)


def default_ef_for(collection: Collection, plan: FunnelPlan) -> int | None:
    """The first-stage graph width calibrated with the collection's plan (``plan`` is that plan for
    some k), or ``None``: the default rule (``max(128, shortlist)``)."""
    record = read_record(collection)
    return None if record is None else record.ef_for(plan)


def query_encoder_for(collection: Collection, encoder: str | None, device: str | None) -> str | None:
    """The encoder for this collection's queries: ``encoder`` when given, else the one ``funnel
    calibrate`` chose (on a CPU, when it is installed here), else ``openvino-bf16`` for a collection
    whose documents it encoded (``funnel index`` chose it on the corpus, measured on both sides),
    else ``None`` (the default: see :func:`retriever.encoding.embedder.resolve_encoder`)."""
    if encoder is not None and encoder != "auto":
        return encoder
    if device is not None and not device.startswith("cpu"):
        return encoder
    from retriever.encoding.embedder import gpu_present
    from retriever.encoding.names import BF16, available

    record = read_record(collection)
    chosen = None if record is None else record.query_encoder()
    if chosen is not None and available(chosen):
        return chosen
    if collection.spec.encoder == BF16 and device is None and not gpu_present() and available(BF16):
        return BF16
    return encoder


def adaptive_rule_for(collection: Collection, k: int) -> AdaptiveRule | None:
    """The collection's calibrated adaptive rule scaled to ``k``, or ``None`` (never calibrated for it)."""
    record = read_record(collection)
    return None if record is None else record.adaptive_rule(collection.spec.dims, k)


def adaptive_by_default(collection: Collection) -> bool:
    """Whether searches without a plan run adaptively: the calibration measured adaptive faster."""
    record = read_record(collection)
    return record is not None and record.adaptive_pays() and adaptive_rule_for(collection, 10) is not None


def default_mode_for(collection: Collection) -> str:
    """``dense`` for a collection without a lexical index; with one, the mode its calibration chose
    from judged queries (``funnel calibrate --qrels``), else ``hybrid`` (measured better in 3 of
    the 4 data set × model pairs of benchmarks/results/hybrid/, see the README)."""
    if not collection.spec.lexical:
        return "dense"
    record = read_record(collection)
    return (None if record is None else record.mode()) or "hybrid"


def fusion_for(collection: Collection, fusion: str | Fusion | None) -> Fusion:
    """A fusion by name (the calibrated parameters when calibration chose that method, else the
    method's documented defaults), a :class:`Fusion` as given, or ``None`` → the calibrated one
    (else the documented default)."""
    if isinstance(fusion, Fusion):
        return fusion
    record = read_record(collection)
    calibrated = None if record is None else record.fusion()
    if fusion is None:
        return calibrated or Fusion()
    if not isinstance(fusion, str) or fusion not in FUSIONS:
        raise InvalidPlanError(f"unknown fusion {fusion!r} (choose from {', '.join(FUSIONS)})")
    return calibrated if calibrated is not None and calibrated.method == fusion else Fusion(fusion)


def calibration_warning(collection: Collection) -> str | None:
    """One line saying the collection's calibration record is damaged, what is wrong and what searches
    use instead; ``None`` when it is not damaged (or there is none)."""
    return record_warning(collection, read_record(collection))

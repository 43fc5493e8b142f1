"""``funnel calibrate`` as one call: the plan, the adaptive rule, the hybrid fusion, the storage
layouts and the query encoder, measured on one collection and saved as its calibration record.

A re-calibration that does not measure a section again keeps the saved one (the fusion chosen from
judged queries, the last layout and encoder measurements). With ``apply``, the chosen layout's
collection replaces the measured one once it is closed; a failed save removes the scratch copies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from retriever.calibration.adaptive import AdaptiveCalibration, calibrate_adaptive
from retriever.calibration.fusion import FusionCalibration, calibrate_fusion
from retriever.calibration.layouts import LayoutCalibration, LayoutTrial, apply_layout, calibrate_layouts
from retriever.calibration.plans import DEFAULT_TARGET, Calibration, calibrate
from retriever.calibration.record import CalibrationRecord, calibrated_plan, read_record
from retriever.errors import BadInputError

if TYPE_CHECKING:
    from retriever.calibration.encoders import EncoderCalibration, EncoderTrial
    from retriever.store.base import Catalog, Collection
    from retriever.store.layout import LayoutChoice


class Opened(Protocol):
    """What is calibrated: a collection and the model that encodes its queries (a :class:`~retriever.Retriever`)."""

    @property
    def collection(self) -> Collection: ...

    @property
    def embedder(self) -> Any: ...


@dataclass(frozen=True)
class CalibrationRequest:
    """What to measure. ``texts``: the queries (none: stored chunks used as queries); ``relevant``: their
    judgements (then the hybrid fusion is chosen too); ``queries_from`` / ``qrels_from``: where they were
    read, for the record's ``source``; ``layouts``: other storage layouts to try (``catalog`` needed);
    ``apply``: swap the collection into the chosen one; ``encoders``: query encoders to measure."""

    k: int = 10
    target: float = DEFAULT_TARGET
    sample: int = 200
    texts: Sequence[str] = ()
    relevant: Sequence[set[str]] = ()
    queries_from: str | None = None
    qrels_from: str | None = None
    layouts: Sequence[LayoutChoice] = ()
    apply: bool = False
    encoders: Sequence[str] = ()
    budget_s: float | None = None  # seconds for the plan's candidates (see plans.calibrate); None: all of them
    by: str | None = None  # what ran the calibration, noted in the record's source (e.g. "funnel index")


@dataclass
class CalibrationRun:
    """The saved calibration record and what each calibration found."""

    record: dict[str, Any]
    source: str
    plan: Calibration
    adaptive: AdaptiveCalibration
    fusion: FusionCalibration | None = None
    layouts: LayoutCalibration | None = None
    encoder: EncoderCalibration | None = None
    encoders_unmeasured: bool = False  # encoders were asked for, but the stored chunks hold no text

    def to_dict(self) -> dict[str, Any]:
        """The record with every candidate tried (``funnel calibrate --json``)."""
        return self.record | {"tried": self.plan.tried, "adaptive_tried": self.adaptive.tried} | (
            {"fusion_tried": self.fusion.tried} if self.fusion else {})


def run_calibration(opened: AbstractContextManager[Opened], request: CalibrationRequest,
                    catalog: Catalog | None = None, on_layout: Callable[[LayoutTrial], None] | None = None,
                    on_encoder: Callable[[EncoderTrial], None] | None = None) -> CalibrationRun:
    """Calibrate the collection ``opened`` holds (e.g. ``Retriever.open(name)``, closed here) and save the record.

    ``on_layout`` / ``on_encoder`` hear of each layout / encoder trial as it ends.
    """
    with opened as target:
        collection = target.collection
        name = collection.spec.name
        run = _measure(target, request, catalog, on_layout, on_encoder)
        record = CalibrationRecord.from_dict(run.record)  # the typed owner: schema version, unknown keys kept
        run.record = record.to_dict()
        try:
            record.save_to(collection)
        except BaseException:
            if run.layouts is not None and run.layouts.built is not None and catalog is not None:
                catalog.discard_scratch(*run.layouts.built)
            raise
    if run.layouts is not None and run.layouts.built is not None:
        assert catalog is not None
        kept: dict[str, Any] = {key: run.record[key] for key in ("hybrid", "encoder") if key in run.record}
        run.record = apply_layout(catalog, name, run.layouts, run.source, kept or None)
    return run


def _query_vectors(target: Opened, request: CalibrationRequest) -> tuple[dict[int, np.ndarray], str]:
    """The queries as one matrix per ladder dim, and where they came from."""
    collection = target.collection
    if request.texts:
        return (target.embedder.encode(list(request.texts), collection.spec.dims),
                f"{len(request.texts)} queries from {request.queries_from}")
    batch = next(iter(collection.points(batch_size=request.sample)), None)
    if batch is None:
        raise BadInputError(f"collection {collection.spec.name!r} is empty: index something first")
    return batch.vectors, f"{len(batch.ids)} stored chunks used as queries"


def _measure(target: Opened, request: CalibrationRequest, catalog: Catalog | None,
             on_layout: Callable[[LayoutTrial], None] | None,
             on_encoder: Callable[[EncoderTrial], None] | None) -> CalibrationRun:
    """Every calibration asked for, in order: plan, adaptive rule, fusion, layouts, encoders."""
    collection, k, goal = target.collection, request.k, request.target
    if request.relevant and not collection.spec.lexical:
        raise BadInputError(f"collection {collection.spec.name!r} has no lexical index, so no fusion to calibrate: "
                            "index it with --lexical bm25, or drop --qrels")
    vectors, source = _query_vectors(target, request)
    if request.by:
        source = f"{request.by}: {source}"
    reference = collection.search(vectors, None, k, with_text=False)
    plan = calibrate(collection, vectors, k, goal, reference=reference, timed=True, budget_s=request.budget_s)
    adaptive = calibrate_adaptive(collection, vectors, plan.plan, reference, goal, fixed_ef=plan.hnsw_ef)
    previous = _previous(collection)
    run = CalibrationRun(record=plan.record(source) | {"adaptive": adaptive.record()}, source=source, plan=plan,
                         adaptive=adaptive)
    if request.relevant:
        run.fusion = _fusion(collection, vectors, request, plan.record(source))
        run.record["hybrid"] = run.fusion.record(f"{len(request.texts)} judged queries from {request.queries_from} "
                                                 f"/ {request.qrels_from}")
    elif previous.get("hybrid") is not None:
        run.record["hybrid"] = previous["hybrid"]  # a plan-only re-calibration keeps the fusion chosen from judged queries
    if request.layouts:
        if catalog is None:
            raise BadInputError("measuring other layouts needs the collection's catalog")
        run.layouts = calibrate_layouts(catalog, collection, request.layouts, vectors, k, goal, reference=reference,
                                        current_plan=plan.plan, current_ef=plan.hnsw_ef, keep_chosen=request.apply,
                                        on_trial=on_layout)
        run.record["layouts"] = run.layouts.record()
    elif previous.get("layouts") is not None:
        run.record["layouts"] = previous["layouts"]  # a plan-only re-calibration keeps the last layout measurements
    _encoders(target, request, run, previous, on_encoder)
    return run


def _previous(collection: Collection) -> dict[str, Any]:
    """The usable parts of the record being replaced (stored form): a damaged part is not kept (its
    :class:`~retriever.errors.CalibrationWarning` said so), nor anything of a record that is not one."""
    record = read_record(collection)
    return {} if record is None else record.to_dict()


def _fusion(collection: Collection, vectors: dict[int, np.ndarray], request: CalibrationRequest,
            plan_record: dict[str, Any]) -> FusionCalibration:
    return calibrate_fusion(collection, vectors, list(request.texts), list(request.relevant), request.k,
                            lambda depth: calibrated_plan(plan_record, collection.spec.dims, depth))


def _encoders(target: Opened, request: CalibrationRequest, run: CalibrationRun, previous: dict[str, Any],
              on_encoder: Callable[[EncoderTrial], None] | None) -> None:
    """The query encoder: measured when ``request.encoders`` lists some, else the saved choice kept."""
    if not request.encoders:
        if previous.get("encoder") is not None:
            run.record["encoder"] = previous["encoder"]
        return
    from retriever.calibration.encoders import calibrate_for_collection

    run.encoder = calibrate_for_collection(
        target, request.encoders, list(request.texts), list(request.relevant), request.k, request.sample,
        f"{len(request.texts)} queries from {request.queries_from}", on_trial=on_encoder)
    if run.encoder is not None:
        run.record["encoder"] = run.encoder.record()
    else:
        run.encoders_unmeasured = True

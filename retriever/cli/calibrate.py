"""``funnel calibrate``: measure and save a collection's defaults (see :mod:`retriever.calibration.run`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from retriever.cli.options import (
    SKIP_BAD_QUERIES_FILE,
    catalog,
    device_option,
    encoder_option,
    engine,
    engine_options,
    json_option,
    k_option,
    model_option,
    qrels_option,
    queries_option,
    skip_bad_option,
)
from retriever.errors import BadInputError

if TYPE_CHECKING:
    from retriever.calibration.encoders import EncoderTrial
    from retriever.calibration.layouts import LayoutTrial
    from retriever.calibration.run import CalibrationRun
    from retriever.store.base import Catalog
    from retriever.store.layout import LayoutChoice


def _encoders_option(text: str, device: str | None) -> list[str]:
    """``calibrate --encoders``: the encoders to measure (none on a GPU unless listed)."""
    from retriever.encoding.names import parse_encoders

    text = text.strip()
    if text == "none" or (text == "all" and device is not None and not device.startswith("cpu")):
        return []
    return parse_encoders(text)


def _layouts_options(ctx: click.Context, name: str, text: str | None,
                     apply: bool) -> tuple[Catalog | None, list[LayoutChoice]]:
    """``calibrate --layouts/--apply``, checked before the model loads: the catalog and the layouts."""
    from retriever.calibration.layouts import check_apply
    from retriever.store.layout import parse_layouts

    if text is None:
        if apply:
            raise BadInputError("--apply re-lays the collection into the layout --layouts chooses: give --layouts too")
        return None, []
    store = catalog(ctx)
    layouts = parse_layouts(text, store.read_spec(name))
    if apply:
        check_apply(store, name)
    return store, layouts


def _read_queries(queries_file: Path | None, qrels_file: Path | None, skip_bad: bool,
                  sample: int) -> tuple[list[str], list[set[str]]]:
    """The --queries texts (at most ``sample``) and, with --qrels, only the judged ones with their judgements."""
    from retriever.cli.display import report_skipped_queries
    from retriever.ingest.beir import read_qrels
    from retriever.ingest.queries import read_queries

    if queries_file is None:
        return [], []
    found = read_queries(queries_file, skip_bad=skip_bad, limit=None if qrels_file else sample)
    report_skipped_queries(found, queries_file)
    if qrels_file is None:
        return found.texts, []
    judged = read_qrels(qrels_file)
    pairs = [(t, judged[q]) for q, t in zip(found.ids, found.texts) if judged.get(q)][:sample]
    if not pairs:
        raise BadInputError(f"{qrels_file} judges none of the queries in {queries_file} (no matching query-id "
                            "with a positive score)")
    return [t for t, _ in pairs], [r for _, r in pairs]


def _encoder_progress(trial: EncoderTrial) -> None:
    from retriever.cli.display import err

    if trial.error:
        err.print(f"encoder {trial.encoder}: not measured ({trial.error})", highlight=False, markup=False)
        return
    ndcg = f", NDCG {trial.ndcg:.4f}" if trial.ndcg is not None else ""
    err.print(f"encoder {trial.encoder} ({trial.precision}): {trial.query_p50_ms:.2f} ms a query, "
              f"{trial.passages_per_s:,.0f} passages/s, recall vs fp32 {trial.recall_vs_fp32:.3f}{ndcg}",
              highlight=False, markup=False)


def _layout_progress(trial: LayoutTrial) -> None:
    from retriever.cli.display import err

    built = "measured in place" if trial.build_s is None else f"built in {trial.build_s:.1f} s"
    err.print(f"layout {trial.layout}{' (current)' if trial.current else ''}: plan {trial.plan}, recall "
              f"{trial.recall:.3f}, p50 {trial.p50_ms:.2f} ms ({built})", highlight=False, markup=False)


def _print_summary(run: CalibrationRun, name: str, k: int, target: float) -> None:
    """What the calibration chose, on stderr: plan, adaptive rule, fusion, layouts, encoders."""
    from retriever.cli.display import err, print_layouts

    if run.encoders_unmeasured:
        err.print("encoders: not measured (the stored chunks hold no text)", highlight=False)
    result, relaid = run.plan, run.layouts
    verdict = "reaches" if result.met else "does NOT reach (no candidate did; this is the best one)"
    layout_note = f" (layout {relaid.current.layout})" if relaid is not None else ""
    width = f" (graph ef {result.hnsw_ef})" if result.hnsw_ef else ""
    err.print(f"calibrated {name}{layout_note} on {run.source}: plan [bold]{result.plan}[/]{width} {verdict} "
              f"recall@{k} {result.recall:.3f} against exact (target {target})"
              + ("" if relaid is not None and relaid.applied else "; saved as the collection's default plan"))
    a = run.adaptive
    err.print(f"adaptive: first plan {a.rule.first} (ef {a.rule.first_ef or 'default'}), widen when "
              f"{a.rule.signal} < {a.rule.threshold:.4f} ({a.widened_share:.0%} widened); recall@{k} {a.recall:.3f}, "
              f"mean {a.adaptive.mean:.2f} ms vs fixed {a.fixed.mean:.2f} ms: "
              + ("[bold]the default[/]" if a.pays else "not the default (not faster at the target)"))
    if run.fusion is not None:
        fusion, nd = run.fusion, run.fusion.ndcg
        err.print(f"hybrid: best fusion {fusion.fusion} NDCG@{k} {nd['hybrid']:.4f} vs dense {nd['dense']:.4f}, "
                  f"lexical {nd['lexical']:.4f} on {fusion.queries} judged queries: default mode "
                  f"[bold]{fusion.default_mode}[/]")
    if relaid is not None:
        print_layouts(relaid, name)
    if run.encoder is not None:
        ce = run.encoder
        best = next(t for t in ce.trials if t.encoder == ce.query)
        err.print(f"encoders: queries with [bold]{ce.query}[/] ({best.precision}, {best.query_p50_ms:.2f} ms a query, "
                  f"recall@{k} vs fp32 {best.recall_vs_fp32:.3f}) from now on; fastest faithful for indexing: "
                  f"{ce.document}", highlight=False)


@click.command()
@click.argument("name")
@queries_option("queries to calibrate on (JSONL with a text field, e.g. BEIR queries.jsonl) "
                "[default: a sample of the stored chunks]")
@k_option()
@click.option("--target", envvar="FUNNEL_CALIBRATE_TARGET", show_envvar=True, type=float, default=0.98,
              help="recall@k against exact search the plan must keep")
@click.option("--sample", envvar="FUNNEL_CALIBRATE_SAMPLE", show_envvar=True, type=click.IntRange(10, 5000),
              default=200, help="queries (or stored chunks) to calibrate on")
@skip_bad_option(SKIP_BAD_QUERIES_FILE)
@qrels_option("relevance judgements of --queries (BEIR qrels TSV): also choose the hybrid fusion "
              "(and whether hybrid is the default mode) by NDCG on the judged queries; needs a --lexical index",
              name="qrels_file")
@click.option("--layouts", "layouts_text", envvar="FUNNEL_CALIBRATE_LAYOUTS", show_envvar=True, default=None,
              help="also measure other storage layouts on copies of the collection and choose the fastest that keeps "
              "the target: auto (a graph on each ladder dim, none/int8/binary) or DIM:QUANTIZATION[:disk|:ram],… "
              "(quantization none, int8, binary, binary1.5, binary2)")
@click.option("--apply", "apply_layout", is_flag=True, envvar="FUNNEL_CALIBRATE_APPLY", show_envvar=True,
              help="with --layouts: re-lay the collection in place into the chosen layout (embedded engine only)")
@click.option("--encoders", "encoders_text", envvar="FUNNEL_CALIBRATE_ENCODERS", show_envvar=True, default="all",
              help="encoders to measure on the collection's chunks and queries (speed, and fidelity to fp32 torch); the "
              "fastest faithful one becomes the default for its queries: all (every one installed), a list such as "
              "openvino,onnx-int8, or none [default: all; none on a GPU]")
@model_option
@device_option
@encoder_option
@json_option
@engine_options
@click.pass_context
def calibrate(ctx: click.Context, name: str, queries_file: Path | None, k: int, target: float, sample: int,
              skip_bad: bool, qrels_file: Path | None, layouts_text: str | None, apply_layout: bool,
              encoders_text: str, model: str | None, device: str | None, encoder: str | None,
              as_json: bool) -> None:
    """Find and save the fastest funnel plan that keeps recall@k against exact search ≥ TARGET.

    Candidate plans are checked against exact search on real queries (--queries) or on stored
    chunks used as queries; the cheapest passing plan of each stage structure is timed here and the
    fastest is saved with the collection: later searches without --plan use it (scaled to their k).
    With --layouts, other storage layouts are measured the same way on scratch copies, and --apply
    swaps the collection into the chosen one.
    """
    from retriever.calibration.run import CalibrationRequest, run_calibration
    from retriever.cli.display import print_json
    from retriever.query.plan import validate_k
    from retriever.retriever import Retriever

    validate_k(k)
    if qrels_file is not None and queries_file is None:
        raise BadInputError("--qrels judges the --queries: give both")
    store, layouts = _layouts_options(ctx, name, layouts_text, apply_layout)
    texts, relevant = _read_queries(queries_file, qrels_file, skip_bad, sample)  # before the model loads
    request = CalibrationRequest(k=k, target=target, sample=sample, texts=texts, relevant=relevant,
                                 queries_from=None if queries_file is None else str(queries_file),
                                 qrels_from=None if qrels_file is None else str(qrels_file), layouts=layouts,
                                 apply=apply_layout, encoders=_encoders_option(encoders_text, device))
    opened = Retriever.open(name, model=model, device=device, engine=engine(ctx), encoder=encoder)
    run = run_calibration(opened, request, store, on_layout=None if as_json else _layout_progress,
                          on_encoder=None if as_json else _encoder_progress)
    if as_json:
        print_json(run.to_dict())
    else:
        _print_summary(run, name, k, target)

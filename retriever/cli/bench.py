"""``funnel bench``: quality, latency and storage per dim, plan and quantization on a BEIR split; or encoders."""

from __future__ import annotations

from pathlib import Path

import click

from retriever.cli.options import (
    catalog,
    device_option,
    dims_option,
    engine_options,
    json_option,
    k_option,
    no_progress_option,
    placement_options,
)
from retriever.errors import BadInputError


def _bench_encoders(data: Path, model: str, text: str, split: str, dims: str | None, k: int,
                    max_queries: int | None, out: Path, as_json: bool) -> None:
    """``funnel bench --encoders``: the encoder comparison, written to OUT/encoders.{json,md}."""
    import json

    from retriever.bench.encoders import markdown_table, run_encoder_bench
    from retriever.bench.machine import machine
    from retriever.cli.display import err, print_json
    from retriever.cli.display import out as stdout
    from retriever.encoding.names import parse_encoders
    from retriever.ingest.beir import check_layout

    encoders = parse_encoders(text)
    check_layout(data, split)

    def row_done(row: dict) -> None:
        if not as_json:
            err.print(f"{row['encoder']} ({row['precision']}): NDCG@10 {row['ndcg@10']}, {row['query_p50_ms']:.2f} ms "
                      f"a query, {row['passages_per_s']:,.0f} passages/s", highlight=False, markup=False)

    result = run_encoder_bench(data, model, encoders, split, dims, k, max_queries, on_row=row_done)
    result["machine"] = machine("funnel")
    out.mkdir(parents=True, exist_ok=True)
    (out / "encoders.json").write_text(json.dumps(result, indent=2))
    table = markdown_table(result)
    ran = result["machine"]
    commit = (ran["git"] or {}).get("commit", "")[:12] or "unknown"
    (out / "encoders.md").write_text(f"# Encoders on {data} ({split}, {result['queries']} queries, "
                                     f"{result['passages']:,} passages), model {model}\n\n`{ran['command']}` — "
                                     f"{ran['date']}, commit `{commit}`, {ran['cpu']}, {ran['cpu_count']} cores\n\n"
                                     f"{table}")
    if as_json:
        print_json(result)
    else:
        stdout.print(table, highlight=False, markup=False)


@click.command()
@click.option("--data", "data", envvar="FUNNEL_BENCH_DATA", show_envvar=True, required=True,
              type=click.Path(path_type=Path), help="BEIR directory (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)")
@click.option("--model", "models", envvar="FUNNEL_BENCH_MODELS", show_envvar=True, multiple=True,
              help="model name or path, repeatable [default: all-MiniLM-L6-v2]")
@dims_option("dim ladder [default: 64,128,256 and the model's dim]")
@click.option("--plans", "plans", envvar="FUNNEL_BENCH_PLANS", show_envvar=True, multiple=True,
              help="funnel plan to measure, repeatable: DIM:LIMIT,…, 'default', 'auto' (calibrated) or 'adaptive' "
              "(calibrated adaptive search) [default: default, auto and adaptive]")
@k_option(long=True)
@click.option("--quantization", envvar="FUNNEL_BENCH_QUANTIZATION", show_envvar=True, default="none",
              help="comma-separated storage variants to measure: none, int8, binary, binary1.5, binary2")
@click.option("--split", envvar="FUNNEL_BENCH_SPLIT", show_envvar=True, default="test", help="qrels split")
@click.option("--max-queries", envvar="FUNNEL_BENCH_MAX_QUERIES", show_envvar=True, type=int, default=None,
              help="use only the first N judged queries [default: all]")
@click.option("--target", envvar="FUNNEL_BENCH_TARGET", show_envvar=True, type=float, default=0.98,
              help="recall@k against exact that 'auto' must reach")
@click.option("--out", envvar="FUNNEL_BENCH_OUT", show_envvar=True, type=click.Path(path_type=Path),
              default=Path("bench-results"), help="directory for results.json, results.md and the plots")
@click.option("--no-memory", is_flag=True, envvar="FUNNEL_BENCH_NO_MEMORY", show_envvar=True,
              help="skip the resident-memory probe (a fresh process per collection)")
@click.option("--modes", envvar="FUNNEL_BENCH_MODES", show_envvar=True, default="",
              help="comma-separated search-mode rows to add: lexical, hybrid-union, hybrid-rrf, hybrid-dbsf (the bench "
              "collection then gets a BM25 index, and an independent bm25s baseline row is added) [default: none]")
@click.option("--fusion-split", envvar="FUNNEL_BENCH_FUSION_SPLIT", show_envvar=True, default=None,
              help="also calibrate the hybrid fusion on this qrels split's judged queries (e.g. train) and add a "
              "hybrid-calibrated row")
@click.option("--encoders", "encoders_text", envvar="FUNNEL_BENCH_ENCODERS", show_envvar=True, default=None,
              help="instead: compare encoder backends of the (first) model, e.g. torch,onnx,onnx-int8,openvino,"
              "openvino-int8 or all: NDCG@10 per dim, recall vs the first one, query p50/p99, passages/s, load time, "
              "size (OUT/encoders.json, OUT/encoders.md)")
@device_option
@json_option
@no_progress_option("no progress bars")
@engine_options
@placement_options
@click.pass_context
def bench(ctx: click.Context, data: Path, models: tuple[str, ...], dims: str | None, plans: tuple[str, ...], k: int,
          quantization: str, split: str, max_queries: int | None, target: float, out: Path, no_memory: bool,
          modes: str, fusion_split: str | None, encoders_text: str | None, device: str | None, as_json: bool,
          no_progress: bool) -> None:
    """Measure quality, latency and storage per dim, funnel plan and quantization on a BEIR split.

    Per dim alone (exact and HNSW) and per plan: NDCG/Recall/MRR@k, recall@k against the exact
    top-dim result, latency p50/p95/p99 and QPS; bytes per vector, on disk, resident memory.
    Indexes the corpus into bench collections in the data dir (a later run reuses them) and writes
    OUT/results.json, OUT/results.md, OUT/ndcg_vs_bytes.png and OUT/ndcg_vs_latency.png.
    """
    import json

    from retriever.bench.machine import machine
    from retriever.bench.report import markdown, plot, rich_tables
    from retriever.bench.runner import BenchConfig, run_bench
    from retriever.cli.display import BenchProgressBar, err, print_json
    from retriever.cli.display import out as stdout
    from retriever.encoding.embedder import DEFAULT_MODEL
    from retriever.ingest.beir import check_layout

    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file, not a directory")
    if encoders_text is not None:
        _bench_encoders(data, models[0] if models else DEFAULT_MODEL, encoders_text, split, dims, k, max_queries,
                        out, as_json)
        return
    if fusion_split and fusion_split.strip():
        check_layout(data, fusion_split.strip())
    config = BenchConfig(
        data=check_layout(data, split), models=models or (DEFAULT_MODEL,), dims=dims,
        plans=tuple(p.strip() for p in plans) or ("default", "auto", "adaptive"), k=k,
        quantizations=tuple(q.strip() for q in quantization.split(",") if q.strip()), split=split,
        max_queries=max_queries, target=target, device=device, memory=not no_memory,
        modes=tuple(m.strip() for m in modes.split(",") if m.strip()),
        fusion_split=fusion_split.strip() if fusion_split and fusion_split.strip() else None,
    )
    progress = BenchProgressBar(enabled=not no_progress)
    try:
        results = run_bench(config, catalog(ctx), progress)
    finally:
        progress.stop()
    results["machine"] = machine("funnel")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(results))
    plots = plot(results, out)
    if as_json:
        print_json(results)
    else:
        for table in rich_tables(results, width=stdout.width):
            stdout.print(table)
    err.print(f"wrote {out / 'results.json'}, {out / 'results.md'}, " + ", ".join(str(p) for p in plots))

"""``funnel bench`` results as rows, a rich table, Markdown and PNG plots."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.table import Table

from retriever.errors import MissingExtraError

PLOTS = ("ndcg_vs_bytes.png", "ndcg_vs_latency.png")


def rows(results: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One flat row per (model, quantization, dim alone exact/HNSW or plan)."""
    for model in results["models"]:
        for variant in model["variants"]:
            base = {"model": Path(model["model"]).name, "model_path": model["model"],
                    "quantization": variant["quantization"]}
            for entry in variant["dims"]:
                for mode in ("exact", "hnsw"):
                    yield base | {"search": f"{mode} {entry['dim']}", "kind": "dim"} | entry[mode]
            for plan in variant["plans"]:
                label = f"funnel {plan['plan']}" + (f" ({plan['label']})" if plan["label"] != "given" else "")
                if "depth" in plan:
                    label = (f"funnel adaptive {plan['adaptive']['first_plan']} → {plan['plan']} "
                             f"({plan['depth']['widened_share']:.0%} widened)")
                yield base | {"search": label, "kind": "plan", "plan": plan["plan"]} | {
                    key: plan[key] for key in plan if key not in ("plan", "label")} | {"plan_label": plan["label"]}
            for row in variant.get("modes", []):
                label = "lexical bm25" if row["mode"] == "lexical" else f"hybrid {row['fusion']} + funnel {row['plan']}"
                if row["label"] == "hybrid-calibrated":
                    label += " (calibrated)"
                yield base | {"search": label, "kind": row["mode"]} | {
                    key: row[key] for key in row if key not in ("label", "mode")} | {"plan_label": row["label"]}
    baseline = results.get("baseline")
    if baseline:
        yield {"model": "bm25s (independent)", "model_path": baseline["library"], "quantization": "-",
               "search": f"bm25s BM25 ({baseline['library']})", "kind": "bm25s", "plan_label": "bm25s",
               "recall_vs_exact@" + str(results["k"]): float("nan"), "bytes_per_vector": 0} | {
            key: baseline[key] for key in baseline if key != "label"}



FULL_COLUMNS_WIDTH = 150  # below this many columns of terminal, the table leaves out the secondary metrics


def rich_tables(results: dict[str, Any], width: int = FULL_COLUMNS_WIDTH) -> list[Table]:
    """One table per (model, quantization), fitted to a console ``width`` columns wide.

    Below :data:`FULL_COLUMNS_WIDTH` the table keeps only NDCG, recall vs exact, p50/p99, QPS and
    bytes per vector (``results.md`` always has every column), and long search labels wrap.
    """
    k = results["k"]
    wide = width >= FULL_COLUMNS_WIDTH
    columns = {
        "search": lambda r: r["search"],
        f"NDCG@{k}": lambda r: f"{r[f'ndcg@{k}']:.4f}",
        f"Recall@{k}": lambda r: f"{r[f'recall@{k}']:.4f}",
        f"MRR@{k}": lambda r: f"{r[f'mrr@{k}']:.4f}",
        f"vs exact@{k}": lambda r: _ratio(r[f"recall_vs_exact@{k}"]),
        "p50 ms": lambda r: f"{r['latency_ms']['p50']:.2f}",
        "p95 ms": lambda r: f"{r['latency_ms']['p95']:.2f}",
        "p99 ms": lambda r: f"{r['latency_ms']['p99']:.2f}",
        "QPS": lambda r: f"{r['qps']:,.0f}",
        "stored": lambda r: _bytes(r, "stored"),  # bytes per vector: held by the collection / read per candidate
        "scored": lambda r: _bytes(r, "scored"),
    }
    if not wide:
        for secondary in (f"Recall@{k}", f"MRR@{k}", "p95 ms"):
            del columns[secondary]
        short = {f"vs exact@{k}": "vs exact", "p50 ms": "p50", "p99 ms": "p99"}  # the caption says ms
        columns = {short.get(c, c): f for c, f in columns.items()}
    tables: dict[tuple[str, str], Table] = {}
    for r in rows(results):
        key = (r["model"], r["quantization"])
        if key not in tables:
            table = tables[key] = Table(
                title=f"{r['model']} · quantization {r['quantization']} — {results['queries']} {results['split']} "
                f"queries, k={k}", title_justify="left", caption="stored, scored: bytes per vector" + ("" if wide else "; p50, p99 in ms; more columns in results.md"),
                caption_justify="left")
            for col in columns:
                if col == "search":
                    table.add_column(col, justify="left", overflow="fold", min_width=12, ratio=1)
                else:
                    table.add_column(col, justify="right", no_wrap=True)
        tables[key].add_row(*(cell(r) for cell in columns.values()))
    return list(tables.values())


def _bytes(r: dict[str, Any], which: str) -> str:
    """A row's bytes stored or scored per vector ("-": none, or a results file from before the split,
    whose one ``bytes_per_vector`` was the bytes scored)."""
    n = r.get(f"bytes_{which}_per_vector", r.get("bytes_per_vector") if which == "scored" else None)
    return f"{n:,}" if n else "-"


def _ratio(x: float) -> str:
    return "-" if x != x else f"{x:.3f}"  # NaN: not comparable (the independent baseline)


def _mib(n: int | None) -> str:
    """Bytes as MiB; ``None`` (a server does not report a collection's disk use) as n/a."""
    return "n/a (server)" if n is None else f"{n / 2**20:,.1f} MiB"


def markdown(results: dict[str, Any]) -> str:
    k = results["k"]
    m = results.get("machine", {})
    lines = [f"# funnel bench — {results['data']} ({results['split']}, {results['queries']} queries, k={k})", ""]
    if m:
        lines += [f"Machine: {m.get('cpu')} ({m.get('cpu_count')} cores), {m.get('platform')}, "
                  f"torch {m.get('torch')}, GPU: {m.get('gpu') or 'none'}. Run {m.get('date')}: `{m.get('command')}`", ""]
    lines += [f"| model | quant | search | NDCG@{k} | Recall@{k} | MRR@{k} | recall vs exact@{k} | p50 ms | p95 ms "
              "| p99 ms | QPS | bytes stored/vector | bytes scored/vector |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows(results):
        lat = r["latency_ms"]
        lines.append(f"| {r['model']} | {r['quantization']} | {r['search']} | {r[f'ndcg@{k}']:.4f} | "
                     f"{r[f'recall@{k}']:.4f} | {r[f'mrr@{k}']:.4f} | {_ratio(r[f'recall_vs_exact@{k}'])} | "
                     f"{lat['p50']:.2f} | {lat['p95']:.2f} | {lat['p99']:.2f} | {r['qps']:,.0f} | "
                     f"{_bytes(r, 'stored')} | {_bytes(r, 'scored')} |")
    adaptive = [r for r in rows(results) if "depth" in r]
    if adaptive:
        lines += ["", "Adaptive search depth (share of queries widened to the full plan, candidates scored per "
                  "query) and its calibration (mean latency measured on the calibration queries):", "",
                  "| model | quant | first pass → full plan | widened | candidates mean / p50 / p90 | mean stages "
                  "| calibrated: adaptive vs fixed mean ms | adaptive pays |", "|---|---|---|---|---|---|---|---|"]
        for r in adaptive:
            d, a = r["depth"], r["adaptive"]
            lines.append(f"| {r['model']} | {r['quantization']} | {a['first_plan']} → {r['plan']} | "
                         f"{d['widened_share']:.1%} | {d['mean_candidates']:,.0f} / {d['candidates_p50']:,.0f} / "
                         f"{d['candidates_p90']:,.0f} | {d['mean_stages']:.2f} | {a['mean_ms_adaptive']:.3f} vs "
                         f"{a['mean_ms_fixed']:.3f} | {'yes' if a['adaptive_pays'] else 'no'} |")
    lines += ["", "Storage per collection (resident memory: a fresh process, after opening the collection, and "
              "after running the queries with the default plan):", "",
              "| model | quant | points | on disk | per dim on disk | RSS at open | RSS after queries (anon + file-backed) |",
              "|---|---|---|---|---|---|---|"]
    for model in results["models"]:
        for v in model["variants"]:
            dims = ", ".join(f"{d['dim']}: {_mib(d['disk_bytes'])}" for d in v["dims"])
            mem = v.get("memory")
            rss = (f"{mem['collection_rss_open'] / 2**20:,.0f} MiB | {mem['collection_rss'] / 2**20:,.0f} MiB "
                   f"({mem['collection_rss_anon'] / 2**20:,.0f} + {mem['collection_rss_file'] / 2**20:,.0f})"
                   ) if mem else "not measured | not measured"
            lines.append(f"| {Path(model['model']).name} | {v['quantization']} | {v['points']:,} | "
                         f"{_mib(v['disk_bytes'])} | {dims} | {rss} |")
    lines += ["", "Query encoding (one query at a time, not included in the latencies above): "
              + "; ".join(f"{Path(mo['model']).name} p50 {mo['query_encode_ms']['p50']:.2f} ms on {mo['device']}"
                          for mo in results["models"]), ""]
    return "\n".join(lines)


def require_plotting() -> None:
    """Raise :class:`MissingExtraError` unless matplotlib (the bench extra) is installed."""
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingExtraError("funnel bench (its PNG plots)", "matplotlib", "bench")


MARKERS = {"exact": "o", "hnsw": "^", "funnel": "*", "lexical": "s", "hybrid": "D", "bm25s": "x"}


def plot(results: dict[str, Any], out: Path) -> list[Path]:
    """NDCG@k vs bytes per vector and vs p50 latency: one point per dim / plan / quantization.

    Colour = model, marker = search (exact dim, HNSW dim, funnel plan), hollow = int8.
    """
    require_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = results["k"]
    points = _plotted(results)
    models = list(dict.fromkeys(r["model"] for r in points))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    written = []
    for name, x_label in ((PLOTS[0], "bytes per vector scored (log)"),
                          (PLOTS[1], "p50 latency per query, ms (engine only, log)")):
        fig, ax = plt.subplots(figsize=(9, 5.5))
        for r in points:
            x = r["bytes_per_vector"] if name == PLOTS[0] else r["latency_ms"]["p50"]
            if not x:
                continue  # no vectors scored (the independent BM25 baseline): no place on a log axis
            _plot_point(ax, r, x, r[f"ndcg@{k}"], colours[r["model"]])
        ax.legend(handles=_legend(points, models, colours), fontsize=7, loc="lower right")
        ax.set_xscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"NDCG@{k}")
        ax.set_title(f"NDCG@{k} vs {'storage' if name == PLOTS[0] else 'latency'} — {Path(results['data']).name}, "
                     f"{results['queries']} queries", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def _plotted(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows plotted: a later quantization variant adds only its quantized dims and its plans."""
    first_quant = {m["model"]: m["variants"][0]["quantization"] for m in results["models"]}
    return [
        r for r in rows(results)
        if r["kind"] in ("plan", "lexical", "hybrid", "bm25s") or r["quantization"] == first_quant.get(r["model_path"], r["quantization"])
        or r["bytes_per_vector"] < 4 * int(r["search"].split()[1])
    ]


def _plot_point(ax: Any, r: dict[str, Any], x: float, y: float, colour: Any) -> None:
    """One row's marker (hollow: quantized) and, for the rows worth naming, its label."""
    kind = r["search"].split()[0]
    hollow = r["quantization"] != "none"
    if kind == "bm25s":  # an unfilled marker: one colour
        ax.scatter([x], [y], marker=MARKERS[kind], s=45, c=[colour])
    else:
        ax.scatter([x], [y], marker=MARKERS[kind], s=110 if kind == "funnel" else 45,
                   facecolors="none" if hollow else [colour], edgecolors=[colour])
    if kind in ("lexical", "hybrid", "bm25s"):
        text = r["plan_label"]
    elif kind == "funnel":
        text = r["plan_label"] if r["plan_label"] != "given" else r["plan"]
    elif (kind == "exact" and not hollow) or (kind == "hnsw" and hollow):
        text = r["search"].split()[1]
    else:
        return
    ax.annotate(text + (f" {r['quantization']}" if hollow else ""), (x, y), fontsize=7,
                xytext=(4, -11 if hollow else 4), textcoords="offset points")


def _legend(points: list[dict[str, Any]], models: list[str], colours: dict[str, Any]) -> list[Any]:
    """Legend entries: each model's colour, each kind of search plotted, and the hollow int8 marker."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[m], marker="s", linestyle="", label=m) for m in models]
    kinds = {r["search"].split()[0] for r in points}
    handles += [Line2D([], [], color="grey", marker=mk, linestyle="", label=f"{kind} (dim alone)"
                       if kind in ("exact", "hnsw") else "funnel plan" if kind == "funnel" else kind)
                for kind, mk in MARKERS.items() if kind in kinds]
    handles.append(Line2D([], [], color="grey", marker="o", markerfacecolor="none", linestyle="",
                          label="int8 (hollow)"))
    return handles

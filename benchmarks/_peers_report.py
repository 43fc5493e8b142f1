"""Table, Markdown and plot of a ``peers.py`` result."""

from __future__ import annotations

import json
from pathlib import Path

from _machine import commit_line
from rich.table import Table

MIB = 2**20


def rows(result: dict) -> list[dict]:
    out = []
    for name, e in result["configs"].items():
        lat = e.get("latency_ms") or {}
        mem = e.get("memory") or {}
        out.append({
            "config": name,
            "settings": json.dumps(e.get("settings")) if e.get("settings") is not None else "—",
            "threads": e["threads"].split(";")[0].split(":")[0] if e.get("threads") else "",
            "build": f"{e['build']['build_s']:.1f}" if e.get("build") else "—",
            "recall": f"{e['recall']:.3f}" if "recall" in e else "—",
            "p50": f"{lat['p50']:.3f}" if lat else "—",
            "p99": f"{lat['p99']:.3f}" if lat else "—",
            "qps": f"{lat['qps']:,.0f}" if lat else "—",
            "rss_open": f"{mem['rss_open'] / MIB:,.0f}" if mem else "—",
            "rss_after": f"{mem['rss_after'] / MIB:,.0f}" if mem else "—",
            "skipped": e.get("skipped", ""),
        })
    return out


HEAD = ("config", "settings (tuned)", "threads", "build s", "recall@10", "p50 ms", "p99 ms", "QPS",
        "RSS open MiB", "RSS after MiB")
KEYS = ("config", "settings", "threads", "build", "recall", "p50", "p99", "qps", "rss_open", "rss_after")


def table(result: dict) -> Table:
    t = Table(title=f"peers: {result['vectors']}, {result['measured_queries']} measured queries, k=10")
    for h in HEAD:
        t.add_column(h, justify="left" if h in ("config", "settings (tuned)", "threads") else "right")
    for r in rows(result):
        t.add_row(*(r[k] for k in KEYS))
    return t


def markdown(result: dict) -> str:
    m = result["machine"]
    lb, la = result["load_before"], result["load_after"]
    lines = [
        f"# Peers: funnel vs exact, Edge HNSW (float/int8/binary), FAISS HNSW, a FAISS+numpy cascade ({m['date']})",
        "", f"`{m['command']}`", "", commit_line(m), "",
        f"Machine: {m['cpu']} ({m['cpu_count']} cores), {m['platform']}. **Shared and noisy**: other engineers ran "
        f"jobs on the same 2 cores during this run (load average {lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f} at the "
        f"start, {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f} at the end); ratios are from one run, side by side.", "",
        f"Vectors: {result['vectors']}; {result['points']:,} points × {result['dim']} dims, ladder "
        f"{'/'.join(map(str, result['ladder']))}. {result['tune_queries']} tuning queries (every setting below was "
        f"chosen on them) and {result['measured_queries']} other, measured queries; recall@10 against the exact "
        f"top-10 (numpy); target {result['target']}. Latency: one query at a time after a warm-up pass over the "
        f"measured queries (so on-disk vectors are in the page cache), {result.get('repeats', 1)} timed passes pooled; QPS = sequential queries per second. "
        f"RSS: a fresh process opens the index (at open) and runs the measured queries (after). Total run "
        f"{result['seconds'] / 60:.1f} min.", "",
        "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for r in rows(result):
        lines.append("| " + " | ".join(r[k] for k in KEYS) + " |")
    lines += ["", "Skipped:", ""]
    lines += [f"- {r['config']}: {r['skipped']}" for r in rows(result) if r["skipped"]] or ["- none"]
    lines += ["", "Threads and settings per config:", ""]
    for name, e in result["configs"].items():
        b = e.get("build") or {}
        cached = " (cached build, time of the original build)" if b.get("cached") else ""
        lines.append(f"- **{name}**: threads: {e['threads']}. Build {b.get('build_s', 0):.1f} s = upserts/adds "
                     f"{b.get('upsert_s', 0):.1f} s + optimize {b.get('optimize_s', 0):.1f} s{cached}. "
                     f"Chosen: `{json.dumps(e.get('settings'))}`. {e.get('note', '')}")
    lines += ["", "Tuning points (tuning queries only):", "", "| config | setting | recall@10 | p50 ms |",
              "|---|---|---|---|"]
    for name, e in result["configs"].items():
        for p in e.get("tuning") or []:
            lines.append(f"| {name} | `{json.dumps(p['setting'])}` | {p['recall']:.3f} | {p['p50_ms']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    drawn = [(name, e) for name, e in result["configs"].items() if "recall" in e or e.get("tuning")]
    for idx, (name, e) in enumerate(drawn):
        color = plt.get_cmap("tab10" if len(drawn) <= 10 else "tab20")(idx)
        pts = sorted(e.get("tuning") or [], key=lambda p: p["p50_ms"])
        if pts:  # every tuning point as a dot; the line is their frontier (best recall so far by latency)
            frontier, best = [], -1.0
            for p in pts:
                if p["recall"] > best:
                    frontier.append(p)
                    best = p["recall"]
            ax.plot([p["p50_ms"] for p in frontier], [p["recall"] for p in frontier], marker=".", alpha=0.8,
                    label=name, color=color)
            ax.scatter([p["p50_ms"] for p in pts], [p["recall"] for p in pts], s=8, color=color, alpha=0.35)
        if "recall" in e:
            ax.scatter([e["latency_ms"]["p50"]], [e["recall"]], marker="*", s=160, color=color, edgecolor="k",
                       zorder=5, label=None if pts else name)
    ax.axhline(result["target"], color="grey", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency, ms (one query, one thread; log)")
    ax.set_ylabel("recall@10 vs exact")
    ax.set_title(f"{result['points']:,} × {result['dim']}: tuning points (dots, frontier as a line; tuning queries), "
                 "measured choice (stars)", fontsize=10)
    ax.set_ylim(max(0.5, ax.get_ylim()[0]), 1.005)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

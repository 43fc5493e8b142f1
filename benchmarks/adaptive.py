"""Adaptive search against the calibrated fixed plan at the same recall target (issue 10, item 3).

Both are calibrated on real queries of the *train* split (``--calibrate`` of them: the fixed plan by
``funnel calibrate``'s timed search, the adaptive rule on top of it), then measured on the held-out
*test* split: latency per query on the engine (query vectors encoded once), one query at a time and
in batches, interleaved over ``--rounds`` rounds (the medians are reported); recall@k against exact
search; NDCG@10 of exact / fixed / adaptive; the share of queries adaptive search widened.

Run (indexes the corpus into --data-dir unless it holds --collection)::

    python benchmarks/adaptive.py --data-dir /work/bench-cache/adaptive-home --collection finqa
    python benchmarks/adaptive.py --data-dir /work/bench-cache/adaptive-home --collection finqa --walk-graph

(``--walk-graph``: on a copy whose 64-dim graph is walked, as in a collection above the engine's
10 MB full-scan threshold; below it every "HNSW" stage is a full scan.)

Target: adaptive mean latency ≥ 30 % below the fixed plan's, NDCG@10 loss ≤ 0.002 (vs the fixed plan).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _machine import SHARED_DATA, commit_line, machine
from rich.console import Console
from rich.table import Table

from retriever.bench.runner import Judge
from retriever.calibration.adaptive import calibrate_adaptive
from retriever.calibration.plans import calibrate, recall_against
from retriever.calibration.timing import time_each
from retriever.encoding.embedder import DEFAULT_MODEL, Embedder
from retriever.ingest.beir import load_split
from retriever.ingest.indexer import index_corpus
from retriever.query.adaptive import AdaptiveSpec
from retriever.query.spec import QuerySpec
from retriever.search import search_each
from retriever.store.base import Collection
from retriever.store.edge import collection as edge_store
from retriever.store.edge.catalog import EdgeCatalog


def _timings(coll: Collection, vectors: dict[int, np.ndarray], spec: QuerySpec, batch: int) -> dict[str, float]:
    n = len(next(iter(vectors.values())))
    rows = [{d: m[i : i + 1] for d, m in vectors.items()} for i in range(n)]
    _, single = time_each(lambda q: search_each(coll, q, [spec]), rows, warmup=50)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        search_each(coll, {d: m[start : start + batch] for d, m in vectors.items()}, [spec] * min(batch, n - start))
    batched = (time.perf_counter() - t0) * 1000 / n
    return {"mean_ms": single.mean, "p50_ms": single.p50, "p99_ms": single.p99, "batched_ms_per_query": batched}


def _walked_copy(catalog: EdgeCatalog, name: str) -> str:
    """A copy of ``name`` built with the engine's graph thresholds lowered: its HNSW graph is walked."""
    edge_store.INDEXING_THRESHOLD_KB = 1
    edge_store.FULL_SCAN_THRESHOLD_KB = 1
    walked = f"{name}-walked"
    if not catalog.exists(walked):
        with catalog.open(name) as source, catalog.create(dataclasses.replace(source.spec, name=walked)) as target:
            for batch in source.points():
                target.upsert(batch)
            target.finish_indexing()
    return walked


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED_DATA / "financial-qa-10k", help="BEIR directory")
    ap.add_argument("--data-dir", type=Path, required=True, help="funnel data dir holding (or to hold) --collection")
    ap.add_argument("--collection", default="finqa")
    ap.add_argument("--model", default=None, help="model (default: the collection's, else all-MiniLM-L6-v2)")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--target", type=float, default=0.98, help="recall@k against exact, for both modes")
    ap.add_argument("--calibrate", type=int, default=200, help="train queries to calibrate on")
    ap.add_argument("--batch", type=int, default=32, help="queries per engine call in the batched timing")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--walk-graph", action="store_true",
                    help="measure on a copy of the collection whose 64-dim HNSW graph is walked (engine thresholds "
                    "lowered, as a large collection would be) instead of scanned")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    console = Console()
    test, train = load_split(args.data, "test"), load_split(args.data, "train")
    catalog = EdgeCatalog(args.data_dir)
    model = args.model or (catalog.read_spec(args.collection).model if catalog.exists(args.collection) else DEFAULT_MODEL)
    embedder = Embedder(model)
    if not catalog.exists(args.collection):
        console.print(f"indexing {args.data} into {args.collection} …")
        index_corpus(catalog, args.collection, [args.data], embedder)
    if args.walk_graph:
        args.collection = _walked_copy(catalog, args.collection)
    k = args.k
    test_ids = list(test.queries)
    cal_texts = [train.queries[q] for q in list(train.queries)[: args.calibrate]]
    with catalog.open(args.collection) as coll:
        dims = coll.spec.dims
        cal = embedder.encode(cal_texts, dims)
        held = embedder.encode([test.queries[q] for q in test_ids], dims)
        reference = coll.search(cal, None, k, with_text=False)
        fixed = calibrate(coll, cal, k, args.target, reference=reference, timed=True)
        adaptive = calibrate_adaptive(coll, cal, fixed.plan, reference, args.target)
        specs = {"exact": QuerySpec(None, k, with_text=False), "fixed": QuerySpec(fixed.plan, k, with_text=False),
                 "adaptive": AdaptiveSpec(fixed.plan, k, with_text=False, rule=adaptive.rule)}
        hits = {name: search_each(coll, held, [spec] * len(test_ids)) for name, spec in specs.items()}
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in specs}
        for _ in range(args.rounds):
            for name, spec in specs.items():
                rounds[name].append(_timings(coll, held, spec, args.batch))
        points = coll.count()
    judge = Judge(test, test_ids, 10)
    rows = {}
    for name in specs:
        timing = {key: statistics.median(r[key] for r in rounds[name]) for key in rounds[name][0]}
        depths = [h.depth for h in hits[name]]
        rows[name] = timing | judge.metrics(hits[name]) | {
            f"recall_vs_exact@{k}": recall_against(hits[name], hits["exact"], k),
            "widened_share": sum(d.passes == 2 for d in depths) / len(depths),
            "mean_candidates": float(np.mean([d.candidates for d in depths])),
        }
    f, a = rows["fixed"], rows["adaptive"]
    saving = {key: 1 - a[key] / f[key] for key in ("mean_ms", "p50_ms", "batched_ms_per_query")}
    ndcg_loss = f["ndcg@10"] - a["ndcg@10"]
    result = {
        "data": str(args.data), "collection": args.collection, "graph_walked": args.walk_graph, "model": model, "points": points, "k": k,
        "target": args.target, "test_queries": len(test_ids), "calibration_queries": len(cal_texts),
        "fixed_plan": str(fixed.plan), "adaptive_rule": adaptive.rule.to_dict(),
        "adaptive_calibration": adaptive.record(), "rows": rows, "latency_saving": saving,
        "ndcg_loss_vs_fixed": ndcg_loss, "ndcg_loss_vs_exact": rows["exact"]["ndcg@10"] - a["ndcg@10"],
        "targets": {"mean_latency_30pct_below_fixed": saving["mean_ms"] >= 0.30, "ndcg_loss<=0.002": ndcg_loss <= 0.002},
        "machine": machine(),
    }
    table = Table(title=f"adaptive vs fixed — {len(test_ids)} test queries, {points:,} points, {Path(model).name}, "
                  f"target recall@{k} {args.target}")
    cols = ("search", "mean ms", "p50 ms", "batched ms/q", f"recall vs exact@{k}", "NDCG@10", "widened", "candidates")
    for col in cols:
        table.add_column(col, justify="right")
    labels = {"exact": "exact", "fixed": "fixed", "adaptive": "adaptive"}
    md = [f"# adaptive vs fixed ({result['machine']['date']})", "", f"`{result['machine']['command']}`", "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, r in rows.items():
        cells = [labels[name], f"{r['mean_ms']:.3f}", f"{r['p50_ms']:.3f}", f"{r['batched_ms_per_query']:.3f}",
                 f"{r[f'recall_vs_exact@{k}']:.3f}", f"{r['ndcg@10']:.4f}", f"{r['widened_share']:.1%}",
                 f"{r['mean_candidates']:,.0f}"]
        table.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    console.print(table)
    console.print(f"fixed plan {fixed.plan}; adaptive first pass {adaptive.rule.first}, widened to the fixed plan")
    verdict = (f"adaptive saves {saving['mean_ms']:.1%} of the fixed plan's mean latency (p50 {saving['p50_ms']:.1%}, "
               f"batched {saving['batched_ms_per_query']:.1%}); NDCG@10 loss vs fixed {ndcg_loss:+.4f}; "
               f"targets met: {result['targets']}")
    console.print(verdict)
    rule = adaptive.rule
    md += ["", verdict, "", f"Fixed plan (calibrated, timed): {fixed.plan}. Adaptive rule: first pass {rule.first} (graph ef {rule.first_ef or 'default'}), widen when "
           f"{rule.signal} < {rule.threshold:.4f}; calibrated on {len(cal_texts)} train queries "
           f"(calibration: adaptive {adaptive.adaptive.mean:.3f} ms vs fixed {adaptive.fixed.mean:.3f} ms mean, "
           f"adaptive_pays={adaptive.pays}).", "",
           f"Machine: {result['machine']['cpu']} ({result['machine']['cpu_count']} cores), "
           f"{result['machine']['platform']}, torch {result['machine']['torch']}.", "",
           commit_line(result["machine"]), ""]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "adaptive-walked" if args.walk_graph else "adaptive"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (args.out / f"{stem}.md").write_text("\n".join(md))
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

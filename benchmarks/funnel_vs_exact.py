"""Funnel search against exact full-dim search on a BEIR split: top-1 agreement and NDCG@10.

Run (indexes the corpus into a temporary data dir unless --data-dir holds the collection)::

    python benchmarks/funnel_vs_exact.py                      # financial-qa-10k, test split
    python benchmarks/funnel_vs_exact.py --data-dir ~/.local/share/funnel --collection fin

Targets (issue 2): the funnel's top-1 equals the exact top-1 for >= 95 % of queries, and its
NDCG@10 is within 1 % of the exact search's. IR metrics come from sentence-transformers'
InformationRetrievalEvaluator; chunk hits are folded into documents by their best chunk.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _machine import SHARED_DATA, commit_line, machine
from rich.console import Console
from rich.table import Table

from retriever.bench.runner import Judge
from retriever.calibration.plans import recall_against
from retriever.encoding.embedder import DEFAULT_MODEL, Embedder
from retriever.ingest.beir import load_split
from retriever.ingest.indexer import index_corpus
from retriever.retriever import Retriever
from retriever.store.edge.catalog import EdgeCatalog


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED_DATA / "financial-qa-10k", help="BEIR directory")
    ap.add_argument("--split", default="test")
    ap.add_argument("--data-dir", type=Path, default=None, help="funnel data dir holding --collection")
    ap.add_argument("--collection", default="bench-fin")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--plan", default=None, help="funnel plan (default: the documented default)")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    if not (args.data / "corpus.jsonl").is_file():
        print(f"no BEIR corpus at {args.data}", file=sys.stderr)
        return 2
    console = Console()
    split = load_split(args.data, args.split)
    tmp = tempfile.TemporaryDirectory()
    data_dir = args.data_dir or Path(tmp.name)
    catalog = EdgeCatalog(data_dir)
    embedder = Embedder(args.model)
    if not catalog.exists(args.collection):
        console.print(f"indexing {args.data} into a temporary collection …")
        index_corpus(catalog, args.collection, [args.data], embedder)
    ids = list(split.queries)
    judge = Judge(split, ids, 10)  # the table reports @10 metrics
    texts = [split.queries[q] for q in ids]
    with Retriever(catalog.open(args.collection), embedder) as r:
        plan = r.plan(args.plan, args.k)
        vectors = embedder.encode(texts, r.collection.spec.dims)  # encoded once: time the engine only
        t0 = time.perf_counter()
        funnel = r.collection.search(vectors, plan, args.k, with_text=False)
        t1 = time.perf_counter()
        exact = r.collection.search(vectors, None, args.k, with_text=False)
        t2 = time.perf_counter()
        points = r.collection.count()
    same_top1 = sum(bool(f) and bool(e) and f[0].id == e[0].id for f, e in zip(funnel, exact)) / len(ids)
    overlap = recall_against(funnel, exact, args.k)
    m_funnel, m_exact = judge.metrics(funnel), judge.metrics(exact)
    gap = float((m_exact["ndcg@10"] - m_funnel["ndcg@10"]) / m_exact["ndcg@10"])
    result = {
        "data": str(args.data), "split": args.split, "queries": len(ids), "points": points, "k": args.k,
        "model": args.model, "plan": str(plan),
        "top1_agreement": same_top1, "recall_vs_exact@k": overlap,
        "funnel": m_funnel, "exact": m_exact, "ndcg_gap_relative": gap,
        "engine_batch_seconds": {"funnel": t1 - t0, "exact": t2 - t1},
        "targets": {"top1_agreement>=0.95": same_top1 >= 0.95, "ndcg_gap<=1%": gap <= 0.01},
        "machine": machine(),
    }
    table = Table(title=f"funnel vs exact — {len(ids)} {args.split} queries, {points:,} points")
    for col in ("search", "NDCG@10", "MRR@10", "Recall@10", "top-1 = exact", "recall vs exact@k", "engine s"):
        table.add_column(col, justify="right")
    table.add_row(f"funnel {plan}", f"{m_funnel['ndcg@10']:.4f}", f"{m_funnel['mrr@10']:.4f}",
                  f"{m_funnel['recall@10']:.4f}", f"{same_top1:.1%}", f"{overlap:.3f}", f"{t1 - t0:.2f}")
    table.add_row(f"exact {r.collection.spec.top_dim}", f"{m_exact['ndcg@10']:.4f}", f"{m_exact['mrr@10']:.4f}",
                  f"{m_exact['recall@10']:.4f}", "—", "1.000", f"{t2 - t1:.2f}")
    console.print(table)
    console.print(f"NDCG@10 gap: {gap:+.2%} of exact; targets met: {result['targets']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "funnel_vs_exact.json").write_text(json.dumps(result, indent=2))
    md = [f"# funnel vs exact ({result['machine']['date']})", "", f"`{result['machine']['command']}`", "",
          "| search | NDCG@10 | MRR@10 | Recall@10 | top-1 = exact | recall vs exact@k |", "|---|---|---|---|---|---|",
          f"| funnel `{plan}` | {m_funnel['ndcg@10']:.4f} | {m_funnel['mrr@10']:.4f} | {m_funnel['recall@10']:.4f} "
          f"| {same_top1:.1%} | {overlap:.3f} |",
          f"| exact {r.collection.spec.top_dim} | {m_exact['ndcg@10']:.4f} | {m_exact['mrr@10']:.4f} "
          f"| {m_exact['recall@10']:.4f} | — | 1.000 |", "",
          f"{len(ids)} queries, {points:,} points, model {args.model}. NDCG@10 gap {gap:+.2%} of exact.", "",
          f"Machine: {result['machine']['cpu']} ({result['machine']['cpu_count']} cores), "
          f"{result['machine']['platform']}, torch {result['machine']['torch']}.", "",
          commit_line(result["machine"]), ""]
    (args.out / "funnel_vs_exact.md").write_text("\n".join(md))
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

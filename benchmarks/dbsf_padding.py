"""Qdrant's DBSF against funnel's (the short BM25 list padded with zeros, retriever/query/dbsf.py) on
the very same lists: one run per collection, NDCG@10 of both, and how many queries they differ on.

Each judged test query runs once through the collection's default hybrid search split in its two
engine queries (the dense funnel's top 20, BM25's top 20); the two lists are then fused both ways:
``qdrant`` maps each list by (s - (μ - 3σ)) / 6σ and gives a list with σ = 0 a flat 0.5 (Qdrant's
``distr_norm``, which the engines' own DBSF computed before: tests/test_hybrid.py checked it to
1e-5); ``funnel`` pads a BM25 list shorter than its depth with zeros first. The dense-only row is
the same dense list's top 10.

    python benchmarks/dbsf_padding.py --data-dir DIR --collection NAME --data ../shared/data/msmarco-sample
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _machine import commit_line, machine

from retriever import Retriever
from retriever.calibration.judge import Judge
from retriever.ingest.beir import load_split
from retriever.query.dbsf import Expanded, dbsf


def measure(data_dir: Path, name: str, data: Path, k: int = 10) -> dict:
    split = load_split(data, "test")
    ids = list(split.queries)
    texts = [split.queries[q] for q in ids]
    with Retriever.open(name, data_dir) as r:
        spec = r.query_spec(k, mode="hybrid", fusion="dbsf", with_text=False)
        specs = [spec.__class__(**{**spec.__dict__, "text": t}) for t in texts]
        vectors = r.embedder.encode(texts, r.collection.spec.dims)
        expanded = Expanded(specs)
        rows = [row for row, _ in expanded.parts]  # each engine query with its query's vectors
        lists = r.collection.search_each({d: v[rows] for d, v in vectors.items()}, [s for _, s in expanded.parts])
    dense_lists, lexical_lists = lists[0::2], lists[1::2]
    depths = (expanded.parts[0][1].k, expanded.parts[1][1].k)
    funnel = [dbsf(d, lx, depths, k) for d, lx in zip(dense_lists, lexical_lists)]
    qdrant = [dbsf(d, lx, (0, 0), k) for d, lx in zip(dense_lists, lexical_lists)]  # no padding
    judge = Judge(split, ids, k)
    short = sum(len(lx) < depths[1] for lx in lexical_lists)
    return {
        "data": str(data), "collection": name, "queries": len(ids), "k": k, "depths": list(depths),
        "short_lexical_lists": short, "one_hit_lexical_lists": sum(len(lx) == 1 for lx in lexical_lists),
        "queries_whose_top_k_differs": sum([h.id for h in a] != [h.id for h in b] for a, b in zip(funnel, qdrant)),
        f"ndcg@{k}": {"dense": judge.metrics([d[:k] for d in dense_lists])[f"ndcg@{k}"],
                      "dbsf_qdrant": judge.metrics(qdrant)[f"ndcg@{k}"],
                      "dbsf_funnel": judge.metrics(funnel)[f"ndcg@{k}"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--collection", action="append", required=True, help="one per --data, in order")
    parser.add_argument("--data", type=Path, action="append", required=True)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rows = [measure(args.data_dir, name, data) for name, data in zip(args.collection, args.data)]
    m = machine()
    report = {"machine": m, "commit": commit_line(m), "started": started, "rows": rows}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Where a fast funnel search spends its time, on ``peers.py``'s cached funnel collections.

For each layout, one query at a time, same queries, side by side: funnel's ``Collection.search``
(the product path: request built in Python, payload fetched, hits converted); the same engine
request built beforehand (engine only, with the product's payload selector, and without payload);
and, where the plan has a re-score stage, the alternative not built in funnel: the first stage alone
in the engine, then a numpy re-score of its shortlist at the top dim from an in-memory float32 matrix.

    python benchmarks/funnel_overhead.py --cache /work/bench-cache/peers/minilm-dict-mrl-n200000 \
        --layout funnel-int8-g384:384:10:48 --layout funnel-int8-g256:256:50,384:10:64
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads: one thread, as the peers have

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _machine import commit_line, machine  # noqa: E402
from qdrant_edge import EdgeConfig, EdgeShard, QuantizationSearchParams, Query, QueryRequest, SearchParams  # noqa: E402

from retriever.calibration.timing import time_each  # noqa: E402
from retriever.query.plan import parse_plan  # noqa: E402
from retriever.query.spec import QuerySpec  # noqa: E402
from retriever.store.edge.catalog import EdgeCatalog  # noqa: E402
from retriever.store.edge.collection import SHARD_DIR, EdgeCollection, edge_config  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def p50(fn, n: int, repeats: int) -> float:  # noqa: ANN001 - fn(i)
    """p50 ms of ``fn(i)`` over ``repeats`` passes of the ``n`` queries, after a warm-up pass."""
    _, latency = time_each(fn, list(range(n)) * repeats, warmup=n)
    return latency.p50


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, required=True, help="a peers.py cache dir (corpus.npy, funnel/)")
    ap.add_argument("--layout", action="append", required=True, help="COLLECTION:PLAN:EF (the calibrated plan)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS / "funnel_overhead")
    args = ap.parse_args()
    queries = np.load(args.cache / "measure-100-200.npy")
    corpus = np.load(args.cache / "corpus.npy")  # in RAM: the numpy alternative's matrix
    catalog = EdgeCatalog(args.cache / "funnel")
    rows = []
    for item in args.layout:
        name, plan_text, ef_text = item.split(":", 1)[0], *item.split(":", 1)[1].rsplit(":", 1)
        spec = catalog.read_spec(name)
        base = edge_config(spec)
        shard = EdgeShard.load(str(catalog.root / name / SHARD_DIR),
                               EdgeConfig(vectors=base.vectors, optimizers=base.optimizers, max_search_threads=1))
        coll = EdgeCollection(catalog.root / name, spec, shard)
        plan, ef = parse_plan(plan_text, spec.dims, 10), int(ef_text)
        ladders = [{d: (q[:d] / np.linalg.norm(q[:d]))[None, :] for d in spec.dims} for q in queries]
        qspec = QuerySpec(plan, 10, False, None, ef)
        built = [coll.requests.request(lad, 0, qspec) for lad in ladders]
        bare = [QueryRequest(limit=r.limit, query=r.query, prefetches=r.prefetches, params=r.params, with_payload=False)
                for r in built]
        n = len(queries)
        row = {"collection": name, "plan": plan_text, "hnsw_ef": ef,
               "product_ms": p50(lambda i: coll.search(ladders[i], plan, 10, with_text=False, hnsw_ef=ef), n, args.repeats),
               "engine_payload_ms": p50(lambda i: shard.query(built[i]), n, args.repeats),
               "engine_no_payload_ms": p50(lambda i: shard.query(bare[i]), n, args.repeats)}
        if len(plan.stages) > 1:
            first = plan.stages[0]
            top = queries / np.linalg.norm(queries, axis=1, keepdims=True)

            def numpy_rescore(i: int, first=first) -> None:  # noqa: ANN001
                q = ladders[i][first.dim][0]
                found = shard.query(QueryRequest(limit=first.limit, query=Query.Nearest(q.tolist(), using=f"dim{first.dim}"),
                                                 params=SearchParams(hnsw_ef=ef, quantization=QuantizationSearchParams(
                                                     rescore=False)), with_payload=False))
                ids = np.fromiter((int(p.id) - 1 for p in found), np.int64, len(found))
                scores = corpus[ids] @ top[i]
                ids[np.argsort(-scores)[:10]]

            row["first_stage_plus_numpy_ms"] = p50(numpy_rescore, n, args.repeats)
        coll.close()
        rows.append(row)
        print(json.dumps(row))
    result = {"machine": machine(), "cache": str(args.cache), "queries": len(queries), "repeats": args.repeats,
              "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "funnel_overhead.json").write_text(json.dumps(result, indent=2))
    lines = [f"# funnel's search path, decomposed ({time.strftime('%Y-%m-%d')})", "",
             "`python benchmarks/funnel_overhead.py " + " ".join(f"--layout {x}" for x in args.layout)
             + f" --cache {args.cache}`", "", commit_line(result["machine"]), "", f"Machine: {result['machine']['cpu']} ({result['machine']['cpu_count']} cores), "
             f"{result['machine']['platform']}; load average {os.getloadavg()[0]:.2f} at the end. p50 ms, one query at a time, "
             f"{len(queries)} queries × {args.repeats} passes after a warm-up pass, one search thread.", "",
             "| collection | plan (ef) | product `Collection.search` | engine only, payload | engine only, no payload "
             "| first stage + numpy re-score (not built) |", "|---|---|---|---|---|---|"]
    for r in rows:
        alt = f"{r['first_stage_plus_numpy_ms']:.3f}" if "first_stage_plus_numpy_ms" in r else "—"
        lines.append(f"| {r['collection']} | {r['plan']} ({r['hnsw_ef']}) | {r['product_ms']:.3f} | "
                     f"{r['engine_payload_ms']:.3f} | {r['engine_no_payload_ms']:.3f} | {alt} |")
    (args.out / "funnel_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

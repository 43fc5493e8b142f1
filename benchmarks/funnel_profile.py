"""Where funnel's time goes after the shortlist (issue 10, item 4).

Run after ``peers.py`` (it reuses peers' cached vectors, ground truth and funnel-int8 collection, and
builds an in-RAM twin)::

    python benchmarks/funnel_profile.py --synthetic 200000 [--shortlist S]

On the same collection and the same measured queries, one query at a time on one search thread,
after a warm-up pass, it times:

- engine calls only (requests built beforehand, ``with_payload=False``): (a) the 64-dim HNSW
  stage alone returning S candidates (and returning k), (b) a 2-stage plan 64:S → top:k, (c) a
  3-stage and a 4-stage plan with the same first shortlist S;
- (d) the same on an in-RAM twin of the collection (rerank vectors not ``Memory.Cold``);
- (e) the product path ``Collection.search`` split into building the request (``_request``), the
  engine call with the payload selector the product sends, and converting results (``_to_hit``);
- the same funnel-int8 layout with integer point ids instead of UUID strings (built directly);
- the numpy re-score of the same shortlist at the top dim from a memory-mapped float32 file.

Writes ``results/funnel_profile.json`` (the numbers; the prose is in ``funnel_profile.md``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _machine import machine  # noqa: E402
from _peers_funnel import FunnelBench, ladder_queries  # noqa: E402
from peers import RESULTS, Run, finish_edge_build  # noqa: E402
from qdrant_edge import Query, QueryRequest  # noqa: E402
from rich.console import Console  # noqa: E402

from retriever.calibration.timing import Latency  # noqa: E402
from retriever.query.ladder import vector_name  # noqa: E402
from retriever.query.plan import FunnelPlan, Stage  # noqa: E402
from retriever.query.spec import QuerySpec  # noqa: E402
from retriever.store.edge.requests import to_hit as _to_hit  # noqa: E402

K = 10


def time_rows(run: Callable[[int], object], n: int, repeats: int = 1) -> Latency:
    for i in range(n):
        run(i)
    seconds = []
    for _ in range(repeats):
        for i in range(n):
            t0 = time.perf_counter()
            run(i)
            seconds.append(time.perf_counter() - t0)
    return Latency.of(seconds)


def bare_request(collection, q: dict[int, np.ndarray], row: int, plan: FunnelPlan,  # noqa: ANN001
                 payload: object = False) -> QueryRequest:
    """What ``EdgeCollection._request`` builds, with the payload selector given (False: none)."""
    real = collection._request(q, row, QuerySpec(plan, plan.k, False, None, None))
    return QueryRequest(limit=real.limit, query=real.query, prefetches=real.prefetches, params=real.params,
                        with_payload=payload)


def stage_alone(collection, q: dict[int, np.ndarray], row: int, dim: int, limit: int) -> QueryRequest:  # noqa: ANN001
    params = collection._stage_params(dim, limit, False, None, refined=True)
    return QueryRequest(limit=limit, query=Query.Nearest(q[dim][row].tolist(), using=vector_name(dim)), params=params,
                        with_payload=False)


def plans(ladder: tuple[int, ...], s: int) -> dict[str, FunnelPlan]:
    top = ladder[-1]
    return {
        "2-stage": FunnelPlan((Stage(ladder[0], s), Stage(top, K))),
        "3-stage": FunnelPlan((Stage(ladder[0], s), Stage(ladder[-2], max(K, s // 2)), Stage(top, K))),
        "4-stage": FunnelPlan((Stage(ladder[0], s), Stage(ladder[1], max(K, s // 2)),
                               Stage(ladder[2], max(K, s // 4)), Stage(top, K))),
    }


def profile(run: Run, fb: FunnelBench | IntIds, s: int, repeats: int, console: Console) -> dict:
    queries = ladder_queries(run.meas_q, run.ladder)
    n = len(run.meas_q)
    top = run.ladder[-1]
    out: dict = {}
    with fb.open() as collection:
        shard = collection.shard

        def engine(label: str, requests: list[QueryRequest]) -> None:
            lat = time_rows(lambda i: shard.query(requests[i]), n, repeats)
            out[label] = lat.to_dict()
            console.print(f"  {fb.name:<16} {label:<52} p50 {lat.p50:.3f} ms  mean {lat.mean:.3f} ms")

        engine(f"(a) stage 64:{s} alone (returns {s})", [stage_alone(collection, queries, i, run.ladder[0], s)
                                                        for i in range(n)])
        engine(f"(a') stage 64 alone, ef={max(128, s)}, returns {K}",
               [QueryRequest(limit=K, query=Query.Nearest(queries[run.ladder[0]][i].tolist(),
                                                          using=vector_name(run.ladder[0])),
                             params=collection._stage_params(run.ladder[0], s, False, None, refined=True),
                             with_payload=False) for i in range(n)])
        for label, plan in plans(run.ladder, s).items():
            engine(f"({'bc'[label != '2-stage']}) {label} {plan}", [bare_request(collection, queries, i, plan)
                                                                   for i in range(n)])
        if fb.name == "funnel-int8":  # the product path, and numpy on the same shortlist
            plan = plans(run.ladder, s)["2-stage"]
            payload = collection._payload(False)
            engine(f"(e) 2-stage {plan}, product payload selector", [bare_request(collection, queries, i, plan, payload)
                                                                      for i in range(n)])
            spec = QuerySpec(plan, K, False, None, None)
            out["(e) _request (build one request)"] = time_rows(
                lambda i: collection._request(queries, i, spec), n, repeats).to_dict()
            results = [shard.query(bare_request(collection, queries, i, plan, payload)) for i in range(n)]
            out["(e) _to_hit x10 (convert one result)"] = time_rows(
                lambda i: [_to_hit(p, False) for p in results[i]], n, repeats).to_dict()
            one = [{d: m[i : i + 1] for d, m in queries.items()} for i in range(n)]
            out["(e) Collection.search (product, end to end)"] = time_rows(
                lambda i: collection.search(one[i], plan, K, with_text=False), n, repeats).to_dict()
            for key in [k for k in out if k.startswith("(e) _") or k.startswith("(e) Coll")]:
                console.print(f"  {fb.name:<16} {key:<52} p50 {out[key]['p50']:.3f} ms  mean {out[key]['mean']:.3f} ms")
            # numpy: the same 64-dim shortlist (ids from the engine), re-scored at the top dim from the mmap
            short = [np.fromiter((uuid.UUID(str(p.id)).int - 1 for p in shard.query(
                stage_alone(collection, queries, i, run.ladder[0], s))), dtype=np.int64) for i in range(n)]
            full = np.load(run.full_file, mmap_mode="r")
            qtop = queries[top]

            def rescore(i: int) -> np.ndarray:
                ids = np.sort(short[i])
                scores = full[ids] @ qtop[i]
                best = np.argpartition(-scores, K)[:K]
                return ids[best[np.argsort(-scores[best])]]

            out[f"numpy re-score of the {s} at {top} (mmap)"] = time_rows(rescore, n, repeats).to_dict()
            key = f"numpy re-score of the {s} at {top} (mmap)"
            console.print(f"  {'numpy':<16} {key:<52} p50 {out[key]['p50']:.3f} ms  mean {out[key]['mean']:.3f} ms")
    return out


class IntIds:
    """funnel-int8's layout (``edge_config`` of the same spec, same payloads), but integer point ids
    instead of UUID strings: built directly with qdrant_edge, to time the id tracker's share."""

    def __init__(self, run: Run) -> None:
        self.twin = FunnelBench(run, "int8", on_disk=True)
        self.run = run
        self.name = "funnel-int8-intids"
        self.path = run.cache / self.name

    def build(self) -> dict:
        import shutil

        from qdrant_edge import EdgeConfig, EdgeShard, Point, UpdateOperation

        from retriever.store.edge.collection import INDEXED_FIELDS, edge_config

        shutil.rmtree(self.path, ignore_errors=True)
        base = edge_config(self.twin.spec)
        shard = EdgeShard.create(str(self.path), EdgeConfig(vectors=base.vectors, max_search_threads=1))
        for field, schema in INDEXED_FIELDS.items():
            shard.update(UpdateOperation.create_field_index(field, schema))
        corpus, ladder = self.run.corpus, self.run.ladder
        upsert = 0.0
        for start in range(0, len(corpus), 5000):
            vectors = {d: np.asarray(m, dtype=np.float64)
                       for d, m in ladder_queries(np.asarray(corpus[start : start + 5000]), ladder).items()}
            points = [Point(start + i, {vector_name(d): vectors[d][i] for d in ladder}, {"doc_id": str(start + i),
                                                                                           "chunk": 0})
                      for i in range(len(vectors[ladder[0]]))]
            t0 = time.perf_counter()
            shard.update(UpdateOperation.upsert_points(points))
            upsert += time.perf_counter() - t0
        return finish_edge_build(shard, upsert)

    def open(self):  # noqa: ANN201 - an EdgeCollection over the int-id shard
        from qdrant_edge import EdgeShard

        from retriever.store.edge.collection import EdgeCollection

        return EdgeCollection(self.path, self.twin.spec, EdgeShard.load(str(self.path)))


def loop(run: Run, plan_text: str, seconds: float, intids: bool, console: Console) -> None:
    """``py-spy record --native -- python benchmarks/funnel_profile.py --loop 64:320,384:10``"""
    from retriever.query.plan import parse_plan

    fb = IntIds(run) if intids else FunnelBench(run, "int8", on_disk=True)
    queries = ladder_queries(run.meas_q, run.ladder)
    rows = [{d: m[i : i + 1] for d, m in queries.items()} for i in range(len(run.meas_q))]
    with fb.open() as collection:
        plan = parse_plan(plan_text, run.ladder, K)
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            collection.search(rows[n % len(rows)], plan, K, with_text=False)
            n += 1
    console.print(f"{fb.name}: {n:,} searches of {plan} in {seconds:.0f} s ({1000 * seconds / n:.3f} ms each)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vectors", type=Path)
    p.add_argument("--synthetic", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--n", type=int)
    p.add_argument("--tune", type=int, default=100)
    p.add_argument("--measure", type=int, default=200)
    p.add_argument("--target", type=float, default=0.98)
    p.add_argument("--shortlist", type=int, help="first-stage size (default: the calibrated plan's, from peers.json)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cache", type=Path, default=Path("/work/bench-cache/peers"))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--loop", metavar="PLAN", help="only run Collection.search with PLAN in a loop (for py-spy)")
    p.add_argument("--seconds", type=float, default=15.0, help="--loop duration")
    p.add_argument("--intids", action="store_true", help="--loop on the integer-id twin")
    args = p.parse_args()
    console = Console(width=200)
    run = Run(args, console)
    if args.loop:
        loop(run, args.loop, args.seconds, args.intids, console)
        return
    s = args.shortlist
    if s is None:
        peers = json.loads((args.out / "peers.json").read_text())
        plan = peers["configs"]["funnel int8 fixed"]["settings"]["plan"]
        s = int(plan.split(",")[0].split(":")[1])
    load_before = os.getloadavg()
    out: dict = {"machine": machine(), "vectors": run.source, "shortlist": s, "load_before": load_before,
                 "collections": {}}
    for fb in (FunnelBench(run, "int8", on_disk=True), FunnelBench(run, "int8", on_disk=False), IntIds(run)):
        build = run.built(fb.name, fb.build)
        out["collections"][fb.name] = {"build": build, "times_ms": profile(run, fb, s, args.repeats, console)}
    out["load_after"] = os.getloadavg()
    (args.out / "funnel_profile.json").write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()

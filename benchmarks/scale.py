"""Scale: exact full-dim search vs HNSW on the full vector vs the funnel, at 10k / 100k / 1M points.

Run (from the repository root; the 1M step needs ~25 GB of free disk and about an hour on 2 cores)::

    python benchmarks/scale.py                       # 10k, 100k and 1M points
    python benchmarks/scale.py --sizes 10000,100000  # quicker

Vectors are synthetic and Matryoshka-like: 768 dims whose variance decays with the dim index
(scale ``(1 + i/16) ** -0.6``), generated from a 32-dim latent space plus noise, so that the
leading dims carry most of the similarity. Queries are perturbed copies of random points' latents.
Every configuration is a real Qdrant Edge collection built by funnel's store:

- ``exact-768``: a plain float32 collection of the full vector, no graph; exact full scan. The
  reference for recall and the baseline for resident memory.
- ``hnsw-768``: the full vector with an HNSW graph (m=16, ef_construct=100); ``ef`` is raised until
  recall@10 against exact reaches the target.
- ``funnel``: the ladder 64/128/256/768, an HNSW graph on dim 64 only, the rerank vectors on disk
  (memory-mapped, read on demand). The plan is chosen by ``retriever.calibration.plans`` (timed) on 100
  separate calibration queries, never on the measured ones; the default plan is measured too.
- ``funnel-int8``: the same with int8 scalar quantization of dim 64 (the int8 copy and the graph
  in RAM, every float original on disk).

Per configuration: build seconds (upserts + optimize, not data generation), bytes on disk,
latency p50/p95/p99 of one query at a time (engine only: query vectors are pre-computed) after a
warm-up pass over the same queries (so on-disk vectors are read from the page cache; the exact
scan is warmed with 20 queries), recall@10 against exact, and the resident memory of a fresh
process that opens the collection (RSS at open: what the layout keeps in RAM) and then runs the
same queries (RSS after: plus the cached pages of on-disk vectors those queries touched).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from _machine import commit_line, machine
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from retriever.bench.memory import measure_collection_memory, save_queries
from retriever.calibration.plans import calibrate, recall_against
from retriever.calibration.timing import time_each
from retriever.query.ladder import truncate_normalize
from retriever.query.plan import default_plan
from retriever.store.base import Collection, PointBatch
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.spec import CollectionSpec

DIM = 768
LADDER = (64, 128, 256, 768)
LATENT = 32
NOISE = 0.5
DECAY = 0.6
BATCH = 5000
K = 10
HNSW_EFS = (64, 128, 256, 512, 1024, 2048)
CALIBRATION_QUERIES = 100
RESULTS = Path(__file__).parent / "results"


class Synthetic:
    """Deterministic Matryoshka-like vectors: point i is always the same vector for a given seed."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = n
        self.seed = seed
        self.scale = ((1 + np.arange(DIM) / 16) ** -DECAY).astype(np.float32)
        self.mix = np.random.default_rng(1234).standard_normal((LATENT, DIM)).astype(np.float32) * self.scale
        self.latent = np.random.default_rng(seed).standard_normal((n, LATENT)).astype(np.float32)

    def batch(self, start: int, stop: int) -> np.ndarray:
        noise = np.random.default_rng([self.seed, start]).standard_normal((stop - start, DIM)).astype(np.float32)
        return self.latent[start:stop] @ self.mix + NOISE * self.scale * noise

    def queries(self, count: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 10**9])
        rows = rng.choice(self.n, count, replace=False)
        latent = self.latent[rows] + 0.5 * rng.standard_normal((count, LATENT)).astype(np.float32)
        return latent @ self.mix + NOISE * self.scale * rng.standard_normal((count, DIM)).astype(np.float32)


def ladder_vectors(full: np.ndarray, dims: tuple[int, ...]) -> dict[int, np.ndarray]:
    return {d: truncate_normalize(full, d) for d in dims}


def spec(name: str, dims: tuple[int, ...], hnsw_dims: tuple[int, ...], quantization: str = "none",
         on_disk: bool = False) -> CollectionSpec:
    return CollectionSpec(name=name, model="synthetic-matryoshka-768", model_fingerprint="synthetic",
                          model_dim=DIM, dims=dims, chunk_size=0, chunk_overlap=0, hnsw_dims=hnsw_dims,
                          quantization=quantization, on_disk=on_disk)


CONFIGS = {
    "exact-768": spec("exact-768", (DIM,), ()),
    "hnsw-768": spec("hnsw-768", (DIM,), (DIM,)),
    "funnel": spec("funnel", LADDER, (64,), on_disk=True),
    "funnel-int8": spec("funnel-int8", LADDER, (64,), quantization="int8", on_disk=True),
}


def build(catalog: EdgeCatalog, cfg: CollectionSpec, data: Synthetic, progress: Progress) -> tuple[Collection, dict]:
    """Create and fill the collection; returns it and the seconds spent in upserts and in optimize."""
    collection = catalog.create(cfg)
    task = progress.add_task(f"build {cfg.name}", total=data.n)
    spent = 0.0
    for start in range(0, data.n, BATCH):
        stop = min(data.n, start + BATCH)
        vectors = ladder_vectors(data.batch(start, stop), cfg.dims)
        ids = [str(uuid.UUID(int=i + 1)) for i in range(start, stop)]
        payloads = [{"doc_id": str(i), "chunk": 0} for i in range(start, stop)]
        t0 = time.perf_counter()
        collection.upsert(PointBatch(ids, vectors, payloads))
        spent += time.perf_counter() - t0
        progress.update(task, completed=stop)
    t0 = time.perf_counter()
    collection.finish_indexing()
    optimize = time.perf_counter() - t0
    progress.remove_task(task)
    return collection, {"upsert_s": spent, "optimize_s": optimize, "build_s": spent + optimize}


def run_size(n: int, args: argparse.Namespace, console: Console) -> dict:
    work = args.work / f"n{n}"
    shutil.rmtree(work, ignore_errors=True)
    catalog = EdgeCatalog(work)
    data = Synthetic(n, seed=args.seed)
    all_queries = ladder_vectors(data.queries(CALIBRATION_QUERIES + args.queries), LADDER)
    calibration = {dim: m[:CALIBRATION_QUERIES] for dim, m in all_queries.items()}  # never measured
    queries = {dim: m[CALIBRATION_QUERIES:] for dim, m in all_queries.items()}
    rows = [{dim: m[i : i + 1] for dim, m in queries.items()} for i in range(args.queries)]
    queries_file = work / "queries.npz"
    work.mkdir(parents=True, exist_ok=True)
    save_queries(queries_file, queries)
    out: dict = {"points": n, "configs": {}}
    exact_hits: list = []
    calibration_reference: list = []
    with Progress(console=console, transient=True) as progress:
        for name in args.configs:
            cfg = CONFIGS[name]
            collection, timings = build(catalog, cfg, data, progress)
            build_s = timings["build_s"]
            entry: dict = timings | {"disk_bytes": collection.disk_bytes(), "dims": list(cfg.dims),
                           "hnsw_dims": list(cfg.hnsw_dims), "quantization": cfg.quantization,
                           "on_disk": cfg.on_disk, "runs": []}
            task = progress.add_task(f"search {name}", total=None)

            def measure(label: str, search, mode: str, stop_at_target: bool) -> bool:  # noqa: ANN001
                hits, lat = time_each(search, rows, warmup=len(rows), on_done=lambda: progress.advance(task))
                hits = [h[0] for h in hits]
                r = 1.0 if not exact_hits else recall_against(hits, exact_hits, K)
                entry["runs"].append({"search": label, "mode": mode, "recall_vs_exact@10": r,
                                      "latency_ms": lat.to_dict()})
                return r >= args.target and stop_at_target

            with collection:
                if name == "exact-768":
                    hits, lat = time_each(lambda q: collection.search(q, None, K, with_text=False), rows,
                                          warmup=args.warmup)  # a full scan: nothing to warm beyond a few
                    exact_hits = [h[0] for h in hits]
                    calibration_reference = collection.search({DIM: calibration[DIM]}, None, K, with_text=False)
                    entry["runs"].append({"search": "exact 768", "mode": "exact", "recall_vs_exact@10": 1.0,
                                          "latency_ms": lat.to_dict()})
                elif name == "hnsw-768":
                    for ef in HNSW_EFS:
                        if measure(f"hnsw 768 ef={ef}", lambda q, ef=ef: collection.search_at(q[DIM], DIM, K, False, ef),
                                   f"hnsw:{DIM}:{ef}", True):
                            break
                else:
                    cal = calibrate(collection, calibration, K, args.target, reference=calibration_reference, timed=True)
                    entry["calibration"] = {"plan": str(cal.plan), "met": cal.met, "tried": cal.tried}
                    for label, plan in ((f"funnel {cal.plan} (calibrated)", cal.plan),
                                        (f"funnel {default_plan(LADDER, K)} (default)", default_plan(LADDER, K))):
                        measure(label, lambda q, plan=plan: collection.search(q, plan, K, with_text=False),
                                f"plan:{plan}:auto", False)
            progress.remove_task(task)
            chosen = next((r for r in entry["runs"] if r["recall_vs_exact@10"] >= args.target), entry["runs"][-1])
            if name.startswith("funnel"):
                chosen = entry["runs"][0]  # the calibrated plan (calibrated on other queries)
            entry["chosen"] = chosen["search"]
            entry["memory"] = measure_collection_memory(work, name, queries_file, chosen["mode"])
            out["configs"][name] = entry
            console.print(f"  {n:>9,} {name:<12} build {build_s:7.1f} s  {chosen['search']:<40} "
                          f"recall {chosen['recall_vs_exact@10']:.3f}  p50 {chosen['latency_ms']['p50']:.2f} ms  "
                          f"rss open {entry['memory']['collection_rss_open'] / 2**20:,.0f} MiB, after queries "
                          f"{entry['memory']['collection_rss'] / 2**20:,.0f} MiB")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return out


def chosen_run(entry: dict) -> dict:
    return next(r for r in entry["runs"] if r["search"] == entry["chosen"])


def verdict(size: dict, target: float) -> dict:
    """The issue's targets at this size, per funnel configuration, each with its measured ratio.

    Memory compares the resident set right after opening (what the layout keeps in RAM); the
    resident set after the query run (which adds the cached pages of on-disk vectors the queries
    touched) is reported next to it.
    """
    c = size["configs"]
    if not {"exact-768", "hnsw-768"} <= c.keys():
        return {}
    exact, hnsw = chosen_run(c["exact-768"]), chosen_run(c["hnsw-768"])
    e_p50, h_p50 = exact["latency_ms"]["p50"], hnsw["latency_ms"]["p50"]
    plain_mem = c["exact-768"]["memory"]
    out = {}
    for name in (n for n in c if n.startswith("funnel")):
        funnel = chosen_run(c[name])
        f_p50 = funnel["latency_ms"]["p50"]
        mem = c[name]["memory"]
        open_ratio = mem["collection_rss_open"] / plain_mem["collection_rss_open"]
        out[name] = {
            "recall_target": target,
            "funnel_plan": funnel["search"],
            "funnel_recall": funnel["recall_vs_exact@10"], "hnsw_recall": hnsw["recall_vs_exact@10"],
            "exact_p50_over_funnel_p50": e_p50 / f_p50,
            "hnsw_p50_over_funnel_p50": h_p50 / f_p50,
            "hnsw_build_over_funnel_build": c["hnsw-768"]["build_s"] / c[name]["build_s"],
            "funnel_rss_open_over_plain": open_ratio,
            "funnel_rss_after_queries_over_plain": mem["collection_rss"] / plain_mem["collection_rss"],
            "met": {
                "recall>=target (funnel and hnsw)": funnel["recall_vs_exact@10"] >= target
                and hnsw["recall_vs_exact@10"] >= target,
                "funnel p50 <= exact p50 / 30": f_p50 <= e_p50 / 30,
                "funnel p50 <= hnsw p50": f_p50 <= h_p50,
                "build >= 5x faster than hnsw": c["hnsw-768"]["build_s"] >= 5 * c[name]["build_s"],
                "rss <= plain / 6": open_ratio <= 1 / 6,
            },
        }
    return out


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# Scale: exact vs HNSW-768 vs funnel ({m['date']})", "", f"`{m['command']}`", "", commit_line(m), "",
             f"Machine: {m['cpu']} ({m['cpu_count']} cores), {m['platform']}. Synthetic Matryoshka-like "
             f"768-dim vectors, {result['queries']} queries, k={K}, recall target {result['target']}.", "",
             "| points | config | build s (upsert + optimize) | search (chosen) | recall@10 vs exact | p50 ms | p95 ms "
             "| p99 ms | RSS MiB at open | RSS MiB after queries (anon + file) | disk MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for size in result["sizes"]:
        for name, e in size["configs"].items():
            run = chosen_run(e)
            mem = e["memory"]
            lines.append(
                f"| {size['points']:,} | {name} | {e['build_s']:.1f} ({e['upsert_s']:.1f} + {e['optimize_s']:.1f}) "
                f"| {run['search']} | {run['recall_vs_exact@10']:.3f} "
                f"| {run['latency_ms']['p50']:.2f} | {run['latency_ms']['p95']:.2f} | {run['latency_ms']['p99']:.2f} "
                f"| {mem['collection_rss_open'] / 2**20:,.0f} "
                f"| {mem['collection_rss'] / 2**20:,.0f} ({mem['collection_rss_anon'] / 2**20:,.0f} + "
                f"{mem['collection_rss_file'] / 2**20:,.0f}) | {e['disk_bytes'] / 2**20:,.0f} |")
    lines += ["", "Every search tried (HNSW `ef` sweep, funnel plans):", "",
              "| points | config | search | recall@10 vs exact | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
    for size in result["sizes"]:
        for name, e in size["configs"].items():
            for run in e["runs"]:
                lines.append(f"| {size['points']:,} | {name} | {run['search']} | {run['recall_vs_exact@10']:.3f} "
                             f"| {run['latency_ms']['p50']:.2f} | {run['latency_ms']['p99']:.2f} |")
    lines += ["", "Targets (issue 4), per size and funnel configuration:", ""]
    for size in result["sizes"]:
        for name, v in (size.get("verdict") or {}).items():
            lines.append(f"- {size['points']:,} points, {name} ({v['funnel_plan']}): exact/funnel p50 = "
                         f"{v['exact_p50_over_funnel_p50']:.1f}×, hnsw/funnel p50 = {v['hnsw_p50_over_funnel_p50']:.2f}×, "
                         f"hnsw/funnel build = {v['hnsw_build_over_funnel_build']:.1f}×, funnel/plain RSS at open = "
                         f"{v['funnel_rss_open_over_plain']:.3f} (after the queries: "
                         f"{v['funnel_rss_after_queries_over_plain']:.3f}); met: "
                         + ", ".join(f"{k}: {'yes' if ok else 'NO'}" for k, ok in v["met"].items()))
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = sorted({name for s in result["sizes"] for name in s["configs"]})
    for name in names:
        sizes = [s for s in result["sizes"] if name in s["configs"]]
        xs = [s["points"] for s in sizes]
        ax_lat.plot(xs, [chosen_run(s["configs"][name])["latency_ms"]["p50"] for s in sizes], marker="o", label=name)
        ax_mem.plot(xs, [s["configs"][name]["memory"]["collection_rss_open"] / 2**20 for s in sizes], marker="o",
                    label=name)
    for ax, title, unit in ((ax_lat, "p50 latency per query (warm)", "ms"), (ax_mem, "resident memory at open", "MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("points")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"exact vs HNSW-768 vs funnel (recall@10 vs exact >= {result['target']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated point counts")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, from " + ", ".join(CONFIGS))
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--target", type=float, default=0.98, help="recall@10 against exact to reach")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/funnel-scale"), help="where collections are built")
    ap.add_argument("--keep", action="store_true", help="keep the collections")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    args.configs = [c.strip() for c in args.configs.split(",")]
    if unknown := set(args.configs) - CONFIGS.keys():
        ap.error(f"unknown configs: {', '.join(sorted(unknown))}")
    if "exact-768" not in args.configs:
        ap.error("exact-768 is the reference: keep it in --configs")
    args.configs.sort(key=list(CONFIGS).index)  # exact first: the others are measured against it
    console = Console()
    result = {"target": args.target, "queries": args.queries, "k": K, "ladder": list(LADDER), "sizes": []}
    for n in (int(s) for s in args.sizes.split(",")):
        size = run_size(n, args, console)
        size["verdict"] = verdict(size, args.target)
        result["sizes"].append(size)
        result["machine"] = machine()
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scale.json").write_text(json.dumps(result, indent=2))  # written after every size
        (args.out / "scale.md").write_text(markdown(result))
    plot(result, args.out / "scale.png")
    table = Table(title="scale: chosen search per config")
    for col in ("points", "config", "build s", "search", "recall", "p50 ms", "RSS MiB at open"):
        table.add_column(col, justify="right")
    for size in result["sizes"]:
        for name, e in size["configs"].items():
            run = chosen_run(e)
            table.add_row(f"{size['points']:,}", name, f"{e['build_s']:.1f}", run["search"],
                          f"{run['recall_vs_exact@10']:.3f}", f"{run['latency_ms']['p50']:.2f}",
                          f"{e['memory']['collection_rss_open'] / 2**20:,.0f}")
    console.print(table)
    console.print((args.out / "scale.md").read_text().split("Targets (issue 4), per size and funnel configuration:")[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())

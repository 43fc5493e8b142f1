"""Peers: funnel against exact search, Qdrant Edge HNSW (float, int8, binary), FAISS HNSW and a
FAISS-prefix + numpy cascade, on the same vectors and queries, in one run.

Run (from the repository root)::

    python benchmarks/peers.py --synthetic 200000                     # synthetic 384-dim vectors
    python benchmarks/peers.py --vectors /work/bench-cache/dict/TAG   # corpus.npy + queries.npy
    python benchmarks/peers.py --synthetic 20000 --measure 100        # a quick check

Vectors: ``--vectors DIR`` holds ``corpus.npy`` (N × D float32, L2-normalised rows) and
``queries.npy`` (Q × D); ``--n`` takes the first N corpus rows. ``--synthetic N`` generates
Matryoshka-like vectors instead (the generator of ``scale.py`` at D=384: variance decaying with
the dim index, from a 32-dim latent space plus noise). The ladder is 64/128/256/D.

Queries: the first ``--tune`` (100) queries tune every configuration; the next ``--measure`` (200)
are measured. No configuration is ever tuned on a measured query. Ground truth: the exact top-10
by inner product of the normalised full-dim vectors (numpy, blocked matrix product).

Every configuration is built once (build seconds = upserts/adds + optimize/graph build, with every
core; cached under ``--cache`` so that a re-run reuses it and reports the original build time),
tuned to the lowest-latency setting of its grid whose recall@10 on the tuning queries is ≥
``--target``, then measured: recall@10, p50/p99 of one query at a time after a warm-up pass over
the same queries (``--repeats`` timed passes, pooled), sequential QPS, and the resident memory of a FRESH process that opens the index
(RSS at open) and runs the measured queries (RSS after). Searches run on ONE thread everywhere
(``OMP_NUM_THREADS=1``, ``faiss.omp_set_num_threads(1)``, Edge ``max_search_threads=1``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy/faiss load: one search thread everywhere

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _machine import machine  # noqa: E402
from rich.console import Console  # noqa: E402

from retriever.bench.memory import resident_memory  # noqa: E402
from retriever.calibration.timing import Latency  # noqa: E402

K = 10
BATCH = 5000
LATENT = 32
NOISE = 0.5
DECAY = 0.6
EDGE_M, EDGE_EF_CONSTRUCT = 16, 100
FAISS_M, FAISS_EF_CONSTRUCTION = 16, 100  # the same graph parameters as Edge's (and funnel's)
EFS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
INT8_OVERSAMPLING = (1.0, 1.5, 2.0, 4.0)
BINARY_OVERSAMPLING = (4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
SHORTLISTS = (20, 30, 50, 100, 150, 200, 300, 400, 600, 800, 1200, 1600, 3200, 6400)
RESULTS = Path(__file__).parent / "results"
VECTOR = "v"


# --------------------------------------------------------------------------- vectors


def synthetic(n: int, queries: int, dim: int = 384, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scale.py's Matryoshka-like generator at ``dim`` dims, rows L2-normalised."""
    scale = ((1 + np.arange(dim) / 16) ** -DECAY).astype(np.float32)
    mix = np.random.default_rng(1234).standard_normal((LATENT, dim)).astype(np.float32) * scale
    latent = np.random.default_rng(seed).standard_normal((n, LATENT)).astype(np.float32)
    corpus = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 50_000):
        stop = min(n, start + 50_000)
        noise = np.random.default_rng([seed, start]).standard_normal((stop - start, dim)).astype(np.float32)
        corpus[start:stop] = latent[start:stop] @ mix + NOISE * scale * noise
    rng = np.random.default_rng([seed, 10**9])
    rows = rng.choice(n, queries, replace=False)
    q_latent = latent[rows] + 0.5 * rng.standard_normal((queries, LATENT)).astype(np.float32)
    q = q_latent @ mix + NOISE * scale * rng.standard_normal((queries, dim)).astype(np.float32)
    return normalize(corpus), normalize(q)


def normalize(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def exact_topk(corpus: np.ndarray, queries: np.ndarray, k: int = K, block: int = 50_000) -> np.ndarray:
    """Exact top-k ids by inner product (blocked matrix product), best first."""
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(corpus), block):
        s = queries @ np.asarray(corpus[start : start + block]).T
        top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], axis=1)
        best_i = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(-best_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(map(int, f[:K])) & set(map(int, t[:K]))) / K for f, t in zip(found, truth)]))


def timed(run: Callable[[int], np.ndarray], rows: range, repeats: int = 1) -> tuple[list[np.ndarray], Latency]:
    """One query at a time, after an untimed warm-up pass over the same queries; ``repeats`` timed
    passes pooled (on a shared machine, more samples make p50 less sensitive to other jobs)."""
    for i in rows:
        run(i)
    found, seconds = [], []
    for r in range(repeats):
        for i in rows:
            t0 = time.perf_counter()
            hit = run(i)
            seconds.append(time.perf_counter() - t0)
            if r == 0:
                found.append(hit)
    return found, Latency.of(seconds)


# --------------------------------------------------------------------------- engines


def edge_build(path: Path, kind: str, corpus: np.ndarray, vectors_on_disk: bool = False) -> dict:
    """A plain Edge shard, one named vector, built directly (funnel's store has no thread knob).
    ``vectors_on_disk``: the original vectors ``Memory.Cold`` (memory-mapped, read on demand; the
    quantized copy, if any, stays ``Pinned`` in RAM): Qdrant's layout for memory-bound collections."""
    from qdrant_edge import (
        BinaryQuantizationConfig,
        Distance,
        EdgeConfig,
        EdgeShard,
        EdgeVectorParams,
        HnswIndexConfig,
        Memory,
        Point,
        ScalarQuantizationConfig,
        ScalarType,
        UpdateOperation,
    )

    quant: Any = None
    if kind == "hnsw-int8":
        quant = ScalarQuantizationConfig(ScalarType.Int8, quantile=0.99, memory=Memory.Pinned)
    elif kind == "hnsw-binary":
        quant = BinaryQuantizationConfig(memory=Memory.Pinned)
    graph = HnswIndexConfig(m=0 if kind == "exact" else EDGE_M, ef_construct=EDGE_EF_CONSTRUCT,
                            full_scan_threshold=10_000)
    params = EdgeVectorParams(size=corpus.shape[1], distance=Distance.Cosine, quantization_config=quant,
                              hnsw_config=graph, memory=Memory.Cold if vectors_on_disk else None)
    shutil.rmtree(path, ignore_errors=True)  # a build that did not finish
    shard = EdgeShard.create(str(path), EdgeConfig(vectors={VECTOR: params}, max_search_threads=1))
    upsert = 0.0
    for start in range(0, len(corpus), BATCH):
        rows = np.asarray(corpus[start : start + BATCH], dtype=np.float64)
        t0 = time.perf_counter()
        shard.update(UpdateOperation.upsert_points([Point(start + i, {VECTOR: r}) for i, r in enumerate(rows)]))
        upsert += time.perf_counter() - t0
    return finish_edge_build(shard, upsert)


def finish_edge_build(shard: Any, upsert_s: float) -> dict:
    """Flush, optimize (build the graphs), flush and close a bulk-loaded Edge shard; the build times."""
    t0 = time.perf_counter()
    shard.flush()
    shard.optimize()
    shard.flush()
    optimize = time.perf_counter() - t0
    shard.close()
    return {"upsert_s": upsert_s, "optimize_s": optimize, "build_s": upsert_s + optimize}


def oversampled_efs(oversampling: float) -> list[int]:
    """The ef grid for one oversampling factor: the graph is searched at least that wide anyway
    (measured: the recall is flat in ef below ``k × oversampling``), so smaller efs are skipped."""
    return sorted({max(ef, int(K * oversampling)) for ef in EFS})


def edge_base(kind: str) -> str:
    """The search kind of an Edge build kind: ``hnsw``, ``exact`` or ``quant`` (quantized + rescore)."""
    return "hnsw" if kind == "hnsw" else ("exact" if kind == "exact" else "quant")


def edge_grid(kind: str) -> list[list[dict]]:
    """The tuning grid of an Edge build kind (see :func:`tune`): ef, and oversampling for quantized ones."""
    if kind == "exact":
        return [[{}]]
    if kind == "hnsw-binary":
        return [[{"ef": ef, "oversampling": o} for ef in oversampled_efs(o)] for o in BINARY_OVERSAMPLING]
    if kind == "hnsw-int8":
        return [[{"ef": ef, "oversampling": o} for ef in oversampled_efs(o)] for o in INT8_OVERSAMPLING]
    return [[{"ef": ef} for ef in EFS]]


def edge_search(shard: Any, kind: str, setting: dict) -> Callable[[np.ndarray], np.ndarray]:
    from qdrant_edge import QuantizationSearchParams, Query, QueryRequest, SearchParams

    if kind == "exact":
        params = SearchParams(exact=True)
    elif kind == "hnsw":
        params = SearchParams(hnsw_ef=setting["ef"])
    else:
        params = SearchParams(hnsw_ef=setting["ef"], quantization=QuantizationSearchParams(
            rescore=True, oversampling=setting.get("oversampling", 1.0)))

    def run(q: np.ndarray) -> np.ndarray:
        points = shard.query(QueryRequest(limit=K, query=Query.Nearest(q.tolist(), using=VECTOR), params=params,
                                          with_payload=False))
        return np.fromiter((p.id for p in points), dtype=np.int64, count=len(points))

    return run


def faiss_build(path: Path, vectors: np.ndarray) -> dict:
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)  # build on every core, search on one
    index = faiss.IndexHNSWFlat(vectors.shape[1], FAISS_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = FAISS_EF_CONSTRUCTION
    t0 = time.perf_counter()
    for start in range(0, len(vectors), 50_000):
        index.add(np.ascontiguousarray(vectors[start : start + 50_000], dtype=np.float32))
    build = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    faiss.write_index(index, str(path))
    return {"upsert_s": build, "optimize_s": 0.0, "build_s": build}


def faiss_search(index: Any, setting: dict) -> Callable[[np.ndarray], np.ndarray]:
    import faiss

    params = faiss.SearchParametersHNSW(efSearch=setting["ef"])

    def run(q: np.ndarray) -> np.ndarray:
        _, ids = index.search(q[None, :], K, params=params)
        return ids[0]

    return run


def cascade_search(index: Any, full: np.ndarray, prefix: int, setting: dict) -> Callable[[np.ndarray], np.ndarray]:
    """FAISS HNSW on the re-normalised prefix → exact re-score of the shortlist at the full dim."""
    import faiss

    shortlist = setting["shortlist"]
    params = faiss.SearchParametersHNSW(efSearch=max(setting["ef"], shortlist))

    def run(q: np.ndarray) -> np.ndarray:
        head = q[:prefix] / np.linalg.norm(q[:prefix])
        _, ids = index.search(head[None, :], shortlist, params=params)
        ids = np.sort(ids[0][ids[0] >= 0])  # sorted reads of the memory-mapped file
        scores = full[ids] @ q
        top = np.argpartition(-scores, K)[:K] if len(ids) > K else np.arange(len(ids))
        return ids[top[np.argsort(-scores[top])]]

    return run


# --------------------------------------------------------------------------- fresh-process memory probe


def probe(kind: str, where: str, setting_json: str, queries_file: str, extra: str) -> dict:
    """Open one index in this (fresh) process, run the queries; resident memory before/open/after."""
    setting = json.loads(setting_json)
    queries = np.load(queries_file)
    before = resident_memory()
    closer: Callable[[], None] = lambda: None  # noqa: E731
    if kind.startswith("edge:"):
        from qdrant_edge import EdgeShard

        from retriever.store.edge.collection import release_freed_memory

        shard = EdgeShard.load(where)
        release_freed_memory()  # as funnel's store does after a load (malloc_trim of the WAL replay)
        run = edge_search(shard, kind.split(":")[1], setting)
        closer = shard.close
    elif kind == "faiss":
        import faiss

        faiss.omp_set_num_threads(1)
        run = faiss_search(faiss.read_index(where), setting)
    elif kind == "cascade":
        import faiss

        faiss.omp_set_num_threads(1)
        index = faiss.read_index(where)
        full = np.load(extra, mmap_mode="r")
        run = cascade_search(index, full, int(setting["prefix"]), setting)
    elif kind == "numpy":
        full = np.load(where)  # in RAM

        def run(q: np.ndarray) -> np.ndarray:
            s = full @ q
            top = np.argpartition(-s, K)[:K]
            return top[np.argsort(-s[top])]
    else:
        raise SystemExit(f"unknown probe kind {kind}")
    opened = resident_memory()
    for q in queries:
        run(q)
    searched = resident_memory()
    closer()
    return {"rss_open": opened["rss"] - before["rss"], "rss_after": searched["rss"] - before["rss"],
            "rss_anon_after": searched["rss_anon"] - before["rss_anon"],
            "rss_file_after": searched["rss_file"] - before["rss_file"]}


def fresh_memory(kind: str, where: Path, setting: dict, queries_file: Path, extra: str = "") -> dict:
    cmd = [sys.executable, __file__, "--probe", kind, str(where), json.dumps(setting), str(queries_file), extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {kind} failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- tuning


def tune(make: Callable[[dict], Callable[[np.ndarray], np.ndarray]], grid: list[list[dict]], tune_q: np.ndarray,
         tune_truth: np.ndarray, target: float) -> tuple[dict | None, list[dict]]:
    """Each inner list of ``grid`` is swept in order (costlier settings later) until a setting
    reaches ``target`` on the tuning queries; the fastest passing setting over all lists wins."""
    points: list[dict] = []
    for line in grid:
        for setting in line:
            run = make(setting)
            found, lat = timed(lambda i, run=run: run(tune_q[i]), range(len(tune_q)))
            r = recall(found, tune_truth)
            points.append({"setting": setting, "recall": r, "p50_ms": lat.p50})
            if r >= target:
                break
    passing = [p for p in points if p["recall"] >= target]
    best = min(passing, key=lambda p: p["p50_ms"]) if passing else max(points, key=lambda p: p["recall"])
    return (best["setting"] if passing else None), points


# --------------------------------------------------------------------------- main run


class Run:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args, self.console = args, console
        if args.vectors:
            corpus = np.load(args.vectors / "corpus.npy", mmap_mode="r")
            queries = np.load(args.vectors / "queries.npy")
            n = min(args.n or len(corpus), len(corpus))
            self.source = f"{args.vectors} (first {n:,} of {len(corpus):,} corpus rows)"
            self.tag = f"{args.vectors.name}-n{n}"
            self.cache = args.cache / self.tag
            self.cache.mkdir(parents=True, exist_ok=True)
            full = self.cache / "corpus.npy"
            if not full.exists():  # a contiguous float32 copy of the first n rows, to mmap
                np.save(full, normalize(np.asarray(corpus[:n])))
        else:
            n = args.synthetic
            self.source = f"synthetic Matryoshka-like, {n:,} × {args.dim} (scale.py's generator at D={args.dim})"
            self.tag = f"synthetic{args.dim}-n{n}"
            self.cache = args.cache / self.tag
            self.cache.mkdir(parents=True, exist_ok=True)
            full = self.cache / "corpus.npy"
            qfile = self.cache / "queries.npy"
            if not full.exists() or not qfile.exists():
                c, q = synthetic(n, args.tune + args.measure, args.dim)
                np.save(full, c)
                np.save(qfile, q)
            queries = np.load(qfile)
        self.full_file = full
        self.corpus = np.load(full, mmap_mode="r")
        self.n, self.dim = self.corpus.shape
        if len(queries) < args.tune + args.measure:
            raise SystemExit(f"{len(queries)} queries: need --tune + --measure = {args.tune + args.measure}")
        queries = normalize(queries[: args.tune + args.measure])
        self.tune_q, self.meas_q = queries[: args.tune], queries[args.tune :]
        self.ladder = tuple(d for d in (64, 128, 256) if d < self.dim) + (self.dim,)
        truth_file = self.cache / f"truth-{args.tune}-{args.measure}.npy"
        t0 = time.perf_counter()
        if truth_file.exists():
            truth = np.load(truth_file)
        else:
            truth = exact_topk(np.asarray(self.corpus), queries)
            np.save(truth_file, truth)
        console.print(f"ground truth: {time.perf_counter() - t0:.1f} s")
        self.tune_truth, self.meas_truth = truth[: args.tune], truth[args.tune :]
        self.meas_file = self.cache / f"measure-{args.tune}-{args.measure}.npy"
        np.save(self.meas_file, self.meas_q)
        self.results: dict[str, dict] = {}

    # -- helpers
    def built(self, name: str, build: Callable[[], dict]) -> dict:
        marker = self.cache / f"{name}.build.json"
        if marker.exists():
            info = json.loads(marker.read_text()) | {"cached": True}
            self.console.print(f"[dim]{name}: reusing the cached build ({info['build_s']:.1f} s when built)[/]")
            return info
        self.console.print(f"{name}: building …")
        info = build()
        marker.write_text(json.dumps(info))
        self.console.print(f"{name}: built in {info['build_s']:.1f} s")
        return info | {"cached": False}

    def record(self, name: str, *, settings: dict | None, threads: str, build: dict, points: list[dict],
               run: Callable[[np.ndarray], np.ndarray] | None, memory: Callable[[dict], dict] | None,
               note: str = "", release: Callable[[], None] | None = None) -> None:
        entry: dict[str, Any] = {"config": name, "threads": threads, "build": build, "tuning": points,
                                 "settings": settings, "note": note}
        if run is None or settings is None:
            entry["skipped"] = note or "no setting reached the target on the tuning queries"
            self.results[name] = entry
            self.console.print(f"[yellow]{name}: {entry['skipped']}[/]")
            return
        found, lat = timed(lambda i: run(self.meas_q[i]), range(len(self.meas_q)), self.args.repeats)
        entry["recall"] = recall(found, self.meas_truth)
        entry["latency_ms"] = lat.to_dict()
        if release is not None:
            release()  # an Edge shard is locked while open: the fresh process needs it
        entry["memory"] = memory(settings) if memory else None
        self.results[name] = entry
        mem = entry["memory"] or {}
        self.console.print(
            f"{name:<22} {json.dumps(settings):<40} recall {entry['recall']:.3f}  p50 {lat.p50:.3f} ms  "
            f"p99 {lat.p99:.3f} ms  qps {lat.qps:,.0f}  rss open {mem.get('rss_open', 0) / 2**20:,.0f} MiB  "
            f"after {mem.get('rss_after', 0) / 2**20:,.0f} MiB")

    # -- configs
    def numpy_exact(self) -> None:
        full = np.load(self.full_file)  # in RAM

        def run(q: np.ndarray) -> np.ndarray:
            s = full @ q
            top = np.argpartition(-s, K)[:K]
            return top[np.argsort(-s[top])]

        self.record("numpy exact (ref)", settings={"blas_threads": 1}, threads="1 (OPENBLAS/OMP=1)",
                    build={"build_s": 0.0, "cached": False}, points=[], run=run,
                    memory=lambda s: fresh_memory("numpy", self.full_file, s, self.meas_file))

    def edge(self, kind: str, label: str) -> None:
        from qdrant_edge import EdgeShard

        path = self.cache / f"edge-{kind}"
        build = self.built(f"edge-{kind}", lambda: edge_build(path, kind, self.corpus))
        shard = EdgeShard.load(str(path))
        try:
            base = edge_base(kind)
            grid = edge_grid(kind)
            if kind == "exact":
                setting, points = {}, []
            else:
                setting, points = tune(lambda s: edge_search(shard, base, s), grid, self.tune_q, self.tune_truth,
                                       self.args.target)
            run = edge_search(shard, base, setting) if setting is not None else None
            self.record(label, settings=setting, threads="search 1 (Edge max_search_threads=1); build: all cores",
                        build=build, points=points, run=run, release=shard.close,
                        memory=lambda s: fresh_memory(f"edge:{base}", path, s, self.meas_file))
        finally:
            shard.close()

    def faiss_hnsw(self) -> None:
        import faiss

        path = self.cache / "faiss-hnsw.index"
        build = self.built("faiss-hnsw", lambda: faiss_build(path, self.corpus))
        faiss.omp_set_num_threads(1)
        index = faiss.read_index(str(path))
        setting, points = tune(lambda s: faiss_search(index, s), [[{"ef": ef} for ef in EFS]], self.tune_q,
                               self.tune_truth, self.args.target)
        self.record(f"FAISS HNSWFlat M={FAISS_M}", settings=setting,
                    threads="search 1 (faiss.omp_set_num_threads(1)); build: all cores", build=build, points=points,
                    run=faiss_search(index, setting) if setting else None,
                    memory=lambda s: fresh_memory("faiss", path, s, self.meas_file))

    def cascade(self, prefix: int | None = None) -> None:
        import faiss

        prefix = prefix or self.ladder[0]
        path = self.cache / f"faiss-hnsw-prefix{prefix}.index"
        build = self.built(f"faiss-prefix{prefix}",
                           lambda: faiss_build(path, normalize(np.asarray(self.corpus[:, :prefix]))))
        faiss.omp_set_num_threads(1)
        index = faiss.read_index(str(path))
        grid = [[{"prefix": prefix, "shortlist": s, "ef": ef} for ef in EFS if ef >= s or ef == EFS[-1]][:6]
                for s in SHORTLISTS]
        setting, points = tune(lambda s: cascade_search(index, self.corpus, prefix, s), grid, self.tune_q,
                               self.tune_truth, self.args.target)
        self.record(f"cascade FAISS-{prefix} → numpy", settings=setting,
                    threads="search 1 (faiss + BLAS 1 thread); build: all cores", build=build, points=points,
                    run=cascade_search(index, self.corpus, prefix, setting) if setting else None,
                    memory=lambda s: fresh_memory("cascade", path, s, self.meas_file, str(self.full_file)))

    def funnel(self, quantization: str, on_disk: bool = True, graph_dim: int | None = None) -> None:
        """funnel's store with its graph on ``graph_dim`` (default: the coarsest ladder dim): the
        ladder then starts there (a layout candidate: a wider graph vector, a smaller shortlist)."""
        from _peers_funnel import FunnelBench

        fb = FunnelBench(self, quantization, on_disk, graph_dim)
        name = fb.name
        build = self.built(name, fb.build)
        label = name.removeprefix("funnel").lstrip("-").replace("-g", " graph@") or "float"
        with fb.open() as collection:
            setting, points = fb.calibrate(collection)
            adaptive, reason, adaptive_setting = fb.adaptive_searcher(collection, setting)
            self.record(f"funnel {label} adaptive", settings=adaptive_setting,
                        threads=fb.threads, build=build, points=[], run=adaptive, memory=None, note=reason)
            self.record(f"funnel {label} fixed", settings=setting, threads=fb.threads,
                        build=build, points=points, run=fb.searcher(collection, setting),
                        memory=fb.memory, release=collection.close)


CONFIG_ORDER = ("numpy", "edge-exact", "edge-hnsw", "edge-int8", "edge-binary", "faiss", "cascade", "cascade-128",
                "cascade-256", "funnel-int8", "funnel", "funnel-int8-128", "funnel-int8-256", "funnel-bin-256",
                "funnel-bin2-256", "funnel-int8-384")


def run_all(args: argparse.Namespace, console: Console) -> dict:
    load_before = os.getloadavg()
    run = Run(args, console)
    t0 = time.perf_counter()
    steps = {
        "numpy": run.numpy_exact,
        "edge-exact": lambda: run.edge("exact", "Edge exact (full scan)"),
        "edge-hnsw": lambda: run.edge("hnsw", "Edge HNSW float32"),
        "edge-int8": lambda: run.edge("hnsw-int8", "Edge HNSW + int8 rescore"),
        "edge-binary": lambda: run.edge("hnsw-binary", "Edge HNSW + binary rescore"),
        "faiss": run.faiss_hnsw,
        "cascade": run.cascade,
        "cascade-128": lambda: run.cascade(128),
        "cascade-256": lambda: run.cascade(256),
        "funnel-int8": lambda: run.funnel("int8"),
        "funnel": lambda: run.funnel("none"),
        "funnel-int8-128": lambda: run.funnel("int8", graph_dim=128),
        "funnel-int8-256": lambda: run.funnel("int8", graph_dim=256),
        "funnel-bin-256": lambda: run.funnel("binary", graph_dim=256),
        "funnel-bin2-256": lambda: run.funnel("binary2", graph_dim=256),
        "funnel-int8-384": lambda: run.funnel("int8", graph_dim=run.ladder[-1]),
    }
    for name in args.configs:
        steps[name]()
        save(args, run, console, load_before, time.perf_counter() - t0, partial=True)
    return save(args, run, console, load_before, time.perf_counter() - t0, partial=False)


def save(args: argparse.Namespace, run: Run, console: Console, load_before: tuple, seconds: float,
         partial: bool) -> dict:
    result = {"machine": machine(), "vectors": run.source, "points": run.n, "dim": run.dim, "ladder": list(run.ladder),
              "tune_queries": len(run.tune_q), "measured_queries": len(run.meas_q), "k": K, "target": args.target, "repeats": args.repeats,
              "load_before": load_before, "load_after": os.getloadavg(), "seconds": seconds,
              "configs": run.results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peers.json").write_text(json.dumps(result, indent=2, default=str))
    if not partial:
        from _peers_report import markdown, plot, table

        (args.out / "peers.md").write_text(markdown(result))
        plot(result, args.out / "peers.png")
        console.print(table(result))
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        print(json.dumps(probe(*sys.argv[2:7])))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--vectors", type=Path, help="directory with corpus.npy and queries.npy")
    p.add_argument("--synthetic", type=int, default=200_000, help="generate N synthetic points (without --vectors)")
    p.add_argument("--dim", type=int, default=384, help="synthetic dim")
    p.add_argument("--n", type=int, help="take the first N corpus rows of --vectors")
    p.add_argument("--tune", type=int, default=100)
    p.add_argument("--measure", type=int, default=200)
    p.add_argument("--target", type=float, default=0.98)
    p.add_argument("--repeats", type=int, default=3, help="timed passes over the measured queries (pooled)")
    p.add_argument("--configs", default=",".join(CONFIG_ORDER), help=f"subset of {','.join(CONFIG_ORDER)}")
    p.add_argument("--cache", type=Path, default=Path("/work/bench-cache/peers"))
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    args.configs = [c for c in args.configs.split(",") if c]
    unknown = set(args.configs) - set(CONFIG_ORDER)
    if unknown:
        p.error(f"unknown configs {sorted(unknown)}")
    console = Console(width=220)
    run_all(args, console)


if __name__ == "__main__":
    main()

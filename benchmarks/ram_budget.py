"""RAM budget: Edge HNSW peers and funnel's layouts searched with the search process and its page
cache held to a RAM budget (a cgroup-v1 memory controller), each tuned to recall@10 >= the target.

Run (as root, from the repository root, project environment active)::

    python benchmarks/ram_budget.py --real /work/ram24-work/dict            # 1M points, every config and budget
    python benchmarks/ram_budget.py --real DIR --configs edge-binary-disk --budgets 8 --out /tmp/x   # one cell
    python benchmarks/ram_budget.py --real DIR --build-only                 # build (and cache) the collections

Vectors: the anchored synthetic vectors of ``synthetic.py`` (``--preset``, default ``anchored-base``:
points interpolated between real all-MiniLM-L6-v2 vectors of the dictionary corpus, whose 64-dim
coverage curve matches the real one, ``results/coverage.md``), written once to ``--work``; the
real queries of the same model (not in the collection). Ground truth: exact top-10 (numpy).

Configs (built once with every core, cached under ``--work``; the builders, grids and tuning are
``peers.py``'s and ``_peers_funnel.py``'s):

- ``edge-hnsw``: Edge HNSW on the full float32 vector, Edge's default placement (memory-mapped,
  populated at load);
- ``edge-hnsw-disk``: the same with the vectors ``Memory.Cold`` (on disk, read on demand);
- ``edge-int8-disk`` / ``edge-binary-disk``: HNSW with the int8 / binary codes ``Pinned`` in RAM and the
  originals ``Memory.Cold`` on disk, rescored (Qdrant's recommendation for memory-bound collections);
- ``funnel-int8-g64`` / ``funnel-int8-g128``: funnel's store, ladder from the graph's dim to 384, the
  graph on the 64- / 128-dim prefix with its int8 copy in RAM, every float vector on disk
  (``on_disk=True``); plan from ``retriever.calibration.plans`` (timed); also the passing plan that
  reads the fewest vectors from disk, when it is another one.

Tuning is done UNCAPPED, in this process, on the first ``--tune`` queries (warm page cache). The
measured queries (the next ``--measure``) then run per budget in a FRESH process inside a FRESH
memory cgroup whose ``memory.limit_in_bytes`` is the budget (1/2 ... 1/16 of the float32 full
vectors' size, N x D x 4 B; also ``none``: no limit). The whole process counts: its heap and the
page cache it faults in (file pages are charged to the cgroup that first reads them). Cold: before
each run every file of the collection is dropped from the page cache (``posix_fadvise(DONTNEED)``,
then checked with ``fincore``: the resident bytes are recorded), so that this cgroup, not another,
is charged for them; a global ``drop_caches`` is not used (it would also evict the interpreter's
libraries, whose pages would then be charged to the budget). The process opens the collection, runs
the queries once (cold pass), then again (warm pass: what stayed cached under the cap). Per pass:
p50/p99, recall@10, major page faults (``/proc/self/stat``), bytes read from storage
(``/proc/self/io`` ``read_bytes``), the cgroup's peak usage; per run: OOM kills
(``memory.oom_control``). A pass stops after ``--max-pass-s`` seconds (the queries done are reported).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads: one search thread everywhere

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _machine import commit_line, machine  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
MIB = 2**20
BUDGETS = ("none", "2", "4", "8", "16")  # "none": no limit; "8": 1/8 of the float32 full vectors' size
# name -> (peers.py build kind, vectors on disk, label)
EDGE = {
    "edge-hnsw": ("hnsw", False, "Edge HNSW float32 (default placement)"),
    "edge-hnsw-disk": ("hnsw", True, "Edge HNSW float32, vectors on disk"),
    "edge-int8-disk": ("hnsw-int8", True, "Edge HNSW + int8 in RAM, originals on disk, rescore"),
    "edge-binary-disk": ("hnsw-binary", True, "Edge HNSW + binary in RAM, originals on disk, rescore"),
}
# name -> (quantization, graph dim, payload indexes on disk: a layout funnel's store does not make yet)
FUNNEL = {"funnel-int8-g64": ("int8", 64, False), "funnel-int8-g128": ("int8", 128, False),
          "funnel-int8-g64-pdisk": ("int8", 64, True), "funnel-int8-g128-pdisk": ("int8", 128, True)}
CONFIGS = (*EDGE, *FUNNEL)
EXTRA_EFS = (1536, 2048, 3072, 4096)  # beyond peers.py's grid: the harder vectors here may need them


# --------------------------------------------------------------------------- process counters


def io_read_bytes(pid: str = "self") -> int:
    """Bytes this process caused to be read from storage (``/proc/PID/io`` ``read_bytes``)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    return 0


def major_faults(pid: str = "self") -> int:
    """Major page faults of this process (``/proc/PID/stat`` field 12)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[9])


# --------------------------------------------------------------------------- cgroup and page cache


class Cgroup:
    """A fresh cgroup-v1 memory cgroup with a limit (``None``: unlimited), removed by :meth:`remove`."""

    def __init__(self, name: str, limit: int | None) -> None:
        self.path = CGROUP_ROOT / name
        if self.path.exists():
            self.remove()
        self.path.mkdir()
        if limit is not None:
            (self.path / "memory.limit_in_bytes").write_text(str(limit))

    def read(self, name: str) -> str:
        return (self.path / name).read_text()

    def stats(self) -> dict[str, Any]:
        stat = dict(line.split() for line in self.read("memory.stat").splitlines())
        oom = dict(line.split() for line in self.read("memory.oom_control").splitlines())
        return {"limit": int(self.read("memory.limit_in_bytes")), "max_usage": int(self.read("memory.max_usage_in_bytes")),
                "failcnt": int(self.read("memory.failcnt")), "oom_kill": int(oom.get("oom_kill", 0)),
                "pgmajfault": int(stat.get("total_pgmajfault", stat.get("pgmajfault", 0))),
                "cache_end": int(stat.get("total_cache", 0)), "rss_end": int(stat.get("total_rss", 0))}

    def remove(self) -> None:
        try:
            (self.path / "memory.force_empty").write_text("0")  # drop its page cache (no process left in it)
        except OSError:
            pass
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def files_under(path: Path) -> list[Path]:
    return [Path(d) / f for d, _, names in os.walk(path) for f in names] if path.is_dir() else [path]


def evict(paths: list[Path]) -> int:
    """Drop these files' pages from the page cache; return the bytes still resident (``fincore``)."""
    files = [f for p in paths for f in files_under(p)]
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages are not dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return resident_bytes(files)


def resident_bytes(files: list[Path]) -> int:
    """Page-cache bytes of these files (util-linux ``fincore``)."""
    total = 0
    for start in range(0, len(files), 200):
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES",
                              *map(str, files[start : start + 200])], capture_output=True, text=True, check=False)
        total += sum(int(x) for x in out.stdout.split() if x.isdigit())
    return total


# --------------------------------------------------------------------------- the capped process


def probe(spec: dict) -> dict:
    """In the (fresh, capped) process: open one collection, run the queries twice (cold, warm)."""
    cgroup = Path(spec["cgroup"])
    out: dict[str, Any] = {"pid": os.getpid()}
    t0 = time.perf_counter()
    queries = np.load(spec["queries"])
    truth = np.load(spec["truth"])
    from retriever.bench.memory import resident_memory
    from retriever.store.edge.collection import release_freed_memory

    out["baseline"] = {"rss": resident_memory(), "cgroup_usage": int((cgroup / "memory.usage_in_bytes").read_text())}
    if spec["kind"] == "none":  # the bare interpreter with the modules loaded
        from qdrant_edge import EdgeShard  # noqa: F401

        from retriever.store.edge.collection import EdgeCollection  # noqa: F401

        out["baseline"] = {"rss": resident_memory(),
                           "cgroup_usage": int((cgroup / "memory.usage_in_bytes").read_text())}
        return out
    faults0, read0 = major_faults(), io_read_bytes()
    run, close = open_searcher(spec)
    release_freed_memory()  # as funnel's store does after a load: the WAL replay's freed buffers
    out["open"] = {"s": time.perf_counter() - t0, "major_faults": major_faults() - faults0,
                   "read_bytes": io_read_bytes() - read0, "rss": resident_memory(),
                   "cgroup_usage": int((cgroup / "memory.usage_in_bytes").read_text()),
                   "cgroup_peak": int((cgroup / "memory.max_usage_in_bytes").read_text())}
    fitted = squeeze(cgroup, spec["limit"])
    out["capped"] = fitted
    if not fitted["fits"]:
        close()
        return out
    from peers import recall

    from retriever.calibration.timing import Latency

    for name in ("cold", "warm"):
        (cgroup / "memory.max_usage_in_bytes").write_text("0")  # reset the peak to the current usage
        faults0, read0, seconds, found = major_faults(), io_read_bytes(), [], []
        start = time.perf_counter()
        for q in queries:
            t = time.perf_counter()
            found.append(run(q))
            seconds.append(time.perf_counter() - t)
            if time.perf_counter() - start > spec["max_pass_s"]:
                break
        n = len(found)
        out[name] = {"queries": n, "latency_ms": Latency.of(seconds).to_dict(), "recall": recall(found, truth[:n]),
                     "major_faults": major_faults() - faults0, "read_bytes": io_read_bytes() - read0,
                     "seconds": time.perf_counter() - start,
                     "cgroup_peak": int((cgroup / "memory.max_usage_in_bytes").read_text()), "rss": resident_memory()}
    close()
    return out


def cgroup_anon(cgroup: Path) -> int:
    stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines())
    return int(stat.get("total_rss", 0)) + int(stat.get("total_unevictable", 0))


def squeeze(cgroup: Path, limit: int | None) -> dict[str, Any]:
    """After the open: push this cgroup's page cache out (a limit just above its anonymous memory,
    so that every file page the open read is reclaimed: the passes start cold), then set the budget.
    ``fits`` is false when the anonymous memory alone exceeds the budget (the kernel refuses it)."""
    limit_file = cgroup / "memory.limit_in_bytes"
    anon = cgroup_anon(cgroup)
    floor = anon
    for step in range(1, 40):
        floor = anon + step * 4 * MIB
        try:
            limit_file.write_text(str(floor))
            break
        except OSError:
            continue
    squeezed = int((cgroup / "memory.usage_in_bytes").read_text())
    try:
        limit_file.write_text(str(limit if limit is not None else -1))
        fits = True
    except OSError:
        limit_file.write_text("-1")
        fits = False
    return {"anon": anon, "squeeze_limit": floor, "usage_after_squeeze": squeezed, "limit": limit, "fits": fits}


def open_searcher(spec: dict) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[], None]]:
    if spec["kind"] == "edge":
        from peers import edge_search
        from qdrant_edge import EdgeShard

        shard = EdgeShard.load(spec["path"])
        return edge_search(shard, spec["base"], spec["setting"]), shard.close
    from _peers_funnel import FunnelBench

    stand_in = SimpleNamespace(ladder=tuple(spec["ladder"]), cache=Path(spec["cache"]), tag=spec["tag"], dim=spec["dim"])
    fb = FunnelBench(stand_in, spec["quantization"], True, spec["graph_dim"], payload_index_on_disk=spec.get("pdisk", False))
    collection = fb.open()
    return fb.searcher(collection, spec["setting"]), collection.close


def capped_run(spec: dict, limit: int | None, evict_paths: list[Path], timeout_s: float) -> dict:
    """Run :func:`probe` in a fresh process in a fresh cgroup of ``limit`` bytes, cold cache."""
    resident = evict(evict_paths) if evict_paths else 0
    cg = Cgroup(f"funnel-cap-{os.getpid()}", None)  # the child sets the budget after its open (see squeeze)
    spec = spec | {"cgroup": str(cg.path), "limit": limit}
    # the shell joins the cgroup, then execs Python: every page the search process touches is charged
    cmd = ["sh", "-c", f'echo $$ > {cg.path}/cgroup.procs && exec "$0" "$1" --probe "$2"',
           sys.executable, __file__, json.dumps(spec)]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout_s)
        rc, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        rc, stdout, stderr = "timeout", "", str(exc)
    stats = cg.stats()
    cg.remove()
    entry: dict[str, Any] = {"limit": limit, "resident_before": resident, "rc": rc, "wall_s": time.perf_counter() - t0,
                             "cgroup": stats}
    if rc == 0:
        entry |= json.loads(stdout.strip().splitlines()[-1])
        if not entry.get("capped", {"fits": True})["fits"]:
            entry["error"] = (f"does not fit: {entry['capped']['anon'] / MIB:,.0f} MiB of anonymous memory "
                              "(heap, pinned codes) after the open exceeds the budget")
    else:
        entry["error"] = ("OOM-killed by the cgroup" if stats["oom_kill"] else f"exit {rc}") + (
            f": {stderr.strip().splitlines()[-1][:300]}" if stderr.strip() else "")
    return entry


# --------------------------------------------------------------------------- configs: build, tune, measure


def plan_reads(plan: str, graph_dim: int) -> float:
    """Vectors a plan reads from disk per query: every stage after the graph's scores the previous
    stage's candidates (each one at least a page of a memory-mapped file); a plan that does not
    start on the graph's dim scans everything (infinite here)."""
    stages = [tuple(map(int, stage.split(":"))) for stage in plan.split(",")]
    if stages[0][0] != graph_dim:
        return float("inf")
    return float(sum(limit for _, limit in stages[:-1]))


class Bench:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        from peers import Run

        self.args, self.console = args, console
        vectors = args.work / f"vectors-{args.preset}-n{args.n}"
        if not (vectors / "meta.json").exists():
            from synthetic import write

            console.print(f"writing {args.n:,} {args.preset} vectors to {vectors} …")
            write(vectors, args.preset, args.n, args.real)
        self.vectors_meta = json.loads((vectors / "meta.json").read_text())
        ns = argparse.Namespace(vectors=vectors, n=args.n, cache=args.work / "cache", tune=args.tune,
                                measure=args.measure, target=args.target, synthetic=0, dim=0, repeats=1)
        self.run = Run(ns, console)
        self.truth_file = self.run.cache / f"truth-measured-{args.tune}-{args.measure}.npy"
        np.save(self.truth_file, self.run.meas_truth)
        self.full_bytes = self.run.n * self.run.dim * 4
        self.order = sorted(args.budgets, key=lambda b: 0 if b == "none" else int(b))
        self.results: dict[str, dict] = {}
        saved = args.out / f"{args.name}.json"
        if args.merge and saved.exists():  # keep the configs an earlier run measured (each records its command)
            self.results = {k: v for k, v in json.loads(saved.read_text())["configs"].items() if k not in args.configs}

    def limit(self, budget: str) -> int | None:
        return None if budget == "none" else self.full_bytes // int(budget)

    def edge(self, name: str) -> dict:
        from peers import edge_base, edge_build, edge_grid, edge_search, recall, timed, tune
        from qdrant_edge import EdgeShard

        kind, on_disk, label = EDGE[name]
        path = self.run.cache / name
        build = self.run.built(name, lambda: edge_build(path, kind, self.run.corpus, vectors_on_disk=on_disk))
        entry: dict[str, Any] = {"config": name, "label": label, "build": build, "path": str(path)}
        if self.args.build_only:
            return entry
        base = edge_base(kind)
        shard = EdgeShard.load(str(path))
        try:
            grid = [line + [line[-1] | {"ef": ef} for ef in EXTRA_EFS if ef > line[-1]["ef"]] for line in edge_grid(kind)]
            setting, points = tune(lambda s: edge_search(shard, base, s), grid, self.run.tune_q,
                                   self.run.tune_truth, self.args.target)
            if setting is not None:
                run = edge_search(shard, base, setting)
                found, lat = timed(lambda i: run(self.run.meas_q[i]), range(len(self.run.meas_q)))
                entry["uncapped_in_process"] = {"recall": recall(found, self.run.meas_truth), "latency_ms": lat.to_dict()}
        finally:
            shard.close()
        entry |= {"settings": [{"name": "tuned", "setting": setting}] if setting else [], "tuning": points}
        entry["spec"] = {"kind": "edge", "path": str(path), "base": base}
        return entry

    def funnel(self, name: str) -> dict:
        from _peers_funnel import FunnelBench
        from peers import recall, timed

        quantization, graph_dim, pdisk = FUNNEL[name]
        fb = FunnelBench(self.run, quantization, True, graph_dim, payload_index_on_disk=pdisk)
        build = self.run.built(fb.name, fb.build)
        path = fb.catalog.root / fb.name
        label = f"funnel {quantization} graph@{graph_dim}, rerank vectors on disk" + (
            ", payload indexes on disk (benchmark hook: _peers_funnel.cold_payload_indexes)" if pdisk else "")
        entry: dict[str, Any] = {"config": name, "label": label,
                                 "build": build, "path": str(path), "collection": fb.name}
        if self.args.build_only:
            return entry
        with fb.open() as collection:
            setting, points = fb.calibrate(collection)
            settings = [{"name": "calibrated", "setting": setting}]
            passing = [p for p in points if p["recall"] >= self.args.target
                       and plan_reads(p["setting"]["plan"], graph_dim) < float("inf")]
            if passing and self.args.fewest_reads:  # the passing plan that reads the fewest vectors from disk
                fewest = min(passing, key=lambda p: (plan_reads(p["setting"]["plan"], graph_dim), p["p50_ms"]))
                if fewest["setting"]["plan"] != setting["plan"]:
                    settings.append({"name": "fewest reads", "setting": fewest["setting"]})
            for s in settings:
                run = fb.searcher(collection, s["setting"])
                found, lat = timed(lambda i, run=run: run(self.run.meas_q[i]), range(len(self.run.meas_q)))
                s["uncapped_in_process"] = {"recall": recall(found, self.run.meas_truth), "latency_ms": lat.to_dict()}
        entry |= {"settings": settings, "tuning": points, "calibration_met": setting.get("calibration_met")}
        entry["spec"] = {"kind": "funnel", "cache": str(self.run.cache), "tag": self.run.tag, "dim": self.run.dim,
                         "ladder": list(self.run.ladder), "quantization": quantization, "graph_dim": graph_dim,
                         "pdisk": pdisk}
        return entry

    def measure(self, entry: dict) -> None:
        qfile = self.run.meas_file
        for s in entry.get("settings", []):
            s["budgets"] = {}
            for budget in self.args.budgets:
                spec = entry["spec"] | {"setting": s["setting"], "queries": str(qfile), "truth": str(self.truth_file),
                                        "max_pass_s": self.args.max_pass_s}
                r = capped_run(spec, self.limit(budget), [Path(entry["path"])], self.args.timeout_s)
                s["budgets"][budget] = r
                self.console.print(line(entry["config"], s["name"], budget, r))
                self.save(partial=True)

    def baseline(self) -> dict:
        """The bare search process (interpreter, numpy, qdrant_edge, funnel's store loaded): its cgroup usage."""
        spec = {"kind": "none", "queries": str(self.run.meas_file), "truth": str(self.truth_file), "max_pass_s": 0}
        return capped_run(spec, None, [], 120)

    def save(self, partial: bool) -> dict:
        result = {"machine": machine(), "vectors": self.vectors_meta, "points": self.run.n, "dim": self.run.dim,
                  "full_vectors_bytes": self.full_bytes, "budgets": {b: self.limit(b) for b in self.order},
                  "tune_queries": len(self.run.tune_q), "measured_queries": len(self.run.meas_q),
                  "target": self.args.target, "max_pass_s": self.args.max_pass_s, "partial": partial,
                  "process_baseline": getattr(self, "process_baseline", None), "configs": self.results}
        self.args.out.mkdir(parents=True, exist_ok=True)
        (self.args.out / f"{self.args.name}.json").write_text(json.dumps(result, indent=2, default=str))
        return result


# --------------------------------------------------------------------------- report


def cell(r: dict, pass_name: str) -> dict:
    p = r.get(pass_name)
    if not p:
        return {"status": r.get("error", "no result")}
    n = max(1, p["queries"])
    return {"p50": p["latency_ms"]["p50"], "p99": p["latency_ms"]["p99"], "recall": p["recall"], "queries": p["queries"],
            "faults": p["major_faults"] / n, "read_kib": p["read_bytes"] / n / 1024, "peak_mib": p["cgroup_peak"] / MIB,
            "status": "ok"}


def line(config: str, setting: str, budget: str, r: dict) -> str:
    parts = [f"{config:<18} {setting:<12} budget {budget:>4}"]
    if "cold" not in r:
        return parts[0] + f"  {r.get('error')}"
    for name in ("cold", "warm"):
        c = cell(r, name)
        parts.append(f"{name}: p50 {c['p50']:8.2f} p99 {c['p99']:8.2f} ms  recall {c['recall']:.3f}  "
                     f"faults/q {c['faults']:7.1f}  KiB read/q {c['read_kib']:8.1f}  peak {c['peak_mib']:6.0f} MiB"
                     f" ({c['queries']} q)")
    return "  ".join(parts)


def budget_label(budget: str, limit: int | None) -> str:
    return "none" if limit is None else f"1/{budget} ({limit / MIB:,.0f} MiB)"


def rows(result: dict) -> list[list[str]]:
    out = []
    for name, e in result["configs"].items():
        for s in e.get("settings", []):
            for budget in result["budgets"]:
                r = s.get("budgets", {}).get(budget)
                if r is None:
                    continue
                for pass_name in ("cold", "warm"):
                    c = cell(r, pass_name)
                    lab = budget_label(budget, result["budgets"].get(budget))
                    if "p50" not in c:
                        out.append([name, s["name"], json.dumps(s["setting"]), lab, pass_name, "—", "—", "—", "—",
                                    "—", "—", c["status"]])
                        continue
                    flag = "" if c["recall"] >= result["target"] else "recall < target"
                    if c["queries"] < result["measured_queries"]:
                        flag = (flag + "; " if flag else "") + f"stopped after {c['queries']} queries"
                    out.append([name, s["name"], json.dumps(s["setting"]), lab, pass_name, f"{c['p50']:.2f}",
                                f"{c['p99']:.2f}", f"{c['recall']:.3f}", f"{c['faults']:.1f}", f"{c['read_kib']:.1f}",
                                f"{c['peak_mib']:.0f}", flag or "ok"])
    return out


HEAD = ("config", "plan", "setting", "budget", "pass", "p50 ms", "p99 ms", "recall@10", "major faults/query",
        "KiB read/query", "cgroup peak MiB", "note")


def best_at(result: dict, budget: str, pass_name: str, meets: bool = True) -> dict[str, tuple[float, str]]:
    """Lowest p50 per family (funnel / peer) among the settings that meet the target at this budget
    (``meets=False``: among those that do not). A pass stopped by ``--max-pass-s`` counts with the
    queries it ran (named in the label)."""
    best: dict[str, tuple[float, str]] = {}
    for name, e in result["configs"].items():
        family = "funnel" if name.startswith("funnel") else "peer"
        for s in e.get("settings", []):
            r = s.get("budgets", {}).get(budget)
            c = cell(r, pass_name) if r else {}
            if "p50" not in c or (c["recall"] >= result["target"]) != meets:
                continue
            if family not in best or c["p50"] < best[family][0]:
                done = "" if c["queries"] == result["measured_queries"] else f", {c['queries']} queries in the time cap"
                best[family] = (c["p50"], f"{name} ({s['name']}, recall {c['recall']:.3f}{done})")
    return best


def verdicts(result: dict) -> list[str]:
    out = []
    for budget in result["budgets"]:
        for pass_name in ("cold", "warm"):
            b = best_at(result, budget, pass_name)
            lab = budget_label(budget, result["budgets"][budget])
            if "funnel" in b and "peer" in b:
                ratio = b["peer"][0] / b["funnel"][0]
                out.append(f"- budget {lab}, {pass_name}: best funnel {b['funnel'][1]} p50 {b['funnel'][0]:.2f} ms; "
                           f"best peer {b['peer'][1]} p50 {b['peer'][0]:.2f} ms; peer/funnel = {ratio:.2f}×")
            else:
                out.append(f"- budget {lab}, {pass_name}: meeting the target: "
                           + (", ".join(f"{k} {v[1]} p50 {v[0]:.2f} ms" for k, v in b.items()) or "none"))
            missed = best_at(result, budget, pass_name, meets=False)
            if missed:
                out.append("  - below the target: " + ", ".join(f"{k} {v[1]} p50 {v[0]:.2f} ms" for k, v in missed.items()))
    return out


def table(result: dict) -> Table:
    t = Table(title=f"RAM budget: {result['points']:,} x {result['dim']}, {result['measured_queries']} queries, k=10")
    for h in HEAD:
        t.add_column(h, justify="left" if h in ("config", "plan", "setting", "budget", "pass", "note") else "right")
    for r in rows(result):
        t.add_row(*r)
    return t


def markdown(result: dict) -> str:
    m, v = result["machine"], result["vectors"]
    base = result.get("process_baseline") or {}
    base_usage = (base.get("baseline") or {}).get("cgroup_usage")
    lines = [
        f"# RAM budget: {result['points']:,} points x {result['dim']} dims, search held to a memory cgroup ({m['date']})",
        "", f"`{m['command']}`", "", commit_line(m), "",
        f"Machine: {m['cpu']} ({m['cpu_count']} cores), {m['platform']}; shared with other jobs (one run, side by side).",
        "",
        f"Vectors: `synthetic.py` preset `{v.get('preset')}` ({v.get('n'):,} points x {v.get('dim')}, seed "
        f"{v.get('seed')}; " + (f"anchor pool {v['anchor_pool']:,} real rows; {v.get('queries_source')}" if
                                v.get("anchor_pool") else f"synthetic queries, params {json.dumps(v.get('params'))}")
        + f"). Float32 full vectors: {result['full_vectors_bytes'] / MIB:,.0f} MiB; budgets are fractions of that.",
        "",
        "Method: a fresh process per (config, budget) in a fresh cgroup-v1 memory cgroup "
        "(`memory.limit_in_bytes` = the budget; the heap and the page cache the process faults in both count; "
        "no swap on this machine). Cold: the collection's files dropped from the page cache before the run "
        "(`posix_fadvise(DONTNEED)`, resident bytes checked with `fincore`, column in the JSON); global "
        "`drop_caches` not used (it would evict the interpreter's libraries too and charge them to the budget). "
        "The process opens the collection, runs the measured queries (cold pass), then again (warm pass). "
        f"Each config tuned UNCAPPED in the parent process on {result['tune_queries']} other queries "
        f"(lowest p50 with recall@10 >= {result['target']}); {result['measured_queries']} measured queries; "
        f"a pass stops after {result['max_pass_s']:.0f} s. Major faults from `/proc/self/stat`, bytes read from "
        "`/proc/self/io` (`read_bytes`), peak from `memory.max_usage_in_bytes` (reset before each pass).",
        "",
        f"The bare search process (Python, numpy, qdrant_edge and funnel's store imported, nothing open) charges "
        f"{(base_usage or 0) / MIB:,.1f} MiB to its cgroup: the budget includes it.",
        "",
    ]
    lines += [f"- {n}" for n in result.get("notes", [])] + ([""] if result.get("notes") else [])
    lines += ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(result)]
    lines += ["", "Best at each budget (settings meeting the target on the measured queries, all of them run):", ""]
    lines += verdicts(result)
    lines += ["", "Open (in the unlimited run): the anonymous memory left after it is the floor no budget can go "
              "below (heap, pinned codes, in-RAM payload indexes); the peak includes the page cache the open read.", "",
              "| config | plan | anonymous MiB after open | open peak MiB (with page cache) | MiB read at open | open s |",
              "|---|---|---|---|---|---|"]
    for name, e in result["configs"].items():
        for s in e.get("settings", []):
            r = s.get("budgets", {}).get("none") or {}
            o, c = r.get("open") or {}, r.get("capped") or {}
            if o:
                lines.append(f"| {name} | {s['name']} | {c.get('anon', 0) / MIB:,.0f} | {o['cgroup_peak'] / MIB:,.0f} | "
                             f"{o['read_bytes'] / MIB:,.0f} | {o['s']:.1f} |")
    lines += ["", "Configs (build: seconds with every core, under the other jobs' load; tuning: uncapped):", ""]
    for name, e in result["configs"].items():
        b = e.get("build", {})
        tuned = "; ".join(f"{s['name']} {json.dumps(s['setting'])}" for s in e.get("settings", []))
        if not e.get("settings") and e.get("tuning"):
            top = max(e["tuning"], key=lambda p: p["recall"])
            tuned = (f"NO setting reached recall@10 {result['target']} on the tuning queries (best "
                     f"{top['recall']:.3f} at {json.dumps(top['setting'])}, {top['p50_ms']:.2f} ms): not measured capped")
        lines.append(f"- `{name}`: {e.get('label')}; build {b.get('build_s', 0):.0f} s; {tuned}"
                     + (f"; run by `{e['command']}`" if e.get("command") else ""))
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    order = [b for b in result["budgets"]]
    xs = {b: i for i, b in enumerate(order)}
    for ax, pass_name in zip(axes, ("cold", "warm")):
        for name, e in result["configs"].items():
            for s in e.get("settings", []):
                pts = [(xs[b], cell(s["budgets"][b], pass_name)) for b in order if b in s.get("budgets", {})]
                ok = [(x, c["p50"]) for x, c in pts if "p50" in c and c["recall"] >= result["target"]]
                low = [(x, c["p50"]) for x, c in pts if "p50" in c and c["recall"] < result["target"]]
                if ok:
                    ax.plot(*zip(*ok), marker="o", label=f"{name} ({s['name']})",
                            linestyle="-" if name.startswith("funnel") else "--")
                if low:  # below the recall target: hollow markers, dotted
                    ax.plot(*zip(*low), marker="o", markerfacecolor="none", linestyle=":",
                            label=f"{name} ({s['name']}, recall < target)")
        ax.set_xticks(range(len(order)), [budget_label(b, result["budgets"][b]).split(" (")[0] for b in order])
        ax.set_yscale("log")
        ax.set_xlabel("RAM budget (fraction of the float32 vectors' size)")
        ax.set_title(f"{pass_name} pass")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("p50 ms (hollow: recall@10 below the target)")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"p50 vs RAM budget, {result['points']:,} x {result['dim']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# --------------------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--probe":
        sys.path.insert(0, str(Path(__file__).parent))
        print(json.dumps(probe(json.loads(sys.argv[2])), default=str))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/work/ram24-work"), help="vectors and collections (cached)")
    p.add_argument("--real", type=Path, default=Path("/work/ram24-work/dict"), help="real-vector cache (anchored presets)")
    p.add_argument("--preset", default="anchored-base")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--tune", type=int, default=100)
    p.add_argument("--measure", type=int, default=200)
    p.add_argument("--target", type=float, default=0.98)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"subset of {','.join(CONFIGS)}")
    p.add_argument("--budgets", default=",".join(BUDGETS), help="none and/or divisors of the float32 vectors' size")
    p.add_argument("--max-pass-s", type=float, default=90.0, help="stop a pass after this many seconds")
    p.add_argument("--timeout-s", type=float, default=600.0, help="kill a capped process after this many seconds")
    p.add_argument("--build-only", action="store_true")
    p.add_argument("--merge", action="store_true", help="keep the other configs of an earlier result of this --name")
    p.add_argument("--fewest-reads", action="store_true",
                   help="funnel: also measure the passing plan that reads the fewest vectors from disk")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="ram_budget-1m", help="result file stem")
    p.add_argument("--report", type=Path, help="only write the table, Markdown and plot of this saved JSON result")
    args = p.parse_args()
    if args.report:
        report(json.loads(args.report.read_text()), args.report.with_suffix(""), Console(width=240))
        return
    args.configs = [c for c in args.configs.split(",") if c]
    args.budgets = [b for b in args.budgets.split(",") if b]  # run in this order (the report sorts them)
    bad = set(args.configs) - set(CONFIGS)
    if bad:
        p.error(f"unknown configs {sorted(bad)}")
    if any(b != "none" and not b.isdigit() for b in args.budgets):
        p.error("budgets: 'none' or whole divisors, e.g. none,2,4,8,16")
    if not args.build_only and not os.access(CGROUP_ROOT, os.W_OK):
        p.error(f"{CGROUP_ROOT} is not writable: a cgroup-v1 memory controller (and root) is needed")
    console = Console(width=240)
    bench = Bench(args, console)
    if not args.build_only:
        bench.process_baseline = bench.baseline()
        console.print(f"bare search process: {bench.process_baseline.get('baseline')}")
    for name in args.configs:
        entry = bench.edge(name) if name in EDGE else bench.funnel(name)
        entry["command"] = " ".join(["python", *sys.argv])
        bench.results[name] = entry
        if not args.build_only:
            for s in entry.get("settings", []):
                console.print(f"{name} {s['name']}: {json.dumps(s['setting'])} uncapped in-process "
                              f"{json.dumps(s.get('uncapped_in_process') or entry.get('uncapped_in_process'))}")
            bench.measure(entry)
        bench.save(partial=True)
    result = bench.save(partial=False)
    if not args.build_only:
        report(result, args.out / args.name, console)


def report(result: dict, stem: Path, console: Console) -> None:
    """Write ``stem``.md and ``stem``.png of a result; print its table and verdicts."""
    stem.with_suffix(".md").write_text(markdown(result))
    plot(result, stem.with_suffix(".png"))
    console.print(table(result))
    for v in verdicts(result):
        console.print(v)


if __name__ == "__main__":
    main()

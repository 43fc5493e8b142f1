"""Load benchmark of ``funnel serve``: QPS, p50 / p99 latency and errors at 1, 4 and 16 concurrent
clients, with and without micro-batching, and the HTTP overhead against in-process search, in one run.

Targets (issue 5): 0 errors at 16 clients for 60 s; micro-batching ≥ 2× the unbatched throughput
at 16 clients; HTTP adds ≤ 2 ms p50 over in-process ``Retriever.search``.

What runs, in order, on the same collection and the same queries (financial-qa-10k's questions,
shuffled with a fixed seed):

1. **in-process**: ``Retriever.search(query, k)`` one query after another for ``--duration`` s in
   a separate spawned process (the model loaded and warmed up first) → the in-process latency;
2. for each server mode, ``funnel serve`` as a **separate process** on a free 127.0.0.1 port
   (``--max-batch 32 --max-wait-ms 2``: batched; ``--max-batch 1``: unbatched), warmed up, then
   for each client count: that many threads, each with its own ``httpx.Client``, POST ``/search``
   ``{"query", "k", "with_text": true}`` back to back for ``--duration`` s. Every response other
   than a 200 with ``k`` hits, and every exception, counts as an error.

HTTP overhead = p50 latency at 1 client (sequential requests) − in-process p50. The clients run in
this process and share the machine's cores with the server: on a small machine that is part of
what is measured.

    python benchmarks/serve_load.py                                   # index into a temp dir, 60 s per setting
    python benchmarks/serve_load.py --data-dir /tmp/d --collection fin --duration 20   # reuse an index

Results: a table on stdout and ``serve_load.json`` / ``serve_load.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _machine import REPO, SHARED_DATA, commit_line, machine
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = SHARED_DATA / "financial-qa-10k"
TARGET_BATCH_SPEEDUP = 2.0
TARGET_OVERHEAD_MS = 2.0
MODES = {"batched": ["--max-batch", "32", "--max-wait-ms", "2"], "unbatched": ["--max-batch", "1"]}


@dataclass
class Run:
    """One setting: a mode (or in-process) and a number of concurrent clients."""

    mode: str
    clients: int
    seconds: float
    ok: int
    errors: int
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    error_samples: list[str] = field(default_factory=list)
    server_batches: int | None = None
    server_queries: int | None = None

    @property
    def qps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(round(q / 100 * (len(data) - 1))))]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["latencies_ms"]
        mean_batch = (self.server_queries / self.server_batches) if self.server_batches else None
        return d | {"qps": round(self.qps, 2), "p50_ms": round(self.pct(50), 2), "p99_ms": round(self.pct(99), 2),
                    "mean_batch": None if mean_batch is None else round(mean_batch, 2)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=None, help="data dir with the collection [default: a temp dir]")
    p.add_argument("--collection", default="fin")
    p.add_argument("--corpus", type=Path, default=DEFAULT_DATA / "corpus.jsonl", help="indexed if the collection is missing")
    p.add_argument("--queries", type=Path, default=DEFAULT_DATA / "queries.jsonl")
    p.add_argument("--duration", type=float, default=60.0, help="seconds per setting")
    p.add_argument("--clients", default="1,4,16", help="concurrent client counts")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--modes", default="batched,unbatched")
    p.add_argument("--out", type=Path, default=HERE / "results")
    return p.parse_args(argv)


def load_queries(path: Path) -> list[str]:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [r["text"] for r in records if str(r.get("text") or "").strip()]  # the file has an empty one
    random.Random(42).shuffle(texts)
    return texts


def cli(*args: str, **kwargs: Any) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, str(REPO / "cli.py"), *args], cwd=REPO, env=env, text=True, **kwargs)


def ensure_index(data_dir: Path, name: str, corpus: Path, console: Console) -> None:
    if (data_dir / "collections" / name / "collection.json").is_file():
        return
    console.print(f"indexing {corpus} into {name!r} under {data_dir} …")
    proc = cli("--data-dir", str(data_dir), "index", str(corpus), "-c", name, "--no-progress")
    if proc.wait() != 0:
        raise SystemExit("indexing failed")


def in_process(data_dir: Path, name: str, queries: list[str], k: int, duration: float) -> Run:
    """Sequential ``Retriever.search`` for ``duration`` seconds, in a fresh (spawned) process.

    Not in this process: torch's thread pool, once used here, slowed the server (another process
    on the same 2 cores) down from ~20 ms to ~26-500 ms per query in trial runs.
    """
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_in_process, (data_dir, name, queries, k, duration))


def _in_process(data_dir: Path, name: str, queries: list[str], k: int, duration: float) -> Run:
    from retriever import Retriever

    with Retriever.open(name, data_dir) as r:
        for q in queries[:20]:
            r.search(q, k=k)
        lat: list[float] = []
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < duration:
            t0 = time.perf_counter()
            hits = r.search(queries[i % len(queries)], k=k)
            lat.append((time.perf_counter() - t0) * 1000)
            assert len(hits) == k
            i += 1
        seconds = time.perf_counter() - start
    return Run("in-process", 1, seconds, len(lat), 0, lat)


class Server:
    """``funnel serve`` in its own process on a free port."""

    def __init__(self, data_dir: Path, name: str, mode_args: list[str]) -> None:
        self.proc = cli("--data-dir", str(data_dir), "serve", "-c", name, "--port", "0", "--log-level", "warning",
                        *mode_args, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        line = ""
        for _ in range(50):
            line = self.proc.stderr.readline()
            if (m := re.search(r"on (http://127\.0\.0\.1:\d+)", line)) or not line:
                break
        if not m:
            raise SystemExit(f"the server did not start: {line}")
        self.url = m.group(1)
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # drain its log
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{self.url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("the server did not get ready")
            time.sleep(0.2)

    def stats(self) -> dict[str, int]:
        return httpx.get(f"{self.url}/healthz").json()["batching"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def drive(url: str, mode: str, clients: int, queries: list[str], k: int, duration: float) -> Run:
    """``clients`` threads, each POSTing /search back to back until the time is up."""
    lats: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    samples: list[str] = []
    stop_at = time.perf_counter() + duration
    barrier = threading.Barrier(clients + 1)

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            i = n * 997
            barrier.wait()
            while time.perf_counter() < stop_at:
                body = {"query": queries[i % len(queries)], "k": k, "with_text": True}
                i += 1
                t0 = time.perf_counter()
                try:
                    resp = c.post("/search", json=body)
                    good = resp.status_code == 200 and len(resp.json()["results"][0]["hits"]) == k
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    good, resp = False, exc
                if good:
                    lats[n].append((time.perf_counter() - t0) * 1000)
                else:
                    errors[n] += 1
                    if len(samples) < 5:
                        samples.append(str(getattr(resp, "text", resp))[:200])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    flat = [x for lat in lats for x in lat]
    return Run(mode, clients, seconds, len(flat), sum(errors), flat, samples)


def verdicts(runs: list[Run], inproc: Run) -> dict[str, Any]:
    by = {(r.mode, r.clients): r for r in runs}
    out: dict[str, Any] = {}
    top = max(r.clients for r in runs)
    if ("batched", top) in by:
        b = by[("batched", top)]
        out["errors_at_max_clients"] = {"clients": top, "errors": b.errors, "seconds": round(b.seconds, 1),
                                        "met": b.errors == 0}
    if ("batched", top) in by and ("unbatched", top) in by:
        speedup = by[("batched", top)].qps / max(by[("unbatched", top)].qps, 1e-9)
        out["batching_speedup"] = {"clients": top, "speedup": round(speedup, 2), "target": TARGET_BATCH_SPEEDUP,
                                   "met": speedup >= TARGET_BATCH_SPEEDUP}
    for mode in ("batched", "unbatched"):
        if (mode, 1) in by:
            overhead = by[(mode, 1)].pct(50) - inproc.pct(50)
            out[f"http_overhead_p50_ms_{mode}"] = {"overhead_ms": round(overhead, 2), "target": TARGET_OVERHEAD_MS,
                                                   "met": overhead <= TARGET_OVERHEAD_MS}
    return out


def table_rows(runs: list[Run], inproc: Run) -> list[list[str]]:
    rows = [["in-process Retriever.search", "1", f"{inproc.qps:,.1f}", f"{inproc.pct(50):.2f}",
             f"{inproc.pct(99):.2f}", "0", "–"]]
    for r in runs:
        mean = f"{r.server_queries / r.server_batches:.1f}" if r.server_batches else "–"
        rows.append([f"HTTP, {r.mode}", str(r.clients), f"{r.qps:,.1f}", f"{r.pct(50):.2f}", f"{r.pct(99):.2f}",
                     str(r.errors), mean])
    return rows


HEADERS = ["setting", "clients", "QPS", "p50 ms", "p99 ms", "errors", "mean batch"]


def markdown(report: dict[str, Any], rows: list[list[str]]) -> str:
    m = report["machine"]
    lines = [
        "# funnel serve: load benchmark", "",
        f"`{m['command']}` — {m['date']}", "", commit_line(m), "",
        f"Machine: {m['cpu']}, {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
        f"GPU: {m['gpu'] or 'none'}, Python {m['python']}, {m['platform']}.", "",
        f"Collection `{report['collection']}` ({report['points']:,} points), k={report['k']}, "
        f"{report['duration_s']:.0f} s per setting, queries: {report['queries_file']} (shuffled, seed 42). "
        "Clients are threads with their own httpx.Client in the benchmark process; the server is a separate "
        "`funnel serve` process; both share the machine's cores.", "",
        "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS),
        *["| " + " | ".join(r) + " |" for r in rows], "",
        "## Targets", "",
    ]
    for name, v in report["verdicts"].items():
        lines.append(f"- **{name}**: " + ", ".join(f"{k}={val}" for k, val in v.items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    clients = [int(c) for c in args.clients.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    tmp = None
    if args.data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="funnel-serve-load-")
        args.data_dir = Path(tmp.name)
    ensure_index(args.data_dir, args.collection, args.corpus, console)
    queries = load_queries(args.queries)

    console.print(f"in-process Retriever.search for {args.duration:.0f} s …")
    inproc = in_process(args.data_dir, args.collection, queries, args.k, args.duration)
    from retriever.store.edge.catalog import EdgeCatalog

    with EdgeCatalog(args.data_dir).open(args.collection) as coll:
        points = coll.count()

    runs: list[Run] = []
    for mode in modes:
        console.print(f"starting funnel serve ({mode}: {' '.join(MODES[mode])}) …")
        server = Server(args.data_dir, args.collection, MODES[mode])
        try:
            drive(server.url, mode, 4, queries[-200:], args.k, min(5.0, args.duration))  # warm-up
            for n in clients:
                console.print(f"  {mode}, {n} clients, {args.duration:.0f} s …")
                before = server.stats()
                run = drive(server.url, mode, n, queries, args.k, args.duration)
                after = server.stats()
                run.server_batches = after["batches"] - before["batches"]
                run.server_queries = after["queries"] - before["queries"]
                runs.append(run)
        finally:
            server.stop()

    rows = table_rows(runs, inproc)
    table = Table(title=f"funnel serve: {args.duration:.0f} s per setting, k={args.k}")
    for h in HEADERS:
        table.add_column(h, justify="left" if h == "setting" else "right")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    report = {
        "machine": machine(), "collection": args.collection, "points": points, "k": args.k,
        "duration_s": args.duration, "queries_file": str(args.queries.relative_to(REPO.parent))
        if args.queries.is_relative_to(REPO.parent) else str(args.queries),
        "server_modes": {m: MODES[m] for m in modes},
        "in_process": inproc.to_dict(), "runs": [r.to_dict() for r in runs], "verdicts": verdicts(runs, inproc),
    }
    for name, v in report["verdicts"].items():
        console.print(f"{name}: {v}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_load.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "serve_load.md").write_text(markdown(report, rows))
    console.print(f"wrote {args.out / 'serve_load.json'} and {args.out / 'serve_load.md'}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

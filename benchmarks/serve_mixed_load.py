"""Load and fault run of ``funnel serve`` (issue 22): 32 concurrent clients for 60 s mixing dense,
adaptive, hybrid and batch searches with bad requests, against one server with an API key.

Every client is a thread with its own ``httpx.Client``; each request is drawn (seeded) from the kinds
below, about a quarter of them bad. A *valid* request counts as an error unless it answers 200 with
``k`` hits per query; a *bad* one unless it answers a 4xx with a JSON error body (a 5xx, a 200 or a
dropped connection are all errors). The server's RSS (``/proc/PID/status`` VmRSS) is sampled every
second: it must not keep growing (over the measured run, after a 10 s warm-up of the same load that
is not counted, the last third's peak at most 10 % and 64 MiB above the first third's).

The collection is calibrated first (``funnel calibrate --sample 100``), so that adaptive requests
have a rule to run.

Bad kinds: no API key, a wrong key, k = 0, k as a string, an unknown field, an empty query, a
malformed plan, ``plan`` with ``exact``, 33 queries in a batch, JSON that is not JSON, JSON nested
100,000 deep, a body that is not UTF-8, a body over ``--max-body-kib`` (256 KiB), an unknown path,
a wrong method, hybrid with an unknown fusion.

    python benchmarks/serve_mixed_load.py                   # index 1,500 passages (bm25) into a temp dir
    python benchmarks/serve_mixed_load.py --data-dir /tmp/d --duration 20

Results: ``serve_mixed_load.json`` / ``serve_mixed_load.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
from _machine import SHARED_DATA, commit_line, machine
from serve_load import Server, cli, load_queries

HERE = Path(__file__).resolve().parent
DATA = SHARED_DATA / "financial-qa-10k"
KEY = "load-test-key"
NAME = "fin"
K = 10

VALID = {  # kind → (weight, body maker)
    "dense": (20, lambda q, qs: {"query": q, "k": K, "mode": "dense"}),
    "adaptive": (10, lambda q, qs: {"query": q, "k": K, "adaptive": True}),
    "hybrid": (10, lambda q, qs: {"query": q, "k": K, "mode": "hybrid"}),
    "hybrid-rrf": (5, lambda q, qs: {"query": q, "k": K, "mode": "hybrid", "fusion": "rrf"}),
    "default-batch-4": (5, lambda q, qs: {"queries": qs[:4], "k": K}),  # the collection's default mode
}
BAD: dict[str, tuple[int, Any]] = {  # kind → (weight, (method, path, headers, raw body))
    "no-key": (1, lambda q: ("POST", "/search", {"X-API-Key": None}, json.dumps({"query": q}).encode())),
    "wrong-key": (1, lambda q: ("POST", "/search", {"X-API-Key": "nope"}, json.dumps({"query": q}).encode())),
    "k-zero": (1, lambda q: ("POST", "/search", {}, json.dumps({"query": q, "k": 0}).encode())),
    "k-string": (1, lambda q: ("POST", "/search", {}, json.dumps({"query": q, "k": "10"}).encode())),
    "unknown-field": (1, lambda q: ("POST", "/search", {}, json.dumps({"query": q, "kk": 3}).encode())),
    "empty-query": (1, lambda q: ("POST", "/search", {}, json.dumps({"query": ""}).encode())),
    "bad-plan": (1, lambda q: ("POST", "/search", {}, json.dumps({"query": q, "plan": "64:abc"}).encode())),
    "plan-and-exact": (1, lambda q: ("POST", "/search", {}, json.dumps({"query": q, "plan": "64:50",
                                                                          "exact": True}).encode())),
    "33-queries": (1, lambda q: ("POST", "/search", {}, json.dumps({"queries": [q] * 33}).encode())),
    "not-json": (1, lambda q: ("POST", "/search", {}, b'{"query": "x", ')),
    "deep-json": (1, lambda q: ("POST", "/search", {}, b"[" * 100_000 + b"]" * 100_000)),
    "not-utf8": (1, lambda q: ("POST", "/search", {}, b'{"query": "caf\xe9"}')),
    "too-large": (1, lambda q: ("POST", "/search", {}, json.dumps({"query": "x" * 300_000}).encode())),
    "unknown-path": (1, lambda q: ("POST", "/nowhere", {}, b"{}")),
    "wrong-method": (1, lambda q: ("DELETE", "/search", {}, b"")),
    "bad-fusion": (1, lambda q: ("POST", "/search", {}, json.dumps({"query": q, "mode": "hybrid",
                                                                      "fusion": "max"}).encode())),
}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    data = sorted(values)
    return round(data[min(len(data) - 1, int(round(q / 100 * (len(data) - 1))))], 2)


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def drive(url: str, clients: int, duration: float, queries: list[str], seed: int, mix: str = "all") -> dict[str, Any]:
    kinds = ([(k, w, True) for k, (w, _) in VALID.items()] if mix != "bad" else []) + (
        [(k, w, False) for k, (w, _) in BAD.items()] if mix != "valid" else [])
    weights = [w for _, w, _ in kinds]
    lock = threading.Lock()
    statuses: dict[str, Counter] = defaultdict(Counter)
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": KEY}) as c:
            barrier.wait()
            while time.perf_counter() < stop_at[0]:
                kind, _, valid = rng.choices(kinds, weights)[0]
                q = queries[rng.randrange(len(queries))]
                t0 = time.perf_counter()
                try:
                    if valid:
                        qs = [queries[rng.randrange(len(queries))] for _ in range(4)]
                        body = VALID[kind][1](q, qs)
                        r = c.post("/search", json=body)
                        ms = (time.perf_counter() - t0) * 1000
                        n_queries = len(body.get("queries") or [q])
                        results = r.json().get("results") if r.status_code == 200 else None
                        good = (r.status_code == 200 and isinstance(results, list) and len(results) == n_queries
                                and all(isinstance(res, dict) and len(res.get("hits") or []) == K for res in results))
                        why = "" if good else f"{kind}: {r.status_code} {r.text[:160]}"
                    else:
                        method, path, headers, raw = BAD[kind][1](q)
                        h = {"Content-Type": "application/json"}
                        if headers.get("X-API-Key", "") is None:
                            req = c.build_request(method, path, content=raw, headers=h)
                            del req.headers["X-API-Key"]
                        else:
                            req = c.build_request(method, path, content=raw, headers=h | headers)
                        r = c.send(req)
                        ms = (time.perf_counter() - t0) * 1000
                        try:
                            is_json = isinstance(r.json(), dict)
                        except ValueError:
                            is_json = False
                        good = 400 <= r.status_code < 500 and is_json
                        why = "" if good else f"{kind}: {r.status_code} {r.text[:160]}"
                    status = str(r.status_code)
                except httpx.HTTPError as exc:
                    ms, good, status = (time.perf_counter() - t0) * 1000, False, type(exc).__name__
                    why = f"{kind}: {type(exc).__name__} {exc}"[:200]
                with lock:
                    statuses[kind][status] += 1
                    latencies[kind].append(ms)
                    if not good:
                        errors.append(why)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + duration
    started = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 1), "statuses": {k: dict(v) for k, v in statuses.items()},
            "latencies": dict(latencies), "errors": errors}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=None, help="data dir with the collection [default: a temp dir]")
    p.add_argument("--passages", type=int, default=1500, help="financial-qa-10k passages indexed (with bm25)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=10.0, help="seconds of the same load first, not counted")
    p.add_argument("--seed", type=int, default=22)
    p.add_argument("--mix", choices=["all", "valid", "bad"], default="all", help="only valid or only bad requests")
    p.add_argument("--encoder", default=None, help="funnel serve --encoder (default: the server's own choice)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    queries = load_queries(DATA / "queries.jsonl")
    m = machine()
    with tempfile.TemporaryDirectory(prefix="serve-mixed-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        if not (data_dir / "collections" / NAME / "collection.json").is_file():
            corpus = Path(tmp) / "corpus.jsonl"
            corpus.write_text("".join((DATA / "corpus.jsonl").read_text().splitlines(keepends=True)[: args.passages]))
            print(f"indexing {args.passages} passages (bm25) into {data_dir} …", flush=True)
            if cli("--data-dir", str(data_dir), "index", str(corpus), "-c", NAME, "--lexical", "bm25",
                   "--no-progress", "--no-calibrate").wait() != 0:
                raise SystemExit("indexing failed")
            print("calibrating (for adaptive requests) …", flush=True)
            if cli("--data-dir", str(data_dir), "calibrate", NAME, "--sample", "100", "--encoders", "none",
                   stdout=subprocess.DEVNULL).wait() != 0:
                raise SystemExit("calibration failed")
        server = Server(data_dir, NAME, ["--api-key", KEY, *(["--encoder", args.encoder] if args.encoder else [])])
        try:
            pid = server.proc.pid
            rss: list[tuple[float, int]] = []
            sampling = threading.Event()

            def sample() -> None:
                t0 = time.perf_counter()
                while not sampling.is_set():
                    if (v := rss_kib(pid)) is not None:
                        rss.append((round(time.perf_counter() - t0, 1), v))
                    time.sleep(1.0)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            print(f"warm-up: {args.clients} clients for {args.warmup:g} s (not counted) …", flush=True)
            drive(server.url, args.clients, args.warmup, queries, args.seed + 1, args.mix)
            measured_from = len(rss)
            print(f"{args.clients} clients for {args.duration:g} s against {server.url} …", flush=True)
            run = drive(server.url, args.clients, args.duration, queries, args.seed, args.mix)
            sampling.set()
            sampler.join()
            alive = server.proc.poll() is None
        finally:
            server.stop()
    valid = [k for k in VALID]
    lat_valid = [x for k in valid for x in run["latencies"].get(k, [])]
    n_valid = sum(sum(run["statuses"].get(k, {}).values()) for k in valid)
    n_bad = sum(sum(run["statuses"].get(k, {}).values()) for k in BAD)
    by_status = Counter()
    for counts in run["statuses"].values():
        by_status.update(counts)
    fivexx = sum(v for s, v in by_status.items() if s.startswith("5"))
    measured = rss[measured_from:]
    third = max(1, len(measured) // 3)
    first, last = max(v for _, v in measured[:third]), max(v for _, v in measured[-third:])
    rss_ok = last <= first * 1.10 and last - first <= 64 * 1024
    valid_errors = [e for e in run["errors"] if e.split(":")[0] in VALID]
    report = {
        "machine": m, "commit": commit_line(m), "clients": args.clients, "duration_s": run["seconds"],
        "passages": args.passages, "requests": n_valid + n_bad, "valid": n_valid, "bad": n_bad,
        "qps_all": round((n_valid + n_bad) / run["seconds"], 1), "qps_valid": round(n_valid / run["seconds"], 1),
        "p50_ms_valid": pct(lat_valid, 50), "p99_ms_valid": pct(lat_valid, 99),
        "by_kind": {k: {"statuses": run["statuses"].get(k, {}), "p50_ms": pct(run["latencies"].get(k, []), 50),
                        "p99_ms": pct(run["latencies"].get(k, []), 99)} for k in [*VALID, *BAD]},
        "by_status": dict(by_status), "errors": len(run["errors"]), "valid_errors": len(valid_errors),
        "error_samples": run["errors"][:20], "5xx": fivexx, "server_alive": alive,
        "rss_kib": {"first_third_peak": first, "last_third_peak": last, "measured_from_sample": measured_from,
                    "samples": rss}, "rss_bounded": rss_ok,
        "encoder": args.encoder, "met": not run["errors"] and not fivexx and rss_ok and alive,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "serve_mixed_load" if args.mix == "all" else f"serve_mixed_load-{args.mix}"
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# funnel serve: 32 clients, valid and bad requests", "", commit_line(m), "",
             f"`{m['command']}` — {m['date']}", "",
             f"Machine: {m['cpu']}, {m['cpu_count']} CPUs, torch {m['torch']}, Python {m['python']}, {m['platform']}. "
             "Clients (threads, one httpx.Client each) and server (`funnel serve --api-key …`, its own process) share "
             "the machine's cores.", "",
             f"Collection: {args.passages} financial-qa-10k passages, `--lexical bm25`; the server's encoder: "
             f"{args.encoder or 'its default'}. {args.clients} clients for "
             f"{run['seconds']} s; {n_valid + n_bad:,} requests ({report['qps_all']}/s): {n_valid:,} valid "
             f"({report['qps_valid']}/s, p50 {report['p50_ms_valid']} ms, p99 {report['p99_ms_valid']} ms), "
             f"{n_bad:,} bad.", "",
             f"**Errors: {len(run['errors'])}** (valid requests not answered 200 with k hits: {len(valid_errors)}; "
             f"bad requests not answered a 4xx JSON error: {len(run['errors']) - len(valid_errors)}). **5xx: {fivexx}.** "
             f"Server alive at the end: {alive}. RSS peak (after a {args.warmup:g} s warm-up of the same load), first third {first / 1024:.0f} MiB, last third "
             f"{last / 1024:.0f} MiB: {'bounded' if rss_ok else 'GREW'}.", "",
             "| kind | requests | statuses | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for kind, d in report["by_kind"].items():
        tag = "" if kind in VALID else " (bad)"
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(d["statuses"].items()))
        lines.append(f"| {kind}{tag} | {sum(d['statuses'].values())} | {statuses} | {d['p50_ms']} | {d['p99_ms']} |")
    if run["errors"]:
        lines += ["", "Error samples:", *[f"- {e}" for e in run["errors"][:20]]]
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Coverage curve: how much of the exact full-dim top-10 the exact 64-dim top-S holds, S = 10 ... 800.

For each query: the exact top-10 by cosine on the full (L2-normalised) vectors, the exact ranking by
cosine on the 64-dim prefix (re-normalised), and, per S, the share of those 10 found in the 64-dim
top-S; averaged over the queries. Computed exactly with numpy, queries in blocks (the rank of each
full-dim hit in the 64-dim ranking = the number of points scoring strictly higher at 64 dims).

Sets (each at the real corpus's size N unless ``--n`` says otherwise):

- ``real:<tag>``: the embeddings written by ``benchmarks/realdata.py embed --tag <tag>`` (corpus rows
  finished so far if the corpus is not fully encoded: see ``--partial``);
- ``synthetic:legacy``: the generator ``benchmarks/scale.py`` used before issue 10 (768 dims);
- ``synthetic:<preset>``: a fitted preset of ``benchmarks/synthetic.py``; options after the name,
  ``synthetic:<preset>:n=1000000:seed=1``, set its size (default: its target's real N) and seed. The
  ``anchored-*`` presets read the real vectors from ``--cache`` (their anchors and queries).

A synthetic set's target is ``real:<tag>`` (``<tag>`` = the preset's ``anchors``, else the preset's name);
the 0.02 criterion applies at the target's N; at another N the gap is printed for information only.

Run::

    python benchmarks/coverage.py                                # real sets, legacy, fitted presets, 1M anchored
    python benchmarks/coverage.py --fit minilm-base              # fit a preset's parameters to real:minilm-base
    python benchmarks/coverage.py --fit anchored-dict-mrl --grid '{"neighbours": [2, 4, 8], "reach": [0.25, 0.5]}'
    python benchmarks/coverage.py --sets real:minilm-base,synthetic:legacy --queries 1000

Writes ``results/coverage.json``, ``coverage.md`` (table, machine, command) and ``coverage.png``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _machine import commit_line, machine
from realdata import CACHE, load_partial
from synthetic import PRESETS, Params, Synthetic

S_LIST = (10, 20, 50, 100, 200, 400, 800)
K = 10
PREFIX = 64
TOLERANCE = 0.02
RESULTS = Path(__file__).parent / "results"


def normalize(x: np.ndarray, dim: int | None = None) -> np.ndarray:
    x = np.ascontiguousarray(x[:, :dim] if dim else x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def coverage(corpus: np.ndarray, queries: np.ndarray, prefix: int = PREFIX, k: int = K,
             s_list: tuple[int, ...] = S_LIST, block: int = 64) -> np.ndarray:
    """Per query and per S, the share of the exact full-dim top-k found in the exact prefix top-S."""
    full_c, full_q = normalize(corpus), normalize(queries)
    pre_c, pre_q = normalize(corpus, prefix), normalize(queries, prefix)
    out = np.empty((len(queries), len(s_list)), np.float32)
    s_arr = np.asarray(s_list)
    for start in range(0, len(queries), block):
        stop = min(len(queries), start + block)
        full = full_q[start:stop] @ full_c.T
        top = np.argpartition(-full, k, axis=1)[:, :k]
        del full
        pre = pre_q[start:stop] @ pre_c.T
        hit_scores = np.take_along_axis(pre, top, axis=1)  # (b, k)
        ranks = np.stack([(pre > hit_scores[:, j : j + 1]).sum(axis=1) for j in range(k)], axis=1)
        out[start:stop] = (ranks[:, :, None] < s_arr[None, None, :]).mean(axis=1)
    return out


def _rows_of(cache: Path, tag: str, rows: np.ndarray) -> np.ndarray:
    have, vecs = load_partial(cache, tag)
    order = np.argsort(have)
    where = np.searchsorted(have[order], rows)
    if (where >= len(have)).any() or (have[order][np.minimum(where, len(have) - 1)] != rows).any():
        raise SystemExit(f"{tag} has not encoded every row asked for")
    return vecs[order][where]


def real_set(cache: Path, tag: str, queries: int, partial: bool,
             rows_from: str | None = None, offset: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    base = cache / tag
    meta = json.loads((base / "meta.json").read_text()) if (base / "meta.json").exists() else {}
    if rows_from:  # the same corpus rows as another model's finished shards: curves side by side
        rows, _ = load_partial(cache, rows_from)
        rows = np.sort(rows)
        full = base / "corpus.npy"
        corpus = np.load(full, mmap_mode="r")[rows] if full.exists() else _rows_of(cache, tag, rows)
        note = f"the {len(rows):,} corpus rows {rows_from} has encoded so far (a uniform random sample)"
    elif (base / "corpus.npy").exists():
        corpus = np.load(base / "corpus.npy")
        note = "full corpus"
    elif partial:
        _, corpus = load_partial(cache, tag)
        note = "corpus shards finished so far (a uniform random sample of the corpus)"
    else:
        raise SystemExit(f"{base}/corpus.npy is missing (encode first, or pass --partial)")
    if (base / "queries.npy").exists():
        q = np.load(base / "queries.npy")
    else:
        rows = np.load(base / "shards" / "queries-00000.rows.npy")
        q = np.empty_like(np.load(base / "shards" / "queries-00000.npy"))
        q[rows] = np.load(base / "shards" / "queries-00000.npy")
    info = {"kind": "real", "tag": tag, "model": meta.get("model", tag), "corpus": note, "dim": int(corpus.shape[1])}
    return corpus, q[offset : offset + queries], info


def synthetic_set(params: Params, n: int, queries: int, seed: int = 0,
                  real: Path | None = None, offset: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    data = Synthetic(n, params, seed=seed, real=real)
    corpus = np.empty((n, data.dim), np.float32)
    for s in range(0, n, 20000):
        corpus[s : min(n, s + 20000)] = normalize(data.batch(s, min(n, s + 20000)))
    info = {"kind": "synthetic", "params": params.to_dict(), "dim": data.dim, "seed": seed}
    if params.anchors:
        info["anchor_pool"] = f"{data.pool_size:,} of the {data.real_n:,} real {params.anchors} rows"
        info["queries"] = f"real {params.anchors} queries {offset} ... {offset + queries - 1}"
    return corpus, data.queries(offset + queries)[offset:], info


def parse_synthetic(tag: str) -> tuple[str, int, int]:
    """``preset[:n=N][:seed=S]`` -> (preset, n or 0, seed)."""
    preset, *opts = tag.split(":")
    kv = dict(o.split("=", 1) for o in opts)
    return preset, int(kv.get("n", 0)), int(kv.get("seed", 0))


def curve(values: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in values.mean(axis=0)]


def fit(target: list[float], n: int, queries: int, base: Params, grid: dict[str, list],
        real: Path | None = None) -> tuple[Params, list]:
    """Grid search: the parameters whose curve is closest (max abs difference) to the target."""
    tried = []
    best: tuple[float, Params, list[float]] | None = None
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        p = replace(base, **dict(zip(keys, values, strict=True)))  # type: ignore[arg-type]
        t0 = time.perf_counter()
        c, q, _ = synthetic_set(p, n, queries, real=real)
        cur = curve(coverage(c, q))
        gap = max(abs(a - b) for a, b in zip(cur, target, strict=True))
        tried.append({"params": dict(zip(keys, values, strict=True)), "curve": cur, "max_gap": round(gap, 4)})
        print(f"  {dict(zip(keys, values, strict=True))}: {cur} max gap {gap:.3f} ({time.perf_counter() - t0:.0f} s)",
              flush=True)
        if best is None or gap < best[0]:
            best = (gap, p, cur)
    assert best is not None
    return best[1], tried


def markdown(result: dict) -> str:
    m = result["machine"]
    head = "| set | N | dim | queries | " + " | ".join(f"S={s}" for s in S_LIST) + " | max gap to target |"
    lines = [f"# Coverage: full-dim top-{K} inside the exact {PREFIX}-dim top-S ({m['date']})", "",
             f"`{result.get('command', m['command'])}`", "", commit_line(m), "",
             f"Machine: {m['cpu']} ({m['cpu_count']} cores), {m['platform']}. Exact search with numpy; "
             f"per query, the share of the exact full-dim top-{K} (cosine, L2-normalised vectors) found in the "
             f"exact {PREFIX}-dim top-S ({PREFIX}-dim prefix re-normalised), averaged over the queries. A synthetic "
             f"set matches when its curve is within {TOLERANCE} of its target at every S.", "",
             head, "|---|---|---|---|" + "---|" * len(S_LIST) + "---|"]
    for name, s in result["sets"].items():
        gap = ""
        if "target" in s:
            verdict = "information only: N differs from the target's" if s["matches"] is None else (
                "match" if s["matches"] else f"NO match: misses by {s['max_gap'] - TOLERANCE:.3f}")
            gap = f"{s['max_gap']:.3f} at S={s['worst_s']} vs {s['target']} ({verdict})"
        lines.append(f"| {name} | {s['n']:,} | {s['info']['dim']} | {s['queries']:,} | "
                     + " | ".join(f"{v:.3f}" for v in s["curve"]) + f" | {gap} |")
    lines += ["", "Sets:", ""]
    for name, s in result["sets"].items():
        lines.append(f"- `{name}`: " + json.dumps(s["info"]))
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    colours = {}  # one colour per real model; a synthetic set takes its target's colour, dashed
    markers = iter("sD^v<>px*h" * 3)
    for name, s in result["sets"].items():
        key = name if name.startswith("real") else s.get("target", name)
        colour = colours.setdefault(key, f"C{len(colours) % 10}")
        real = name.startswith("real")
        ax.plot(S_LIST, s["curve"], "-" if real else "--", color=colour, marker="o" if real else next(markers),
                lw=2.2 if real else 1.2, ms=5, label=f"{name} (N={s['n']:,})")
    ax.set_xscale("log")
    ax.set_xticks(S_LIST, [str(s) for s in S_LIST])
    ax.set_xlabel(f"S (exact {PREFIX}-dim shortlist size)")
    ax.set_ylabel(f"share of the full-dim top-{K} in the shortlist")
    ax.set_title(f"Coverage of the full-dim top-{K} by the {PREFIX}-dim top-S", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--sets", default="real:minilm-base,real:minilm-fin-mrl,real:minilm-dict-mrl,synthetic:legacy,"
                    "synthetic:minilm-base,synthetic:anchored-base,synthetic:anchored-fin-mrl,"
                    "synthetic:anchored-dict-mrl,synthetic:anchored-dict-mrl:seed=1,synthetic:anchored-dict-mrl:seed=2,"
                    "synthetic:anchored-dict-mrl:n=1000000",
                    help="real:<tag> and synthetic:<preset>[:n=N][:seed=S]; missing ones are skipped")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--query-offset", type=int, default=0,
                    help="skip this many queries (real and synthetic): a check on queries no preset was fitted on")
    ap.add_argument("--n", type=int, default=0, help="points for synthetic sets [default: the real corpus's N]")
    ap.add_argument("--partial", action="store_true", help="use the corpus shards encoded so far")
    ap.add_argument("--rows-from", default=None, metavar="TAG",
                    help="every real set on the corpus rows TAG has encoded so far (compare a partly encoded model)")
    ap.add_argument("--fit", default="", help="fit this preset to its real target (grid search), print it")
    ap.add_argument("--fit-queries", type=int, default=300)
    ap.add_argument("--grid", default='{"alpha": [0.5, 1.0, 1.5], "query_noise": [0.5, 1.0, 1.5]}',
                    help="JSON: parameter -> values for --fit")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    result: dict = {"k": K, "prefix": PREFIX, "s": list(S_LIST), "tolerance": TOLERANCE, "sets": {}}
    if args.fit:
        c, q, info = real_set(args.cache, PRESETS[args.fit].anchors or args.fit, args.fit_queries, args.partial)
        n = args.n or len(c)
        target = curve(coverage(c, q))
        print(f"target real:{info['tag']} (N={len(c):,}, {len(q)} queries): {target}", flush=True)
        del c
        best, tried = fit(target, n, args.fit_queries, PRESETS[args.fit], json.loads(args.grid), real=args.cache)
        print(json.dumps({"best": best.to_dict(), "target": target, "tried": tried}))
        return 0

    real_n: dict[str, int] = {}
    for name in (s.strip() for s in args.sets.split(",")):
        kind, tag = name.split(":", 1)
        t0 = time.perf_counter()
        if kind == "real":
            if not (args.cache / tag).exists():
                print(f"skip {name}: no vectors in {args.cache / tag}")
                continue
            c, q, info = real_set(args.cache, tag, args.queries, args.partial, args.rows_from, args.query_offset)
            real_n[tag] = len(c)
        else:
            preset, n_opt, seed = parse_synthetic(tag)
            if preset not in PRESETS:
                print(f"skip {name}: no such preset in synthetic.py")
                continue
            params = PRESETS[preset]
            target_tag = params.anchors or preset
            if params.anchors and not (args.cache / params.anchors).exists():
                print(f"skip {name}: no real vectors in {args.cache / params.anchors}")
                continue
            n = n_opt or args.n or real_n.get(target_tag) or next(iter(real_n.values()), 227_502)
            c, q, info = synthetic_set(params, n, args.queries, seed=seed, real=args.cache, offset=args.query_offset)
        values = coverage(c, q)
        entry: dict = {"n": len(c), "queries": len(q), "curve": curve(values), "info": info,
                 "seconds": round(time.perf_counter() - t0, 1)}
        if kind == "synthetic" and f"real:{target_tag}" in result["sets"]:
            ref = result["sets"][f"real:{target_tag}"]
            diffs = [abs(a - b) for a, b in zip(entry["curve"], ref["curve"], strict=True)]
            gap = max(diffs)
            same_n = len(c) == ref["n"] and len(q) == ref["queries"]
            entry |= {"target": f"real:{target_tag}", "max_gap": round(gap, 4), "worst_s": S_LIST[diffs.index(gap)],
                      "matches": (gap <= TOLERANCE) if same_n else None}
        result["sets"][name] = entry
        print(f"{name:<38} N={len(c):>9,} q={len(q):>5} " + " ".join(f"{v:.3f}" for v in entry["curve"])
              + (f"  max gap {entry['max_gap']:.3f}" if "max_gap" in entry else "") + f"  ({entry['seconds']} s)",
              flush=True)
        del c, q
    result["machine"] = machine()
    result["command"] = " ".join(["python benchmarks/coverage.py", *sys.argv[1:]])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coverage.json").write_text(json.dumps(result, indent=2))
    (args.out / "coverage.md").write_text(markdown(result))
    plot(result, args.out / "coverage.png")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

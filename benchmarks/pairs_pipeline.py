"""Pairs from a raw corpus, then the default ``funnel tune``: better than the base model, or kept as it?

Issue 25's pipeline, as a team without labelled questions would run it, per data set:

1. ``funnel pairs generate CORPUS --offline ict --out pairs.jsonl`` (corpus texts only: no question
   and no judgement of the set is read), with its round-trip filter (default ``--round-trip-k 3``);
2. ``funnel tune --train pairs.jsonl --output model`` with the default recipe (held-out part of the
   pairs, "not better" verdict; ``--recipe`` adds options, e.g. a lower learning rate);
3. the set's judged test queries, used only here, to evaluate the base model, the tuned model and the
   model the output holds (the tuned one, or the base one when the verdict was "worse"), NDCG@10 at
   every ladder dim from one encode (``tuner.evaluation.ndcg_per_query``), with the paired standard
   error of tuned − base.

    nice python benchmarks/pairs_pipeline.py --limit 1000                  # the three sets
    python benchmarks/pairs_pipeline.py --sets msmarco-sample --limit 300 --out /tmp/p

Results: ``pairs_pipeline.json`` / ``pairs_pipeline.md`` in ``--out`` (``--name`` changes the stem).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _machine import REPO, SHARED_DATA, commit_line, machine

HERE = Path(__file__).resolve().parent
SETS = ("financial-qa-10k", "msmarco-sample", "dbpedia-sample")
DIMS = [64, 128, 256, 384]
ENV = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "FUNNEL_NO_PROGRESS": "1",
                    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def funnel(*args: str) -> tuple[dict[str, Any], float, str]:
    """Run ``funnel ARGS --json``; its JSON answer, seconds, and the command line as shown."""
    cmd = [sys.executable, str(REPO / "cli.py"), *args, "--json"]
    started = time.perf_counter()
    done = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=4 * 3600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout), seconds, "funnel " + shlex.join(args)


def evaluate(model_path: str | None, data: Any) -> dict[int, np.ndarray]:
    """Per-query NDCG@10 at each dim: the base model (``None``) or a saved one."""
    from sentence_transformers import SentenceTransformer

    from retriever.encoding.embedder import Embedder
    from tuner.evaluation import ndcg_per_query

    model = Embedder(device="cpu", encoder="torch").model if model_path is None else SentenceTransformer(
        model_path, device="cpu")
    return ndcg_per_query(model, data, DIMS)


def judged(data_dir: Path, name: str) -> Any:
    """The set's judged test queries against its whole corpus (every judged query, however few: the
    tuner's minimum of 50 is for its own verdict, not for this report)."""
    from retriever.ingest.beir import load_split
    from tuner.evaluation import IRData, beir_passages

    corpus = beir_passages(data_dir / "corpus.jsonl")
    split = load_split(data_dir, "test", known_corpus_ids=set(corpus))
    return IRData(name, split.queries, corpus, split.relevant)


def run_set(name: str, args: argparse.Namespace, recipe: str, work: Path) -> dict[str, Any]:
    data_dir = SHARED_DATA / name
    out = work / name
    out.mkdir(parents=True, exist_ok=True)
    pairs = out / "pairs.jsonl"
    pairs.unlink(missing_ok=True)  # generated afresh: its time is part of the result
    gen_args = ["pairs", "generate", str(data_dir / "corpus.jsonl"), "--offline", "ict", "--out", str(pairs),
                "--seed", str(args.seed), "--round-trip-k", str(args.round_trip_k)]
    if args.limit:
        gen_args += ["--limit", str(args.limit)]
    generated, gen_s, gen_cmd = funnel(*gen_args)
    model_dir = out / ("model" + (f"-{abs(hash(recipe)) % 10**6}" if recipe else ""))
    tuned, tune_s, tune_cmd = funnel("tune", "--train", str(pairs), "--output", str(model_dir), "--device", "cpu",
                                     "--overwrite", "--seed", str(args.seed), *shlex.split(recipe))
    data = judged(data_dir, name)
    worse = model_dir / "tuned-worse"
    tuned_path = worse if worse.exists() else model_dir
    base, after = evaluate(None, data), evaluate(str(tuned_path), data)
    dims = {}
    for d in DIMS:
        diff = after[d] - base[d]
        se = float(diff.std(ddof=1) / np.sqrt(len(diff)))
        dims[d] = {"base": float(base[d].mean()), "tuned": float(after[d].mean()), "change": float(diff.mean()),
                   "se": se, "kept": float((after[d] if tuned.get("kept", "tuned") == "tuned" else base[d]).mean())}
    return {"set": name, "recipe": recipe or "default", "test_queries": len(base[DIMS[0]]),
            "generate": {"command": gen_cmd, "seconds": round(gen_s, 1), "report": generated},
            "tune": {"command": tune_cmd, "seconds": round(tune_s, 1), "kept": tuned.get("kept", "tuned"),
                     "verdict": tuned.get("verdict"), "train_samples": tuned.get("train_samples"),
                     "held_out": {"base": tuned.get("baseline"), "tuned": tuned.get("tuned")}},
            "dims": dims}


def markdown(rows: list[dict[str, Any]], m: dict[str, Any], command: str, seconds: float) -> str:
    lines = ["# Pairs from the raw corpus → default `funnel tune`: base vs tuned on the judged test queries", "",
             commit_line(m), "", f"`{command}` — {m.get('date', '')}, {seconds:.0f} s", "",
             f"Machine: {m.get('cpu', '?')}, {m.get('cpu_count', '?')} CPUs, torch {m.get('torch', '?')}.", "",
             "The judged queries are read only to evaluate; generation reads the corpus texts, the tuner's",
             "verdict uses its own held-out part of the generated pairs. `result`: the model the output",
             "holds (the base one when the verdict was \"worse\"). Δ ± SE: tuned − base, paired standard error.",
             "", "| set | recipe | pairs kept / dropped | verdict (held-out pairs) | result | dim | base | tuned | Δ ± SE |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rep = r["generate"]["report"]
        kept = rep.get("pairs", "?")
        dropped = ", ".join(f"{k} {v:,}" for k, v in (rep.get("dropped") or {}).items() if v) or "none"
        verdict = (r["tune"]["verdict"] or {}).get("call", "?")
        for i, (d, v) in enumerate(r["dims"].items()):
            head = (f"{r['set']} | {r['recipe']} | {kept:,} / {dropped} | {verdict} | {r['tune']['kept']}"
                    if i == 0 else " | | | |")
            lines.append(f"| {head} | {d} | {v['base']:.4f} | {v['tuned']:.4f} | {v['change']:+.4f} ± {v['se']:.4f} |")
    lines += ["", "Commands, per set:", ""]
    for r in rows:
        lines += [f"- {r['set']} ({r['recipe']}): `{r['generate']['command']}` ({r['generate']['seconds']} s), then "
                  f"`{r['tune']['command']}` ({r['tune']['seconds']} s)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--limit", type=int, default=0, help="chunks sampled for generation (0: all)")
    parser.add_argument("--round-trip-k", type=int, default=3)
    parser.add_argument("--recipe", action="append", default=None,
                        help="extra funnel tune options, e.g. '--lr 2e-5' (repeat for several; default: none)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work", type=Path, default=Path("/tmp/pairs-pipeline"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default="pairs_pipeline")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    for name in args.sets.split(","):
        for recipe in args.recipe or [""]:
            row = run_set(name, args, recipe, args.work)
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("set", "recipe", "dims")}, indent=1), flush=True)
    m = machine()
    command = "python benchmarks/pairs_pipeline.py " + shlex.join(sys.argv[1:])
    seconds = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps({"machine": m, "command": command, "rows": rows}, indent=2))
    text = markdown(rows, m, command, seconds)
    (args.out / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

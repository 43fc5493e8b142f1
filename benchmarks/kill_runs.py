"""Kill -9 runs (issue 22): ``funnel index``, ``calibrate --layouts --apply``, ``collections copy`` and
``tune``, each SIGKILLed at a seeded random moment ``--kills`` times, and what they leave checked.

Every trial starts from the same *old* state (a snapshot copied into a fresh directory), runs one real
``funnel`` command as a subprocess (its own process group; the whole group gets SIGKILL), then checks:

- **index** (corpus A indexed; the command indexes corpus B: 80 of A's documents edited, half of them
  longer and half shorter, so documents gain and lose chunks, and 60 new ones; chunk size 32 tokens, so
  most documents have several chunks): the collection opens; every stored point equals (payload and
  every ladder vector) a point of the complete old or the complete new collection; every *document* is
  whole, its old version's chunks exactly or its new version's (or absent, for a new one); then a
  re-run completes and the collection equals the complete new one.
- **calibrate** (``calibrate base --layouts 128:int8 --apply``, the layout gain threshold set to -100
  so that the apply always happens: a tiny collection's timings would otherwise keep the current
  layout): the collection opens, its points equal the reference exactly, its layout is the old one or
  the new one, its calibration record reads without damage, no scratch copy is listed as a
  collection; a re-run completes with the new layout.
- **copy** (``collections copy base dst --batch-size 4``): the source is untouched; the target is
  absent or holds only source points, each equal to the source's; a re-run completes and verifies,
  and the target then equals the source.
- **tune** (48 jargon pairs, batch 16, 3 epochs = 9 steps, eval each epoch): no final model is taken
  as complete: either ``eval_report.json`` is absent or the saved model is whole (safetensors header
  offsets match its size); ``--resume`` finishes, or says in one line that it cannot (then
  ``--overwrite`` finishes); the finished model loads and encodes.

The kill moment is uniform in [0.15 T, 0.95 T], T being a complete run's time measured first (a kill
that comes after the command ended does not count: the trial is redrawn, up to twice as many tries,
and T becomes that moment).

    nice -n 10 python benchmarks/kill_runs.py                 # 20 kills each, into benchmarks/results/
    python benchmarks/kill_runs.py --kills 3 --only copy,calibrate --out /tmp/k

Results: ``kill_runs.json`` / ``kill_runs.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _machine import REPO, SHARED_DATA, commit_line, machine

HERE = Path(__file__).resolve().parent
CORPUS = SHARED_DATA / "financial-qa-10k" / "corpus.jsonl"
NAME = "base"
ENV = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "FUNNEL_NO_PROGRESS": "1",
                    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
FORCE_APPLY = ("import sys, retriever.calibration.layouts as L; L.MIN_GAIN = -100.0; "
               "from retriever.cli import main; sys.argv[0] = 'funnel'; sys.exit(main())")


def funnel(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


def run(cmd: list[str], timeout: float = 900) -> tuple[int, float, str]:
    """Run to the end: (exit status, seconds, the last lines of its output)."""
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
    return proc.returncode, time.monotonic() - started, tail


def run_and_kill(cmd: list[str], at: float) -> bool:
    """Start ``cmd`` and SIGKILL its process group ``at`` seconds later; True if it was still running."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + at
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    alive = proc.poll() is None
    if alive:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return alive


# --- reading a collection -------------------------------------------------------------------------------

def snapshot(data_dir: Path, name: str) -> dict[str, Any] | None:
    """Every point of a collection (payload and vectors by id), its layout, its names; None if absent."""
    from retriever.calibration.record import read_record
    from retriever.store.config import EngineConfig
    from retriever.store.factory import open_catalog

    with open_catalog(EngineConfig(data_dir=data_dir)) as catalog:
        names = catalog.names()
        if name not in names:
            return None
        with catalog.open(name) as col:
            points: dict[str, tuple[dict, dict[int, np.ndarray]]] = {}
            for batch in col.points():
                for i, pid in enumerate(batch.ids):
                    points[str(pid)] = (batch.payloads[i], {d: m[i].copy() for d, m in batch.vectors.items()})
            spec = col.spec
            record = read_record(col)
            return {"points": points, "count": col.count(), "names": names,
                    "layout": (spec.hnsw_dims, spec.quantization, spec.on_disk),
                    "calibration_damage": list(record.damage) if record is not None and record.damage else [],
                    "calibrated": record is not None}


def same_point(a: tuple[dict, dict[int, np.ndarray]], b: tuple[dict, dict[int, np.ndarray]]) -> bool:
    return (a[0] == b[0] and a[1].keys() == b[1].keys()
            and all(np.allclose(a[1][d], b[1][d], atol=1e-6) for d in a[1]))


def by_doc(points: dict[str, tuple[dict, Any]]) -> dict[str, dict[str, dict]]:
    docs: dict[str, dict[str, dict]] = {}
    for pid, (payload, _) in points.items():
        docs.setdefault(payload["doc_id"], {})[pid] = payload
    return docs


def equal_collections(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    return (a is not None and b is not None and a["points"].keys() == b["points"].keys()
            and all(same_point(a["points"][p], b["points"][p]) for p in a["points"]))


# --- the four commands -----------------------------------------------------------------------------------

def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def corpora(work: Path, n: int = 300) -> tuple[Path, Path]:
    """Corpus A (``n`` financial-qa-10k passages) and corpus B (80 edited, half longer and half shorter;
    60 new)."""
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines()[: n + 60 + 80]]
    old = rows[:n]
    new = [dict(r) for r in old]
    for i in range(80):
        words = new[i]["text"].split()
        new[i]["text"] = (new[i]["text"] + " " + rows[n + 60 + i]["text"] if i % 2 == 0
                          else " ".join(words[: max(3, len(words) // 3)]) + " (edited)")
    new += rows[n: n + 60]
    write_jsonl(work / "a.jsonl", old)
    write_jsonl(work / "b.jsonl", new)
    return work / "a.jsonl", work / "b.jsonl"


class Scenario:
    """One command under kill -9: how to set up its old state, the command, the checks."""

    name: str
    command: str

    def prepare(self, work: Path) -> None: ...
    def fresh(self, trial: Path) -> list[str]: ...  # copy the old state into ``trial``; the command to kill
    def check_killed(self, trial: Path) -> dict[str, Any]: ...
    def rerun(self, trial: Path) -> dict[str, Any]: ...


def copy_state(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)


class IndexScenario(Scenario):
    name = "index"

    def prepare(self, work: Path) -> None:
        self.a, self.b = corpora(work)
        self.old_dir = work / "old"
        self.args = ["index", str(self.b), "-c", NAME, "--no-progress", "--no-calibrate"]
        rc, s, tail = run(funnel("--data-dir", str(self.old_dir), "index", str(self.a), "-c", NAME, "--chunk-size",
                                 "32", "--chunk-overlap", "8", "--no-progress", "--no-calibrate"))
        assert rc == 0, tail
        self.old = snapshot(self.old_dir, NAME)
        ref = work / "ref-new"
        copy_state(self.old_dir, ref)
        rc, self.seconds, tail = run(funnel("--data-dir", str(ref), *self.args))
        assert rc == 0, tail
        self.new = snapshot(ref, NAME)
        self.command = "funnel index b.jsonl -c base --no-calibrate (onto a.jsonl's collection, chunk size 32)"
        old_docs, new_docs = by_doc(self.old["points"]), by_doc(self.new["points"])
        self.describe = (f"old: {len(old_docs)} documents, {len(self.old['points'])} points; new: {len(new_docs)} "
                         f"documents, {len(self.new['points'])} points; "
                         f"{sum(old_docs.get(d) != v for d, v in new_docs.items())} documents differ")

    def fresh(self, trial: Path) -> list[str]:
        copy_state(self.old_dir, trial)
        return funnel("--data-dir", str(trial), *self.args)

    def classify(self, snap: dict[str, Any] | None) -> dict[str, Any]:
        if snap is None:
            return {"ok": False, "why": "the collection is gone"}
        old_pts, new_pts = self.old["points"], self.new["points"]
        foreign = [p for p, v in snap["points"].items()
                   if not ((p in old_pts and same_point(v, old_pts[p])) or (p in new_pts and same_point(v, new_pts[p])))]
        stored, old_docs, new_docs = by_doc(snap["points"]), by_doc(old_pts), by_doc(new_pts)
        states = {"old": 0, "new": 0, "absent": 0, "mixed": 0}
        for doc in old_docs.keys() | new_docs.keys():
            have = stored.get(doc)
            if have is None:
                state = "absent" if doc not in old_docs else "mixed"
            elif have == new_docs.get(doc):
                state = "new"
            elif have == old_docs.get(doc):
                state = "old"
            else:
                state = "mixed"
            states[state] += 1
        changed = sum(old_docs.get(d) != v for d, v in new_docs.items())
        moved = states["new"] - (len(new_docs) - changed)  # documents already in their new version
        return {"ok": not foreign and not states["mixed"] and snap["count"] == len(snap["points"]),
                "points": snap["count"], "foreign_points": len(foreign), "documents": states,
                "changed_documents_done": moved, "of": changed,
                "why": (f"{len(foreign)} points match neither version" if foreign else "")
                + (f" {states['mixed']} documents mixed" if states["mixed"] else "")}

    def check_killed(self, trial: Path) -> dict[str, Any]:
        return self.classify(snapshot(trial, NAME))

    def rerun(self, trial: Path) -> dict[str, Any]:
        rc, s, tail = run(funnel("--data-dir", str(trial), *self.args))
        done = snapshot(trial, NAME) if rc == 0 else None
        ok = rc == 0 and equal_collections(done, self.new)
        return {"ok": ok, "rc": rc, "seconds": round(s, 2), "why": "" if ok else tail[-400:]}


class CalibrateScenario(Scenario):
    name = "calibrate"

    def __init__(self, index: IndexScenario) -> None:
        self.index = index

    def prepare(self, work: Path) -> None:
        self.old_dir = work / "cal-old"
        copy_state(self.index.old_dir, self.old_dir)
        self.old = snapshot(self.old_dir, NAME)
        self.args = ["calibrate", NAME, "--layouts", "128:int8", "--apply", "--sample", "10", "--encoders", "none"]
        ref = work / "cal-new"
        copy_state(self.old_dir, ref)
        rc, self.seconds, tail = run([sys.executable, "-c", FORCE_APPLY, "--data-dir", str(ref), *self.args])
        assert rc == 0, tail
        self.new = snapshot(ref, NAME)
        assert self.new["layout"] != self.old["layout"], (self.old["layout"], self.new["layout"])
        self.command = ("funnel calibrate base --layouts 128:int8 --apply --sample 10 --encoders none "
                        "(layouts.MIN_GAIN = -100, so the apply always happens)")
        self.describe = (f"{len(self.old['points'])} points; layout {self.old['layout']} → {self.new['layout']}")

    def fresh(self, trial: Path) -> list[str]:
        copy_state(self.old_dir, trial)
        return [sys.executable, "-c", FORCE_APPLY, "--data-dir", str(trial), *self.args]

    def check_killed(self, trial: Path) -> dict[str, Any]:
        snap = snapshot(trial, NAME)
        if snap is None:
            return {"ok": False, "why": "the collection is gone"}
        layout = "old" if snap["layout"] == self.old["layout"] else "new" if snap["layout"] == self.new["layout"] else "?"
        why = []
        if not equal_collections(snap, self.old):
            why.append("points differ from the collection's")
        if layout == "?":
            why.append(f"layout {snap['layout']} is neither")
        if snap["names"] != [NAME]:
            why.append(f"collections listed: {snap['names']}")
        if snap["calibration_damage"]:
            why.append(f"calibration damaged: {snap['calibration_damage']}")
        scratch = sorted(p.name for p in (trial / "collections").glob(".scratch~*"))
        return {"ok": not why, "layout": layout, "scratch_left": len(scratch), "why": "; ".join(why)}

    def rerun(self, trial: Path) -> dict[str, Any]:
        rc, s, tail = run([sys.executable, "-c", FORCE_APPLY, "--data-dir", str(trial), *self.args])
        snap = snapshot(trial, NAME) if rc == 0 else None
        scratch = list((trial / "collections").glob(".scratch~*"))
        ok = (rc == 0 and snap is not None and snap["layout"] == self.new["layout"] and equal_collections(snap, self.old)
              and not scratch and snap["calibrated"] and not snap["calibration_damage"])
        return {"ok": ok, "rc": rc, "seconds": round(s, 2), "why": "" if ok else (tail[-400:] or f"scratch {scratch}")}


class CopyScenario(Scenario):
    name = "copy"

    def __init__(self, index: IndexScenario) -> None:
        self.index = index

    def prepare(self, work: Path) -> None:
        self.old_dir = self.index.old_dir
        self.source = self.index.old
        self.args = ["collections", "copy", NAME, "dst", "--batch-size", "4"]
        ref = work / "copy-ref"
        copy_state(self.old_dir, ref)
        rc, self.seconds, tail = run(funnel("--data-dir", str(ref), *self.args))
        assert rc == 0, tail
        assert equal_collections(snapshot(ref, "dst"), self.source)
        self.command = "funnel collections copy base dst --batch-size 4"
        self.describe = f"{len(self.source['points'])} points in batches of 4"

    def fresh(self, trial: Path) -> list[str]:
        copy_state(self.old_dir, trial)
        return funnel("--data-dir", str(trial), *self.args)

    def check_killed(self, trial: Path) -> dict[str, Any]:
        why = []
        if not equal_collections(snapshot(trial, NAME), self.source):
            why.append("the source changed")
        dst = snapshot(trial, "dst")
        src = self.source["points"]
        held = 0
        if dst is not None:
            held = len(dst["points"])
            wrong = [p for p, v in dst["points"].items() if p not in src or not same_point(v, src[p])]
            if wrong:
                why.append(f"{len(wrong)} target points are not the source's")
        return {"ok": not why, "target": "absent" if dst is None else f"{held}/{len(src)} points",
                "target_points": held, "why": "; ".join(why)}

    def rerun(self, trial: Path) -> dict[str, Any]:
        rc, s, tail = run(funnel("--data-dir", str(trial), *self.args))
        ok = rc == 0 and equal_collections(snapshot(trial, "dst"), self.source)
        return {"ok": ok, "rc": rc, "seconds": round(s, 2), "why": "" if ok else tail[-400:]}


def model_whole(out: Path) -> str | None:
    """Why the tuned model in ``out`` is not whole (None: it is)."""
    path = out / "model.safetensors"
    if not path.is_file():
        return "no model.safetensors"
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return "model.safetensors cut short"
        size = int.from_bytes(head, "little")
        try:
            header = json.loads(f.read(size))
        except ValueError:
            return "model.safetensors header cut short"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + size + end != path.stat().st_size:
        return "model.safetensors cut short"
    return None


class TuneScenario(Scenario):
    name = "tune"

    def prepare(self, work: Path) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        from jargon_pairs import write_jargon_task

        pairs, eval_dir, _ = write_jargon_task(work / "jargon", train_per_template=1)
        lines = pairs.read_text().splitlines()[:48]
        (work / "p48.jsonl").write_text("\n".join(lines) + "\n")
        self.base = ["tune", "--train", str(work / "p48.jsonl"), "--eval", str(eval_dir), "--epochs", "3",
                     "--batch-size", "16", "--device", "cpu"]
        times = []
        for n in range(2):  # the quicker of two complete runs: a shared machine's load varies a lot
            rc, seconds, tail = run(funnel(*self.base, "--output", str(work / f"tune-ref-{n}")))
            assert rc == 0, tail
            times.append(seconds)
        self.seconds = min(times)
        self.command = "funnel tune --train p48.jsonl --eval jargon/eval --epochs 3 --batch-size 16 --device cpu"
        self.describe = "48 jargon pairs, 9 steps, a checkpoint and an eval each epoch"

    def fresh(self, trial: Path) -> list[str]:
        if trial.exists():
            shutil.rmtree(trial)
        trial.mkdir(parents=True)
        return funnel(*self.base, "--output", str(trial / "out"))

    def check_killed(self, trial: Path) -> dict[str, Any]:
        from tuner.training import CHECKPOINTS, REPORT_FILE, checkpoint_problem

        out = trial / "out"
        reported = (out / REPORT_FILE).exists()
        problem = model_whole(out) if reported else None
        checkpoints = sorted((out / CHECKPOINTS).glob("checkpoint-*")) if out.exists() else []
        complete = [c.name for c in checkpoints if checkpoint_problem(c) is None]
        return {"ok": problem is None, "reported": reported, "checkpoints": len(checkpoints),
                "model_without_report": not reported and (out / "model.safetensors").exists(),
                "complete_checkpoints": len(complete), "why": problem or ""}

    def rerun(self, trial: Path) -> dict[str, Any]:
        from tuner.training import REPORT_FILE

        out = trial / "out"
        if (out / REPORT_FILE).exists():
            how, rc, s, tail = "finished before the kill took effect", 0, 0.0, ""
        else:
            rc, s, tail = run(funnel(*self.base, "--output", str(out), "--resume"))
            how = "resumed"
            if rc != 0:
                first = tail
                one_line = len([line for line in first.splitlines() if line.strip()]) == 1 and "Traceback" not in first
                if not one_line:
                    return {"ok": False, "rc": rc, "how": "resume failed", "why": first[-400:]}
                rc, s2, tail = run(funnel(*self.base, "--output", str(out), "--overwrite"))
                how, s = f"restarted with --overwrite after: {first.strip()[:160]}", s + s2
        problem = model_whole(out) if rc == 0 else "not finished"
        loads = ""
        if rc == 0 and problem is None:
            code = ("from sentence_transformers import SentenceTransformer as S; import sys; "
                    "v = S(sys.argv[1], device='cpu').encode(['a test']); assert v.shape == (1, 384), v.shape")
            lrc, _, ltail = run([sys.executable, "-c", code, str(out)])
            loads = "" if lrc == 0 else ltail[-300:]
        ok = rc == 0 and problem is None and not loads and (out / REPORT_FILE).exists()
        return {"ok": ok, "rc": rc, "how": how, "seconds": round(s, 2),
                "why": "" if ok else (problem or loads or tail[-400:])}


# --- the runs --------------------------------------------------------------------------------------------

def trials(scenario: Scenario, work: Path, kills: int, rng: random.Random, log: Callable[[str], None],
           window: tuple[float, float] = (0.15, 0.95)) -> dict:
    rows = []
    tries = 0
    while len(rows) < kills and tries < 2 * kills:
        tries += 1
        trial = work / f"trial-{scenario.name}"
        cmd = scenario.fresh(trial)
        at = rng.uniform(*window) * scenario.seconds
        if not run_and_kill(cmd, at):
            log(f"  {scenario.name}: finished before {at:.2f} s; redrawn, T now {at:.2f} s")
            scenario.seconds = at  # this run was faster than the first complete one: draw below it from now on
            continue
        after = scenario.check_killed(trial)
        again = scenario.rerun(trial)
        row = {"kill_at_s": round(at, 2), "after_kill": after, "rerun": again, "ok": after["ok"] and again["ok"]}
        rows.append(row)
        log(f"  {scenario.name} #{len(rows)} kill at {at:.2f} s: {'ok' if row['ok'] else 'BAD'} "
            f"{ {k: v for k, v in after.items() if k not in ('ok', 'why')} } {after['why']} {again.get('why', '')}")
    return {"command": scenario.command, "setup": scenario.describe, "complete_run_s": round(scenario.seconds, 2),
            "kills": len(rows), "tries": tries, "bad": sum(not r["ok"] for r in rows), "trials": rows}


def summary_cell(name: str, rows: list[dict]) -> str:
    """What the kills left, in words."""
    if name == "index":
        done = [r["after_kill"].get("changed_documents_done", 0) for r in rows]
        of = rows[0]["after_kill"].get("of", 0) if rows else 0
        untouched = sum(d == 0 for d in done)
        mixed = [r["after_kill"]["documents"]["mixed"] for r in rows]
        return (f"{untouched} with no changed document in its new version yet; {len(rows) - untouched} with 1–"
                f"{max(done, default=0)} of the {of}; trials with mixed documents (some chunks old, some new): "
                f"{sum(m > 0 for m in mixed)} (up to {max(mixed, default=0)} documents)")
    if name == "calibrate":
        old = sum(r["after_kill"]["layout"] == "old" for r in rows)
        scratch = sum(r["after_kill"]["scratch_left"] > 0 for r in rows)
        return f"old layout {old}, new layout {len(rows) - old}; a scratch copy left on disk {scratch} (removed by the re-run)"
    if name == "copy":
        absent = sum(r["after_kill"]["target"] == "absent" for r in rows)
        pts = sorted(r["after_kill"]["target_points"] for r in rows)
        return f"target absent {absent}, partial {len(rows) - absent} (0–{pts[-1] if pts else 0} points, all the source's)"
    resumed = sum(r["rerun"].get("how") == "resumed" for r in rows)
    loose = sum(r["after_kill"].get("model_without_report", False) for r in rows)
    return (f"resumed {resumed}, restarted with --overwrite {len(rows) - resumed} (no complete checkpoint yet); "
            f"a final model without eval_report.json {loose}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per command (default 20)")
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--only", default="index,calibrate,copy,tune")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory [default: a temp dir]")
    parser.add_argument("--window", default="0.15,0.95", help="kill moments: uniform in [LO T, HI T]")
    parser.add_argument("--name", default="kill_runs", help="result files NAME.json / NAME.md")
    args = parser.parse_args()
    only = args.only.split(",")
    rng = random.Random(args.seed)
    started = time.time()

    def log(line: str) -> None:
        print(line, flush=True)

    m = machine()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kill-runs-", dir=args.work) as tmp:
        work = Path(tmp)
        index = IndexScenario()
        if set(only) & {"index", "calibrate", "copy"}:
            index.prepare(work)
        scenarios: list[Scenario] = [index, CalibrateScenario(index), CopyScenario(index), TuneScenario()]
        for scenario in scenarios:
            if scenario.name not in only:
                continue
            if scenario is not index:
                scenario.prepare(work)
            log(f"{scenario.name}: {scenario.describe}; a complete run takes {scenario.seconds:.1f} s")
            lo, hi = (float(x) for x in args.window.split(","))
            results[scenario.name] = trials(scenario, work, args.kills, rng, log, (lo, hi))
    report = {"machine": m, "commit": commit_line(m), "seed": args.seed, "window": args.window, "seconds": round(time.time() - started),
              "results": results, "bad": sum(r["bad"] for r in results.values())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    lines = ["# kill -9 runs", "", commit_line(m), "", f"`{m['command']}` — {m['date']}, {report['seconds']} s", "",
             f"Machine: {m['cpu']}, {m['cpu_count']} CPUs, torch {m['torch']}, Python {m['python']}, {m['platform']}.",
             "", "Each trial: the old state copied into a fresh directory, the command started and its process group "
             f"SIGKILLed at a seeded moment uniform in [{args.window.replace(',', ' T, ')} T] (T: a complete run), what it left checked, then "
             "the command run again to the end and checked (see the script's docstring for each check).", "",
             "| command | setup | T s | kills | bad | what the kills left |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| `{r['command']}` | {r['setup']} | {r['complete_run_s']} | {r['kills']} | {r['bad']} | "
                     f"{summary_cell(name, r['trials'])} |")
    bad = [(n, i, t) for n, r in results.items() for i, t in enumerate(r["trials"], 1) if not t["ok"]]
    lines += ["", f"Bad outcomes: {len(bad)}."]
    lines += [f"- {n} #{i} (kill at {t['kill_at_s']} s): {t['after_kill']['why']} {t['rerun'].get('why', '')}"
              for n, i, t in bad]
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

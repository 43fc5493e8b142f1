"""Training throughput of `funnel tune` against a plain sentence-transformers trainer, same batch.

Both sides train the same base model on the same pairs (the first ``--pairs`` financial-qa-10k
training pairs, minus the tuner's held-out split) with the same loss (MatryoshkaLoss over MNRL, or
cached MNRL with ``--loss cached-mnrl``), batch size, learning rate and no-duplicates sampler. Only training steps are timed, by the
same step-timer callback on both sides: funnel's evaluation and checkpointing are excluded, as is
model loading. The two alternate A/B, B/A over ``--repeats``.

    python benchmarks/tune_throughput.py                 # 512 pairs, funnel's default recipe, 2 repeats

Target (issue 3): funnel's training samples/s within 5 % of the plain trainer's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from _machine import SHARED_DATA, commit_line, machine
from rich.console import Console
from rich.table import Table

from retriever.encoding.embedder import DEFAULT_MODEL, Embedder
from retriever.query.ladder import default_ladder
from tuner.evaluation import split_pairs
from tuner.pairs import load_pairs
from tuner.training import TuneConfig, training_callbacks, tune

TARGET_PCT = 5.0


def plain_trainer(pairs_file: Path, config: TuneConfig) -> float:
    """Samples/s of a plain SentenceTransformerTrainer on the tuner's training split."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    pairs, _ = load_pairs(pairs_file)
    train, _ = split_pairs(pairs, config.eval_split, config.seed)
    model = Embedder(config.base_model, device="cpu").model
    inner = (CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.mini_batch_size)
             if config.loss == "cached-mnrl" else MultipleNegativesRankingLoss(model))
    loss = MatryoshkaLoss(model, inner, sorted(default_ladder(model.get_embedding_dimension()), reverse=True))
    timer, _ = training_callbacks()
    with tempfile.TemporaryDirectory() as out:
        args = SentenceTransformerTrainingArguments(
            output_dir=out, num_train_epochs=1, per_device_train_batch_size=config.batch_size,
            learning_rate=config.lr, warmup_steps=0.1, batch_sampler=BatchSamplers.NO_DUPLICATES,
            save_strategy="no", report_to=[], seed=config.seed, use_cpu=True, disable_tqdm=True,
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss, callbacks=[timer])
        trainer.train()
    return min(trainer.state.global_step * config.batch_size, len(train)) / timer.seconds


def funnel_tune(pairs_file: Path, config: TuneConfig) -> float:
    with tempfile.TemporaryDirectory() as out:
        result = tune(TuneConfig(**{**config.__dict__, "train": str(pairs_file), "output": Path(out) / "m"}),
                      log=lambda line: None)
    return result.samples_per_second


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED_DATA / "financial-qa-10k" / "train_pairs.jsonl")
    ap.add_argument("--pairs", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=TuneConfig.batch_size)
    ap.add_argument("--loss", default=TuneConfig.loss, choices=["mnrl", "cached-mnrl"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    if not args.data.is_file():
        print(f"no pairs file at {args.data}", file=sys.stderr)
        return 2
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "pairs.jsonl"
        lines = args.data.read_text().splitlines()[: args.pairs]
        subset.write_text("\n".join(lines) + "\n")
        config = TuneConfig(train=str(subset), output=Path(tmp) / "unused", base_model=DEFAULT_MODEL,
                            batch_size=args.batch_size, loss=args.loss, device="cpu")
        runs = []
        for i in range(args.repeats):
            order = ("plain", "funnel") if i % 2 == 0 else ("funnel", "plain")
            speeds = {}
            for side in order:
                speeds[side] = plain_trainer(subset, config) if side == "plain" else funnel_tune(subset, config)
                console.print(f"repeat {i + 1}: {side} {speeds[side]:.2f} samples/s")
            runs.append(speeds | {"order": "/".join(order)})
    plain = statistics.median(r["plain"] for r in runs)
    funnel = statistics.median(r["funnel"] for r in runs)
    gap = (plain - funnel) / plain * 100
    result = {"pairs": args.pairs, "batch_size": args.batch_size, "loss": f"MatryoshkaLoss({args.loss})",
              "runs": runs, "plain_samples_per_s": plain, "funnel_samples_per_s": funnel,
              "funnel_slower_pct": gap, "target_pct": TARGET_PCT, "pass": gap <= TARGET_PCT, "machine": machine()}
    table = Table(title="training throughput (samples/s, training steps only)")
    for col in ("repeat", "order", "plain ST trainer", "funnel tune", "funnel slower by"):
        table.add_column(col, justify="right")
    for i, r in enumerate(runs, 1):
        table.add_row(str(i), r["order"], f"{r['plain']:.2f}", f"{r['funnel']:.2f}",
                      f"{(r['plain'] - r['funnel']) / r['plain'] * 100:+.1f} %")
    table.add_row("median", "", f"{plain:.2f}", f"{funnel:.2f}", f"{gap:+.1f} %")
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tune_throughput.json").write_text(json.dumps(result, indent=2))
    m = result["machine"]
    (args.out / "tune_throughput.md").write_text("\n".join([
        f"# tune throughput ({m['date']})", "", f"`{m['command']}`", "", commit_line(m), "",
        "| repeat | order | plain ST trainer | funnel tune | funnel slower by |", "|---|---|---|---|---|",
        *(f"| {i} | {r['order']} | {r['plain']:.2f} | {r['funnel']:.2f} | "
          f"{(r['plain'] - r['funnel']) / r['plain'] * 100:+.1f} % |" for i, r in enumerate(runs, 1)),
        f"| median | | {plain:.2f} | {funnel:.2f} | {gap:+.1f} % |", "",
        f"{args.pairs} pairs (minus the 10 % held-out split), batch {args.batch_size}, MatryoshkaLoss({args.loss}), "
        "lr 1e-4, no-duplicates sampler; samples/s over training steps only.", "",
        f"Machine: {m['cpu']} ({m['cpu_count']} cores), {m['platform']}, torch {m['torch']}.", ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

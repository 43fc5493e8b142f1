"""Run funnel's tuner (``tuner.training.tune``, the code behind ``funnel tune``) on a CUDA device.

Used by ``device_tune_embed.sh`` and ``device_retune.sh`` on the GPU machine, whose image lacks the
engine package that the CLI module's display helpers import; the training path is the same, and
``--eval``/``--replay``/``--replay-ratio`` are ``funnel tune``'s options of those names.

    python benchmarks/device_tune.py PAIRS OUTPUT BASE_MODEL EPOCHS BATCH LR [--eval DIR]
        [--replay OLD_PAIRS --replay-ratio R] [--device cuda] [--seed 42]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from _machine import machine

from tuner.pairs import PairColumns
from tuner.training import TuneConfig, tune


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train")
    ap.add_argument("output", type=Path)
    ap.add_argument("base_model")
    ap.add_argument("epochs", type=int)
    ap.add_argument("batch_size", type=int)
    ap.add_argument("lr", type=float)
    ap.add_argument("--eval", dest="eval_dir", type=Path, default=None)
    ap.add_argument("--replay", default=None)
    ap.add_argument("--replay-ratio", type=float, default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    config = TuneConfig(train=args.train, output=args.output, base_model=args.base_model, dims=None,
                        eval_dir=args.eval_dir, eval_split=0.1, epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, loss="mnrl", mini_batch_size=32, hard_negatives=0, guard=None, best_dim=None,
                        resume=False, overwrite=True, seed=args.seed, device=args.device,
                        columns=PairColumns("anchor", "positive", "negative"), replay=args.replay,
                        replay_ratio=args.replay_ratio)
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's own output must not mix with the JSON
        result = tune(config, log=lambda line: print(line, file=sys.stderr))
    print(json.dumps(result.to_dict() | {"machine": machine("benchmarks/device_tune.py")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run funnel's tuner (``tuner.training.tune``, the code behind ``funnel tune``) on a CUDA device.

Used by ``device_tune_embed.sh`` on the GPU machine, whose image lacks the engine package that the
CLI module's display helpers import; the training path is the same.

    python benchmarks/device_tune.py PAIRS OUTPUT BASE_MODEL EPOCHS BATCH LR
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from tuner.pairs import PairColumns
from tuner.training import TuneConfig, tune


def main() -> int:
    train, out, base, epochs, batch, lr = sys.argv[1:7]
    config = TuneConfig(train=train, output=Path(out), base_model=base, dims=None, eval_dir=None, eval_split=0.1,
                        epochs=int(epochs), batch_size=int(batch), lr=float(lr), loss="mnrl", mini_batch_size=32,
                        hard_negatives=0, guard=None, best_dim=None, resume=False, overwrite=True, seed=42,
                        device="cuda", columns=PairColumns("anchor", "positive", "negative"))
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's own output must not mix with the JSON
        result = tune(config, log=lambda line: print(line, file=sys.stderr))
    print(json.dumps(result.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``funnel tune``: fine-tune an embedding model with MatryoshkaLoss (the :mod:`tuner` package)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from retriever.cli.options import device_option, dims_option, json_option, seed_option

if TYPE_CHECKING:
    from tuner.pairs import PairColumns


def _write_exports(train: str, columns: PairColumns, output: Path, exports: list[str]) -> list[str]:
    """``--export``: the fast encoders of the tuned model, written beside it (int8 calibrated on the passages)."""
    from retriever.encoding.embedder import export_beside
    from tuner.pairs import load_pairs

    calibration = None
    if "openvino-int8" in exports:
        pairs_set, _ = load_pairs(train, columns)
        calibration = list(pairs_set["positive"][:300])
    return [str(p) for p in export_beside(output, exports, calibration)]


@click.command()
@click.option("--train", "train", envvar="FUNNEL_TRAIN", show_envvar=True, required=True,
              help="pairs: JSONL/CSV/Parquet with anchor/positive[/negative], a BEIR dir with qrels/train.tsv, "
                   "or a Hugging Face dataset name")
@click.option("--output", envvar="FUNNEL_TUNE_OUTPUT", show_envvar=True, required=True,
              type=click.Path(path_type=Path), help="directory for the tuned model")
@click.option("--base-model", envvar="FUNNEL_BASE_MODEL", show_envvar=True, default=None,
              help="model to start from, e.g. a model funnel tune saved (re-tuning) [default: all-MiniLM-L6-v2]")
@click.option("--replay", envvar="FUNNEL_REPLAY", show_envvar=True, default=None,
              help="earlier pairs to mix back in while re-tuning, so the model keeps what it learned")
@click.option("--replay-ratio", envvar="FUNNEL_REPLAY_RATIO", show_envvar=True, type=float, default=None,
              help="replayed pairs per new pair (a seeded sample of --replay) [default: 1.0 with --replay]")
@dims_option("Matryoshka ladder [default: 64,128,256 and the model's dim]")
@click.option("--eval", "eval_dir", envvar="FUNNEL_EVAL", show_envvar=True, default=None,
              type=click.Path(path_type=Path), help="BEIR dir to evaluate on (its test split)")
@click.option("--eval-split", envvar="FUNNEL_EVAL_SPLIT", show_envvar=True, type=float, default=None,
              help="without --eval: fraction of the questions held out for evaluation [default: 10 %, at least "
              "50 questions, at most 30 % of them]")
@click.option("--epochs", envvar="FUNNEL_EPOCHS", show_envvar=True, type=int, default=1)
@click.option("--batch-size", envvar="FUNNEL_TUNE_BATCH_SIZE", show_envvar=True, type=int, default=32,
              help="pairs per batch (in-batch negatives)")
@click.option("--lr", envvar="FUNNEL_LR", show_envvar=True, type=float, default=1e-4, help="learning rate")
@click.option("--loss", envvar="FUNNEL_LOSS", show_envvar=True, type=click.Choice(["mnrl", "cached-mnrl"]),
              default="mnrl", help="inner loss of MatryoshkaLoss (cached-mnrl: large batches in little memory)")
@click.option("--mini-batch-size", envvar="FUNNEL_MINI_BATCH_SIZE", show_envvar=True, type=int, default=32,
              help="cached-mnrl: texts per forward pass (memory), not the batch")
@click.option("--hard-negatives", envvar="FUNNEL_HARD_NEGATIVES", show_envvar=True, type=int, default=0,
              help="mine N hard negatives per pair")
@click.option("--guard", envvar="FUNNEL_GUARD", show_envvar=True, default=None, type=click.Path(path_type=Path),
              help="out-of-domain BEIR dir evaluated before and after (warns if tuning hurt it)")
@click.option("--best-dim", envvar="FUNNEL_BEST_DIM", show_envvar=True, type=int, default=None,
              help="keep the checkpoint with the best NDCG@10 at this dim [default: the smallest]")
@click.option("--anchor-column", envvar="FUNNEL_ANCHOR_COLUMN", show_envvar=True, default="anchor")
@click.option("--positive-column", envvar="FUNNEL_POSITIVE_COLUMN", show_envvar=True, default="positive")
@click.option("--negative-column", envvar="FUNNEL_NEGATIVE_COLUMN", show_envvar=True, default="negative")
@seed_option
@click.option("--resume", is_flag=True, envvar="FUNNEL_RESUME", show_envvar=True,
              help="continue an interrupted run from its last checkpoint")
@click.option("--overwrite", is_flag=True, envvar="FUNNEL_OVERWRITE", show_envvar=True,
              help="replace an existing output directory")
@click.option("--keep-worse", is_flag=True, envvar="FUNNEL_KEEP_WORSE", show_envvar=True,
              help="save the tuned model as the result even when it is worse than the base model at some dim "
              "(by default OUTPUT then holds the base model and the tuned one goes to OUTPUT/tuned-worse)")
@click.option("--export", "export_text", envvar="FUNNEL_TUNE_EXPORT", show_envvar=True, default=None,
              help="also write these fast encoders of the tuned model beside it (OUTPUT/funnel-export/), e.g. "
              "openvino,onnx; all: every one installed (openvino-int8 is calibrated on the training pairs' passages)")
@device_option
@json_option
def tune(train: str, output: Path, base_model: str | None, replay: str | None, replay_ratio: float | None,
         dims: str | None, eval_dir: Path | None,
         eval_split: float | None, epochs: int, batch_size: int, lr: float, loss: str, mini_batch_size: int,
         hard_negatives: int, guard: Path | None, best_dim: int | None, anchor_column: str, positive_column: str,
         negative_column: str, seed: int, resume: bool, overwrite: bool, keep_worse: bool, export_text: str | None,
         device: str | None, as_json: bool) -> None:
    """Fine-tune an embedding model with MatryoshkaLoss; report NDCG@10 per dim before and after."""
    from retriever.cli.display import err, out, print_json
    from retriever.encoding.embedder import DEFAULT_MODEL
    from retriever.encoding.names import parse_encoders
    from tuner.pairs import PairColumns
    from tuner.report import guard_table, rich_table
    from tuner.training import TuneConfig
    from tuner.training import tune as run_tune

    config = TuneConfig(
        train=train, output=output, base_model=base_model or DEFAULT_MODEL, dims=dims, eval_dir=eval_dir,
        eval_split=eval_split, epochs=epochs, batch_size=batch_size, lr=lr, loss=loss,
        mini_batch_size=mini_batch_size, hard_negatives=hard_negatives, guard=guard, best_dim=best_dim,
        resume=resume, overwrite=overwrite, seed=seed, device=device,
        columns=PairColumns(anchor_column, positive_column, negative_column), replay=replay, replay_ratio=replay_ratio,
        keep_worse=keep_worse,
    )
    exports = [e for e in parse_encoders(export_text) if e != "torch"] if export_text else []
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's own output must not mix with --json
        result = run_tune(config, log=lambda line: err.print(line, highlight=False, markup=False))
    written = _write_exports(train, config.columns, Path(result.output), exports) if exports else []
    if as_json:
        print_json(result.to_dict() | ({"exports": written} if exports else {}))
        return
    out.print(rich_table(result))
    if (table := guard_table(result)) is not None:
        out.print(table)
    if result.guard_worse:
        err.print(f"[yellow]warning:[/] tuning made the guard set worse at dims {result.guard_worse}")
    saved = (f"the base model kept in {result.output} (tuning made it worse; the tuned one is in {result.worse_model})"
             if result.kept == "base" else f"model saved to {result.output}")
    err.print(f"trained {result.train_seconds:,.0f} s ({result.samples_per_second:,.1f} samples/s) on {result.device}; "
              f"{saved}", highlight=False)
    for folder in written:
        err.print(f"fast encoder written: {folder}", highlight=False)

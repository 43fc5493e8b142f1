"""Matryoshka fine-tuning: MatryoshkaLoss over (Cached)MultipleNegativesRankingLoss, evaluated per dim.

The flow of :func:`tune`: validate everything (pairs, eval data, dims, output dir) → load the base
model → baseline per-dim evaluation (and the guard set) → train with sentence-transformers'
trainer (no-duplicates batches, per-epoch evaluation and checkpoints, best checkpoint kept by
NDCG@10 at one dim) → evaluate the best model, query by query against the base model
(:mod:`tuner.verdict`) → save it as a normal sentence-transformers model with a model card and
``eval_report.json``; when it is worse than the base model at any dim beyond noise, the base model is
saved as the result instead and the tuned one beside it (:data:`WORSE_DIR`).
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retriever.encoding.embedder import DEFAULT_MODEL, Embedder
from retriever.errors import OutOfMemoryError, TuneError
from retriever.query.ladder import parse_ladder
from tuner.evaluation import MatryoshkaIREvaluator, beir_ir_data, ndcg_per_query, split_pairs
from tuner.pairs import PairColumns, PairReport, load_pairs, require_tune_extra
from tuner.replay import base_lineage, check_replay, mix_replay
from tuner.verdict import Verdict, judge

CHECKPOINTS = "checkpoints"
CHECKPOINT_FILES = ("model.safetensors", "modules.json", "optimizer.pt", "scheduler.pt")  # + trainer_state.json
REPORT_FILE = "eval_report.json"
WORSE_DIR = "tuned-worse"  # where a tuned model worse than its base is kept, inside the output
LOSSES = ("mnrl", "cached-mnrl")
NEGATIVE_MARGIN = 0.05  # a mined negative must score below 95 % of the positive (false-negative guard)
DUPLICATE_COSINE = 0.98  # a passage this close to a positive is a copy of it, never a negative


@dataclass(frozen=True)
class TuneConfig:
    """Everything ``funnel tune`` takes. Defaults are the recipe measured in the README."""

    train: str
    output: Path
    base_model: str = DEFAULT_MODEL
    dims: str | None = None
    eval_dir: Path | None = None
    eval_split: float | None = None  # None: fitted to the pairs (tuner.evaluation.held_out_count)
    epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-4
    loss: str = "mnrl"
    mini_batch_size: int = 32
    hard_negatives: int = 0
    guard: Path | None = None
    best_dim: int | None = None
    resume: bool = False
    overwrite: bool = False
    seed: int = 42
    device: str | None = None
    columns: PairColumns = field(default_factory=PairColumns)
    replay: str | None = None
    replay_ratio: float | None = None
    keep_worse: bool = False  # save the tuned model as the result even when it is worse than the base


@dataclass
class TuneResult:
    """Per-dim NDCG@10 before and after, the guard set's, and how training went."""

    output: str
    base_model: str
    dims: list[int]
    device: str
    pairs: dict[str, Any]
    eval_set: str
    baseline: dict[int, float]
    tuned: dict[int, float]
    guard_set: str | None = None
    guard_baseline: dict[int, float] | None = None
    guard_tuned: dict[int, float] | None = None
    train_seconds: float = 0.0
    train_samples: int = 0
    samples_per_second: float = 0.0
    best_checkpoint: str | None = None
    truncated_texts: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    replay: dict[str, Any] | None = None
    lineage: list[dict[str, Any]] = field(default_factory=list)
    verdict: dict[str, Any] = field(default_factory=dict)
    kept: str = "tuned"  # "base" when the tuned model was worse (and not --keep-worse)
    worse_model: str | None = None  # where the tuned model went when the base was kept

    @property
    def worse_dims(self) -> list[int]:
        return list(self.verdict.get("worse_dims", []))

    def improvement(self, dim: int) -> float:
        return (self.tuned[dim] - self.baseline[dim]) / self.baseline[dim] * 100

    @property
    def guard_worse(self) -> list[int]:
        if not self.guard_baseline or not self.guard_tuned:
            return []
        return [d for d in self.dims if self.guard_tuned[d] < self.guard_baseline[d]]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["improvement_pct"] = {d: self.improvement(d) for d in self.dims}
        data["guard_worse_dims"] = self.guard_worse
        return data


def checkpoint_problem(path: Path) -> str | None:
    """Why the trainer's checkpoint ``path`` cannot be resumed from (``None``: it is complete).

    The trainer writes a checkpoint's files one after the other, ``trainer_state.json`` last, none of
    them atomically: a run killed meanwhile leaves some missing or cut short. Complete means the model
    (``model.safetensors`` whole: its header's tensors end where the file does, and ``modules.json``),
    the optimizer and scheduler states (whole zip archives, as ``torch.save`` writes them) and a
    readable ``trainer_state.json``."""
    for name in (*CHECKPOINT_FILES, "trainer_state.json"):
        if not (path / name).is_file():
            return f"no {name}"
    problem = _safetensors_problem(path / "model.safetensors")
    if problem is not None:
        return f"model.safetensors {problem}"
    for name in ("optimizer.pt", "scheduler.pt"):
        if not zipfile.is_zipfile(path / name):
            return f"{name} is cut short (not a whole torch.save archive)"
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        return f"trainer_state.json is unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return "trainer_state.json has no global_step"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """``None`` when the safetensors file is whole: an 8-byte header length, a JSON header, and the data
    its tensors' offsets say, to the byte."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < length <= min(size - 8, 100 * 1024 * 1024):
                return "is cut short (no whole header)"
            header = json.loads(fh.read(length))
    except (OSError, ValueError, RecursionError):
        return "is unreadable (no JSON header)"
    ends = [t["data_offsets"][1] for key, t in header.items() if key != "__metadata__" and isinstance(t, dict)
            and isinstance(t.get("data_offsets"), list) and len(t["data_offsets"]) == 2]
    if not ends or 8 + length + max(ends) != size:
        return f"is cut short ({size:,} bytes, its header describes {8 + length + max(ends, default=0):,})"
    return None


def resume_checkpoint(out: Path) -> tuple[Path, list[str]]:
    """The newest complete checkpoint under ``out/checkpoints`` (by step) and, for each newer one skipped,
    ``"checkpoint-N: why"``; :class:`TuneError` when none is complete."""
    folder = out / CHECKPOINTS
    found = []
    for path in folder.glob("checkpoint-*") if folder.is_dir() else ():
        step = path.name.removeprefix("checkpoint-")
        if path.is_dir() and step.isdigit():
            found.append((int(step), path))
    if not found:
        raise TuneError(f"{out}: nothing to resume (no {CHECKPOINTS}/checkpoint-* there)")
    skipped: list[str] = []
    for _, path in sorted(found, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append(f"{path.name}: {problem}")
    raise TuneError(f"{out}: cannot resume: no complete checkpoint in {CHECKPOINTS}/ ({'; '.join(skipped)}); "
                    "start again with --overwrite")


def _check_output(config: TuneConfig) -> None:
    out = config.output
    if config.resume:
        resume_checkpoint(out)
        return
    if out.exists() and not out.is_dir():
        raise TuneError(f"{out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not config.overwrite:
        raise TuneError(f"{out} exists and is not empty: give --overwrite to replace it (or --resume)")


def _check_config(config: TuneConfig) -> None:
    if config.loss not in LOSSES:
        raise TuneError(f"unknown loss {config.loss!r}: use one of {', '.join(LOSSES)}")
    for name in ("epochs", "batch_size", "mini_batch_size"):
        if getattr(config, name) < 1:
            raise TuneError(f"invalid --{name.replace('_', '-')} {getattr(config, name)}: use 1 or more")
    if not 0 < config.lr < 1:
        raise TuneError(f"invalid --lr {config.lr}: use a small positive number such as 1e-4")
    if config.hard_negatives < 0:
        raise TuneError(f"invalid --hard-negatives {config.hard_negatives}: use 0 or more")
    check_replay(config.replay, config.replay_ratio)


def count_truncated(model: Any, pairs: Any) -> int:
    """How many texts are longer than the model reads (they are truncated in training)."""
    limit = model.max_seq_length
    tokenizer = model.tokenizer
    total = 0
    for column in ("anchor", "positive", "negative"):
        if column in pairs.column_names:
            lengths = tokenizer(list(pairs[column]), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
            total += sum(len(ids) > limit for ids in lengths)
    return total


def mine_negatives(pairs: Any, model: Any, n: int, batch_size: int) -> Any:
    """Hard negatives from the positives of the pairs, never the positive or a duplicate of it.

    sentence-transformers' ``mine_hard_negatives`` leaves out every positive of the anchor (an anchor
    on several rows has several) and, as the false-negative guard, any candidate scoring above 95 % of
    the row's positive (``relative_margin=0.05``). That guard sees only the row's own positive, so a
    near-copy of the anchor's *other* positive could pass: a row with a negative that close to any
    positive of its anchor (cosine of the passages ≥ :data:`DUPLICATE_COSINE`) is dropped.
    """
    from sentence_transformers import mine_hard_negatives

    mined = mine_hard_negatives(
        pairs, model, anchor_column_name="anchor", positive_column_name="positive",
        num_negatives=n, relative_margin=NEGATIVE_MARGIN, sampling_strategy="top", range_min=0,
        output_format="n-tuple" if n > 1 else "triplet", batch_size=batch_size, verbose=False,
    )
    positives: dict[str, set[str]] = {}
    for anchor, positive in zip(pairs["anchor"], pairs["positive"]):
        positives.setdefault(anchor, set()).add(positive)
    several = {a for a, p in positives.items() if len(p) > 1}
    rows = [i for i, a in enumerate(mined["anchor"]) if a in several]
    if not rows:
        return mined
    columns = [c for c in mined.column_names if c.startswith("negative")]
    texts = sorted({t for a in several for t in positives[a]} | {mined[c][i] for c in columns for i in rows})
    emb = dict(zip(texts, model.encode(texts, batch_size=batch_size, normalize_embeddings=True)))
    drop = set()
    for i in rows:
        anchor = mined["anchor"][i]
        known = np.stack([emb[t] for t in sorted(positives[anchor])])
        negatives = np.stack([emb[mined[c][i]] for c in columns])
        if float((negatives @ known.T).max()) >= DUPLICATE_COSINE:
            drop.add(i)
    return mined.select([i for i in range(len(mined)) if i not in drop]) if drop else mined


def _loss(model: Any, config: TuneConfig, dims: list[int]) -> Any:
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )

    inner: MultipleNegativesRankingLoss | CachedMultipleNegativesRankingLoss
    if config.loss == "cached-mnrl":
        inner = CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.mini_batch_size)
    else:
        inner = MultipleNegativesRankingLoss(model)
    return MatryoshkaLoss(model, inner, matryoshka_dims=sorted(dims, reverse=True))


def _training_args(config: TuneConfig, device: str, metric: str, steps_per_epoch: int) -> Any:
    import torch
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    cuda = device.startswith("cuda")
    bf16 = cuda and torch.cuda.is_bf16_supported()
    tf32 = cuda and torch.cuda.get_device_capability()[0] >= 8
    return SentenceTransformerTrainingArguments(
        output_dir=str(config.output / CHECKPOINTS),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.lr,
        warmup_steps=0.1,  # a float is a fraction of the steps
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=True,
        bf16=bf16,
        tf32=tf32 or None,
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        use_cpu=device == "cpu",
        logging_steps=max(1, steps_per_epoch // 10),
        report_to=[],
        seed=config.seed,
        dataloader_drop_last=False,
    )


def training_callbacks() -> tuple[Any, Any]:
    """A step timer (training time without evaluation) and a progress bar that logs compact lines."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import ProgressCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds = 0.0
            self.steps = 0
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            self.seconds += time.perf_counter() - self._start
            self.steps += 1

    class CompactProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
            if self.training_bar is None or not logs:
                return
            keep = {k.removeprefix("eval_"): v for k, v in logs.items()
                    if k in ("loss", "learning_rate", "epoch") or k.endswith("ndcg@10")}
            if keep:
                self.training_bar.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                 for k, v in keep.items()))

    return StepTimer(), CompactProgress()


def _is_oom(exc: BaseException) -> bool:
    return "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"


def tune(config: TuneConfig, log: Any = print) -> TuneResult:
    """Fine-tune ``config.base_model`` on ``config.train`` and return the per-dim report."""
    require_tune_extra()
    _check_config(config)
    _check_output(config)
    data = _training_data(config, log)
    train = data.train
    embedder = Embedder(config.base_model, device=config.device, encoder="torch")
    model = embedder.model
    dims = list(parse_ladder(config.dims, embedder.dim))
    best_dim = config.best_dim or dims[0]
    if best_dim not in dims:
        raise TuneError(f"--best-dim {best_dim} is not one of the dims {dims}")
    _log_pairs(log, data.report, len(train), data.eval_data)
    truncated = count_truncated(model, train)
    if truncated:
        log(f"warning: {truncated:,} training texts are longer than the model's {model.max_seq_length} tokens "
            "and are truncated in training")

    evaluator = MatryoshkaIREvaluator(data.eval_data, dims, best_dim)
    log(f"baseline: evaluating {embedder.name} at dims {dims} on {data.eval_data.name} …")
    baseline = evaluator.ndcg_by_dim(evaluator(model))
    base_scores = ndcg_per_query(model, data.eval_data, dims)
    guard = MatryoshkaIREvaluator(data.guard_data, dims, best_dim) if data.guard_data else None
    guard_baseline = guard.ndcg_by_dim(guard(model)) if guard else None

    if config.hard_negatives and not data.report.has_negative:
        log(f"mining {config.hard_negatives} hard negative(s) per pair …")
        train = mine_negatives(train, model, config.hard_negatives, batch_size=64)

    if config.overwrite and not config.resume and config.output.exists():
        shutil.rmtree(config.output)
    checkpoint = _resume_from(config, log)
    log(f"training on {embedder.device}: {len(train):,} pairs, {config.epochs} epoch(s), batch {config.batch_size}, "
        f"lr {config.lr}, loss MatryoshkaLoss({config.loss}) …")
    trainer, timer = _train(model, train, evaluator, config, embedder.device, dims, checkpoint)
    tuned = _best_ndcg(trainer, evaluator, model, log)
    guard_tuned = guard.ndcg_by_dim(guard(model)) if guard else None
    verdict = judge(data.eval_data.name, base_scores, ndcg_per_query(model, data.eval_data, dims))
    result = _result(config, embedder, dims, data, len(train), trainer, timer, truncated,
                     (baseline, tuned, guard_baseline, guard_tuned))
    result.verdict = verdict.to_dict()
    if verdict.call == "worse" and not config.keep_worse:
        result.kept, result.worse_model = "base", str(config.output / WORSE_DIR)
    log(verdict_line(verdict, result))
    _save(model, result, config)
    return result


def verdict_line(verdict: Verdict, result: TuneResult) -> str:
    """One line on base vs tuned: which dims got worse beyond noise, and which model the output holds."""
    n = f"{verdict.eval_set}, {verdict.queries:,} queries"
    if verdict.call != "worse":
        better = [d.dim for d in verdict.dims if d.call == "better"]
        shown = f"better at dims {', '.join(map(str, better))}" if better else "not shown better at any dim"
        return (f"verdict: tuned vs {result.base_model} on {n}: {shown}, worse at none beyond noise; "
                f"the tuned model is the result")
    lost = ", ".join(f"{d.dim} ({d.base:.4f} → {d.tuned:.4f})" for d in verdict.dims if d.call == "worse")
    kept = (f"{result.output} holds the base model unchanged, the tuned one is in {result.worse_model} "
            "(--keep-worse keeps it as the result)" if result.kept == "base"
            else f"kept as the result in {result.output} (--keep-worse)")
    return (f"warning: tuning made the model worse than {result.base_model} on {verdict.eval_set} "
            f"({verdict.queries:,} queries) at dims {lost}, beyond noise; {kept}")


def _resume_from(config: TuneConfig, log: Any) -> Path | None:
    """With ``--resume``: the checkpoint to resume from (the newest complete one); the newer ones that are
    not complete (a run killed while writing one) are said and removed, since training writes them again."""
    if not config.resume:
        return None
    checkpoint, skipped = resume_checkpoint(config.output)
    for line in skipped:
        log(f"warning: skipping the incomplete {line} (removed; training writes it again)")
        shutil.rmtree(config.output / CHECKPOINTS / line.partition(":")[0], ignore_errors=True)
    log(f"resuming from {checkpoint}")
    return checkpoint


@dataclass(frozen=True)
class _TrainingData:
    """The pairs to train on (replayed ones mixed in), the eval and guard sets, and what was read."""

    report: PairReport
    train: Any
    eval_data: Any
    guard_data: Any | None
    replay: dict[str, Any] | None


def _training_data(config: TuneConfig, log: Any) -> _TrainingData:
    """Read the pairs (and mix in the replayed ones), and the eval set (given, or split off the pairs)
    and the guard set."""
    pairs, report = load_pairs(config.train, config.columns)
    replay = None
    if config.replay is not None:
        old, _ = load_pairs(config.replay, config.columns)
        pairs, replay = mix_replay(pairs, old, check_replay(config.replay, config.replay_ratio), config.seed)
        log(f"replay: {replay['replayed']:,} of {replay['replay_available']:,} pairs from {config.replay} mixed into "
            f"{replay['new']:,} new pairs")
    if config.eval_dir is not None:
        eval_data = beir_ir_data(config.eval_dir, "test")
        train = pairs
    else:
        train, eval_data = split_pairs(pairs, config.eval_split, config.seed)
    guard_data = beir_ir_data(config.guard, "test", name="guard") if config.guard else None
    _check_in_batch_negatives(train, config)
    return _TrainingData(report, train, eval_data, guard_data, replay)


def _check_in_batch_negatives(train: Any, config: TuneConfig) -> None:
    """Refuse batches of one pair without negatives: (Cached)MultipleNegativesRankingLoss ranks each
    anchor's positive against the other pairs' of its batch, so alone it has nothing to rank against,
    its loss is 0 and the "tuned" model saved would be the base model unchanged."""
    negatives = config.hard_negatives > 0 or any(c.startswith("negative") for c in train.column_names)
    if not negatives and min(len(train), config.batch_size) < 2:
        pairs = f"{len(train)} training pair{'s' if len(train) != 1 else ''}"
        raise TuneError(f"{pairs} in batches of {min(len(train), config.batch_size)}: the loss ranks each pair's "
                        "positive against the other pairs of its batch, so one pair alone teaches nothing (the "
                        "model would be saved unchanged); give at least 2 pairs and --batch-size 2 or more, or a "
                        "negative column (or --hard-negatives)")


def _result(config: TuneConfig, embedder: Embedder, dims: list[int], data: _TrainingData, trained: int,
            trainer: Any, timer: Any, truncated: int,
            ndcg: tuple[dict[int, float], dict[int, float], dict[int, float] | None, dict[int, float] | None],
            ) -> TuneResult:
    """The report of a run: ``ndcg`` is (baseline, tuned, guard baseline, guard tuned) per dim;
    ``trained`` the pairs trained on."""
    baseline, tuned, guard_baseline, guard_tuned = ndcg
    report, replay = data.report, data.replay
    samples = min(timer.steps * config.batch_size, trained * config.epochs)  # this run's steps (not resumed ones)
    return TuneResult(
        output=str(config.output),
        base_model=embedder.name,
        dims=dims,
        device=embedder.device,
        pairs=asdict(report) | {"train": trained},
        eval_set=data.eval_data.name,
        baseline=baseline,
        tuned=tuned,
        guard_set=data.guard_data.name if data.guard_data else None,
        guard_baseline=guard_baseline,
        guard_tuned=guard_tuned,
        train_seconds=timer.seconds,
        train_samples=samples,
        samples_per_second=samples / timer.seconds if timer.seconds else 0.0,
        best_checkpoint=trainer.state.best_model_checkpoint,
        truncated_texts=truncated,
        config={k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        replay=replay,
        lineage=base_lineage(config.base_model) + [{
            "base_model": embedder.name, "train": str(config.train), "pairs": report.rows,
            "replay": config.replay, "replayed": (replay or {}).get("replayed", 0),
        }],
    )


def _train(model: Any, train: Any, evaluator: MatryoshkaIREvaluator, config: TuneConfig, device: str,
           dims: list[int], checkpoint: Path | None = None) -> tuple[Any, Any]:
    """Run sentence-transformers' trainer (from ``checkpoint`` when resuming); OOM and unusable
    checkpoints become clear errors."""
    from sentence_transformers import SentenceTransformerTrainer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    metric = f"eval_{evaluator.primary_metric}"
    args = _training_args(config, device, metric, steps_per_epoch=max(1, len(train) // config.batch_size))
    timer, progress = training_callbacks()
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train, loss=_loss(model, config, dims), evaluator=evaluator,
        callbacks=[timer],
    )
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(progress)
    try:
        trainer.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
    except Exception as exc:  # noqa: BLE001 - OOM and bad checkpoints become clear errors
        if _is_oom(exc):
            raise OutOfMemoryError(
                f"out of memory on {device}: lower --batch-size, or use --loss cached-mnrl with a smaller "
                "--mini-batch-size"
            ) from exc
        if checkpoint is not None:
            raise TuneError(f"cannot resume from {checkpoint}: {str(exc).splitlines()[0]}") from exc
        raise
    return trainer, timer


def _best_ndcg(trainer: Any, evaluator: MatryoshkaIREvaluator, model: Any, log: Any) -> dict[int, float]:
    """NDCG@10 per dim of the kept (best) checkpoint, from its own evaluation when the log has it."""
    metric = f"eval_{evaluator.primary_metric}"
    best = [h for h in trainer.state.log_history if h.get(metric) is not None and h[metric] == trainer.state.best_metric]
    if best:  # the model loaded at the end is that checkpoint
        return evaluator.ndcg_by_dim(best[-1], prefix="eval_")
    log("evaluating the tuned model …")
    return evaluator.ndcg_by_dim(evaluator(model))


def _log_pairs(log: Any, report: PairReport, train: int, eval_data: Any) -> None:
    log(f"pairs: {report.rows:,} from {report.source} ({report.duplicates:,} duplicates and {report.empty:,} "
        f"empty rows removed); training on {train:,}; evaluating on {eval_data.name} "
        f"({len(eval_data.queries):,} queries, {len(eval_data.corpus):,} documents)")


def _save(model: Any, result: TuneResult, config: TuneConfig) -> None:
    """Save the result (the tuned model, or the base one when tuning made it worse: the tuned one then goes
    to ``OUTPUT/tuned-worse``), its card (with the eval table and verdict) and eval_report.json; drop
    checkpoints."""
    out = config.output
    if result.kept == "base":
        _write_model(model, out / WORSE_DIR, result)
        base = Embedder(config.base_model, device="cpu", encoder="torch").model
        _write_model(base, out, result)
    else:
        _write_model(model, out, result)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)


def _write_model(model: Any, out: Path, result: TuneResult) -> None:
    from tuner.report import model_card_section

    model.save_pretrained(str(out))
    card = out / "README.md"
    card.write_text((card.read_text() if card.exists() else "") + "\n" + model_card_section(result))
    (out / REPORT_FILE).write_text(json.dumps(result.to_dict(), indent=2))

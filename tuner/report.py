"""The tuner's report: the per-dim table (baseline, tuned, improvement) as text, rich and Markdown."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from tuner.training import TuneResult


def dim_call(result: TuneResult, dim: int) -> str:
    """The verdict at one dim: better, same (within noise) or worse; "" when there is none."""
    return str(result.verdict.get("dims", {}).get(dim, {}).get("call", ""))


def rich_table(result: TuneResult) -> Table:
    """The seed's table: dim, baseline, tuned, improvement %, and the verdict per dim."""
    table = Table(title=f"NDCG@10 on {result.eval_set}", title_justify="left")
    for col in ("dim", "baseline", "tuned", "improvement", "verdict"):
        table.add_column(col, justify="right")
    for dim in result.dims[::-1]:
        call = dim_call(result, dim)
        table.add_row(str(dim), f"{result.baseline[dim]:.4f}", f"{result.tuned[dim]:.4f}",
                      f"{result.improvement(dim):+.1f} %", f"[red]{call}[/]" if call == "worse" else call)
    return table


def guard_table(result: TuneResult) -> Table | None:
    if not result.guard_baseline or not result.guard_tuned:
        return None
    table = Table(title=f"guard (out of domain): NDCG@10 on {result.guard_set}", title_justify="left")
    for col in ("dim", "before", "after", "change"):
        table.add_column(col, justify="right")
    for dim in result.dims[::-1]:
        before, after = result.guard_baseline[dim], result.guard_tuned[dim]
        style = "red" if after < before else ""
        table.add_row(str(dim), f"{before:.4f}", f"{after:.4f}", f"[{style}]{(after - before) / before * 100:+.1f} %[/]"
                      if style else f"{(after - before) / before * 100:+.1f} %")
    return table


def lineage_lines(result: TuneResult) -> list[str]:
    """The chain of training data, oldest first (Markdown list), and what this step replayed."""
    lines = ["Training data, oldest first:", ""]
    for i, step in enumerate(result.lineage, start=1):
        pairs = f"{step['pairs']:,} pairs" if isinstance(step.get("pairs"), int) else "pairs"
        replay = (f", plus {step.get('replayed', 0):,} replayed from `{step['replay']}`"
                  if step.get("replay") else "")
        lines.append(f"{i}. `{step.get('train')}` ({pairs}{replay}), from `{step.get('base_model')}`")
    return [*lines, ""] if result.lineage else []


def model_card_section(result: TuneResult) -> str:
    """Markdown appended to the saved model's README.md."""
    cfg = result.config
    lines = [
        "## funnel tune",
        "",
        f"Tuned from `{result.base_model}` with `funnel tune` on `{cfg.get('train')}` "
        f"({result.pairs['train']:,} training pairs; {result.pairs['duplicates']:,} duplicates and "
        f"{result.pairs['empty']:,} empty rows removed).",
        "",
        f"- loss: MatryoshkaLoss({cfg.get('loss')}) over the ladder {result.dims}",
        f"- epochs {cfg.get('epochs')}, batch size {cfg.get('batch_size')}, lr {cfg.get('lr')}, "
        f"hard negatives {cfg.get('hard_negatives')}, device {result.device}",
        f"- training time {result.train_seconds:,.0f} s ({result.samples_per_second:,.1f} samples/s)",
        "",
        *lineage_lines(result),
        f"NDCG@10 on {result.eval_set}:",
        "",
        "| dim | baseline | tuned | improvement | verdict |",
        "|---|---|---|---|---|",
        *(f"| {d} | {result.baseline[d]:.4f} | {result.tuned[d]:.4f} | {result.improvement(d):+.1f} % "
          f"| {dim_call(result, d)} |" for d in result.dims[::-1]),
        "",
        *verdict_lines(result),
    ]
    if result.guard_baseline and result.guard_tuned:
        lines += [
            f"Out-of-domain guard, NDCG@10 on {result.guard_set}:",
            "",
            "| dim | before | after |",
            "|---|---|---|",
            *(f"| {d} | {result.guard_baseline[d]:.4f} | {result.guard_tuned[d]:.4f} |" for d in result.dims[::-1]),
            "",
        ]
    return "\n".join(lines)


def verdict_lines(result: TuneResult) -> list[str]:
    """What the card says about base vs tuned (the verdict, per query within one standard error = same)."""
    if not result.verdict:
        return []
    if result.kept == "base":
        return [f"**Not better: tuning made the model worse at dims {result.worse_dims}** (beyond one standard "
                f"error of the per-query differences). This directory holds the base model `{result.base_model}` "
                f"unchanged; the tuned model is in `{result.worse_model}`.", ""]
    if result.worse_dims:
        return [f"**Worse at dims {result.worse_dims}** than the base model; kept as the result (`--keep-worse`).", ""]
    return [f"Verdict: {result.verdict['call']} (per dim: better or worse beyond one standard error of the "
            "per-query differences, else same).", ""]

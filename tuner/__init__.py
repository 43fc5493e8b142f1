"""funnel's tuner: training pairs, Matryoshka fine-tuning, per-dim evaluation."""

from tuner.evaluation import IRData, MatryoshkaIREvaluator, beir_ir_data, split_pairs
from tuner.pairs import PairColumns, PairReport, load_pairs

__all__ = ["IRData", "MatryoshkaIREvaluator", "PairColumns", "PairReport", "beir_ir_data", "load_pairs", "split_pairs"]

"""funnel's tuner: Matryoshka fine-tuning with per-dim evaluation (issue 3; not built yet)."""

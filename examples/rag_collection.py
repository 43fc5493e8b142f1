"""The examples' collection: built once with ``funnel index`` when it is missing.

A small sample of financial-qa-10k (10-K passages; ``../shared/data/financial-qa-10k`` next to the
repository) when it is there, else the tiny corpus bundled in ``examples/data/``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FINANCIAL_QA = HERE.parent.parent / "shared" / "data" / "financial-qa-10k" / "corpus.jsonl"
TINY = HERE / "data" / "tiny_finance.jsonl"


def sample_corpus(out_dir: Path) -> Path:
    """The corpus to index: ~200 financial-qa-10k passages across tickers, or the bundled tiny one."""
    if not FINANCIAL_QA.is_file():
        return TINY
    lines = FINANCIAL_QA.read_text(encoding="utf-8").splitlines()
    sample = out_dir / "financial-qa-sample.jsonl"
    sample.write_text("\n".join(line for i, line in enumerate(lines) if i < 40 or i % 40 == 0) + "\n",
                      encoding="utf-8")
    return sample


def build(name: str, data_dir: str | None, corpus: str | None = None) -> None:
    """Index ``corpus`` (default: :func:`sample_corpus`) into collection ``name`` with ``funnel index``."""
    with tempfile.TemporaryDirectory() as tmp:
        corpus = corpus or str(sample_corpus(Path(tmp)))
        print(f"building collection {name!r} from {Path(corpus).name} (funnel index) ...", file=sys.stderr)
        where = ["--data-dir", data_dir] if data_dir else []
        done = subprocess.run([sys.executable, "-m", "cli", *where, "index", corpus, "-c", name, "--no-progress"])
        if done.returncode:  # funnel index said why on stderr
            raise SystemExit(done.returncode)

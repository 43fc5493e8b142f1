"""Shared bits of the benchmark scripts: the machine record and where the team's data lives."""

from __future__ import annotations

from pathlib import Path

from retriever.bench.machine import machine

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

__all__ = ["REPO", "SHARED_DATA", "machine"]

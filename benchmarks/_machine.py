"""Shared bits of the benchmark scripts: the machine record and where the team's data lives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retriever.bench.machine import machine

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

__all__ = ["REPO", "SHARED_DATA", "commit_line", "machine"]


def commit_line(m: dict[str, Any]) -> str:
    """The Markdown line naming the commit a result came from, from :func:`machine`'s ``git`` record."""
    git = m.get("git") or {}
    if not git.get("commit"):
        return "Commit: unknown (not run from a git checkout)"
    dirty = " (uncommitted changes in the tree)" if git.get("dirty") else ""
    return f"Commit: {git['commit']} on {git.get('branch') or '?'}{dirty}"

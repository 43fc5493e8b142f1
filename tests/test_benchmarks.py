"""The benchmark scripts import and answer ``--help``; every committed result says where it came from.

``benchmarks/*.py`` are not imported by the library, so a rename inside ``retriever/`` breaks them
silently (``funnel_profile.py`` and ``adaptive.py`` did): each is run as ``python X.py --help`` in a
subprocess (all at once, in threads). The ``_``-prefixed helpers are imported by the scripts, so they
are covered through them. Each result JSON under ``benchmarks/results`` must record the machine, the
command and the git commit it came from (``machine()``'s record: ``machine.command``,
``machine.git.commit``, or a top-level ``git.commit``); each result Markdown file names a commit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
RESULTS = BENCHMARKS / "results"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
HELP_TIMEOUT_S = 120


def _help(script: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "100"}
    return subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=HELP_TIMEOUT_S)


@pytest.fixture(scope="module")
def helps() -> Any:
    """``--help`` of every script, started together (most of the time is imports)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures: dict[str, Future[subprocess.CompletedProcess[str]]] = {s: pool.submit(_help, s) for s in SCRIPTS}
        yield futures


def test_there_are_scripts() -> None:
    assert len(SCRIPTS) >= 10, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help(helps: dict[str, Future[subprocess.CompletedProcess[str]]], script: str) -> None:
    done = helps[script].result()
    assert done.returncode == 0, f"python benchmarks/{script} --help exited {done.returncode}:\n{done.stderr[-3000:]}"
    assert done.stdout.startswith(f"usage: {script}"), done.stdout[:500]


def _results(suffix: str) -> list[str]:
    return sorted(str(p.relative_to(RESULTS)) for p in RESULTS.rglob(f"*{suffix}"))


def test_there_are_results() -> None:
    assert _results(".json") and _results(".md")


@pytest.mark.parametrize("name", _results(".json"))
def test_result_json_records_machine_command_commit(name: str) -> None:
    result = json.loads((RESULTS / name).read_text())
    machine = result.get("machine")
    assert isinstance(machine, dict) and machine, f"{name}: no machine record"
    assert isinstance(machine.get("command"), str) and machine["command"].strip(), f"{name}: no machine.command"
    git = machine.get("git") or result.get("git") or {}
    assert re.fullmatch(r"[0-9a-f]{7,40}", str(git.get("commit", ""))), f"{name}: no git commit ({git!r})"


@pytest.mark.parametrize("name", _results(".md"))
def test_result_markdown_names_a_commit(name: str) -> None:
    text = (RESULTS / name).read_text()
    assert re.search(r"commit:? `?[0-9a-f]{7,40}\b", text, re.IGNORECASE), f"{name}: names no commit"

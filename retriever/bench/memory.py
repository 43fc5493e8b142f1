"""Resident memory of a collection being searched, measured in a fresh process.

``python -m retriever.bench.memory DATA_DIR NAME QUERIES.npz MODE`` opens the collection, runs every
query of the file the way MODE says (``exact``, ``hnsw:DIM:EF`` or ``plan:PLAN:EF``), and prints
one JSON object: the process's resident set before opening, after opening (what the storage
layout loads: in-RAM vectors, graphs, payload indexes) and after searching, split into anonymous
memory (heap) and file-backed pages (memory-mapped storage; pages of on-disk vectors that searching
touched stay cached, but the kernel may drop them under memory pressure).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from retriever.errors import StoreError

STATUS_FIELDS = {"VmRSS": "rss", "RssAnon": "rss_anon", "RssFile": "rss_file", "VmHWM": "rss_peak"}


def resident_memory() -> dict[str, int]:
    """This process's resident set sizes in bytes, from /proc/self/status (Linux)."""
    found: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in STATUS_FIELDS:
                found[STATUS_FIELDS[key]] = int(value.split()[0]) * 1024
    return found


def save_queries(path: Path, queries: dict[int, np.ndarray]) -> None:
    """Write query vectors (one matrix per dim) for :func:`measure_collection_memory`."""
    arrays: dict[str, Any] = {str(dim): m for dim, m in queries.items()}
    np.savez(path, **arrays)


def measure_collection_memory(data_dir: Path, name: str, queries_file: Path, mode: str) -> dict[str, Any]:
    """Run the probe in a fresh Python process and return its JSON report."""
    cmd = [sys.executable, "-m", "retriever.bench.memory", str(data_dir), name, str(queries_file), mode]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StoreError(f"memory probe of collection {name!r} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


def _probe(data_dir: str, name: str, queries_file: str, mode: str) -> dict[str, Any]:
    from retriever.query.plan import parse_plan
    from retriever.store.config import EngineConfig
    from retriever.store.factory import open_catalog

    loaded = np.load(queries_file)
    queries = {int(dim): loaded[dim] for dim in loaded.files}
    before = resident_memory()
    with open_catalog(EngineConfig(data_dir=Path(data_dir))).open(name) as collection:
        opened = resident_memory()
        kind, _, rest = mode.partition(":")
        k = 10
        for row in range(len(next(iter(queries.values())))):
            one = {dim: m[row : row + 1] for dim, m in queries.items()}
            if kind == "exact":
                collection.search(one, None, k, with_text=False)
            elif kind == "hnsw":
                dim_text, ef_text = rest.split(":")
                collection.search_at(one[int(dim_text)], int(dim_text), k, exact=False, hnsw_ef=int(ef_text))
            elif kind == "plan":
                spec, _, width = rest.rpartition(":")
                plan = parse_plan(spec, collection.spec.dims, k)
                collection.search(one, plan, k, with_text=False, hnsw_ef=int(width) if width != "auto" else None)
            else:
                raise SystemExit(f"unknown mode {mode!r}")
        searched = resident_memory()
    return {"before": before, "opened": opened, "searched": searched,
            "collection_rss_open": opened["rss"] - before["rss"],
            "collection_rss": searched["rss"] - before["rss"],
            "collection_rss_anon": searched["rss_anon"] - before["rss_anon"],
            "collection_rss_file": searched["rss_file"] - before["rss_file"]}


if __name__ == "__main__":
    print(json.dumps(_probe(*sys.argv[1:5])))

"""Where the time of one ``funnel index`` run goes, phase by phase (issue 20: "measure where an index
run's time goes before and after").

One run of the indexing path the CLI takes — ``open_corpus`` (the validation read), the embedder
load, then ``index_corpus`` into a fresh Qdrant Edge data directory — with each phase's methods
wrapped in a timer: chunking (the chunker's generator), the stored-payload look-ups,
encoding, the upserts, stale-chunk deletes and the final flush/optimise. ``other`` is wall time
none of them account for (chiefly the second read of the corpus). Phases that overlap in threads would sum past the wall time; here the
indexer runs them one after the other, so the sum is the wall time.

    python benchmarks/index_breakdown.py                        # financial-qa-10k, default encoder
    python benchmarks/index_breakdown.py --encoder torch --limit 1000

Results: a table on stdout, ``index_breakdown-<encoder>.json`` / ``.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _machine import SHARED_DATA, commit_line, machine

from retriever.encoding.embedder import DEFAULT_MODEL, Embedder
from retriever.ingest import indexer
from retriever.ingest.chunking import TokenChunker
from retriever.ingest.corpus import Fields
from retriever.ingest.intake import open_corpus
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.edge.collection import EdgeCollection

HERE = Path(__file__).resolve().parent
PHASES = ("validate", "load model", "chunk", "payload look-ups", "encode", "upsert", "stale deletes",
          "flush + optimise")


class Timers:
    """Seconds per phase, filled by wrapped methods."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, owner: Any, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - t0
        setattr(owner, name, timed)

    def wrap_generator(self, owner: Any, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            it = iter(original(*args, **kwargs))
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    self.seconds[phase] += time.perf_counter() - t0
                    return
                self.seconds[phase] += time.perf_counter() - t0
                yield item
        setattr(owner, name, timed)


def timed(timers: Timers, phase: str, work: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    try:
        return work()
    finally:
        timers.seconds[phase] += time.perf_counter() - t0


def run(corpus_path: Path, encoder: str | None, limit: int | None) -> dict[str, Any]:
    timers = Timers()
    timers.wrap_generator(TokenChunker, "chunks", "chunk")
    timers.wrap(EdgeCollection, "payloads", "payload look-ups")
    timers.wrap(Embedder, "encode", "encode")
    timers.wrap(EdgeCollection, "upsert", "upsert")
    timers.wrap(EdgeCollection, "delete_chunks_from", "stale deletes")
    timers.wrap(EdgeCollection, "finish_indexing", "flush + optimise")
    source = corpus_path
    with tempfile.TemporaryDirectory() as tmp:
        if limit:
            source = Path(tmp) / "corpus.jsonl"
            with open(corpus_path) as fh, open(source, "w") as out:
                for i, line in enumerate(fh):
                    if i >= limit:
                        break
                    out.write(line)
        started = time.perf_counter()
        with open_corpus([source], Fields(), False, None, spool_dir=tmp) as corpus:
            timers.seconds["validate"] = time.perf_counter() - started
            embedder = timed(timers, "load model", lambda: Embedder(DEFAULT_MODEL, encoder=encoder))
            embedder.fingerprint  # noqa: B018 - part of loading, as in the CLI
            result = indexer.index_corpus(EdgeCatalog(Path(tmp) / "data"), "breakdown", corpus, embedder)
        wall = time.perf_counter() - started
    phases = {p: round(timers.seconds.get(p, 0.0), 3) for p in PHASES}
    # other: reading the corpus the second time (documents are read lazily between chunks) and glue
    phases["other"] = round(wall - sum(phases.values()), 3)
    return {"encoder": embedder.describe, "documents": result.documents, "chunks": result.chunks,
            "wall_s": round(wall, 3), "chunks_per_s": round(result.chunks / wall, 1), "phases_s": phases}


def report(out: dict[str, Any]) -> str:
    lines = [f"# Where one index run's time goes ({out['encoder']})", "", f"`{out['command']}`", "",
             commit_line(out["machine"]), "",
             f"{out['documents']:,} documents → {out['chunks']:,} chunks in {out['wall_s']:.1f} s "
             f"({out['chunks_per_s']} chunks/s), into a fresh Qdrant Edge collection.", "",
             "| phase | seconds | share |", "|---|---|---|"]
    for phase, seconds in out["phases_s"].items():
        lines.append(f"| {phase} | {seconds:.2f} | {100 * seconds / out['wall_s']:.1f} % |")
    m = out["machine"]
    lines += ["", f"Machine: {m.get('cpu')} ({m.get('cpu_count')} cores), load average before → after: "
              f"{out['load_before']} → {out['load_after']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=SHARED_DATA / "financial-qa-10k" / "corpus.jsonl")
    parser.add_argument("--encoder", default=None, help="encoder [default: funnel's default here]")
    parser.add_argument("--limit", type=int, default=None, help="first N documents only")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    import os

    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    out = run(args.corpus, args.encoder, args.limit)
    out |= {"command": "python benchmarks/index_breakdown.py " + shlex.join(sys.argv[1:]),
            "machine": machine(), "load_before": load_before,
            "load_after": " / ".join(f"{x:.2f}" for x in os.getloadavg())}
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"index_breakdown-{out['encoder'].split()[0]}"
    (args.out / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    text = report(out)
    (args.out / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

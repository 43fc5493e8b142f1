"""Indexing throughput of funnel against a plain ``model.encode`` of the same texts, in the same run.

Target (from the issue): the store adds at most 10 % to the time of encoding alone.

For every repeat, two timed runs over the same chunk texts, with their order alternated between
repeats (A/B, then B/A, …) so a noisy shared machine hurts both sides alike:

A. ``embedder.model.encode(texts, batch_size=…)`` of the chunk texts (the corpus, chunked at the
   indexer's default size and overlap), nothing else;
B. the full funnel indexing path, ``retriever.ingest.indexer.index_corpus`` into a fresh temporary Qdrant
   Edge data directory: validation read pass, reading, chunking, encoding, truncation per dim,
   upsert, flush and optimize.

overhead = B seconds / A seconds - 1. The verdict uses the median of the per-repeat overheads.
The model is loaded once and warmed up (a small encode, and the model fingerprint, a one-time cost
per process that funnel caches) before anything is timed.

Run from the repository root (the full financial-qa-10k corpus takes a few minutes on 2 CPU cores):

    python benchmarks/index_throughput.py
    python benchmarks/index_throughput.py --limit 300 --repeats 3 --out /tmp/bench   # a quick check

Results: a table on stdout, and ``index_throughput.json`` / ``index_throughput.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _machine import SHARED_DATA, machine
from rich.console import Console
from rich.table import Table

from retriever.encoding.embedder import DEFAULT_MODEL, Embedder
from retriever.errors import FunnelError
from retriever.ingest.chunking import TokenChunker
from retriever.ingest.corpus import read_corpus
from retriever.ingest.indexer import index_corpus
from retriever.store.edge.catalog import EdgeCatalog

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = SHARED_DATA / "financial-qa-10k" / "corpus.jsonl"
CHUNK_OVERLAP = 32  # the indexer's (and the CLI's) default overlap
TARGET_OVERHEAD_PCT = 10.0
WARMUP_TEXTS = 64


@dataclass(frozen=True)
class Repeat:
    """One repeat: plain encode (A) and funnel indexing (B) of the same chunks."""

    repeat: int
    order: str
    chunks: int
    encode_seconds: float
    index_seconds: float
    points: int

    @property
    def encode_chunks_per_s(self) -> float:
        return self.chunks / self.encode_seconds

    @property
    def index_chunks_per_s(self) -> float:
        return self.chunks / self.index_seconds

    @property
    def overhead_pct(self) -> float:
        return (self.index_seconds / self.encode_seconds - 1) * 100

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "encode_chunks_per_s": self.encode_chunks_per_s,
            "index_chunks_per_s": self.index_chunks_per_s,
            "overhead_pct": self.overhead_pct,
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="corpus to index [%(default)s]")
    parser.add_argument("--limit", type=int, default=None, help="use the first N documents [all]")
    parser.add_argument("--repeats", type=int, default=1, help="A/B pairs to run [%(default)s]")
    parser.add_argument("--batch-size", type=int, default=32, help="encoder batch size [%(default)s]")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="sentence-transformers model [%(default)s]")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results directory [%(default)s]")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu [best available]")
    args = parser.parse_args(argv)
    if not args.corpus.exists():
        parser.error(f"corpus not found: {args.corpus} (give one with --corpus PATH)")
    for name in ("limit", "repeats", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more, not {value}")
    return args


def limited_corpus(corpus: Path, limit: int, workdir: Path) -> Path:
    """The first ``limit`` documents of ``corpus`` as a JSONL file that funnel reads back identically."""
    path = workdir / "corpus.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for i, doc in enumerate(read_corpus([corpus])):
            if i == limit:
                break
            record = {"_id": doc.id, "title": doc.title, "text": doc.text, "metadata": doc.metadata}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def chunk_texts(corpus: Path, embedder: Embedder) -> list[str]:
    """The chunk texts the indexer encodes, chunked the way it does by default."""
    chunker = TokenChunker(
        embedder.tokenizer, TokenChunker.default_size(embedder.max_tokens), CHUNK_OVERLAP, embedder.max_tokens
    )
    return [chunk.text for doc in read_corpus([corpus]) for chunk in chunker.split(doc)]


def time_encode(embedder: Embedder, texts: list[str], batch_size: int) -> float:
    gc.collect()
    started = time.perf_counter()
    embedder.model.encode(texts, batch_size=batch_size, show_progress_bar=False)
    return time.perf_counter() - started


def time_index(embedder: Embedder, corpus: Path, batch_size: int, expected_chunks: int) -> tuple[float, int]:
    """Seconds to index ``corpus`` into a fresh Edge data dir (its removal not timed), and the points."""
    with tempfile.TemporaryDirectory(prefix="funnel-bench-") as data_dir:
        gc.collect()
        started = time.perf_counter()
        result = index_corpus(
            EdgeCatalog(data_dir),
            "bench",
            [corpus],
            embedder,
            chunk_overlap=CHUNK_OVERLAP,
            batch_size=batch_size,
        )
        seconds = time.perf_counter() - started
    if result.chunks != expected_chunks:
        raise SystemExit(
            f"error: the indexer wrote {result.chunks} chunks, the benchmark encoded {expected_chunks}"
        )
    return seconds, result.points


def load_average() -> str | None:
    """The 1/5/15-minute load averages: other work on the machine skews the timings."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else None


def summarize(repeats: list[Repeat]) -> dict[str, Any]:
    encode_s = statistics.median(r.encode_seconds for r in repeats)
    index_s = statistics.median(r.index_seconds for r in repeats)
    chunks = repeats[0].chunks
    overhead = statistics.median(r.overhead_pct for r in repeats)
    return {
        "chunks": chunks,
        "encode_seconds": encode_s,
        "index_seconds": index_s,
        "encode_chunks_per_s": chunks / encode_s,
        "index_chunks_per_s": chunks / index_s,
        "overhead_pct": overhead,
        "target_pct": TARGET_OVERHEAD_PCT,
        "pass": overhead <= TARGET_OVERHEAD_PCT,
    }


def verdict(summary: dict[str, Any]) -> str:
    word = "PASS" if summary["pass"] else "FAIL"
    return f"{word}: median overhead {summary['overhead_pct']:+.1f} % (target ≤ {TARGET_OVERHEAD_PCT:.0f} %)"


ROW_HEADERS = [
    "repeat",
    "order",
    "chunks",
    "encode s",
    "encode chunks/s",
    "index s",
    "index chunks/s",
    "overhead",
]


def rows(repeats: list[Repeat], summary: dict[str, Any]) -> list[list[str]]:
    def row(label: str, order: str, chunks: int, enc: float, idx: float, over: float) -> list[str]:
        return [
            label,
            order,
            f"{chunks:,}",
            f"{enc:.2f}",
            f"{chunks / enc:,.1f}",
            f"{idx:.2f}",
            f"{chunks / idx:,.1f}",
            f"{over:+.1f} %",
        ]

    out = [
        row(str(r.repeat), r.order, r.chunks, r.encode_seconds, r.index_seconds, r.overhead_pct)
        for r in repeats
    ]
    s = summary
    out.append(row("median", "", s["chunks"], s["encode_seconds"], s["index_seconds"], s["overhead_pct"]))
    return out


def markdown(report: dict[str, Any], table: list[list[str]]) -> str:
    lines = [
        "# Indexing throughput: funnel index vs plain model.encode",
        "",
        f"**{verdict(report['summary'])}**",
        "",
        (
            f"Model `{report['model']}`, batch size {report['batch_size']}, corpus `{report['corpus']}` "
            f"({report['documents']:,} documents → {report['summary']['chunks']:,} chunks), "
            f"{len(report['repeats'])} repeat(s), A/B order alternated."
        ),
        "",
        "| " + " | ".join(ROW_HEADERS) + " |",
        "|" + "---|" * len(ROW_HEADERS),
        *("| " + " | ".join(cells) + " |" for cells in table),
        "",
        (
            "encode = `model.encode(texts)` of the chunk texts; index = `index_corpus` into a fresh Qdrant Edge "
            "collection (validation pass, chunking, encoding, truncation, upsert, flush/optimize); "
            "overhead = index s / encode s − 1."
        ),
        "",
        "## Machine",
        "",
        *(f"- {key}: {value}" for key, value in report["machine"].items()),
        f"- date: {report['date']}",
        "",
        "## Command",
        "",
        "```",
        report["command"],
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv])
    embedder = Embedder(args.model, device=args.device)
    load_before = load_average()

    with tempfile.TemporaryDirectory(prefix="funnel-bench-corpus-") as workdir:
        corpus = args.corpus if args.limit is None else limited_corpus(args.corpus, args.limit, Path(workdir))
        documents = sum(1 for _ in read_corpus([corpus]))
        texts = chunk_texts(corpus, embedder)
        console.print(
            f"{documents:,} documents → {len(texts):,} chunks; model {args.model} on {embedder.device}"
        )

        started = time.perf_counter()
        embedder.fingerprint  # noqa: B018 - cached, computed once per process by the indexer: keep it out of B
        fingerprint_s = time.perf_counter() - started
        embedder.model.encode(texts[:WARMUP_TEXTS], batch_size=args.batch_size, show_progress_bar=False)

        repeats: list[Repeat] = []
        for i in range(args.repeats):
            order = "A/B" if i % 2 == 0 else "B/A"
            if order == "A/B":
                encode_s = time_encode(embedder, texts, args.batch_size)
                index_s, points = time_index(embedder, corpus, args.batch_size, len(texts))
            else:
                index_s, points = time_index(embedder, corpus, args.batch_size, len(texts))
                encode_s = time_encode(embedder, texts, args.batch_size)
            repeats.append(Repeat(i + 1, order, len(texts), encode_s, index_s, points))
            console.print(f"repeat {i + 1}/{args.repeats}: encode {encode_s:.2f} s, index {index_s:.2f} s")

    summary = summarize(repeats)
    table_rows = rows(repeats, summary)
    report: dict[str, Any] = {
        "benchmark": "index_throughput",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "corpus": str(args.corpus),
        "limit": args.limit,
        "documents": documents,
        "model": args.model,
        "batch_size": args.batch_size,
        "chunk_overlap": CHUNK_OVERLAP,
        "fingerprint_seconds": fingerprint_s,
        "machine": machine()
        | {"device": embedder.device, "load_average_before": load_before, "load_average_after": load_average()},
        "repeats": [r.to_dict() for r in repeats],
        "summary": summary,
    }

    table = Table(title="Indexing throughput: funnel index vs plain model.encode")
    for header in ROW_HEADERS:
        justify = "left" if header in ("repeat", "order") else "right"
        table.add_column(header.replace(" ", "\n", 1), justify=justify, no_wrap=True)
    for cells in table_rows:
        table.add_row(*cells)
    console.print(table)
    console.print(f"[bold {'green' if summary['pass'] else 'red'}]{verdict(summary)}[/]")

    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out / "index_throughput.json", args.out / "index_throughput.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report, table_rows))
    console.print(f"wrote {json_path} and {md_path}", soft_wrap=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except FunnelError as exc:
        sys.exit(f"error: {exc}")

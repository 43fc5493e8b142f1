"""Terminal output for the CLI: rich tables, the indexing progress bar, byte sizes."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from retriever.bench.runner import BenchProgress
from retriever.ingest.documents import DocumentPage
from retriever.ingest.indexer import IndexResult
from retriever.query.result import Depth
from retriever.query.spec import Hit
from retriever.store.base import CollectionInfo
from retriever.store.spec import CollectionSpec

if TYPE_CHECKING:
    from pathlib import Path

    from retriever.calibration.layouts import LayoutCalibration
    from retriever.ingest.queries import QueryFile

out = Console(soft_wrap=False)
err = Console(stderr=True)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def print_json(data: Any) -> None:
    """One compact JSON document on stdout."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


class _ChunkRate(ProgressColumn):
    def render(self, task: Task) -> Text:
        chunks = task.fields.get("chunks", 0)
        rate = chunks / task.elapsed if task.elapsed else 0.0
        return Text(f"{chunks:,} chunks · {rate:,.0f} chunks/s", style="cyan")


PLAIN_PROGRESS_SECONDS = 10.0  # without a terminal: a progress line at most this often


class IndexProgressBar:
    """A rich progress bar over documents that also shows chunks and chunks/s (on stderr).

    When stderr is not a terminal (a log file, CI, a pipe) the bar would print nothing until the
    end, so plain lines are printed instead, at most every ``every`` seconds.
    """

    def __init__(self, enabled: bool = True, plain: bool | None = None, every: float = PLAIN_PROGRESS_SECONDS) -> None:
        self.plain = enabled and (not err.is_terminal if plain is None else plain)
        self.every = every
        self.total = self.done = 0
        self.started = self.last = 0.0
        self.progress = Progress(
            TextColumn("[bold]indexing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("docs"),
            _ChunkRate(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not enabled or self.plain,
        )
        self.task: Any = None
        self.chunks = 0

    def start(self, documents: int) -> None:
        self.total, self.started = documents, time.monotonic()
        self.last = self.started
        self.progress.start()
        self.task = self.progress.add_task("index", total=documents, chunks=0)

    def advance(self, documents: int, chunks: int) -> None:
        self.chunks += chunks
        self.done += documents
        self.progress.update(self.task, advance=documents, chunks=self.chunks)
        now = time.monotonic()
        if self.plain and now - self.last >= self.every:
            self.last = now
            elapsed = now - self.started
            rate = self.chunks / elapsed if elapsed else 0.0
            err.print(f"indexing: {self.done:,}/{self.total:,} documents, {self.chunks:,} chunks, "
                      f"{rate:,.0f} chunks/s, {elapsed:,.0f} s", highlight=False, markup=False, soft_wrap=True)

    def stop(self) -> None:
        self.progress.stop()


class BenchProgressBar(BenchProgress):
    """Rich progress on stderr for ``funnel bench``: the index bar, then one bar per measured step."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=err, disable=not enabled, transient=True)
        self.progress.start()
        self._task: Any = None
        self._index_bar: IndexProgressBar | None = None

    def index(self) -> IndexProgressBar:
        self._index_bar = IndexProgressBar(enabled=self.enabled)
        return self._index_bar

    def step(self, label: str, total: int):  # noqa: ANN201 - a callback
        if self._index_bar is not None:
            self._index_bar.stop()
            self._index_bar = None
        if self._task is not None:
            self.progress.remove_task(self._task)
        task = self._task = self.progress.add_task(label, total=total)
        return lambda: self.progress.advance(task)

    def note(self, text: str) -> None:
        err.print(text)

    def stop(self) -> None:
        if self._index_bar is not None:
            self._index_bar.stop()
        self.progress.stop()


def print_index_summary(result: IndexResult) -> None:
    err.print(
        f"[green]indexed[/] {result.documents:,} documents → {result.chunks:,} chunks "
        f"({result.unchanged:,} already stored unchanged) into "
        f"[bold]{result.collection}[/] in {result.seconds:,.1f} s "
        f"(skipped {result.skipped:,}: {result.skipped_empty:,} empty, {result.skipped_bad:,} bad); "
        f"the collection holds {result.points:,} points"
    )
    if result.removed:
        err.print(f"removed {plural(result.removed, 'document')} no longer in the corpus (--sync)", highlight=False)
    elif result.stale:
        err.print(f"warning: the collection holds {plural(result.stale, 'document')} not in this corpus (deleted or renamed "
                  "sources); they are still searchable: re-run with --sync to remove them (funnel docs lists the "
                  "documents)", highlight=False)


def plural(n: int, noun: str) -> str:
    """``1 document``, ``2 documents``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def print_documents(collection: str, page: DocumentPage) -> None:
    """``funnel docs``: one row per document (id, chunks, title)."""
    table = Table(title=Text(f"{collection}: {plural(page.total, 'document')}"), title_justify="left", expand=False)
    table.add_column("doc id", overflow="fold")
    table.add_column("chunks", justify="right")
    table.add_column("title", overflow="fold")
    for doc in page.documents:
        table.add_row(Text(doc.doc_id), f"{doc.chunks:,}", Text(doc.title))
    out.print(table)


def report_skipped_queries(found: QueryFile, path: Path) -> None:
    """What reading a query file skipped, on stderr (nothing when it skipped nothing)."""
    if found.skipped_empty:
        err.print(f"skipped {found.skipped_empty:,} empty queries in {path}", highlight=False)
    if found.skipped_bad:
        err.print(f"skipped {found.skipped_bad:,} bad queries in {path} (first: {found.first_bad})", highlight=False,
                  markup=False)


def _snippet(text: str | None, width: int = 100) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_hits(query: str, hits: list[Hit], plan: str, depth: Depth | None = None) -> None:
    table = Table(title=Text(query), caption=Text(plan), title_justify="left", expand=False)
    table.add_column("rank", justify="right")
    table.add_column("score", justify="right")
    table.add_column("doc id", overflow="fold")
    table.add_column("chunk", justify="right")
    table.add_column("text")
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), f"{hit.score:.4f}", Text(hit.doc_id), str(hit.chunk), Text(_snippet(hit.text)))
    out.print(table)
    if depth is not None:
        out.print(f"depth: {depth.passes} pass{'es' if depth.passes > 1 else ''}, {depth.stages} stages, "
                  f"{depth.candidates:,} candidates", highlight=False, soft_wrap=True)


def spec_dict(spec: CollectionSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "engine": spec.engine,
        "model": spec.model,
        "model_fingerprint": spec.model_fingerprint,
        "model_dim": spec.model_dim,
        "dims": list(spec.dims),
        "chunk_size": spec.chunk_size,
        "chunk_overlap": spec.chunk_overlap,
        "hnsw_dims": list(spec.hnsw_dims or ()),
        "quantization": spec.quantization,
        "on_disk": spec.on_disk,
        "lexical": spec.lexical,
        "lexical_analyzer": spec.lexical_analyzer if spec.lexical else None,
        "encoder": spec.encoder,
    }


def lexical_line(spec: CollectionSpec) -> str:
    """The lexical index of a collection, for people: ``bm25 (english analyzer)`` or ``none``."""
    return f"{spec.lexical} ({spec.lexical_analyzer} analyzer)" if spec.lexical else "none"


def print_collections(specs: list[CollectionSpec], unreadable: Sequence[str] = (),
                      points: Mapping[str, int | str] | None = None, served: Mapping[str, str] | None = None) -> None:
    """The collections as a table, with their point counts (a number, or why not: "in use") and the
    server holding each served one; ``unreadable`` ones (broken ``collection.json``) are listed as such."""
    if not specs and not unreadable:
        err.print("no collections yet: create one with [bold]funnel index PATH -c NAME[/]")
        return
    points, served = points or {}, served or {}
    table = Table(title="collections", title_justify="left")
    columns = ["name", "points", "model", "dims", "chunking"] + (["served by"] if served else [])
    for col in columns:
        table.add_column(col, justify="right" if col == "points" else "left")

    def count(name: str) -> str:
        n = points.get(name, "")
        return f"{n:,}" if isinstance(n, int) else n

    rows: list[tuple[Any, ...]] = [(s.name, count(s.name), Text(s.model), ",".join(map(str, s.dims)), f"{s.chunk_size}/{s.chunk_overlap}",
             *([served.get(s.name, "")] if served else [])) for s in specs]
    rows += [(name, "", Text("(unreadable collection.json)"), "", "", *([""] if served else [])) for name in unreadable]
    for row in sorted(rows, key=lambda r: r[0]):
        table.add_row(*row)
    out.print(table)


def print_info(info: CollectionInfo, default_plan: str, location: str, adaptive: str = "not calibrated",
               hybrid: str | None = None, query_encoder: str | None = None, calibration: str | None = None) -> None:
    table = Table(show_header=False, title=info.spec.name, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    rows = {
        "engine": info.spec.engine,
        "location": location,
        "points": f"{info.points:,}",
        "model": info.spec.model,
        "fingerprint": info.spec.model_fingerprint,
        "model dim": str(info.spec.model_dim),
        "documents encoded with": info.spec.encoder,
        **({"query encoder": query_encoder} if query_encoder is not None else {}),
        "dims": ", ".join(map(str, info.spec.dims)),
        "chunking": f"{info.spec.chunk_size} tokens, overlap {info.spec.chunk_overlap}",
        "storage": f"HNSW on {', '.join(map(str, info.spec.hnsw_dims or ())) or 'no dim'}; quantization "
        f"{info.spec.quantization}; {'rerank vectors on disk' if info.spec.on_disk else 'vectors in RAM'}",
        "lexical index": lexical_line(info.spec),
        **({"calibration record": calibration} if calibration is not None else {}),
        "default plan (k=10)": default_plan,
        "adaptive search": adaptive,
        **({"search mode": hybrid} if hybrid is not None else {}),
        "on disk": "not available (a Qdrant server does not report one collection's disk use)"
        if info.disk_bytes is None else f"{human_bytes(info.disk_bytes)} ({info.disk_bytes:,} bytes)",
    }
    for k, v in rows.items():
        table.add_row(k, Text(v))
    out.print(table)


def print_layouts(result: LayoutCalibration, name: str) -> None:
    """The layouts ``funnel calibrate --layouts`` measured, and which one it chose (stderr)."""
    from retriever.calibration import layouts as layout_calibrate

    table = Table(title=f"layouts of {name}: recall@{result.k} target {result.target}, {result.queries} queries",
                  caption=f"chosen: lowest p50 meeting the target; the current layout stays unless another is ≥"
                  f"{layout_calibrate.MIN_GAIN:.0%} faster; equal p50: fewer bytes")
    for column in ("layout", "plan", "recall", "p50 ms", "build s", "disk"):
        table.add_column(column, justify="left" if column in ("layout", "plan") else "right")
    for t in result.trials:
        mark = ("→ " if t is result.chosen else "  ") + t.layout + (" (current)" if t.current else "")
        table.add_row(mark, t.plan, f"{t.recall:.3f}" + ("" if t.met else " ✗"), f"{t.p50_ms:.2f}",
                      "—" if t.build_s is None else f"{t.build_s:.1f}",
                      "—" if t.disk_bytes is None else human_bytes(t.disk_bytes))
    err.print(table)
    if not result.changed:
        err.print(f"kept layout {result.chosen.layout}: no other layout met the target ≥{layout_calibrate.MIN_GAIN:.0%} "
                  "faster")
    elif result.applied:
        a = result.adaptive
        err.print(f"re-laid {name} into layout {result.chosen.layout}; its default plan is now {result.chosen.plan}"
                  + ("" if a is None else f", adaptive search {'the default' if a.pays else 'not the default'} "
                     f"(mean {a.adaptive.mean:.2f} ms vs fixed {a.fixed.mean:.2f} ms)"), highlight=False)
    else:
        err.print(f"layout {result.chosen.layout} is faster: re-lay {name} with funnel calibrate {name} --layouts "
                  f"{result.chosen.layout} --apply (embedded engine), or funnel collections copy {name} NEW --layout "
                  f"{result.chosen.layout}", highlight=False)

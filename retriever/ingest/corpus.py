"""Read documents from BEIR corpora, JSONL / CSV / Parquet files and directories of text files.

Readers yield :class:`Document` and count what they skip in a :class:`ReadReport`. A malformed
record raises :class:`~retriever.errors.CorpusError` naming ``file:line`` unless ``skip_bad`` is
set, in which case it is skipped and counted. Empty or whitespace-only texts are always skipped
and counted.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retriever.errors import CorpusError
from retriever.store.limits import (
    MAX_CSV_RECORD_LINES,
    MAX_ID_CHARS,
    MAX_TITLE_CHARS,
    LimitError,
    check_string,
    storable_metadata,
)

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
ID_CANDIDATES = ("_id", "id")
FORMATS = ("jsonl", "csv", "tsv", "parquet", "text")


@dataclass(frozen=True)
class Document:
    """One source document before chunking."""

    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fields:
    """Which record fields hold the id, text, title and metadata.

    ``id=None`` takes ``_id`` or ``id`` when present, else ``<file name>:<line>``. The record's
    ``metadata`` object (BEIR) is always kept; ``metadata`` names extra fields to copy into it.
    """

    id: str | None = None
    text: str = "text"
    title: str = "title"
    metadata: tuple[str, ...] = ()


@dataclass
class ReadReport:
    """What a read saw: documents yielded, and records skipped (empty text, or bad with skip_bad)."""

    documents: int = 0
    skipped_empty: int = 0
    skipped_bad: int = 0
    first_bad: str | None = None
    seen_ids: set[str] = field(default_factory=set, repr=False)

    @property
    def skipped(self) -> int:
        return self.skipped_empty + self.skipped_bad


@dataclass(frozen=True)
class CorpusInput:
    """A file to read under another name: messages and fallback ids use ``label`` (e.g. ``<stdin>``
    for standard input spooled to ``path``). ``format`` overrides the suffix."""

    path: Path
    label: str
    format: str | None = None


class _BadRecord(Exception):
    """A record that cannot be used; carries the ``file:line: why`` message."""


def format_of(path: Path, label: str) -> str:
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix == ".tsv":
        return "tsv"
    if suffix == ".csv":
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in TEXT_SUFFIXES:
        return "text"
    raise CorpusError(
        f"{label}: unknown corpus format {suffix or '(no suffix)'!r}; "
        "use .jsonl, .csv, .tsv, .parquet, .txt, .md, a directory, or --format"
    )


def _source_files(item: str | os.PathLike[str] | CorpusInput, fmt: str | None = None) -> list[tuple[Path, str, str]]:
    """Expand one user path into (file, format, label) triples; ``fmt`` overrides file suffixes."""
    if isinstance(item, CorpusInput):
        return [(item.path, item.format or fmt or format_of(item.path, item.label), item.label)]
    path = Path(item)
    if not path.exists():
        raise CorpusError(f"{path}: no such file or directory")
    if not os.access(path, os.R_OK):
        raise CorpusError(f"{path}: permission denied")
    if path.is_dir():
        beir = path / "corpus.jsonl"
        if beir.is_file():
            return [(beir, "jsonl", str(beir))]
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        return [(p, "text", str(p)) for p in files]
    return [(path, fmt or format_of(path, str(path)), str(path))]


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    raise TypeError(type(value).__name__)


def _record_to_document(record: Any, where: str, fallback_id: str, fields: Fields) -> Document:
    """Turn one parsed record (a mapping) into a Document, or raise _BadRecord."""
    if not isinstance(record, dict):
        raise _BadRecord(f"{where}: expected an object, got {type(record).__name__}")
    if fields.text not in record:
        present = ", ".join(list(record)[:8])
        raise _BadRecord(f"{where}: no {fields.text!r} field (fields: {present}; use --text-field)")
    try:
        text = _as_text(record[fields.text])
        title = _as_text(record.get(fields.title))
    except TypeError as exc:
        raise _BadRecord(f"{where}: text/title must be a string, got {exc}") from None
    if fields.id is not None:
        if record.get(fields.id) in (None, ""):
            raise _BadRecord(f"{where}: no {fields.id!r} field (use --id-field)")
        doc_id = _as_id(record[fields.id], where)
    else:
        found = next((record[c] for c in ID_CANDIDATES if record.get(c) not in (None, "")), None)
        doc_id = _as_id(found, where) if found is not None else fallback_id
    metadata = dict(record["metadata"]) if isinstance(record.get("metadata"), dict) else {}
    for name in fields.metadata:
        if name in record:
            metadata[name] = record[name]
    try:
        check_string(doc_id, "the document id", MAX_ID_CHARS)
        check_string(title, "the title", MAX_TITLE_CHARS)
        check_string(text, "the text")
        return Document(id=doc_id, text=text, title=title, metadata=storable_metadata(metadata))
    except LimitError as exc:
        raise _BadRecord(f"{where}: {exc}") from None


def _as_id(value: Any, where: str) -> str:
    if isinstance(value, (dict, list)):
        raise _BadRecord(f"{where}: the document id must be a string or a number, got {type(value).__name__}")
    return str(value)


def _to_document(record: Any, where: str, fallback_id: str, fields: Fields) -> Document | _BadRecord:
    try:
        return _record_to_document(record, where, fallback_id, fields)
    except _BadRecord as bad:
        return bad


def _jsonl_records(path: Path, label: str, fields: Fields) -> Iterator[Document | _BadRecord]:
    name = Path(label).name
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            where = f"{label}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield _BadRecord(f"{where}: not valid UTF-8")
                continue
            if lineno == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield _BadRecord(f"{where}: malformed JSON ({exc.msg})")
                continue
            except RecursionError:
                yield _BadRecord(f"{where}: JSON nested too deeply to read")
                continue
            except ValueError as exc:  # e.g. an integer of more than 4,300 digits
                yield _BadRecord(f"{where}: unreadable JSON ({exc})")
                continue
            yield _to_document(record, where, f"{name}:{lineno}", fields)


def _csv_records(path: Path, label: str, fields: Fields, tsv: bool) -> Iterator[Document | _BadRecord]:
    """CSV follows RFC 4180 (quoted fields may hold commas, quotes and newlines); TSV has no quoting
    at all (``"`` is an ordinary character), so a stray quote can never merge rows."""
    csv.field_size_limit(sys.maxsize)
    name = Path(label).name
    dialect: dict[str, Any] = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if tsv else {"delimiter": ",", "strict": True}
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, **dialect)
            try:
                header = next(reader, None)
            except csv.Error as exc:
                raise CorpusError(f"{label}:1: malformed header ({exc})") from None
            if header is None:
                return
            if fields.text not in header:
                raise CorpusError(
                    f"{label}: no {fields.text!r} column (columns: {', '.join(header)}; use --text-field)"
                )
            end = reader.line_num
            while True:
                start = end + 1
                try:
                    row = next(reader, None)
                except csv.Error as exc:
                    end = reader.line_num
                    yield _BadRecord(f"{label}:{start}: malformed {'TSV' if tsv else 'CSV'} record ({exc})")
                    continue
                if row is None:
                    return
                end = reader.line_num
                where = f"{label}:{start}"
                if not row:
                    continue
                if end - start >= MAX_CSV_RECORD_LINES:
                    yield _BadRecord(f"{where}: a quoted field spans lines {start}-{end} (more than "
                                     f"{MAX_CSV_RECORD_LINES:,}); a stray '\"' probably merged records")
                    continue
                if len(row) != len(header):
                    more = "more" if len(row) > len(header) else "fewer"
                    yield _BadRecord(f"{where}: {more} values than columns ({len(row)} for {len(header)})")
                    continue
                yield _to_document(dict(zip(header, row)), where, f"{name}:{start}", fields)
    except UnicodeDecodeError:
        raise CorpusError(f"{label}: not valid UTF-8") from None


def _parquet_records(path: Path, label: str, fields: Fields) -> Iterator[Document | _BadRecord]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise CorpusError(f"{label}: not a readable Parquet file ({exc})") from None
    names = parquet.schema_arrow.names
    if fields.text not in names:
        raise CorpusError(f"{label}: no {fields.text!r} column (columns: {', '.join(names)}; use --text-field)")
    row = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            row += 1
            yield _to_document(record, f"{label}:row {row}", f"{Path(label).name}:{row}", fields)


def _text_file_records(path: Path, label: str, root: Path | None) -> Iterator[Document | _BadRecord]:
    """One document per file; its id is the path relative to ``root`` (the directory given), or the
    label (the path as given) when the file itself was named."""
    try:
        text = path.read_bytes().decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError:
        yield _BadRecord(f"{label}: not valid UTF-8")
        return
    except OSError as exc:
        yield _BadRecord(f"{label}: cannot read ({exc.strerror})")
        return
    rel = path.relative_to(root).as_posix() if root is not None else Path(label).as_posix()
    try:
        check_string(rel, "the document id", MAX_ID_CHARS)
    except LimitError as exc:
        yield _BadRecord(f"{label}: {exc}")
        return
    yield Document(id=rel, text=text, title=Path(label).stem, metadata={"path": rel})


def read_corpus(
    paths: Iterable[str | os.PathLike[str] | CorpusInput],
    fields: Fields = Fields(),
    skip_bad: bool = False,
    report: ReadReport | None = None,
    fmt: str | None = None,
) -> Iterator[Document]:
    """Yield the documents of every path, in order; count skips in ``report``.

    A directory holding ``corpus.jsonl`` is read as BEIR; any other directory as its ``.txt`` /
    ``.md`` files, recursively, with the relative path as id and the file stem as title. ``fmt``
    (one of :data:`FORMATS`) reads every named file as that format whatever its suffix.
    A document id seen before is a bad record (so no document silently replaces another).
    """
    if fmt is not None and fmt not in FORMATS:
        raise CorpusError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    report = report if report is not None else ReadReport()
    sources = [(p, src) for p in paths for src in _source_files(p, fmt)]
    for given, (path, kind, label) in sources:
        if kind == "jsonl":
            records = _jsonl_records(path, label, fields)
        elif kind in ("csv", "tsv"):
            records = _csv_records(path, label, fields, tsv=kind == "tsv")
        elif kind == "parquet":
            records = _parquet_records(path, label, fields)
        else:
            root = Path(given) if not isinstance(given, CorpusInput) and Path(given).is_dir() else None
            records = _text_file_records(path, label, root)
        for item in records:
            if isinstance(item, Document):
                if not item.text or item.text.isspace():
                    report.skipped_empty += 1
                    continue
                if item.id in report.seen_ids:
                    item = _BadRecord(f"{label}: duplicate document id {item.id!r}")
            if isinstance(item, _BadRecord):
                if not skip_bad:
                    raise CorpusError(f"{item} (use --skip-bad to skip such records)")
                report.skipped_bad += 1
                report.first_bad = report.first_bad or str(item)
                continue
            report.seen_ids.add(item.id)
            report.documents += 1
            yield item

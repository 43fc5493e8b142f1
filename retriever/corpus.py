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

from .errors import CorpusError

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
CSV_SUFFIXES = {".csv", ".tsv"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
ID_CANDIDATES = ("_id", "id")


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


class _BadRecord(Exception):
    """A record that cannot be used; carries the ``file:line: why`` message."""


def _source_files(path: Path) -> list[tuple[Path, str]]:
    """Expand one user path into (file, format) pairs."""
    if not path.exists():
        raise CorpusError(f"{path}: no such file or directory")
    if not os.access(path, os.R_OK):
        raise CorpusError(f"{path}: permission denied")
    if path.is_dir():
        beir = path / "corpus.jsonl"
        if beir.is_file():
            return [(beir, "jsonl")]
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        return [(p, "text") for p in files]
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return [(path, "jsonl")]
    if suffix in CSV_SUFFIXES:
        return [(path, "csv")]
    if suffix in PARQUET_SUFFIXES:
        return [(path, "parquet")]
    if suffix in TEXT_SUFFIXES:
        return [(path, "text")]
    raise CorpusError(
        f"{path}: unknown corpus format {suffix or '(no suffix)'!r}; "
        "use .jsonl, .csv, .tsv, .parquet, .txt, .md or a directory"
    )


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
        doc_id = str(record[fields.id])
    else:
        found = next((record[c] for c in ID_CANDIDATES if record.get(c) not in (None, "")), None)
        doc_id = str(found) if found is not None else fallback_id
    metadata = dict(record["metadata"]) if isinstance(record.get("metadata"), dict) else {}
    for name in fields.metadata:
        if name in record:
            metadata[name] = record[name]
    return Document(id=doc_id, text=text, title=title, metadata=_storable(metadata, where))


def _to_document(record: Any, where: str, fallback_id: str, fields: Fields) -> Document | _BadRecord:
    try:
        return _record_to_document(record, where, fallback_id, fields)
    except _BadRecord as bad:
        return bad


def _storable(metadata: dict[str, Any], where: str) -> dict[str, Any]:
    """Metadata as plain JSON (dates become ISO strings); NaN, infinities and huge ints are refused."""
    try:
        plain = json.loads(json.dumps(metadata, allow_nan=False, default=_json_default))
    except (ValueError, TypeError) as exc:
        raise _BadRecord(f"{where}: metadata cannot be stored ({exc})") from None
    if _has_huge_int(plain):
        raise _BadRecord(f"{where}: metadata holds an integer outside the 64-bit range")
    return plain


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _has_huge_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -(2**63) <= value < 2**63
    if isinstance(value, dict):
        return any(_has_huge_int(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_huge_int(v) for v in value)
    return False


def _jsonl_records(path: Path, fields: Fields) -> Iterator[Document | _BadRecord]:
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            where = f"{path}:{lineno}"
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
            yield _to_document(record, where, f"{path.name}:{lineno}", fields)


def _csv_records(path: Path, fields: Fields) -> Iterator[Document | _BadRecord]:
    csv.field_size_limit(sys.maxsize)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            if reader.fieldnames is None:
                return
            if fields.text not in reader.fieldnames:
                raise CorpusError(
                    f"{path}: no {fields.text!r} column (columns: {', '.join(reader.fieldnames)}; use --text-field)"
                )
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row:
                    yield _BadRecord(f"{where}: more values than columns")
                    continue
                yield _to_document(row, where, f"{path.name}:{reader.line_num}", fields)
    except UnicodeDecodeError:
        raise CorpusError(f"{path}: not valid UTF-8") from None
    except csv.Error as exc:
        raise CorpusError(f"{path}: malformed CSV ({exc})") from None


def _parquet_records(path: Path, fields: Fields) -> Iterator[Document | _BadRecord]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise CorpusError(f"{path}: not a readable Parquet file ({exc})") from None
    names = parquet.schema_arrow.names
    if fields.text not in names:
        raise CorpusError(f"{path}: no {fields.text!r} column (columns: {', '.join(names)}; use --text-field)")
    row = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            row += 1
            yield _to_document(record, f"{path}:row {row}", f"{path.name}:{row}", fields)


def _text_file_records(path: Path, root: Path | None) -> Iterator[Document | _BadRecord]:
    """One document per file; its id is the path relative to ``root`` (the directory given), or the
    path as given when the file itself was named."""
    try:
        text = path.read_bytes().decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError:
        yield _BadRecord(f"{path}: not valid UTF-8")
        return
    except OSError as exc:
        yield _BadRecord(f"{path}: cannot read ({exc.strerror})")
        return
    rel = path.relative_to(root).as_posix() if root is not None else path.as_posix()
    yield Document(id=rel, text=text, title=path.stem, metadata={"path": rel})


def read_corpus(
    paths: Iterable[str | os.PathLike[str]],
    fields: Fields = Fields(),
    skip_bad: bool = False,
    report: ReadReport | None = None,
) -> Iterator[Document]:
    """Yield the documents of every path, in order; count skips in ``report``.

    A directory holding ``corpus.jsonl`` is read as BEIR; any other directory as its ``.txt`` /
    ``.md`` files, recursively, with the relative path as id and the file stem as title.
    A document id seen before is a bad record (so no document silently replaces another).
    """
    report = report if report is not None else ReadReport()
    sources = [(Path(p), src) for p in paths for src in _source_files(Path(p))]
    for root, (path, fmt) in sources:
        if fmt == "jsonl":
            records = _jsonl_records(path, fields)
        elif fmt == "csv":
            records = _csv_records(path, fields)
        elif fmt == "parquet":
            records = _parquet_records(path, fields)
        else:
            records = _text_file_records(path, root if root.is_dir() else None)
        for item in records:
            if isinstance(item, Document):
                if not item.text.strip():
                    report.skipped_empty += 1
                    continue
                if item.id in report.seen_ids:
                    item = _BadRecord(f"{path}: duplicate document id {item.id!r}")
            if isinstance(item, _BadRecord):
                if not skip_bad:
                    raise CorpusError(f"{item} (use --skip-bad to skip such records)")
                report.skipped_bad += 1
                report.first_bad = report.first_bad or str(item)
                continue
            report.seen_ids.add(item.id)
            report.documents += 1
            yield item

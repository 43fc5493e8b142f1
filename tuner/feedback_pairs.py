"""``funnel pairs feedback``: the service's feedback log (see :mod:`retriever.service.feedback`) becomes pairs.

Each line ``{"query", "doc_id", "chunk", …}`` names the chunk that should have been found; its
text is read from the collection (``Collection.payloads`` by chunk id). Lines whose chunk is no
longer in the collection, lines recorded for another collection, and repeated (query, chunk)
lines are counted and skipped. A malformed line stops the read with ``file:line`` unless
``skip_bad`` is set (then it is counted too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retriever.errors import PairsError
from retriever.ingest.chunking import chunk_id
from tuner.pair_file import record

LOOKUP_BATCH = 512


@dataclass
class FeedbackReport:
    """Lines read, pairs made, and lines skipped by reason."""

    file: str
    lines: int = 0
    pairs: int = 0
    missing_chunks: int = 0
    other_collection: int = 0
    duplicates: int = 0
    bad_lines: int = 0
    first_bad: str | None = None


@dataclass(frozen=True)
class FeedbackEntry:
    query: str
    doc_id: str
    chunk: int


def _entry(line: str) -> tuple[FeedbackEntry | None, str | None, str]:
    """(entry, collection, why-not) for one line."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, None, f"not JSON ({exc.msg})"
    except RecursionError:
        return None, None, "JSON nested too deeply to read"
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        return None, None, f"unreadable JSON ({exc})"
    if not isinstance(item, dict):
        return None, None, "not a JSON object"
    query, doc, chunk = item.get("query"), item.get("doc_id"), item.get("chunk", 0)
    if not isinstance(query, str) or not query.strip():
        return None, None, "no query text"
    if not isinstance(doc, str) or not doc:
        return None, None, "no doc_id"
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
        return None, None, f"chunk {chunk!r} is not a chunk index"
    collection = item.get("collection")
    return FeedbackEntry(query, doc, chunk), collection if isinstance(collection, str) else None, ""


def read_feedback(path: Path, collection: str, skip_bad: bool, report: FeedbackReport) -> list[FeedbackEntry]:
    """The usable entries of a feedback log for ``collection``, in file order, without repeats."""
    if path.is_dir():
        raise PairsError(f"--feedback-file {path} is a directory, not a feedback log")
    if not path.is_file():
        raise PairsError(f"{path}: no feedback log (POST /feedback to 'funnel serve' writes it; or give --feedback-file)")
    entries: list[FeedbackEntry] = []
    seen: set[FeedbackEntry] = set()
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                report.lines += 1
                entry, owner, why = _entry(line)
                if entry is None:
                    where = f"{path}:{number}: {why}"
                    if not skip_bad:
                        raise PairsError(f"{where} (use --skip-bad to skip such lines)")
                    report.bad_lines += 1
                    report.first_bad = report.first_bad or where
                elif owner is not None and owner != collection:
                    report.other_collection += 1
                elif entry in seen:
                    report.duplicates += 1
                else:
                    seen.add(entry)
                    entries.append(entry)
    except UnicodeDecodeError:
        raise PairsError(f"{path}: not UTF-8 text") from None
    return entries


def feedback_pairs(collection: Any, entries: list[FeedbackEntry], report: FeedbackReport) -> list[dict[str, Any]]:
    """Pairs (query, stored chunk text); ``collection`` is a store ``Collection`` (``payloads`` by id)."""
    pairs: list[dict[str, Any]] = []
    for start in range(0, len(entries), LOOKUP_BATCH):
        batch = entries[start : start + LOOKUP_BATCH]
        scheme = getattr(getattr(collection, "spec", None), "point_ids", "int")
        # generation 1: a chunk of a document last written by an upsert (retriever.ingest.documents)
        ids = [(chunk_id(e.doc_id, e.chunk, scheme), chunk_id(e.doc_id, e.chunk, scheme, 1)) for e in batch]
        found = collection.payloads([i for pair in ids for i in pair])
        for entry, (point, upserted) in zip(batch, ids):
            payload = found.get(point) or found.get(upserted)
            text = payload.get("text") if payload else None
            if not isinstance(text, str) or not text.strip():
                report.missing_chunks += 1
                continue
            pairs.append(record(entry.query, text, entry.doc_id, entry.chunk))
    report.pairs = len(pairs)
    return pairs

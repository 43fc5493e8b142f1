"""Feedback: a query and the chunk that should have been found, appended to a JSONL file for tuning.

The file's path comes from the server's configuration only (never from a request). Each record is
one line ``{"time", "collection", "query", "doc_id", "chunk", "chunk_id", "note"}``, written with a
single ``write`` on a file opened in append mode under a lock, so concurrent requests never
interleave lines.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from retriever.errors import StoreError


def default_feedback_dir(data_dir: str | os.PathLike[str]) -> Path:
    """``<data_dir>/feedback``: the server's feedback files, one per collection (``NAME.jsonl``)."""
    return Path(data_dir).expanduser() / "feedback"


def default_feedback_path(data_dir: str | os.PathLike[str], collection: str) -> Path:
    """``<data_dir>/feedback/<collection>.jsonl`` (``collection`` is an already validated name)."""
    return default_feedback_dir(data_dir) / f"{collection}.jsonl"


class FeedbackLog:
    """Appends feedback records to one JSONL file, thread-safely."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Add a timestamp, append the record as one line and return it."""
        line = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds")} | record
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise StoreError(f"cannot write feedback to {self.path.name}: {exc.strerror}") from None
        return line

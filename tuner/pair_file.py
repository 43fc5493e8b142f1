"""The pairs JSONL that ``funnel pairs`` writes: one ``{"anchor", "positive", "doc_id", "chunk"}`` per line.

Every chunk's pairs go out in one ``write`` followed by a flush, so a killed run leaves whole chunks
behind (at worst a last line cut short, which :func:`resume_state` cuts off). A re-run reads the
``(doc_id, chunk)`` keys already in the file and skips those chunks.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from retriever.errors import PairsError
from retriever.ingest.beir import file_kind

Key = tuple[str, int]


def _refuse_non_regular(path: Path) -> None:
    """Refuse an existing ``path`` (a symlink is followed) that is not a regular file: reading a device
    to its end never ends, and replacing one would swap the node for a file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return  # absent (or a dangling symlink): it will be created
    except OSError as exc:
        raise PairsError(f"--out {path}: cannot check ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise PairsError(f"--out {path} is a directory: give a file path such as {path / 'pairs.jsonl'}")
    if not stat.S_ISREG(mode):
        raise PairsError(f"--out {path} is {file_kind(mode)}, not a regular file: give a file path")


def check_output(path: Path) -> Path:
    """Refuse an output path that is not a regular file (a directory, a device, a FIFO, a socket, or a
    symlink to one) or sits in a missing or non-directory parent; nothing is read or written first."""
    path = Path(path).expanduser()
    _refuse_non_regular(path)
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise PairsError(f"--out {path}: {parent} is not a directory")
    parent.mkdir(parents=True, exist_ok=True)
    return path


def record(anchor: str, positive: str, doc_id: str, chunk: int, **extra: Any) -> dict[str, Any]:
    """One output line's fields."""
    return {"anchor": anchor, "positive": positive, "doc_id": doc_id, "chunk": chunk, **extra}


def resume_state(path: Path) -> set[Key]:
    """The chunks already in ``path`` (empty if it does not exist); a cut-off last line is removed."""
    if not path.exists():
        return set()
    _refuse_non_regular(path)
    with path.open("rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)  # the line a kill cut short
            data = data[: data.rfind(b"\n") + 1]
    done: set[Key] = set()
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            done.add((str(item["doc_id"]), int(item["chunk"])))
        except (ValueError, KeyError, TypeError):
            raise PairsError(
                f"{path}:{number}: not a pairs line with doc_id and chunk; cannot resume into this file "
                "(give another --out)"
            ) from None
    return done


class PairWriter:
    """Appends each chunk's pairs to the output in one write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pairs = 0
        self._handle = path.open("a", encoding="utf-8")

    def write(self, records: Iterable[dict[str, Any]]) -> int:
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if lines:
            self._handle.write(lines)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        written = lines.count("\n")
        self.pairs += written
        return written

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> PairWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_pairs(path: Path, pairs: Iterable[dict[str, Any]]) -> int:
    """Write all ``pairs`` to ``path`` at once: a temporary file renamed over it, so a failed run
    leaves any earlier file as it was. A symlink to a file stays a symlink: its target is replaced."""
    path = check_output(path).resolve()
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    try:
        tmp.unlink(missing_ok=True)  # a leftover of a killed run: created afresh below
    except OSError as exc:
        raise PairsError(f"--out {path}: cannot remove the leftover {tmp} ({exc.strerror or exc})") from None
    try:
        with tmp.open("x", encoding="utf-8") as handle:
            for item in pairs:
                handle.write(json.dumps(item, ensure_ascii=False) + "\n")
                count += 1
        _refuse_non_regular(path)  # still not a device or directory made meanwhile
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count

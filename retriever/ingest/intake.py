"""The corpus an index run reads: spooled when it cannot be read twice, then validated in full.

Standard input (``-``), FIFOs and other non-regular files can be read once only, but an index run
reads its corpus twice (to validate everything before writing anything, then to index it): such an
input is first copied to a hidden spool file (``.spool~…`` in the data directory), read from there
and deleted at the end, whatever happens.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from retriever.errors import CorpusError, StoreError
from retriever.ingest.corpus import CorpusInput, Document, Fields, ReadReport, format_of, read_corpus

STDIN = "-"
STDIN_LABEL = "<stdin>"
COPY_BYTES = 1 << 20

CorpusPath = str | os.PathLike[str] | CorpusInput


def needs_spool(item: CorpusPath) -> bool:
    """Whether ``item`` can only be read once: ``-`` or a file that is neither regular nor a directory."""
    if isinstance(item, CorpusInput):
        return False
    if str(item) == STDIN:
        return True
    try:
        mode = os.stat(item).st_mode
    except OSError:
        return False  # missing or unreadable: read_corpus says so
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _copy(source: IO[bytes], target: IO[bytes]) -> None:
    while block := source.read(COPY_BYTES):
        target.write(block)


@contextmanager
def spooled(paths: Sequence[CorpusPath], directory: str | os.PathLike[str] | None,
            fmt: str | None) -> Iterator[list[CorpusPath]]:
    """``paths`` with every read-once input replaced by a spool file; the spool files are deleted on exit."""
    made: list[Path] = []
    items: list[CorpusPath] = []
    try:
        for item in paths:
            if isinstance(item, CorpusInput) or not needs_spool(item):
                items.append(item)
                continue
            label = STDIN_LABEL if str(item) == STDIN else str(item)
            kind = fmt or ("jsonl" if str(item) == STDIN else format_of(Path(item), label))
            where = Path(directory) if directory is not None else Path(tempfile.gettempdir())
            try:
                where.mkdir(parents=True, exist_ok=True)
                handle, name = tempfile.mkstemp(prefix=".spool~", dir=where)
                made.append(Path(name))
                with os.fdopen(handle, "wb") as target:
                    if str(item) == STDIN:
                        _copy(sys.stdin.buffer, target)
                    else:
                        with open(item, "rb") as source:
                            _copy(source, target)
            except OSError as exc:
                raise StoreError(f"cannot spool {label} to {where}: {exc.strerror or exc}") from None
            items.append(CorpusInput(Path(name), label, kind))
        yield items
    finally:
        for path in made:
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class ValidCorpus:
    """A corpus read once in full without a bad record (or with them counted, with ``skip_bad``)."""

    inputs: list[CorpusPath]
    fields: Fields
    skip_bad: bool
    fmt: str | None
    report: ReadReport

    def documents(self) -> Iterator[Document]:
        """Read it again, document by document."""
        return read_corpus(self.inputs, self.fields, self.skip_bad, fmt=self.fmt)


def validate_corpus(paths: Sequence[CorpusPath], fields: Fields, skip_bad: bool, fmt: str | None = None) -> ReadReport:
    """Read the whole corpus once, raising on the first bad record (unless skip_bad) or if empty."""
    report = ReadReport()
    for _ in read_corpus(paths, fields, skip_bad, report, fmt=fmt):
        pass
    if report.documents == 0:
        where = ", ".join(p.label if isinstance(p, CorpusInput) else str(p) for p in paths)
        raise CorpusError(
            f"empty corpus: no document with text in {where} "
            f"({report.skipped_empty} empty, {report.skipped_bad} bad records skipped)"
        )
    return report


@contextmanager
def open_corpus(paths: Sequence[CorpusPath], fields: Fields | None = None, skip_bad: bool = False,
                fmt: str | None = None, spool_dir: str | os.PathLike[str] | None = None) -> Iterator[ValidCorpus]:
    """Spool read-once inputs (into ``spool_dir``, default: the system's temporary directory) and
    validate everything; the spool files live as long as the context."""
    fields = fields or Fields()
    with spooled(paths, spool_dir, fmt) as inputs:
        yield ValidCorpus(inputs, fields, skip_bad, fmt, validate_corpus(inputs, fields, skip_bad, fmt))


__all__ = ["STDIN", "ValidCorpus", "needs_spool", "open_corpus", "spooled", "validate_corpus"]

"""Free disk space, checked before the engine writes: a full disk must be a clear message, never
the SIGBUS a memory-mapped write into a file the disk cannot back ends in."""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from pathlib import Path

from retriever.errors import StorageUnavailableError, StoreError
from retriever.store.limits import MIN_FREE_BYTES

# A storage condition, by errno and by the OS's message (the engine reports "... (os error 28)"): what it is, what to do.
STORAGE_CONDITIONS = {
    errno.ENOSPC: ("No space left on device", "the disk is full", "free some space"),
    errno.EDQUOT: ("Disk quota exceeded", "the disk quota is used up", "free some space or raise the quota"),
    errno.EROFS: ("Read-only file system", "the file system is read-only",
                  "remount it read-write (or copy the data directory to a writable disk)"),
    errno.EACCES: ("Permission denied", "access to the data directory is denied",
                   "run as a user who may read and write it (or fix its permissions)"),
}
_OS_ERROR = re.compile(r"os error (\d+)\)")


def storage_condition(exc: BaseException) -> int | None:
    """The errno of a full, read-only or forbidden disk that ``exc`` reports (an ``OSError``, or an
    engine error whose message names one), else ``None``: such a failure is the disk's, never a damaged collection."""
    if isinstance(exc, OSError) and exc.errno in STORAGE_CONDITIONS:
        return exc.errno
    text = str(exc)
    for code in (int(m) for m in _OS_ERROR.findall(text)):
        if code in STORAGE_CONDITIONS:
            return code
    return next((code for code, (message, _what, _do) in STORAGE_CONDITIONS.items() if message in text), None)


def storage_error(exc: BaseException, subject: str) -> StorageUnavailableError | None:
    """A :class:`StorageUnavailableError` about ``subject`` (e.g. "collection 'x'") when ``exc`` is a
    storage condition (see :func:`storage_condition`), else ``None``. It never suggests deleting anything."""
    code = storage_condition(exc)
    if code is None:
        return None
    message, what, do = STORAGE_CONDITIONS[code]
    text = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0] if str(exc) else message)
    return StorageUnavailableError(
        f"{subject}: {what} ({text}); the collection is not damaged, do not drop it: {do}, then run the command again")


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def sparse_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes the files under ``path`` may still take without growing: their holes (size beyond the
    blocks allocated). The engine maps these files, so writing (or, on tmpfs, reading) a hole
    allocates disk space."""
    holes = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                info = os.stat(os.path.join(root, name))
            except OSError:
                continue
            holes += max(0, info.st_size - info.st_blocks * 512)
    return holes


def require_free_space(path: str | os.PathLike[str], needed: int, what: str) -> None:
    """Raise :class:`StorageUnavailableError` unless ``needed`` bytes plus :data:`MIN_FREE_BYTES` are free at ``path``."""
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return  # nothing to measure (e.g. the path went away): the write itself will report
    if free < needed + MIN_FREE_BYTES:
        raise StorageUnavailableError(
            f"no space left for {what}: {_mib(free)} free on {path}, about {_mib(needed + MIN_FREE_BYTES)} needed "
            f"(including a {_mib(MIN_FREE_BYTES)} safety margin); free some space and run it again "
            "(what is already stored stays, and a re-run resumes)"
        )


def dir_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes the files under ``path`` take on disk (allocated blocks, not sizes)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def check_writable(root: Path, collection: Path | None, new_bytes: int) -> None:
    """Raise :class:`StoreError` unless ``root`` takes files and its disk has room for the holes of
    ``collection``'s sparse files (when it exists), else for ``new_bytes`` of a new one, plus the margin."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe~{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        error = StorageUnavailableError if storage_condition(exc) is not None else StoreError
        raise error(f"cannot write collections in {root}: {exc.strerror or exc}") from None
    if collection is not None and collection.is_dir():
        require_free_space(root, sparse_bytes(collection), f"writing to collection {collection.name!r}")
    else:
        name = f" {collection.name!r}" if collection is not None else ""
        require_free_space(root, new_bytes, f"a new collection{name} in {root}")

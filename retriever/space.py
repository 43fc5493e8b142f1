"""Free disk space, checked before the engine writes: a full disk must be a clear message, never
the SIGBUS a memory-mapped write into a file the disk cannot back ends in."""

from __future__ import annotations

import os
import shutil

from .errors import StoreError
from .limits import MIN_FREE_BYTES


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def require_free_space(path: str | os.PathLike[str], needed: int, what: str) -> None:
    """Raise :class:`StoreError` unless ``needed`` bytes plus :data:`MIN_FREE_BYTES` are free at ``path``."""
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return  # nothing to measure (e.g. the path went away): the write itself will report
    if free < needed + MIN_FREE_BYTES:
        raise StoreError(
            f"no space left for {what}: {_mib(free)} free on {path}, about {_mib(needed + MIN_FREE_BYTES)} needed "
            f"(including a {_mib(MIN_FREE_BYTES)} safety margin); free some space and run it again "
            "(what is already stored stays, and a re-run resumes)"
        )

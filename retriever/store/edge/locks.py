"""The lock that serialises the creation of a collection across processes."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from retriever.errors import CollectionLockedError


@contextmanager
def creation_lock(root: Path, name: str) -> Iterator[None]:
    """An exclusive lock on ``<root>/.<name>.lock`` while collection ``name`` is created: a second
    process creating the same collection is told so at once instead of racing on the temporary
    directory (``[Errno 39]``)."""
    path = root / f".{name}.lock"
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CollectionLockedError(
                f"collection {name!r} is being created by another process (an index run); "
                "wait for it to finish or stop it"
            ) from None
        try:
            yield
        finally:
            # Unlinked before it is unlocked: a process that opens the name later gets a new file,
            # and finds the collection made (or this creation's failure cleaned up).
            path.unlink(missing_ok=True)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

"""The embedded engine's locks: one that serialises the creation of a collection across processes, and
the hold a process keeps on a collection it has open (:func:`hold`), which names it to the others."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


HOLDER_FILE = ".holder"  # in the collection's directory: flocked by the process that has it open


class Holder:
    """This process's hold on a collection: an exclusive ``flock`` on ``<collection>/.holder`` for as long
    as the collection is open, with who holds it (pid, command, since) written inside for the others.

    Taken *before* the engine loads the shard, because a Qdrant Edge load of a shard that another
    process holds is not harmless: qdrant-edge-py 0.9 opens the segments (and deletes their payload
    trackers' ``tracker_journal.dat``) before it reaches the write-ahead log's lock and fails with
    ``WouldBlock``, after which the holder's next write fails ("Tracker journal … is shorter than
    expected"). With this lock a second funnel process never reaches the engine.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _command() -> str:
    """This process's command line, short: ``funnel serve --all``, ``python notebook.py``, …"""
    argv = list(sys.argv) or ["python"]
    head = Path(argv[0]).name
    if head in ("cli.py", "funnel") or argv[0].endswith(os.path.join("retriever", "cli", "__main__.py")):
        head = "funnel"
    elif head == "__main__.py":  # python -m PACKAGE
        head = f"python -m {Path(argv[0]).parent.name}"
    elif head in ("-c", ""):
        head = "python -c …"
        argv = argv[:1]
    elif head.endswith(".py"):
        head = f"python {head}"
    text = " ".join([head, *argv[1:]])
    return text if len(text) <= 120 else text[:119] + "…"


def describe_holder(record: dict[str, Any]) -> str | None:
    """``pid 123 (funnel serve --all, since 20:31:05)`` from a holder file's record, or ``None``."""
    pid, command, since = record.get("pid"), record.get("command"), record.get("since")
    if not isinstance(pid, int) or not isinstance(command, str):
        return None
    when = f", since {time.strftime('%H:%M:%S', time.localtime(since))}" if isinstance(since, (int, float)) else ""
    return f"pid {pid} ({command}{when})"


def hold(collection_dir: Path, name: str) -> Holder | None:
    """Hold collection ``name`` (its directory) for this process, or raise :class:`CollectionLockedError`
    naming the process that holds it. ``None``: the directory cannot take the file (a read-only disk;
    the engine then says what is wrong)."""
    path = collection_dir / HOLDER_FILE
    try:
        handle = open(path, "a+")  # noqa: SIM115 - kept open while the collection is
    except OSError:
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        try:
            record = json.loads(handle.read() or "{}")
        except (ValueError, OSError):
            record = {}
        handle.close()
        who = describe_holder(record) if isinstance(record, dict) else None
        raise CollectionLockedError(
            f"collection {name!r} is in use by another process{': ' + who if who else ''}; wait for it to finish "
            "or stop it (the embedded engine opens a collection in one process at a time, and has no read-only "
            "open)") from None
    try:
        handle.truncate(0)
        handle.write(json.dumps({"pid": os.getpid(), "command": _command(), "since": round(time.time(), 3)}))
        handle.flush()
    except OSError:
        pass  # held all the same; the others are told less
    return Holder(handle)

"""Ctrl-C in the ``funnel`` command: a prompt end, one line on stderr, exit code 130.

Python turns SIGINT into ``KeyboardInterrupt`` in the main thread at its next bytecode. During a
model load that fails three ways: raised in Python code that C++ called back (torch's ONNX export
traces the model so), it aborts the process (``std::terminate``: exit -6 and two lines of C++);
inside a long native call it waits for the call to return; and ``funnel serve`` loads its model on
a worker thread, which the interpreter joins at exit, so the server stopped only once the load had
ended (29 s for a first export on 2 idle cores, minutes on a loaded machine).

:func:`guard` (the CLI installs it, in the main thread) starts a watcher thread that hears every
signal at once, through :func:`signal.set_wakeup_fd`, whatever the main thread is doing. On SIGINT:

- while a :func:`quiet` section runs (a model load on any thread; the command's own exit), it prints
  the line and ends the process at once (``os._exit(130)``): those sections write nothing that a
  hard exit could leave half done (an export is built aside and renamed into place);
- otherwise the main thread's ``KeyboardInterrupt`` runs the command's clean-ups, which print the
  line (:func:`say`) and exit 130; a process still there :data:`GRACE_S` later is ended the same way.

Without :func:`guard` (the library in someone else's program, or a process started with SIGINT
ignored, which keeps ignoring it) :func:`quiet` changes nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

GRACE_S = 10.0  # after a Ctrl-C outside a quiet section: clean-ups (and serve's 5 s graceful stop) get this long
EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a command ended by Ctrl-C
LINE = "Interrupted: re-run the same command to finish (re-indexing is idempotent)."

_lock = threading.Lock()
_state: dict[str, Any] = {"installed": False, "quiet": 0, "said": False, "deferred": False, "line": LINE,
                          "write_end": None, "answered": False}


def installed() -> bool:
    """Whether :func:`guard` runs in this process."""
    return bool(_state["installed"])


def guard(line: str = LINE) -> None:
    """Start the watcher (once; main thread only, else nothing happens); ``line`` is what a Ctrl-C
    that the command does not answer itself prints."""
    if _state["installed"] or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started so (nohup, a background job): keep it so
        return
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(write_end, False)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except (ValueError, OSError):  # not the main interpreter, or a platform without this: Python's own Ctrl-C
        os.close(read_end)
        os.close(write_end)
        return
    _state.update(installed=True, line=line, write_end=write_end)
    previous = sys.unraisablehook

    def unraisable(unraisable: Any) -> None:  # noqa: ANN401 - sys.UnraisableHookArgs
        # A Ctrl-C raised in a weakref callback or a __del__ (an import's module lock has one) is printed
        # and dropped by Python: the command would go on as if none came. It ends the command here.
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            _end()
        previous(unraisable)

    sys.unraisablehook = unraisable
    threading.Thread(target=_watch, args=(read_end,), name="funnel-interrupt", daemon=True).start()


def heard(signum: int) -> None:
    """Tell the watcher of a signal that another handler took: an asyncio event loop (``funnel serve``'s)
    points the wakeup fd at its own pipe while it runs, so its signal handlers call this."""
    if _state["write_end"] is not None:
        with contextlib.suppress(OSError):
            os.write(_state["write_end"], bytes([int(signum)]))


def answered() -> None:
    """The command answers this Ctrl-C itself (``funnel serve``'s graceful stop, exit 0): unless a quiet
    section runs (a model load: that still ends at once), the watcher leaves it to the command. Call it
    before :func:`heard`."""
    with _lock:
        if _state["quiet"] == 0:
            _state["answered"] = True


def _taken() -> bool:
    """Whether the command answered the Ctrl-C the watcher heard (the flag is used up)."""
    with _lock:
        taken, _state["answered"] = _state["answered"], False
    return bool(taken)


def say(line: str) -> None:
    """Print the interrupted command's one line on stderr (once per process, whoever says it first)."""
    with _lock:
        if _state["said"]:
            return
        _state["said"] = True
    with contextlib.suppress(Exception):
        sys.stderr.write(line + "\n")  # one write: a thread logging meanwhile cannot split the line
        sys.stderr.flush()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """A section that a Ctrl-C ends at once (see the module docstring): a model load, on any thread.

    In the main thread, SIGINT raises nothing inside it (Python code that C++ calls back must not see
    a ``KeyboardInterrupt``); the watcher ends the process instead."""
    if not _state["installed"]:
        yield
        return
    main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGINT, _defer) if main else None
    with _lock:
        _state["quiet"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["quiet"] -= 1
        if main:
            signal.signal(signal.SIGINT, before if before is not None else signal.default_int_handler)
            if _state["deferred"]:  # a Ctrl-C the watcher has not acted on yet: it is the caller's now
                _state["deferred"] = False
                raise KeyboardInterrupt


@contextlib.contextmanager
def while_importing() -> Iterator[None]:
    """The ``funnel`` command's own imports (before :func:`guard` can run): a Ctrl-C among them prints the
    line and exits :data:`EXIT_CODE` instead of Python's traceback; Python's handler is back afterwards.
    Nothing is written before the command runs, so nothing can be left half done. Main thread only, and
    only where SIGINT has Python's own handler (ignored stays ignored; a host program's handler stays)."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, lambda signum, frame: _end())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def finishing() -> None:
    """The command is done: from here on a Ctrl-C ends the process at once (nothing is left to clean up)."""
    if not _state["installed"] or threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _defer)
    with _lock:
        _state["quiet"] += 1


def _defer(signum: int, frame: object) -> None:
    """The main thread's SIGINT handler in a quiet section: raise nothing, the watcher acts."""
    _state["deferred"] = True


def _end() -> None:
    say(_state["line"])
    os._exit(EXIT_CODE)


def _watch(read_end: int) -> None:
    """Read the signal numbers Python's C handler writes; act on SIGINT as the module docstring says."""
    while True:
        try:
            data = os.read(read_end, 512)
        except InterruptedError:
            continue
        except OSError:
            return
        if not data:
            return
        if signal.SIGINT not in data:
            continue
        if _state["quiet"] > 0:
            _end()
        if _taken():
            continue
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if _state["quiet"] > 0 or _state["deferred"]:
                break
        _end()

"""A running ``funnel serve`` announces itself in its data directory, so the CLI can use it warm.

While it runs, a server of the embedded engine keeps ``<data dir>/servers/<pid>.json``:
``{"url", "pid", "api_key", "collections", "started"}`` (``api_key``: whether a key is needed, never
the key). The file is written atomically (a temporary file renamed into place) and removed at
shutdown. A reader (:func:`find_server`) ignores a file whose process is gone (a server killed
with ``kill -9``; the next server of that pid replaces it), and one one whose URL does not answer ``/healthz`` within
``timeout`` seconds or answers for other collections (a reused pid).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVERS_DIR = "servers"
HEALTH_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Announced:
    """A live ``funnel serve`` of this data directory, as it announced itself."""

    url: str
    pid: int
    api_key: bool
    collections: tuple[str, ...]
    path: Path

    def serves(self, name: str) -> bool:
        return name in self.collections


def announce_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir).expanduser() / SERVERS_DIR


def local_url(host: str, port: int) -> str:
    """The URL a process of this machine reaches a server listening on ``host``:``port`` at."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def announce(data_dir: str | os.PathLike[str], url: str, collections: list[str], api_key: bool) -> Path | None:
    """Write this process's announcement; ``None`` when the data directory cannot take it (the server
    still runs, only the CLI's warm path is off)."""
    folder = announce_dir(data_dir)
    path = folder / f"{os.getpid()}.json"
    record = {"url": url, "pid": os.getpid(), "api_key": api_key, "collections": collections,
              "started": round(time.time(), 3)}
    tmp = folder / f".{os.getpid()}.json.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)  # atomic: a reader sees no file or the whole file
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return None
    return path


def withdraw(path: Path | None) -> None:
    """Remove an announcement (at shutdown; twice is harmless)."""
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (of any user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return False
    return True


def _read(path: Path) -> Announced | None:
    try:
        raw: Any = json.loads(path.read_text())
        pid = raw["pid"]
        names = raw["collections"]
        if (not isinstance(raw["url"], str) or not isinstance(pid, int) or not isinstance(names, list)
                or not all(isinstance(n, str) for n in names)):
            return None
        return Announced(url=raw["url"], pid=pid, api_key=bool(raw.get("api_key")), collections=tuple(names),
                         path=path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _answers(server: Announced, name: str, timeout: float) -> bool:
    """Whether ``server.url`` answers ``/healthz`` in time, as a funnel server of collection ``name``."""
    import httpx

    try:
        body = httpx.get(f"{server.url}/healthz", timeout=timeout).json()
    except (httpx.HTTPError, ValueError):
        return False
    if not isinstance(body, dict):
        return False
    served = [c.get("name") for c in body.get("collections") or [] if isinstance(c, dict)]
    return name in served or body.get("collection") == name


def find_server(data_dir: str | os.PathLike[str], name: str, timeout: float = HEALTH_TIMEOUT_S) -> Announced | None:
    """The live server of ``data_dir`` that serves collection ``name``, or ``None``."""
    folder = announce_dir(data_dir)
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return None
    for path in paths:
        server = _read(path)
        if server is None:
            continue
        if not pid_alive(server.pid):  # left by a server that was killed (kill -9)
            continue
        if server.serves(name) and _answers(server, name, timeout):
            return server
    return None

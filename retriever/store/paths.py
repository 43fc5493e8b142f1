"""Where collections live, and which collection names are allowed."""

from __future__ import annotations

import os
import re
from pathlib import Path

from retriever.errors import BadInputError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# funnel bench's scratch collections (kept so a later run reuses the index): funnel collections hides them.
BENCH_PREFIX = "bench-"


def is_bench_collection(name: str) -> bool:
    """Whether ``name`` is one of funnel bench's scratch collections."""
    return name.startswith(BENCH_PREFIX)


def default_data_dir() -> Path:
    """``$FUNNEL_HOME``, else ``$XDG_DATA_HOME/funnel``, else ``~/.local/share/funnel``."""
    if home := os.environ.get("FUNNEL_HOME"):
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser() / "funnel"


def validate_collection_name(name: str) -> str:
    """Return ``name`` if it is a safe collection name, else raise :class:`BadInputError`.

    Names are 1-64 characters of letters, digits, ``_``, ``-`` and ``.``, start with a letter or
    digit and never contain ``..``, so a name can never point outside the data directory.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise BadInputError(
            f"invalid collection name {name!r}: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit, without '/' or '..'"
        )
    return name

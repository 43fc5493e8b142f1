"""``python -m cli`` / ``python cli.py`` from a checkout: the ``funnel`` command of :mod:`retriever.cli`.

The command itself lives in the package (``retriever/cli/``: the root group, one module per
command group); this file only keeps the checkout's entry point and ``from cli import main``.
"""

from __future__ import annotations

import sys

from retriever.cli import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

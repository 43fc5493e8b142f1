"""The ``funnel`` command: the root group in :mod:`retriever.cli.app`, one module per command (group),
the shared options in :mod:`retriever.cli.options`, terminal output in :mod:`retriever.cli.display`.

Run it as ``funnel`` (installed), ``python -m retriever.cli``, or ``python -m cli`` from a checkout.
"""

from retriever import interrupts

with interrupts.while_importing():  # a Ctrl-C while the command's modules load: one line, exit 130
    from retriever.cli.app import main

__all__ = ["main"]

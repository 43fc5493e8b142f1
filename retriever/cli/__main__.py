"""``python -m retriever.cli``: the ``funnel`` command."""

import sys

from retriever.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``python -m promptsearch.cli``: the ``promptsearch`` command."""

from __future__ import annotations

import sys

from promptsearch.cli._main import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

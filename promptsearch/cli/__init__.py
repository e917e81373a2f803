"""The ``promptsearch`` command line: one module per subcommand.

- ``_main.py``: :func:`main` (parse, run the subcommand's ``args.handler``, SIGTERM
  taken as Ctrl-C, every failure ended in one line with exit status 2) and
  :func:`build_parser`;
- ``_logging.py``: the one standard-error handler on the ``promptsearch`` logger
  while ``main`` runs (``--verbose`` adds debug messages);
- ``_arguments.py``: the options several subcommands share (``--storage``,
  ``--task``, ``--model``, ``--batch-size``, ``--calibrate``, ``--verbose``);
- ``values.py``: the types and checks of values, before anything heavy loads;
- ``_tables.py``: the leaderboard table and its held-out columns;
- ``_storages.py``: the databases the commands open, closed when ``main`` ends;
- the subcommands, each with ``add_parser(commands)`` (its options, and its handler
  as ``set_defaults(handler=...)``): ``run.py``, ``evaluate.py``,
  ``leaderboard.py``, ``show.py``, ``export.py``, ``report.py``, ``final.py``,
  ``worker.py``, ``serve.py``, ``studies.py``, ``tasks.py``, ``searchers.py``,
  ``db.py``.

Building the parser imports nothing heavy: the handlers import torch,
transformers, the storage and the search only when they run.
"""

from __future__ import annotations

from promptsearch.cli._main import build_parser, main

__all__ = ["build_parser", "main"]

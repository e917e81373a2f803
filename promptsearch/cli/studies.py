"""``promptsearch studies``: the studies in a database, one line each."""

from __future__ import annotations

import argparse

from promptsearch.cli._arguments import Commands, add_storage
from promptsearch.cli._storages import open_cli_storage
from promptsearch.validation import printable

__all__ = ["add_parser", "cmd_studies"]


def add_parser(commands: Commands) -> None:
    """Add the ``studies`` command to the CLI's subcommands."""
    studies = commands.add_parser("studies", help="list the studies in a database")
    add_storage(studies)
    studies.set_defaults(handler=cmd_studies)


def cmd_studies(args: argparse.Namespace) -> int:
    storage = open_cli_storage(args.storage)
    summaries = storage.list_studies()
    if not summaries:
        print("(no studies)")
    for s in summaries:
        best = "-" if s.best_dev_score is None else f"{s.best_dev_score:.3f}"
        print(
            f"{printable(s.name):<40} {s.status:<9} trials {s.n_trials:>4}  best {best:>6}  "
            f"task {printable(s.task_name)}  model {printable(s.model_name)}"
        )
    return 0

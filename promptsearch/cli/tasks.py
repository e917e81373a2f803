"""``promptsearch tasks``: the built-in tasks, and whether their data is found."""

from __future__ import annotations

import argparse

from promptsearch.cli._arguments import Commands

__all__ = ["add_parser", "cmd_tasks"]


def add_parser(commands: Commands) -> None:
    """Add the ``tasks`` command to the CLI's subcommands."""
    tasks = commands.add_parser("tasks", help="list the built-in tasks")
    tasks.add_argument("--data-dir", default=None)
    tasks.set_defaults(handler=cmd_tasks)


def cmd_tasks(args: argparse.Namespace) -> int:
    from promptsearch.tasks import list_tasks

    for info in list_tasks(args.data_dir):
        mark = "" if info.available else "  (data not found)"
        print(f"{info.name:<34} {info.description}{mark}")
    return 0

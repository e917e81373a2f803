"""``promptsearch searchers``: the registered searchers and their parameters."""

from __future__ import annotations

import argparse

from promptsearch.cli._arguments import Commands

__all__ = ["add_parser", "cmd_searchers"]


def add_parser(commands: Commands) -> None:
    """Add the ``searchers`` command to the CLI's subcommands."""
    searchers = commands.add_parser("searchers", help="list the registered searchers")
    searchers.set_defaults(handler=cmd_searchers)


def cmd_searchers(args: argparse.Namespace) -> int:
    from promptsearch.searchers import describe_searchers

    for info in describe_searchers():
        if info.error:
            print(f"{info.name:<14} unusable ({info.package}): {info.error}")
            continue
        kinds = "/".join(info.task_kinds)
        print(f"{info.name:<14} {info.summary}  tasks: {kinds}  params: {', '.join(info.params)}")
    return 0

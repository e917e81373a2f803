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
    from promptsearch.searchers import available_searchers, get_searcher_class

    for name in available_searchers():
        cls = get_searcher_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:<14} {doc}  params: {', '.join(cls.param_names())}")
    return 0

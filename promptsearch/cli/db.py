"""``promptsearch db upgrade``: migrate a database to this version's schema."""

from __future__ import annotations

import argparse

from promptsearch.cli._arguments import Commands, add_storage

__all__ = ["add_parser", "cmd_db"]


def add_parser(commands: Commands) -> None:
    """Add the ``db`` command to the CLI's subcommands."""
    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_commands.add_parser(
        "upgrade", help="migrate the database to this version's schema"
    )
    add_storage(upgrade)
    upgrade.set_defaults(handler=cmd_db)


def cmd_db(args: argparse.Namespace) -> int:
    from promptsearch.storage import upgrade

    revision = upgrade(args.storage)
    print(f"database is at schema revision {revision}")
    return 0

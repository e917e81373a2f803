"""``promptsearch db``: database maintenance.

* ``upgrade``: migrate a database to this version's schema.
* ``mirror-optuna``: copy a study's finished trials into an Optuna study after the
  fact (those it lacks), as ``run --optuna-storage`` does while it searches.
"""

from __future__ import annotations

import argparse

from promptsearch.cli._arguments import Commands, add_storage
from promptsearch.cli._optuna import add_optuna_storage

__all__ = ["add_parser", "cmd_db", "cmd_mirror_optuna"]


def add_parser(commands: Commands) -> None:
    """Add the ``db`` command to the CLI's subcommands."""
    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_commands.add_parser(
        "upgrade", help="migrate the database to this version's schema"
    )
    add_storage(upgrade)
    upgrade.set_defaults(handler=cmd_db)
    mirror = db_commands.add_parser(
        "mirror-optuna",
        help="copy a study's finished trials into an Optuna study (those it lacks)",
        description="Copy the finished trials of a stored study into an Optuna study, for "
        "optuna-dashboard and Optuna's plots: the trials the Optuna study already holds "
        "are skipped, so it can be run again. Run it while no worker is working on the "
        "study. Intermediate values: a pruned trial's partial score only (a run with "
        "--optuna-storage writes every rung).",
    )
    mirror.add_argument("--study", required=True, help="name of the stored study")
    add_optuna_storage(
        mirror,
        required=True,
        help="the Optuna storage: an Optuna RDB URL (sqlite:///optuna.db, "
        "postgresql://user@host/db) or journal:PATH; another database than --storage",
    )
    add_storage(mirror)
    mirror.set_defaults(handler=cmd_mirror_optuna)


def cmd_db(args: argparse.Namespace) -> int:
    from promptsearch.storage import upgrade

    revision = upgrade(args.storage)
    print(f"database is at schema revision {revision}")
    return 0


def cmd_mirror_optuna(args: argparse.Namespace) -> int:
    from promptsearch.errors import StorageError
    from promptsearch.storage import open_storage
    from promptsearch.study.optuna_mirror import StudyMirror, check_optuna_storage

    with open_storage(args.storage) as storage:
        record = storage.get_study(args.study)
        if record is None:
            raise StorageError(
                f"no study named {args.study!r} in {storage.url}; `promptsearch studies` "
                "lists the stored ones"
            )
        url = check_optuna_storage(args.optuna_storage, storage.url)
        mirror = StudyMirror(url, record.name, record.task_name, args.optuna_study)
        mirror.open()
        written = mirror.catch_up(storage, strict=True)
        total = len(storage.trials(record.name, states=["complete", "pruned", "failed"]))
    where = mirror.record()
    print(
        f"copied {written} of the {total} finished trials of study {record.name!r} to "
        f"Optuna study {where['study']!r} in {where['storage']} ({total - written} were there)"
    )
    return 0

"""``--optuna-storage`` (and ``--optuna-study``), shared by ``run``, ``worker`` and
``db mirror-optuna``: copy every trial into an Optuna study (docs/optuna.md)."""

from __future__ import annotations

import argparse

__all__ = ["OPTUNA_STORAGE_HELP", "add_optuna_storage"]

OPTUNA_STORAGE_HELP = (
    "copy every trial of every searcher into an Optuna study in this storage, for "
    "optuna-dashboard and Optuna's plots: an Optuna RDB URL (sqlite:///optuna.db, "
    "postgresql://user@host/db) or journal:PATH (an Optuna journal file); another "
    "database than --storage"
)


def add_optuna_storage(
    parser: argparse.ArgumentParser, *, study: bool = True, required: bool = False, help: str = ""
) -> None:
    parser.add_argument(
        "--optuna-storage",
        metavar="URL",
        default=None,
        required=required,
        help=help or OPTUNA_STORAGE_HELP,
    )
    if study:
        parser.add_argument(
            "--optuna-study",
            metavar="NAME",
            default=None,
            help="name of the Optuna study (default: the promptsearch study's name)",
        )

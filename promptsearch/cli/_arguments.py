"""Arguments several subcommands share: ``--storage``, ``--task`` (with ``--data-dir``
and ``--task-seed``), ``--model`` (with ``--device``, ``--dtype`` and
``--batch-size``), ``--calibrate`` and ``--verbose``."""

from __future__ import annotations

import argparse
import os
from typing import TypeAlias

from promptsearch.cli.values import batch_size, task_seed_list

__all__ = [
    "STORAGE_HELP",
    "Commands",
    "add_batch_size",
    "add_calibrate",
    "add_model",
    "add_storage",
    "add_task",
    "add_verbose",
]

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``add_subparsers`` hands back: each subcommand's ``add_parser(commands)`` adds to it."""

STORAGE_HELP = (
    "database URL or SQLite file (default: $PROMPTSEARCH_STORAGE, else promptsearch.db "
    "in the current folder); PostgreSQL as postgresql://user:pass@host/db"
)


def add_storage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage", default=os.environ.get("PROMPTSEARCH_STORAGE"), help=STORAGE_HELP
    )


def add_task(parser: argparse.ArgumentParser, *, several_seeds: bool = False) -> None:
    parser.add_argument(
        "--task", required=True, help="built-in task name (see 'promptsearch tasks')"
    )
    parser.add_argument(
        "--data-dir", default=None, help="folder of the data sets (default: $PROMPTSEARCH_DATA)"
    )
    parser.add_argument(
        "--task-seed",
        type=task_seed_list if several_seeds else int,
        default=[13] if several_seeds else 13,
        help="which k-shot split / sampling seed of the task (default 13)"
        + (
            "; a comma list (13,42,100) runs one study per seed, named <study>-seed<N>"
            if several_seeds
            else ""
        ),
    )


def add_batch_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size",
        type=batch_size,
        default=16,
        metavar="N|auto",
        help="examples per forward batch (default 16); auto: start large and halve after "
        "running out of memory",
    )


def add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="hub id or local path (default: the embedded SmolLM2-135M-Instruct)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: automatic)")
    parser.add_argument(
        "--dtype", default=None, help="float32, bfloat16, float16 (default: automatic)"
    )
    add_batch_size(parser)


def add_calibrate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="contextual calibration of classification scores (Zhao et al. 2021): divide out "
        "the label probabilities the prompt gives content-free inputs",
    )


def add_verbose(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``-v``/``--verbose``: debug messages too.  On the top-level parser (*top*) it
    defaults to off; on a subcommand it sets the value only when given, so
    ``promptsearch -v run`` and ``promptsearch run -v`` mean the same."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show debug messages too",
    )

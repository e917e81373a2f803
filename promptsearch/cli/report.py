"""``promptsearch report``: a self-contained HTML page of a study (see
:mod:`promptsearch.report`, which loads only when the command runs)."""

from __future__ import annotations

import argparse
import sys

from promptsearch.cli._arguments import Commands, add_storage
from promptsearch.errors import ConfigError

__all__ = ["add_parser", "cmd_report"]


def add_parser(commands: Commands) -> None:
    """Add the ``report`` command to the CLI's subcommands."""
    report = commands.add_parser(
        "report", help="write a self-contained HTML report of a study (charts and leaderboard)"
    )
    report.add_argument("--study", required=True, help="name of the study to report on")
    report.add_argument(
        "--output", default=None, help="HTML file to write (default: <study>.html here)"
    )
    report.add_argument(
        "--data-dir",
        default=None,
        help="folder of the data sets, to load the task's gold labels for the confusion "
        "matrix (default: $PROMPTSEARCH_DATA)",
    )
    report.add_argument(
        "--task-seed",
        type=int,
        default=None,
        help="the --task-seed the study ran with, if not one of 13, 21, 42, 87, 100",
    )
    report.add_argument("--top", type=int, default=20, help="leaderboard rows (default 20)")
    add_storage(report)
    report.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from promptsearch.report.page import write_report

    if args.top < 1:
        raise ConfigError(f"--top must be at least 1; got {args.top}")
    path = write_report(
        args.storage,
        args.study,
        args.output,
        top=args.top,
        data_dir=args.data_dir,
        task_seed=args.task_seed,
    )
    print(f"wrote {path}", file=sys.stderr)
    return 0

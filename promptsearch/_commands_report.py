"""Handler of ``promptsearch report`` (see :mod:`promptsearch.cli` and :mod:`promptsearch.report`).

Kept out of :mod:`promptsearch._commands` so that the report's modules load only when
the command runs.
"""

from __future__ import annotations

import argparse
import sys

from promptsearch.errors import ConfigError

__all__ = ["add_report_parser", "cmd_report"]


def add_report_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``report`` command to the CLI's subcommands (the caller adds --storage)."""
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
    return report


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

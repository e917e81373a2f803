"""``promptsearch leaderboard``: the top prompts of a study, as a table, JSON or CSV,
with the test scores ``final`` stored."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from promptsearch.cli._arguments import Commands, add_storage
from promptsearch.cli._storages import open_cli_storage
from promptsearch.cli._tables import held_back, held_out_columns, print_table, row_dict
from promptsearch.cli.values import check_at_least_one

__all__ = ["add_parser", "cmd_leaderboard"]


def add_parser(commands: Commands) -> None:
    """Add the ``leaderboard`` command to the CLI's subcommands."""
    board = commands.add_parser("leaderboard", help="top prompts of a study")
    board.add_argument("--study", required=True)
    board.add_argument("--top", type=int, default=10)
    board.add_argument("--searcher", default=None, help="only prompts from this searcher")
    board.add_argument("--format", choices=["table", "json", "csv"], default="table")
    add_storage(board)
    board.set_defaults(handler=cmd_leaderboard)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    check_at_least_one(args.top, "--top")
    storage = open_cli_storage(args.storage)
    rows = storage.leaderboard(
        args.study, top=args.top, searcher=args.searcher, include_pruned=True
    )
    tests = {r.content_hash: r for r in storage.held_out_results(args.study)}
    study = storage.get_study(args.study)
    held = held_back(None if study is None else study.selection)

    def columns(key: str) -> dict[str, Any]:
        score, picked = held.get(key, (None, False))
        return {"held_back_score": score, "picked": picked} | held_out_columns(key, tests)

    if args.format == "json":  # with the structured prompt; CSV has its one-line text
        dicts = [row_dict(r) | {"prompt": r.body} | columns(r.content_hash) for r in rows]
        print(json.dumps(dicts, indent=2, default=str))
    elif args.format == "csv":
        dicts = [row_dict(r) | columns(r.content_hash) for r in rows]
        writer = csv.DictWriter(sys.stdout, fieldnames=list(dicts[0]) if dicts else ["rank"])
        writer.writeheader()
        writer.writerows(dicts)
    else:
        print_table(rows, tests=tests, held=held)
    return 0

"""``promptsearch export``: the best prompt of a study (its pick, or a rank) as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from promptsearch.cli._arguments import Commands, add_storage
from promptsearch.cli._storages import open_cli_storage
from promptsearch.errors import ConfigError, StorageError

__all__ = ["add_parser", "cmd_export"]


def add_parser(commands: Commands) -> None:
    """Add the ``export`` command to the CLI's subcommands."""
    export = commands.add_parser("export", help="the best prompt of a study as JSON")
    export.add_argument("--study", required=True)
    export.add_argument(
        "--rank",
        type=int,
        default=None,
        help="which leaderboard rank to export (default: the study's pick, confirmed on "
        "held-back dev examples, or rank 1 when the study made none)",
    )
    export.add_argument("--output", default=None, help="file to write (default: standard output)")
    export.add_argument(
        "--force", action="store_true", help="overwrite the --output file if it exists"
    )
    add_storage(export)
    export.set_defaults(handler=cmd_export)


def _picked_document(storage: Any, study: Any) -> dict[str, Any]:
    from promptsearch.study.results import StudyResult

    best = StudyResult(study.name, storage).best
    if best is None:
        raise StorageError(f"study {study.name!r} has nothing to export yet")
    return {
        "prompt": best.prompt.to_dict(),
        "content_hash": best.content_hash,
        "dev_score": best.score,
        "confirm_score": best.confirm_score,
        "replaced_seed": best.replaced_seed,
        "n_examples": best.n_examples,
        "searcher": best.searcher,
    }


def cmd_export(args: argparse.Namespace) -> int:
    if args.rank is not None and (isinstance(args.rank, bool) or args.rank < 1):
        raise ConfigError(f"--rank must be a whole number ≥ 1; got {args.rank}")
    if args.output:
        from promptsearch._output import check_output_path

        check_output_path(args.output, force=args.force)  # before any database work
    storage = open_cli_storage(args.storage)
    storage.leaderboard(args.study, top=1)  # a missing study: the one-line error with names
    study = storage.get_study(args.study)
    if args.rank is None and study.selection:
        document = _picked_document(storage, study)
    else:
        rank = args.rank or 1
        rows = storage.leaderboard(args.study, top=rank)
        if len(rows) < rank:
            raise StorageError(
                f"study {args.study!r} has {len(rows)} complete trial(s); no rank {rank} to export"
            )
        row = rows[rank - 1]
        document = {
            "prompt": row.body,
            "content_hash": row.content_hash,
            "dev_score": row.dev_score,
            "n_examples": row.n_examples,
            "searcher": row.searcher,
        }
    document.update(
        {
            "task": study.task_name,
            "metric": study.task_spec.get("metric"),
            "model": study.model_name,
            "study": study.name,
        }
    )
    text = json.dumps(document, indent=2, ensure_ascii=False)
    if args.output:
        from promptsearch._output import write_output

        write_output(args.output, text + "\n", force=args.force)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0

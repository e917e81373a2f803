"""``promptsearch worker``: join a stored study as one of many workers.

The parser is built at every start, so this module imports nothing heavy; the
worker itself (:mod:`promptsearch.study.worker`) loads only in :func:`cmd_worker`.
"""

from __future__ import annotations

import argparse
import json

from promptsearch.cli._arguments import Commands, add_batch_size, add_storage
from promptsearch.cli._optuna import add_optuna_storage
from promptsearch.cli.values import check_batch_size

__all__ = ["add_parser", "cmd_worker"]


def add_parser(commands: Commands) -> None:
    """Add the ``worker`` command to the CLI's subcommands."""
    worker = commands.add_parser(
        "worker",
        help="work on a stored study beside other workers (processes or machines) that "
        "share its database",
        description="Join a study made by `promptsearch run ... --create-only` (or any "
        "earlier run) and claim, score and store its candidates beside other workers. "
        "Task, model and searchers are rebuilt from the study; the study's budget holds "
        "for all workers together.",
    )
    worker.add_argument("--study", required=True, help="name of the stored study to join")
    worker.add_argument(
        "--worker-id",
        default=None,
        help="this worker's name, unique among the workers (default: <host>-<pid>)",
    )
    worker.add_argument(
        "--data-dir", default=None, help="folder of the data sets (default: $PROMPTSEARCH_DATA)"
    )
    worker.add_argument(
        "--task-seed",
        type=int,
        default=None,
        help="k-shot seed of the study's task (default: the one whose data matches the study)",
    )
    worker.add_argument(
        "--model",
        default=None,
        help="hub id or local path of the model (default: the model the study recorded)",
    )
    worker.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: automatic)")
    worker.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (as the study)")
    add_batch_size(worker)
    worker.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds without a heartbeat after which another worker takes a trial over "
        "(default 60; use the same value for all workers)",
    )
    worker.add_argument("--json", action="store_true", help="print the final counts as JSON")
    worker.add_argument("--quiet", action="store_true", help="no line per scored trial")
    add_storage(worker)
    add_optuna_storage(
        worker,
        study=False,
        help="copy the trials this worker finishes into the study's Optuna study in this "
        "storage (default: the one `run --optuna-storage` recorded, without its password); "
        "an Optuna RDB URL or journal:PATH",
    )
    worker.set_defaults(handler=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from promptsearch.cli._storages import open_cli_storage
    from promptsearch.study.worker import run_worker

    check_batch_size(args.batch_size)
    report = run_worker(
        args.study,
        storage=open_cli_storage(args.storage),  # closed when the command ends
        worker=args.worker_id,
        data_dir=args.data_dir,
        task_seed=args.task_seed,
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        heartbeat_timeout=args.heartbeat_timeout,
        progress=not args.quiet,
        optuna_storage=args.optuna_storage,
    )
    print(json.dumps(report.to_dict()) if args.json else report.summary())
    return 130 if report.stopped_by == "interrupted" else 0

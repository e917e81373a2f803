"""``promptsearch evaluate``: score one prompt on a task split (the model loads only
in :func:`cmd_evaluate`)."""

from __future__ import annotations

import argparse
import json

from promptsearch.cli._arguments import (
    Commands,
    add_calibrate,
    add_chat_template,
    add_model,
    add_task,
)
from promptsearch.cli._task import check_task_fields, cli_task
from promptsearch.cli.values import (
    check_at_least_one,
    check_batch_size,
    check_verbalizer_labels,
    parse_verbalizer,
    unescape,
)

__all__ = ["add_parser", "cmd_evaluate"]


def add_parser(commands: Commands) -> None:
    """Add the ``evaluate`` command to the CLI's subcommands."""
    evaluate = commands.add_parser("evaluate", help="score one prompt on a task split")
    add_task(evaluate)
    add_model(evaluate)
    add_calibrate(evaluate)
    add_chat_template(evaluate)
    evaluate.add_argument(
        "--prompt",
        required=True,
        help=r"template with {field} slots and one {answer}; \n means newline",
    )
    evaluate.add_argument("--instruction", default="", help="optional instruction before it")
    evaluate.add_argument("--split", default="dev", choices=["train", "dev", "test"])
    evaluate.add_argument("--limit", type=int, default=None, help="score only the first N examples")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from promptsearch.api import evaluate
    from promptsearch.prompt import Prompt
    from promptsearch.tasks import is_builtin_source, load_task

    check_task_fields(args, prompt_verbalizer=True)
    check_at_least_one(args.limit, "--limit")
    check_batch_size(args.batch_size)
    chosen = cli_task(args, args.task_seed)
    task = (
        load_task(chosen, data_dir=args.data_dir, seed=args.task_seed)
        if isinstance(chosen, str)
        else chosen
    )
    verbalizer = None  # a file task's --verbalizer is the task's, so the prompt's too
    if isinstance(chosen, str) or is_builtin_source(task.source):
        # built in: --verbalizer is the prompt's label words
        verbalizer = parse_verbalizer(args.verbalizer) if args.verbalizer is not None else None
        if verbalizer is not None and task.kind != "generation":
            check_verbalizer_labels(verbalizer, task.name, task.labels)
    prompt = Prompt(
        template=unescape(args.prompt),
        instruction=unescape(args.instruction),
        verbalizer=verbalizer,
    )
    report = evaluate(
        task,
        prompt,
        model=args.model,
        split=args.split,
        limit=args.limit,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        task_seed=args.task_seed,
        device=args.device,
        dtype=args.dtype,
        calibrate=args.calibrate,
        chat_template=args.chat_template,
    )
    summary = {
        "task": task.name,
        "split": args.split,
        "metric": report.metric,
        "value": report.value,
        "n_examples": len(report.results),
        "n_truncated": report.n_truncated,
        "forward_passes": report.forward_passes,
        "seconds": round(report.seconds, 3),
        "calibrated": args.calibrate,
        "chat_template": "on" if report.chat else "off",
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        calibrated = ", calibrated" if args.calibrate else ""
        calibrated += ", as chat turns" if report.chat else ""
        print(
            f"{task.name} {args.split}: {report.metric} = {report.value:.4f} "
            f"on {len(report.results)} examples{calibrated} ({report.n_truncated} truncated, "
            f"{report.forward_passes} forward passes, {report.seconds:.1f} s)"
        )
    return 0

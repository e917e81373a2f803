"""The task of ``--task`` and its field options, shared by ``run`` and ``evaluate``: a
built-in task name as is, a data file, folder or data set loaded as a Task
(:mod:`promptsearch.tasks.sources`)."""

from __future__ import annotations

import argparse
from typing import Any

from promptsearch.cli.values import (
    check_at_least_one,
    parse_split_map,
    parse_verbalizer,
    unescape,
)
from promptsearch.errors import ConfigError

__all__ = ["FIELD_OPTIONS", "check_task_fields", "cli_task", "task_name"]

FIELD_OPTIONS = {
    "input_fields": "--input-field",
    "label_field": "--label-field",
    "output_field": "--output-field",
    "verbalizer": "--verbalizer",
    "split_map": "--split-map",
    "metric": "--metric",
    "seed_prompts": "--seed-prompt",
}
"""The options of a task from a file or data set, by destination."""


def _is_source(args: argparse.Namespace) -> bool:
    from promptsearch.tasks.sources import is_source

    return is_source(args.task)


def check_task_fields(args: argparse.Namespace, *, prompt_verbalizer: bool = False) -> None:
    """Before anything loads: --task is there, the field options parse, and a built-in
    task gets none of them (*prompt_verbalizer*: ``evaluate``'s --verbalizer is the
    prompt's label words for a built-in task)."""
    if not isinstance(args.task, str) or not args.task.strip():
        raise ConfigError(
            "--task is required: a built-in task name (see 'promptsearch tasks'), a data file, "
            "a folder, hf:NAME or hf-disk:PATH; or --config FILE naming one"
        )
    check_at_least_one(getattr(args, "dev_size", None), "--dev-size")
    if args.verbalizer is not None:
        parse_verbalizer(args.verbalizer)
    if args.split_map is not None:
        parse_split_map(args.split_map)
    if _is_source(args):
        return
    given = [
        option
        for dest, option in FIELD_OPTIONS.items()
        if getattr(args, dest, None) is not None
        and not (prompt_verbalizer and dest == "verbalizer")
    ]
    if given:
        raise ConfigError(
            f"{', '.join(given)}: for a task from a data file or data set; task {args.task!r} "
            "is built in and brings its own fields, labels and metric; drop "
            + ("them" if len(given) > 1 else "it")
        )


def task_name(args: argparse.Namespace) -> str:
    """The name of the task of ``--task``, without loading it."""
    from promptsearch.tasks.sources import source_name

    return source_name(args.task) if _is_source(args) else str(args.task)


def cli_task(args: argparse.Namespace, seed: int) -> Any:
    """``--task`` as search() takes it: a built-in name as is (loaded, when
    ``--dev-size`` is given), else the loaded Task."""
    dev_size = getattr(args, "dev_size", None)
    if not _is_source(args):
        if dev_size is None:
            return args.task
        from promptsearch.tasks import load_task

        return load_task(args.task, data_dir=args.data_dir, seed=seed, dev_size=dev_size)
    from promptsearch.tasks.sources import load_source

    fields = [f.strip() for item in args.input_fields or () for f in item.split(",")]
    return load_source(
        args.task,
        input_fields=[f for f in fields if f],
        label_field=args.label_field,
        output_field=args.output_field,
        verbalizer=None if args.verbalizer is None else parse_verbalizer(args.verbalizer),
        split_map=None if args.split_map is None else parse_split_map(args.split_map),
        metric=args.metric,
        seed_prompts=[unescape(p) for p in args.seed_prompts or ()],
        seed=seed,
        dev_size=dev_size,
    )

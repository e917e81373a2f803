"""``promptsearch show``: a study, or one prompt in full with its lineage."""

from __future__ import annotations

import argparse
import json
from typing import Any

from promptsearch.cli._arguments import Commands, add_storage
from promptsearch.cli._storages import open_cli_storage
from promptsearch.cli._tables import clip, print_table

__all__ = ["add_parser", "cmd_show"]


def add_parser(commands: Commands) -> None:
    """Add the ``show`` command to the CLI's subcommands."""
    show = commands.add_parser("show", help="a study, or one prompt in full with its lineage")
    show.add_argument("what", help="study name, or prompt hash (a unique prefix of 6+ characters)")
    show.add_argument("--study", default=None, help="for a prompt: show its trial in this study")
    add_storage(show)
    show.set_defaults(handler=cmd_show)


def _show_study(storage: Any, name: str) -> None:
    study = storage.get_study(name)
    totals = storage.totals(name)
    print(f"study      {study.name}  ({study.status})")
    print(f"task       {study.task_name}  [{study.task_hash[:12]}]")
    source = (study.task_spec or {}).get("source")
    if source is not None:
        print(f"source     {_describe_source(source)}")
    print(f"model      {study.model_name}  [{study.model_fingerprint[:12]}]")
    print(f"seed       {study.seed}")
    print(f"config     {json.dumps(study.config)}")
    print(
        f"trials     {totals.n_trials} ({totals.n_complete} complete), "
        f"{totals.forward_passes} forward passes, {totals.seconds:.1f} s"
    )
    print(f"created    {study.created_at}   updated {study.updated_at}")
    print()
    print_table(storage.leaderboard(name, top=10, include_pruned=True))


def _describe_source(source: Any) -> str:
    """Where the study's task was read from (``--task FILE``/``hf:...``, or a built-in
    task with other split sizes), in words."""
    from promptsearch.errors import ConfigError
    from promptsearch.tasks import is_builtin_source
    from promptsearch.tasks.sources import TaskSource

    if is_builtin_source(source):
        sizes = ", ".join(f"{k} {v}" for k, v in source.items() if k not in ("kind", "task"))
        return f"built-in task {source.get('task')} ({sizes})"
    try:
        described = TaskSource.from_dict(source)
    except ConfigError as error:
        return f"unreadable ({error})"
    fields = ", ".join(described.input_fields)
    target = described.label_field or described.output_field
    return f"{described.describe()} (input {fields}; target {target}; seed {described.seed})"


def _show_prompt(storage: Any, key: str, study: str | None) -> None:
    record = storage.get_prompt(key)
    print(f"prompt {record.content_hash}")
    print(json.dumps(record.body, indent=2, ensure_ascii=False))
    if study is not None:
        trial = storage.get_trial(study, record.content_hash)
        if trial is None:
            print(f"\nno trial of this prompt in study {study!r}")
        else:
            print(
                f"\nin study {study!r}: trial #{trial.number}, {trial.state}, dev "
                f"{trial.dev_score}, on {trial.n_examples} examples, by {trial.searcher} "
                f"({trial.operation})" + (f", error: {trial.error}" if trial.error else "")
            )
    chain = storage.lineage(record.content_hash, study)
    if chain:
        print("\nlineage (nearest parent first):")
        for step in chain:
            print(f"  {clip(str(step), 140)}")


def cmd_show(args: argparse.Namespace) -> int:
    storage = open_cli_storage(args.storage)
    if storage.get_study(args.what) is not None:
        _show_study(storage, args.what)
    else:
        _show_prompt(storage, args.what, args.study)
    return 0

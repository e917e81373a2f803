"""Arguments several subcommands share: ``--storage``, ``--task`` (with ``--data-dir``,
``--task-seed``, ``--dev-size`` and the field options of a task from a file or data
set), ``--model`` (with ``--device``, ``--dtype`` and ``--batch-size``),
``--calibrate``, ``--chat-template`` and ``--verbose``."""

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
    "add_chat_template",
    "add_model",
    "add_storage",
    "add_task",
    "add_task_fields",
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


TASK_HELP = (
    "built-in task name (see 'promptsearch tasks'), a data file (.csv .tsv .jsonl .json; "
    "a 'split' column, else train with dev and test drawn), a folder of train/dev/test "
    "files, a comma list of them, hf:NAME[:CONFIG][@REVISION] or hf-disk:PATH (see docs/tasks.md)"
)


def add_task(
    parser: argparse.ArgumentParser, *, several_seeds: bool = False, required: bool = True
) -> None:
    parser.add_argument("--task", required=required, default=None, help=TASK_HELP)
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
        )
        + "; for a task from a file or data set, the seed of the splits it draws",
    )
    parser.add_argument(
        "--dev-size",
        type=int,
        default=None,
        metavar="N",
        help="dev examples: more than a built-in task's default where it has the data "
        "(rotten-tomatoes: 200; the 16-shot tasks have 32 and take at most that), or the "
        "records of a dev split drawn from a data file (default: a fifth of train); a larger "
        "dev split confirms smaller gains (docs/selection.md)",
    )
    add_task_fields(parser)


def add_task_fields(parser: argparse.ArgumentParser) -> None:
    """The options of a task from a data file or data set (see docs/tasks.md)."""
    group = parser.add_argument_group("a task from a data file or data set")
    group.add_argument(
        "--input-field",
        action="append",
        dest="input_fields",
        default=None,
        metavar="FIELD",
        help="field the prompt shows as {FIELD}; repeat or comma-separate for several "
        "(default: the one field besides the target)",
    )
    group.add_argument(
        "--label-field",
        default=None,
        help="field holding the label: a classification task (default: 'label' if present)",
    )
    group.add_argument(
        "--output-field",
        default=None,
        help="field holding the answer text: a generation task (default: 'output', 'answer' "
        "or 'target' if present)",
    )
    group.add_argument(
        "--verbalizer",
        default=None,
        help="label words, e.g. '0=negative,1=positive' or '0=bad|awful,1=good' (default: "
        "the labels themselves when they are words, or a ClassLabel's names); with a "
        "built-in task, evaluate takes them as the prompt's label words",
    )
    group.add_argument(
        "--split-map",
        default=None,
        metavar="NAME=SPLIT,...",
        help="which split each file name, 'split' value or data set split is, e.g. "
        "'holdout=test,validation_matched=dev' (added to train, dev, validation, test)",
    )
    group.add_argument(
        "--metric",
        default=None,
        help="accuracy or macro_f1 (classification), exact_match, token_f1, contains, "
        "precision_at_1 (generation); default accuracy / exact_match",
    )
    group.add_argument(
        "--seed-prompt",
        action="append",
        dest="seed_prompts",
        default=None,
        metavar="TEMPLATE",
        help=r"a seed prompt with {field} slots and one {answer}; \n means newline; repeat "
        "for several (default: one line per input field, then 'Answer: {answer}')",
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


def add_chat_template(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--chat-template",
        choices=["auto", "on", "off"],
        default="off",
        help="on: score each prompt as a user turn of the model's chat template, the answer "
        "opening the assistant's turn; auto: on where the model has a chat template; "
        "default off (plain text); see docs/scoring.md",
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

"""``promptsearch export``: the best prompt of a study (its pick, a rank, or one member
of a picked ensemble) as JSON, text, chat messages or a DSPy program's state."""

from __future__ import annotations

import argparse
import sys

from promptsearch.cli._arguments import Commands, add_storage
from promptsearch.cli._storages import open_cli_storage
from promptsearch.errors import ConfigError
from promptsearch.export.formats import FORMATS

__all__ = ["add_parser", "cmd_export"]


def add_parser(commands: Commands) -> None:
    """Add the ``export`` command to the CLI's subcommands."""
    export = commands.add_parser(
        "export", help="the best prompt of a study as JSON, text, chat messages or DSPy state"
    )
    export.add_argument("--study", required=True)
    export.add_argument(
        "--rank",
        type=int,
        default=None,
        help="which leaderboard rank to export (default: the study's pick, confirmed on "
        "held-back dev examples, or rank 1 when the study made none)",
    )
    export.add_argument(
        "--member",
        type=int,
        default=None,
        help="when the study picked an ensemble: export its member N (from 1) alone",
    )
    export.add_argument(
        "--format",
        choices=FORMATS,
        default="json",
        help="json: the structured prompt (default); text: one template with {field} and "
        "{answer} slots; messages: OpenAI-style chat messages; dspy: the JSON "
        "dspy.Predict(signature).load() reads (see docs/export.md)",
    )
    export.add_argument("--output", default=None, help="file to write (default: standard output)")
    export.add_argument(
        "--force", action="store_true", help="overwrite the --output file if it exists"
    )
    add_storage(export)
    export.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    for option, value in (("--rank", args.rank), ("--member", args.member)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} must be a whole number ≥ 1; got {value}")
    if args.output:
        from promptsearch._output import check_output_path

        check_output_path(args.output, force=args.force)  # before any database work
    from promptsearch.export.formats import label_words_line, with_label_words
    from promptsearch.export.study import choose_prompt, export_chosen
    from promptsearch.prompt import Prompt

    storage = open_cli_storage(args.storage)
    chosen = choose_prompt(storage, args.study, rank=args.rank, member=args.member)
    text = export_chosen(chosen, args.format)
    if args.output:
        from promptsearch._output import write_output

        write_output(args.output, text, force=args.force)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if args.format == "text" and isinstance(chosen.prompt, Prompt):
        words = label_words_line(with_label_words(chosen.prompt, chosen.verbalizer))
        if words:
            print(words, file=sys.stderr)
    return 0

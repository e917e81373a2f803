"""The ``promptsearch`` command line.

The parser and start-up import nothing heavy: torch and transformers load only
in the commands that run a model (``run``, ``evaluate``).
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from promptsearch._commands_final import add_final_parser, task_seed_list
from promptsearch._commands_report import add_report_parser
from promptsearch._commands_serve import add_serve_parser
from promptsearch._commands_worker import add_worker_parser
from promptsearch.errors import PromptSearchError

__all__ = ["build_parser", "main"]

STORAGE_HELP = (
    "database URL or SQLite file (default: $PROMPTSEARCH_STORAGE, else promptsearch.db "
    "in the current folder); PostgreSQL as postgresql://user:pass@host/db"
)


def _add_storage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage", default=os.environ.get("PROMPTSEARCH_STORAGE"), help=STORAGE_HELP
    )


def _add_task(parser: argparse.ArgumentParser, *, several_seeds: bool = False) -> None:
    parser.add_argument(
        "--task", required=True, help="built-in task name (see 'promptsearch tasks')"
    )
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
        ),
    )


def _add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="hub id or local path (default: the embedded SmolLM2-135M-Instruct)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: automatic)")
    parser.add_argument(
        "--dtype", default=None, help="float32, bfloat16, float16 (default: automatic)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="examples per forward batch")


def _add_calibrate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="contextual calibration of classification scores (Zhao et al. 2021): divide out "
        "the label probabilities the prompt gives content-free inputs",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptsearch",
        description="Automatic prompt search for language models.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run", help="run (or resume) a prompt search and print its leaderboard"
    )
    _add_task(run, several_seeds=True)
    _add_model(run)
    _add_calibrate(run)
    run.add_argument(
        "--searcher",
        action="append",
        dest="searchers",
        metavar="SPEC",
        help="searcher name, optionally with parameters: 'random-edit:top_k=2'; "
        "repeat for several (default: manual, label-words and optuna)",
    )
    run.add_argument(
        "--budget",
        type=int,
        default=None,
        help="number of prompt evaluations (default 48 unless another limit is given)",
    )
    run.add_argument("--forward-passes", type=int, default=None, help="limit on forward passes")
    run.add_argument("--seconds", type=float, default=None, help="limit on wall-clock seconds")
    run.add_argument(
        "--study",
        default=None,
        help="study name (default: <task>-<model>); an existing study is resumed",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of the searchers (default 0)")
    run.add_argument(
        "--candidates-per-round",
        type=int,
        default=4,
        help="candidates each searcher proposes per round (default 4)",
    )
    run.add_argument(
        "--racing",
        action="store_true",
        help="score candidates on growing subsets of dev and stop the weak ones early "
        "(asynchronous successive halving); the default study name ends in -racing",
    )
    run.add_argument(
        "--racing-min-examples",
        type=int,
        default=None,
        help="dev examples of the first racing rung (default 8); implies --racing",
    )
    run.add_argument(
        "--racing-eta",
        type=int,
        default=None,
        help="racing growth factor: each rung is ETA times the last and the top 1/ETA go "
        "on (default 3); implies --racing",
    )
    run.add_argument(
        "--no-selection",
        action="store_true",
        help="hand back the top of the leaderboard instead of a pick confirmed on held-back "
        "dev examples (see docs/selection.md)",
    )
    run.add_argument(
        "--confirm-fraction",
        type=float,
        default=None,
        help="share of dev held back to confirm the pick (default 0.5)",
    )
    run.add_argument(
        "--selection-alpha",
        type=float,
        default=None,
        help="level of the paired tests a challenger must pass to replace the best seed "
        "prompt (default 0.1, Holm-corrected)",
    )
    run.add_argument("--top", type=int, default=10, help="leaderboard rows to print at the end")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--create-only",
        action="store_true",
        help="create the study (task, model, searchers, budget) and exit without searching; "
        "then start `promptsearch worker --study NAME` processes on it",
    )
    _add_storage(run)

    evaluate = commands.add_parser("evaluate", help="score one prompt on a task split")
    _add_task(evaluate)
    _add_model(evaluate)
    _add_calibrate(evaluate)
    evaluate.add_argument(
        "--prompt",
        required=True,
        help=r"template with {field} slots and one {answer}; \n means newline",
    )
    evaluate.add_argument("--instruction", default="", help="optional instruction before it")
    evaluate.add_argument(
        "--verbalizer",
        default=None,
        help="label words, e.g. '0=negative,1=positive' or '0=bad|awful,1=good'",
    )
    evaluate.add_argument("--split", default="dev", choices=["train", "dev", "test"])
    evaluate.add_argument("--limit", type=int, default=None, help="score only the first N examples")
    evaluate.add_argument("--json", action="store_true", help="print JSON")

    board = commands.add_parser("leaderboard", help="top prompts of a study")
    board.add_argument("--study", required=True)
    board.add_argument("--top", type=int, default=10)
    board.add_argument("--searcher", default=None, help="only prompts from this searcher")
    board.add_argument("--format", choices=["table", "json", "csv"], default="table")
    _add_storage(board)

    show = commands.add_parser("show", help="a study, or one prompt in full with its lineage")
    show.add_argument("what", help="study name, or prompt hash (a unique prefix of 6+ characters)")
    show.add_argument("--study", default=None, help="for a prompt: show its trial in this study")
    _add_storage(show)

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
    _add_storage(export)

    _add_storage(add_report_parser(commands))
    _add_storage(add_final_parser(commands))
    _add_storage(add_worker_parser(commands))
    add_serve_parser(commands)

    studies = commands.add_parser("studies", help="list the studies in a database")
    _add_storage(studies)

    tasks = commands.add_parser("tasks", help="list the built-in tasks")
    tasks.add_argument("--data-dir", default=None)

    commands.add_parser("searchers", help="list the registered searchers")

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_commands.add_parser(
        "upgrade", help="migrate the database to this version's schema"
    )
    _add_storage(upgrade)
    return parser


TERMINATED = 143
"""Exit status after SIGTERM (128 + 15); Ctrl-C (SIGINT) gives 130."""


class _Termination:
    """SIGTERM (``kill PID``, a container or job scheduler stopping the process) taken
    as Ctrl-C: the command stops the way it does on KeyboardInterrupt, finished work
    saved, and exits with :data:`TERMINATED`."""

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> _Termination:
        if hasattr(signal, "SIGTERM") and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = True
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)


def _stdout_gone() -> bool:
    """Whether the reader of standard output has closed its end of the pipe."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        events = poller.poll(0)
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no descriptor
        return True
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)


def _quiet_stdout() -> None:
    """After the reader of standard output went away (``promptsearch leaderboard | head
    -1``): point the descriptor at /dev/null so the interpreter's last flush does not
    print "Exception ignored ... BrokenPipeError".  The command then exits quietly with
    status 0, as the reader got all it asked for (see docs/cli.md)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout replaced by an object without a descriptor
        pass


def _os_error(error: OSError) -> str:
    """One line for an operating-system error no command turned into its own message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = error.strerror or (lines[0] if lines else type(error).__name__)
    where = f"{error.filename}: " if error.filename else ""
    return f"{where}{reason}; check the path, its permissions and the free disk space"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``promptsearch`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    from promptsearch import _commands

    handler = getattr(_commands, f"cmd_{args.command}")
    with _Termination() as termination:
        try:
            code = int(handler(args) or 0)
            if sys.stdout is not None:
                sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        except PromptSearchError as error:
            print(f"promptsearch: error: {error}", file=sys.stderr)
            return 2
        except BrokenPipeError as error:
            if not _stdout_gone():  # a socket or a child's pipe, not our reader
                print(f"promptsearch: error: {_os_error(error)}", file=sys.stderr)
                return 2
            _quiet_stdout()
            return 0
        except OSError as error:
            print(f"promptsearch: error: {_os_error(error)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            hint = ""
            if args.command == "run":
                hint = "; finished trials are saved: run the same command again to resume"
            what = "terminated (SIGTERM)" if termination.received else "interrupted"
            print(f"\npromptsearch: {what}{hint}", file=sys.stderr)
            return TERMINATED if termination.received else 130
        finally:
            _commands.close_storages()
    return TERMINATED if termination.received else code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

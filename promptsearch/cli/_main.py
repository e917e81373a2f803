"""``main``: parse the command line, run the subcommand's handler, and end every
failure in one line.

The parser and start-up import nothing heavy: torch and transformers load only
in the commands that run a model (``run``, ``evaluate``).
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from promptsearch.cli import (
    db,
    evaluate,
    export,
    final,
    leaderboard,
    report,
    run,
    searchers,
    serve,
    show,
    studies,
    tasks,
    worker,
)
from promptsearch.cli._arguments import add_verbose
from promptsearch.cli._logging import log_to_stderr
from promptsearch.cli._storages import close_storages
from promptsearch.errors import PromptSearchError

__all__ = ["TERMINATED", "build_parser", "main"]

logger = logging.getLogger(__name__)

SUBCOMMANDS = (
    run,
    evaluate,
    leaderboard,
    show,
    export,
    report,
    final,
    worker,
    serve,
    studies,
    tasks,
    searchers,
    db,
)
"""The modules of the subcommands, in the order ``--help`` lists them."""


def _add_verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """``--verbose`` after any subcommand too (``promptsearch run ... -v``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                add_verbose(sub, top=False)
                _add_verbose_everywhere(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptsearch",
        description="Automatic prompt search for language models.",
    )
    add_verbose(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(commands)
    _add_verbose_everywhere(parser)
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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("promptsearch")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``promptsearch`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    with log_to_stderr(verbose=args.verbose), _Termination() as termination:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("promptsearch %s, Python %s", _version(), sys.version.split()[0])
        try:
            code = int(args.handler(args) or 0)
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
            close_storages()
    return TERMINATED if termination.received else code

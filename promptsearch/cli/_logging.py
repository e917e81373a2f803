"""The command line's one log handler: while :func:`promptsearch.cli.main` runs, the
records of the ``promptsearch`` loggers go to standard error, formatted as the lines
the commands printed before they logged:

- INFO: the bare message (progress lines, the server's request log);
- WARNING: ``warning: <message>``; ERROR and above: ``error: <message>`` (a
  traceback, when the record has one, follows);
- DEBUG, shown only with ``--verbose``: ``debug: <logger>: <message>``.

The handler is installed when ``main`` starts and removed when it returns, so a
program that calls ``main`` many times (the tests) never stacks handlers, and the
library itself installs none: without the command line, Python's last-resort
handler shows warnings, or the application's own logging configuration does.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

__all__ = ["ROOT_LOGGER", "log_to_stderr"]

ROOT_LOGGER = "promptsearch"
"""The logger every module of the package logs under (``logging.getLogger(__name__)``)."""


class _Formatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"error: {text}"
        if record.levelno >= logging.WARNING:
            return f"warning: {text}"
        if record.levelno < logging.INFO:
            return f"debug: {record.name}: {text}"
        return text


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record comes (pytest's capture
    replaces it between tests)."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr
        if stream is None:  # pythonw, or a closed standard error
            return
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except RecursionError:  # pragma: no cover - as logging.StreamHandler
            raise
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def log_to_stderr(*, verbose: bool = False) -> Iterator[logging.Handler]:
    """Show the package's records of level INFO and above (DEBUG too with *verbose*)
    on standard error until the block ends; then the logger is as it was."""
    logger = logging.getLogger(ROOT_LOGGER)
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    level = logger.level
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

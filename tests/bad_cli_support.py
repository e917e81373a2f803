"""Helpers shared by the bad-input test modules of the command line
(``test_bad_cli_output.py``, ``test_bad_cli_values.py``, ``test_storage_messages.py``).

They follow :mod:`test_bad_inputs`: a bad input ends in exactly one
``promptsearch: error:`` line, exit status 2, and a database left byte for byte as
it was.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_bad_inputs import FakeScorer, cli_error, fingerprint, kshot_dir, small_task

from promptsearch.storage import open_storage
from promptsearch.study import Study

__all__ = [
    "FakeScorer",
    "cli_error",
    "exact_error",
    "fingerprint",
    "kshot_dir",
    "make_db",
    "run_cli",
    "small_task",
    "untouched",
]


def make_db(path: Path, study: str = "kept") -> Path:
    """An SQLite file holding one finished study (closed: the file is all there is)."""
    with open_storage(str(path)) as storage:
        Study(
            study, small_task(), FakeScorer(), ["manual", "random-edit"], 6, storage, progress=False
        ).run()
    return path


def exact_error(args: list[str], capsys: pytest.CaptureFixture[str], message: str) -> None:
    """The command fails with status 2 and exactly ``promptsearch: error: <message>``."""
    err = cli_error(args, capsys)
    assert err == f"promptsearch: error: {message}\n"


@contextlib.contextmanager
def untouched(*paths: Path, siblings: bool = True) -> Iterator[None]:
    """The block leaves each database file (bytes, rows and, unless ``siblings=False``,
    the files next to it) as it was."""
    before = [fingerprint(path) for path in paths]
    yield
    after = [fingerprint(path) for path in paths]
    if siblings:
        assert after == before
    else:
        assert [(f.digest, f.rows) for f in after] == [(f.digest, f.rows) for f in before]


def run_cli(args: list[str], *, stdout: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command line in a child process, its stdout on the descriptor given."""
    env = dict(os.environ, PYTHONWARNINGS="default")
    return subprocess.run(
        [sys.executable, "-m", "promptsearch.cli", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )

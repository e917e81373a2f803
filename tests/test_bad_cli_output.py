"""Output that cannot be written ends in one line, not a traceback.

``export --output`` and ``report --output`` into a missing folder, onto a folder, onto
a full disk (``/dev/full``) or over an existing file; a reader that closes the pipe
early (``promptsearch leaderboard | head -1``); an operating-system error no command
turned into its own message.  Each fails with exactly one ``promptsearch: error:``
line and status 2 (a closed pipe: a quiet exit, status 0, see docs/cli.md) and leaves
the database byte for byte as it was.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from bad_cli_support import exact_error, make_db, run_cli, untouched

import promptsearch._output
from promptsearch.cli import main
from promptsearch.cli import searchers as searchers_command
from promptsearch.cli import tasks as tasks_command

needs_dev_full = pytest.mark.skipif(
    not Path("/dev/full").exists(), reason="no /dev/full on this system"
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "runs.db")


def export(db: Path, *more: str) -> list[str]:
    return ["export", "--study", "kept", "--storage", str(db), *more]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_export_into_a_missing_folder(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "no" / "such" / "best.json"
    with untouched(db):
        exact_error(
            export(db, "--output", str(target)),
            capsys,
            f"--output {target}: the folder {target.parent} does not exist; "
            "create it first or choose another path",
        )
    assert not (tmp_path / "no").exists()


def test_export_onto_a_folder(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with untouched(db):
        exact_error(
            export(db, "--output", str(tmp_path)),
            capsys,
            f"--output {tmp_path}: is a folder, not a file; give a file name inside it",
        )


@needs_dev_full
def test_export_onto_a_full_disk(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with untouched(db):
        exact_error(
            export(db, "--output", "/dev/full"),
            capsys,
            "--output /dev/full: cannot write the file (No space left on device); "
            "free some disk space or write to another disk",
        )


@needs_dev_full
def test_report_onto_a_full_disk(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with untouched(db):
        exact_error(
            ["report", "--study", "kept", "--storage", str(db), "--output", "/dev/full"],
            capsys,
            "output /dev/full: cannot write the file (No space left on device); "
            "free some disk space or write to another disk",
        )


def test_export_refuses_to_overwrite_without_force(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "best.json"
    target.write_text("keep me\n")
    with untouched(db):
        exact_error(
            export(db, "--output", str(target)),
            capsys,
            f"--output {target}: the file exists; add --force to overwrite it, or choose "
            "another name",
        )
    assert target.read_text() == "keep me\n"
    assert main(export(db, "--output", str(target), "--force")) == 0
    assert json.loads(target.read_text())["study"] == "kept"
    assert leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_half_file(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up while the new file is written (the one fake here: a real full
    disk cannot be made on demand; /dev/full above is the real one)."""
    target = tmp_path / "best.json"
    target.write_text("the old export\n")

    def full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(promptsearch._output.os, "fsync", full)
    with untouched(db):
        exact_error(
            export(db, "--output", str(target), "--force"),
            capsys,
            f"--output {target}: cannot write the file (No space left on device); "
            "free some disk space or write to another disk",
        )
    assert target.read_text() == "the old export\n"
    assert leftovers(tmp_path) == []


def test_an_os_error_no_command_caught_is_one_line(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(args: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/data/sst2")

    monkeypatch.setattr(tasks_command, "cmd_tasks", denied)
    exact_error(
        ["tasks"],
        capsys,
        "/srv/data/sst2: Permission denied; check the path, its permissions and the free "
        "disk space",
    )


def test_a_many_line_os_error_keeps_its_first_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def many_lines(args: object) -> int:
        raise OSError("model files are missing\nsee the log\nfor more")

    monkeypatch.setattr(searchers_command, "cmd_searchers", many_lines)
    exact_error(
        ["searchers"],
        capsys,
        "model files are missing; check the path, its permissions and the free disk space",
    )


@pytest.mark.parametrize(
    "args",
    [
        ["leaderboard", "--study", "kept", "--storage", "{db}"],
        ["leaderboard", "--study", "kept", "--format", "csv", "--storage", "{db}"],
        ["studies", "--storage", "{db}"],
        ["export", "--study", "kept", "--storage", "{db}"],
        ["tasks"],
        ["searchers"],
    ],
    ids=["leaderboard", "leaderboard-csv", "studies", "export", "tasks", "searchers"],
)
def test_a_closed_pipe_ends_quietly(args: list[str], db: Path, tmp_path: Path) -> None:
    """`promptsearch leaderboard | head -1`: the reader has gone before the first write
    (the read end is closed at once, so the pipe is broken whatever the timing)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with untouched(db):
            done = run_cli(
                [a.replace("{db}", str(db)) for a in args], stdout=write_end, cwd=tmp_path
            )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 0


def test_a_broken_pipe_that_is_not_stdout_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BrokenPipeError from elsewhere (a generator's socket, say) while standard
    output is fine is not a reader going away: one line, status 2."""

    def broken(args: object) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(tasks_command, "cmd_tasks", broken)
    with open(tmp_path / "stdout.txt", "w") as stdout:
        monkeypatch.setattr("sys.stdout", stdout)
        exact_error(
            ["tasks"],
            capsys,
            "Broken pipe; check the path, its permissions and the free disk space",
        )

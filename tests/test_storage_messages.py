"""What the trial database's errors say, and the read-only SQLite files that must
simply work.

An SQLite error gets an SQLite fix (never PostgreSQL's "check that the server is
running"); a file opened read-only (``mode=ro``, ``immutable=1``, or in a folder
this process may not write to, where SQLite cannot create the ``-wal`` and ``-shm``
files of a WAL database) is read at once by the commands that only read, instead
of a 30 s wait and a message about a lock; a write into it says the file is
read-only.  Real SQLite files throughout; errors are exactly one
``promptsearch: error:`` line with status 2, and the files are left byte for byte
as they were.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from bad_cli_support import FakeScorer, exact_error, make_db, small_task, untouched

import promptsearch.storage._read_only as _read_only
import promptsearch.storage.database as database
from promptsearch.cli import main
from promptsearch.errors import StorageError
from promptsearch.storage import open_storage
from promptsearch.study import Study

READ_ONLY_FIX = (
    "the file or its folder is read-only (or the URL says mode=ro or immutable=1): "
    "leaderboard, studies, show, export and report can read it, but to write, copy it "
    "to a folder you may write to"
)
READERS = [
    ["leaderboard", "--study", "kept"],
    ["studies"],
    ["show", "kept"],
    ["export", "--study", "kept"],
]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "runs.db")


def uri(path: Path, query: str) -> str:
    return f"sqlite:///file:{path}?{query}&uri=true"


def write_into(url: str) -> None:
    with open_storage(url) as storage:
        Study("new", small_task(), FakeScorer(), ["manual"], 2, storage, progress=False).run()


# -- SQLite errors get SQLite fixes -------------------------------------------------------------


def test_a_damaged_sqlite_file_gets_an_sqlite_fix(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = bytearray(db.read_bytes())
    data[100:4096] = bytes((i * 7 + 3) % 256 for i in range(3996))  # page 1: the schema
    db.write_bytes(data)
    with untouched(db):
        exact_error(
            ["studies", "--storage", str(db)],
            capsys,
            f"cannot open the trial database sqlite:///{db}: database disk image is malformed; "
            "the file is damaged; restore it from a copy, or rescue its rows with "
            "`sqlite3 FILE .recover`",
        )


def test_a_missing_file_opened_read_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.db"
    url = uri(missing, "mode=ro")
    exact_error(
        ["studies", "--storage", url],
        capsys,
        f"cannot open the trial database {database.mask_url(database.parse_url(url))}: "
        "unable to open database file; check that the folder exists and that you may "
        "write there (with mode=ro, that the file exists)",
    )
    assert not missing.exists()


def test_only_postgresql_gets_the_server_hint(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("psycopg2")
    err = main(["studies", "--storage", "postgresql://user:secret@127.0.0.1:1/db"])
    line = capsys.readouterr().err
    assert err == 2 and line.count("\n") == 1 and "secret" not in line
    assert line.endswith(
        "; check that the server is running and that host, port and database are right\n"
    )


# -- files opened read-only ---------------------------------------------------------------------


@pytest.mark.parametrize("query", ["immutable=1", "mode=ro"])
def test_read_only_uris_are_read_at_once(
    query: str, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = uri(db, query)
    # mode=ro: SQLite itself leaves an empty -wal and the -shm index beside a WAL file
    with untouched(db, siblings=query == "immutable=1"):
        for args in READERS:
            assert main([*args, "--storage", url]) == 0, capsys.readouterr().err
    assert "It {text} It was {answer}." in capsys.readouterr().out


def test_mode_ro_on_a_rollback_journal_file_does_not_wait(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The switch to WAL cannot happen on a read-only connection; it used to be retried
    for 30 s and end in "database is locked"."""
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode = DELETE")
    connection.close()
    with untouched(db):
        assert main(["leaderboard", "--study", "kept", "--storage", uri(db, "mode=ro")]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("query", ["immutable=1", "mode=ro"])
def test_writing_into_a_read_only_uri_says_so(query: str, db: Path) -> None:
    url = uri(db, query)
    shown = database.mask_url(database.parse_url(url))
    with untouched(db, siblings=query == "immutable=1"), pytest.raises(StorageError) as caught:
        write_into(url)
    assert str(caught.value) == (
        f"trial database {shown}: attempt to write a readonly database; {READ_ONLY_FIX}"
    )


# -- a WAL database in a folder this process may not write to -----------------------------------


@pytest.fixture
def read_only_folder(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The folder of the database counts as read-only for the check promptsearch makes
    (``os.access``).  Tests run as root here, and root may write anywhere, so the
    permission itself cannot stop SQLite; see the real chmod test below."""
    monkeypatch.setattr(_read_only, "_writable", lambda path: False)
    yield


def test_a_wal_database_in_a_read_only_folder_is_read(
    db: Path, tmp_path: Path, read_only_folder: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert db.read_bytes()[18:20] == b"\x02\x02"  # the file header says: WAL mode
    with untouched(db):  # nothing created next to it: no -wal, no -shm
        for args in READERS:
            assert main([*args, "--storage", str(db)]) == 0, capsys.readouterr().err
        out = tmp_path / "out"
        out.mkdir()
        report = ["report", "--study", "kept", "--storage", str(db)]
        assert main([*report, "--output", str(out / "kept.html")]) == 0
    assert (out / "kept.html").read_text().startswith("<!DOCTYPE html>")
    capsys.readouterr()


def test_a_rollback_journal_database_in_a_read_only_folder_is_read(
    db: Path, read_only_folder: None, capsys: pytest.CaptureFixture[str]
) -> None:
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode = DELETE")
    connection.close()
    read_only = _read_only.read_only_url(database.parse_url(str(db)), "db")
    assert read_only is not None
    assert read_only.query["mode"] == "ro"
    with untouched(db):
        for args in READERS:
            assert main([*args, "--storage", str(db)]) == 0, capsys.readouterr().err
    capsys.readouterr()


def test_writing_into_a_read_only_folder_says_so(db: Path, read_only_folder: None) -> None:
    with untouched(db), pytest.raises(StorageError) as caught:
        write_into(str(db))
    assert str(caught.value) == (
        f"trial database sqlite:///{db}: attempt to write a readonly database; {READ_ONLY_FIX}"
    )


def test_an_unmerged_log_without_its_index_is_explained(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes still in the -wal file cannot be read without the -shm file, which the
    read-only folder does not let SQLite create: say so instead of reading stale rows."""
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    with writer:
        writer.execute("UPDATE studies SET seed = seed + 1")
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.copy(db, archive / "runs.db")
    shutil.copy(f"{db}-wal", archive / "runs.db-wal")
    writer.close()
    copy = archive / "runs.db"
    monkeypatch.setattr(_read_only, "_writable", lambda path: False)
    with untouched(copy):
        exact_error(
            ["studies", "--storage", str(copy)],
            capsys,
            f"cannot open the trial database sqlite:///{copy}: its folder {archive} is "
            "read-only and runs.db-wal holds writes SQLite cannot read without runs.db-shm; "
            "open it once where the folder is writable, or copy the files to one",
        )


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: a folder's permissions do not stop root from writing, so "
    "chmod cannot make the folder read-only (the read_only_folder tests above cover it)",
)
def test_a_wal_database_in_a_chmod_read_only_folder(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = db.parent
    db.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with untouched(db):
            for args in READERS:
                assert main([*args, "--storage", str(db)]) == 0, capsys.readouterr().err
            with pytest.raises(StorageError, match="attempt to write a readonly database"):
                write_into(str(db))
    finally:
        folder.chmod(stat.S_IRWXU)
        db.chmod(stat.S_IRUSR | stat.S_IWUSR)

"""The trial database: schema, URLs and concurrency, on SQLite and PostgreSQL.

PostgreSQL runs when $PROMPTSEARCH_TEST_POSTGRES_URL is set.

Start a throwaway PostgreSQL server for these tests with::

    eval "$(bash .ci/postgres.sh)"
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url
from storage_support import (
    add,
    count,
    evaluation_records,
    h,
    in_threads,
    make_study,
)

from promptsearch.errors import StorageError
from promptsearch.storage import (
    Storage,
    head_revision,
    open_storage,
    upgrade,
)
from promptsearch.storage import schema as schema_module
from promptsearch.storage.orm import Base
from promptsearch.storage.testing import (
    postgres_admin_url,
    skip_reason,
)


def test_new_database_gets_schema_at_head(storage: Storage) -> None:
    with storage.session(write=False) as session:
        revision = session.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        tables = set(sa.inspect(session.connection()).get_table_names())
    assert revision == head_revision() == "0004"
    assert set(Base.metadata.tables) <= tables


def test_migrations_match_models(storage: Storage) -> None:
    with storage.session(write=False) as session:
        connection = session.connection()
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        # Alembic does not compare CHECK constraints; compare their names here.
        inspector = sa.inspect(connection)
        for table in Base.metadata.sorted_tables:
            in_models = {
                c.name for c in table.constraints if isinstance(c, sa.CheckConstraint) and c.name
            }
            in_db = {c["name"] for c in inspector.get_check_constraints(table.name)}
            assert in_db == in_models, table.name


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    with open_storage(str(tmp_path / "t.db")) as storage, storage.session() as session:
        pragma = session.connection().exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA busy_timeout").scalar() == 30000
        assert pragma("PRAGMA foreign_keys").scalar() == 1


def test_upgrade_creates_then_keeps_head(storage_url: str) -> None:
    assert upgrade(storage_url) == head_revision()
    assert upgrade(storage_url) == head_revision()
    with open_storage(storage_url) as storage:
        assert storage.list_studies() == []


def _stamp(storage: Storage, revision: str) -> None:
    with storage.session() as session:
        session.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


def test_newer_schema_is_refused_and_left_untouched(storage_url: str) -> None:
    with open_storage(storage_url) as storage:
        make_study(storage)
        add(storage, "a")
        _stamp(storage, "0099")
    for attempt in (open_storage, upgrade):
        with pytest.raises(StorageError, match=r"newer promptsearch \(schema revision 0099"):
            attempt(storage_url)
    engine = sa.create_engine(storage_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                ("0099",)
            ]
            assert connection.execute(sa.text("SELECT name FROM studies")).all() == [("study",)]
            assert connection.execute(sa.text("SELECT COUNT(*) FROM prompts")).scalar() == 1
    finally:
        engine.dispose()


def test_older_schema_asks_for_upgrade(storage_url: str) -> None:
    engine = sa.create_engine(storage_url)
    try:
        with engine.begin() as connection:  # a database left at the first revision
            command.upgrade(schema_module.alembic_config(connection), "0001")
    finally:
        engine.dispose()
    assert schema_module.known_revisions()[:2] == ["0001", "0002"]
    with pytest.raises(
        StorageError, match=r"revision 0001, older .*`promptsearch db upgrade --storage "
    ):
        open_storage(storage_url)
    assert upgrade(storage_url) == head_revision()
    open_storage(storage_url).close()


def test_foreign_databases_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    engine = sa.create_engine(f"sqlite:///{other}")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY)"))
    with pytest.raises(StorageError, match=r"not empty .*notes.* no promptsearch schema"):
        open_storage(str(other))
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
        connection.execute(sa.text("INSERT INTO alembic_version VALUES ('v3.2.0.a')"))
    with pytest.raises(StorageError, match=r"another application .*'v3.2.0.a'"):
        open_storage(str(other))
    with engine.connect() as connection:
        journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        assert journal == "delete"  # not switched to WAL: the file was left alone
    engine.dispose()


# -- opening ----------------------------------------------------------------------------


def test_default_and_plain_path_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_storage() as storage:
        assert storage.url == f"sqlite:///{tmp_path / 'promptsearch.db'}"
    assert (tmp_path / "promptsearch.db").is_file()
    with open_storage("runs.db") as storage:
        make_study(storage)
    with open_storage(f"sqlite:///{tmp_path / 'runs.db'}") as storage:
        assert storage.get_study("study") is not None
    with open_storage("sqlite://") as storage:  # in memory
        make_study(storage)
        assert [s.name for s in storage.list_studies()] == ["study"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:secret@localhost/db", r"'mysql' is not supported.* sqlite:///"),
        ("postgresql+nodriver://u:secret@localhost/db", "no driver 'postgresql.nodriver'"),
        ("sqlite:///{tmp}/missing/x.db", "folder .*missing does not exist; create it"),
        ("sqlite:///{tmp}", "is a folder, not a database file"),
        ("{tmp}/junk.db", "junk.db: file is not a database; .*another file"),
        ("postgresql://u:secret@127.0.0.1:1/db", r"cannot open .*u:\*\*\*@127.0.0.1:1/db.*server"),
        ("", "storage URL must be a non-empty string"),
    ],
)
def test_unopenable_urls(tmp_path: Path, url: str, message: str) -> None:
    (tmp_path / "junk.db").write_text("not a database " * 100)
    with pytest.raises(StorageError, match=message) as caught:
        open_storage(url.format(tmp=tmp_path))
    assert "secret" not in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.postgres
def test_postgres_wrong_password_or_database() -> None:
    admin = postgres_admin_url()
    if admin is None:
        pytest.skip(skip_reason("postgresql") or "")
    wrong = make_url(admin).set(password="wrong-secret").render_as_string(hide_password=False)
    with pytest.raises(StorageError, match=r"password .*check the user name and password"):
        open_storage(wrong)
    missing = make_url(admin).set(database="no_such_db").render_as_string(hide_password=False)
    with pytest.raises(StorageError, match=r"no_such_db.*does not exist.*create the database"):
        open_storage(missing)


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, promptsearch.storage; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- studies ----------------------------------------------------------------------------


def test_concurrent_writers_end_with_one_row_each(storage_url: str) -> None:
    n = 8
    prompt = h("shared prompt")
    keys = [h(("k", i)) for i in range(50)]
    storages = [open_storage(storage_url) for _ in range(n)]
    try:
        make_study(storages[0])

        def work(i: int) -> bool:
            mine = storages[i]
            make_study(mine, config={"worker": i})
            mine.add_prompt({"template": "{answer}"}, prompt, "shared", 8)
            mine.add_evaluations("scorer", prompt, "dev", evaluation_records(keys[i:]))
            started = mine.start_trial(
                "study", prompt, searcher="s", operation="o", parent_hash=None, worker=f"w{i}"
            )
            own = add(mine, f"own {i}")
            assert mine.start_trial(
                "study", own, searcher="s", operation="o", parent_hash=None, worker=f"w{i}"
            )
            return started is not None

        started = in_threads(n, work)
        storage = storages[0]
        assert sum(started) == 1
        assert count(storage, "studies") == 1
        assert count(storage, "prompts") == n + 1
        assert count(storage, "evaluations") == len(keys)
        assert sorted(t.number for t in storage.trials("study")) == list(range(n + 1))
    finally:
        for opened in storages:
            opened.close()


def test_concurrent_first_open_creates_schema_once(storage_url: str) -> None:
    def work(_: int) -> str:
        with open_storage(storage_url) as storage:
            storage.add_prompt({}, h("p"), "p", 1)
            return storage.url

    assert len(set(in_threads(6, work))) == 1
    with open_storage(storage_url) as storage:
        assert count(storage, "prompts") == 1
        assert count(storage, "alembic_version") == 1

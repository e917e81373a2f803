"""Schema revisions: what a database holds, whether this promptsearch can use it,
and the Alembic run that creates or upgrades it.

Alembic is configured in code: ``script_location`` points at the ``migrations``
folder inside this package, so no ``alembic.ini`` is needed anywhere.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Final, Literal

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from promptsearch.errors import StorageError

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "check_revision",
    "head_revision",
    "known_revisions",
    "migrate",
    "old_schema_error",
    "schema_state",
]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
# promptsearch revisions are four digits ("0001", "0002", ...); any other value in
# alembic_version was written by another application.
_REVISION_PATTERN: Final = re.compile(r"^\d{4}$")
_POSTGRES_MIGRATION_LOCK: Final = 0x70736462  # pg_advisory_xact_lock key ("psdb")

Verdict = Literal["create", "ok", "old"]


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS_DIR))


def known_revisions() -> list[str]:
    """Every schema revision this promptsearch knows, oldest first."""
    return [script.revision for script in reversed(list(_script().walk_revisions()))]


def head_revision() -> str:
    """The schema revision this promptsearch writes."""
    head = _script().get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise StorageError(f"no schema migrations in {MIGRATIONS_DIR}; reinstall promptsearch")
    return head


def schema_state(connection: Connection) -> tuple[str | None, list[str]]:
    """The database's schema revision (``None`` if none) and its table names."""
    revision = MigrationContext.configure(connection).get_current_revision()
    tables = sqlalchemy.inspect(connection).get_table_names()
    return revision, [t for t in tables if not t.startswith("sqlite_")]


def check_revision(revision: str | None, tables: list[str], shown: str) -> Verdict:
    """What a database in this state needs: ``"create"`` (it is empty), ``"ok"`` or
    ``"old"`` (an upgrade); raises StorageError for one this code must not touch."""
    if revision is None:
        if not tables or tables == ["alembic_version"]:
            return "create"
        listed = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StorageError(
            f"database {shown} is not empty (tables {listed}) but holds no promptsearch "
            "schema; point --storage at a new file or an empty database"
        )
    if not _REVISION_PATTERN.match(revision):
        raise StorageError(
            f"database {shown} belongs to another application (its alembic_version is "
            f"{revision!r}, not a promptsearch schema revision); point --storage at a new "
            "file or an empty database"
        )
    if revision not in known_revisions():
        raise StorageError(
            f"database {shown} was written by a newer promptsearch (schema revision "
            f"{revision}; this one knows revisions up to {head_revision()}); upgrade "
            "promptsearch (pip install -U promptsearch)"
        )
    return "ok" if revision == head_revision() else "old"


def old_schema_error(revision: str | None, shown: str) -> StorageError:
    return StorageError(
        f"database {shown} has schema revision {revision}, older than this promptsearch's "
        f"{head_revision()}; back it up, then run `promptsearch db upgrade --storage {shown}`"
    )


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the packaged migrations (and *connection*)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def migrate(connection: Connection, shown: str, *, upgrade_old: bool) -> str:
    """Bring the schema to head in one locked transaction; return the revision.

    Two processes that open the same empty database at once both get here; the lock
    (SQLite's write lock, taken by ``BEGIN IMMEDIATE``; PostgreSQL's advisory lock)
    lets one build the schema, and the other then finds it in place.  The state is
    checked again under the lock, so a newer or foreign database is never touched.
    """
    with connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRES_MIGRATION_LOCK}
            )
        revision, tables = schema_state(connection)
        verdict = check_revision(revision, tables, shown)
        if verdict == "old" and not upgrade_old:
            raise old_schema_error(revision, shown)
        if verdict != "ok":
            command.upgrade(alembic_config(connection), "head")
    return head_revision()

"""Opening the trial database: URLs, engines, the schema revision, the session helper.

Supported back ends are SQLite (a file; the default) and PostgreSQL (for many
workers on several machines).  Opening a database never changes a schema that is
already there:

* an empty database gets the schema, by running the Alembic migrations to head;
* a database at the current revision is used as it is;
* a database at an *older* revision is refused with the command that upgrades it
  (``promptsearch db upgrade --storage URL``).  Upgrading is not automatic because
  a schema upgrade cannot be undone and locks out every older promptsearch still
  working on the same database (several workers, several machines);
* a database written by a *newer* promptsearch, or one that is not a promptsearch
  database at all, is refused and left untouched.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Self

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from promptsearch.errors import StorageError
from promptsearch.storage._read_only import is_read_only_uri, read_only_url
from promptsearch.storage.schema import (
    check_revision,
    head_revision,
    known_revisions,
    migrate,
    old_schema_error,
    schema_state,
)

__all__ = [
    "DEFAULT_SQLITE_FILE",
    "SQLITE_BUSY_TIMEOUT_S",
    "Database",
    "UniqueViolation",
    "create_engine_for",
    "head_revision",
    "known_revisions",
    "mask_url",
    "parse_url",
    "upgrade",
]

DEFAULT_SQLITE_FILE: Final = "promptsearch.db"
SQLITE_BUSY_TIMEOUT_S: Final = 30.0
POSTGRES_CONNECT_TIMEOUT_S: Final = 10
_WRITE_OPTION: Final = "promptsearch_write"

logger = logging.getLogger(__name__)


class UniqueViolation(StorageError):
    """A write hit a unique constraint (another worker wrote the same row first)."""


# -- URLs -------------------------------------------------------------------------------


def parse_url(url: str | None) -> URL:
    """The SQLAlchemy URL for *url*: ``None`` is ``promptsearch.db`` in the current
    folder, a plain path (no ``://``) is an SQLite file; relative SQLite paths are made
    absolute so that a later change of folder does not move the database."""
    if url is None:
        url = DEFAULT_SQLITE_FILE
    if not isinstance(url, str) or not url.strip():
        raise StorageError(
            f"storage URL must be a non-empty string such as sqlite:///promptsearch.db or "
            f"postgresql://user:password@host/db; got {url!r}"
        )
    url = url.strip()
    if "://" not in url:
        return URL.create("sqlite", database=str(Path(url).expanduser().resolve()))
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(
            f"storage URL {_mask_text(url)!r} cannot be parsed ({exc}); write it as "
            "sqlite:///path/to/file.db or postgresql://user:password@host:port/db"
        ) from None
    backend = parsed.get_backend_name()
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername=_postgres_driver())
    if backend not in ("sqlite", "postgresql"):
        raise StorageError(
            f"storage URL {mask_url(parsed)}: the database kind {backend!r} is not supported; "
            "use sqlite:///path/to/file.db or postgresql://user:password@host:port/db"
        )
    path = parsed.database
    if backend == "sqlite" and path and not _is_memory(parsed) and "uri" not in parsed.query:
        parsed = parsed.set(database=str(Path(path).expanduser().resolve()))
    return parsed


def _postgres_driver() -> str:
    """The driver for a plain ``postgresql://`` URL: psycopg2 (what
    ``promptsearch[postgres]`` installs) if present, else psycopg 3, else psycopg2 (so
    that the error names the package to install)."""
    for module, name in (("psycopg2", "postgresql+psycopg2"), ("psycopg", "postgresql+psycopg")):
        if importlib.util.find_spec(module) is not None:
            return name
    return "postgresql+psycopg2"


def mask_url(url: URL | str) -> str:
    """*url* as text with its password replaced by ``***``."""
    if isinstance(url, str):
        return _mask_text(url)
    return url.render_as_string(hide_password=True)


def _mask_text(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _is_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


# -- engines ----------------------------------------------------------------------------


def create_engine_for(url: str | URL, *, wal: bool = True) -> Engine:
    """An engine for *url* with the per-connection settings promptsearch relies on.

    SQLite: a 30 s busy timeout, foreign keys on, write-ahead logging (unless
    ``wal=False``) and transactions that start with ``BEGIN IMMEDIATE`` when they
    will write, so that concurrent writers queue instead of failing.
    """
    parsed = url if isinstance(url, URL) else parse_url(url)
    shown = mask_url(parsed)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        if _is_memory(parsed):
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            _check_sqlite_path(parsed, shown)
            read_only = read_only_url(parsed, shown)
            if read_only is not None:
                parsed, wal = read_only, False
            elif is_read_only_uri(parsed):
                wal = False
            kwargs.update(connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    else:
        kwargs.update(pool_pre_ping=True)
        if "connect_timeout" not in parsed.query:
            kwargs.update(connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S})
    try:
        engine = sqlalchemy.create_engine(parsed, **kwargs)
    except NoSuchModuleError:
        raise StorageError(
            f"storage URL {shown}: SQLAlchemy has no driver {parsed.drivername!r}; use "
            "sqlite:///path/to/file.db or postgresql+psycopg2://user:password@host/db"
        ) from None
    except ImportError as exc:
        raise StorageError(
            f"storage URL {shown}: the database driver is not installed ({exc}); "
            "install it with `pip install 'promptsearch[postgres]'` (psycopg2-binary)"
        ) from None
    if backend == "sqlite":
        _install_sqlite_listeners(engine, wal=wal and not _is_memory(parsed))
    return engine


def _check_sqlite_path(url: URL, shown: str) -> None:
    if url.query.get("uri") == "true" or url.database is None:
        return
    path = Path(url.database)
    if path.is_dir():
        raise StorageError(
            f"storage URL {shown}: {path} is a folder, not a database file; "
            f"give a file name, e.g. {path / DEFAULT_SQLITE_FILE}"
        )
    if not path.parent.is_dir():
        raise StorageError(
            f"storage URL {shown}: the folder {path.parent} does not exist; "
            "create it first or choose another path"
        )


def _use_wal(cursor: Any) -> None:
    """Switch the file to write-ahead logging (a lasting property of the file).

    The switch needs the file to itself and SQLite does not wait for that (no busy
    handler), so retry while other connections hold it, up to the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() == "wal":
                return
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() == "wal":
                return
            # No error, yet no switch: the file cannot change (read-only or immutable);
            # it is used in the journal mode it has (a busy file raises, see below).
            logger.debug("SQLite kept journal mode %s (the file is read-only)", mode)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError(
                "database is locked (could not switch it to write-ahead logging)"
            )
        time.sleep(0.02)


def _install_sqlite_listeners(engine: Engine, *, wal: bool) -> None:
    busy_ms = int(SQLITE_BUSY_TIMEOUT_S * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if wal:
                _use_wal(cursor)
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that reads and
        # then writes fails at once (SQLITE_BUSY) when another writer went first.
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


# -- errors -----------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


def _connect_error(exc: SQLAlchemyError, shown: str, backend: str) -> StorageError:
    reason = _reason(exc)
    low = reason.lower()
    if backend == "sqlite":
        return StorageError(f"cannot open the trial database {shown}: {reason}; {_sqlite_fix(low)}")
    if "password" in low or "authentication" in low:
        fix = "check the user name and password in the URL"
    elif "does not exist" in low and "database" in low:
        fix = "create the database (e.g. `createdb NAME`) or correct its name in the URL"
    else:
        fix = "check that the server is running and that host, port and database are right"
    return StorageError(f"cannot open the trial database {shown}: {reason}; {fix}")


def _sqlite_fix(low: str) -> str:
    if "not a database" in low:
        return "the file is not an SQLite database; point --storage at another file"
    if "unable to open" in low:
        return (
            "check that the folder exists and that you may write there "
            "(with mode=ro, that the file exists)"
        )
    if "malformed" in low:
        return (
            "the file is damaged; restore it from a copy, or rescue its rows with "
            "`sqlite3 FILE .recover`"
        )
    if "readonly" in low or "read-only" in low:
        return _READ_ONLY_FIX
    if "locked" in low or "busy" in low:
        return "another process holds the file's lock; wait for it, or use fewer workers"
    if "disk" in low and ("full" in low or "i/o" in low):
        return "free some disk space, or check the disk"
    return "check the file, its folder's permissions and the free disk space"


_READ_ONLY_FIX = (
    "the file or its folder is read-only (or the URL says mode=ro or immutable=1): "
    "leaderboard, studies, show, export and report can read it, but to write, copy it "
    "to a folder you may write to"
)


def _is_unique_violation(exc: IntegrityError) -> bool:
    if getattr(exc.orig, "pgcode", None) == "23505":  # PostgreSQL unique_violation
        return True
    return _reason(exc).startswith("UNIQUE constraint failed")  # SQLite


def _runtime_error(exc: SQLAlchemyError, shown: str) -> StorageError:
    reason = _reason(exc)
    if "readonly" in reason.lower():
        return StorageError(f"trial database {shown}: {reason}; {_READ_ONLY_FIX}")
    if "database is locked" in reason.lower():
        return StorageError(
            f"trial database {shown}: another process kept SQLite's write lock for more than "
            f"{SQLITE_BUSY_TIMEOUT_S:.0f} s ({reason}); use fewer parallel workers on one SQLite "
            "file, or a PostgreSQL server (--storage postgresql://...)"
        )
    return StorageError(f"trial database {shown}: {reason}")


# -- opening ------------------------------------------------------------------------


def _prepare(parsed: URL, *, upgrade_old: bool, engine: Engine | None = None) -> str:
    """Check (and create or upgrade) the schema; *engine* is used when given (an
    in-memory database exists only inside its engine), else a WAL-less one is made so
    that a database refused here is left exactly as it was."""
    shown = mask_url(parsed)
    own = engine is None
    if engine is None:
        engine = create_engine_for(parsed, wal=False)
    try:
        with engine.connect() as connection:
            revision, tables = schema_state(connection)
        verdict = check_revision(revision, tables, shown)
        if verdict == "ok" and revision is not None:
            return revision
        if verdict == "old" and not upgrade_old:
            raise old_schema_error(revision, shown)
        with engine.connect() as connection:
            connection.execution_options(**{_WRITE_OPTION: True})  # BEGIN IMMEDIATE on SQLite
            return migrate(connection, shown, upgrade_old=upgrade_old)
    except StorageError:
        raise
    except SQLAlchemyError as exc:
        raise _connect_error(exc, shown, parsed.get_backend_name()) from None
    finally:
        if own:
            engine.dispose()


def upgrade(url: str | None) -> str:
    """Migrate the database at *url* to the current schema; return its revision.

    An empty database gets the whole schema; one written by a newer promptsearch,
    or not by promptsearch, is refused and left untouched.
    """
    return _prepare(parse_url(url), upgrade_old=True)


# -- the session helper -----------------------------------------------------------------


class Database:
    """An open trial database: its engine and the one way to get a session.

    Build it with :func:`promptsearch.storage.open_storage`, which checks the schema first.
    """

    def __init__(self, engine: Engine, url: URL) -> None:
        self._engine = engine
        self._url = url
        self.url = mask_url(url)
        self._reader = sessionmaker(bind=engine, expire_on_commit=False)
        self._writer = sessionmaker(
            bind=engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    @contextlib.contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """A session that commits when the block succeeds and rolls back when it raises.

        Database errors leave as :class:`~promptsearch.errors.StorageError`
        (:class:`UniqueViolation` for a unique-constraint clash, which repository code
        catches to resolve races between workers).  ``write=False`` marks a read-only
        block, which on SQLite does not take the write lock.
        """
        session = (self._writer if write else self._reader)()
        try:
            yield session
            session.commit()
        except IntegrityError as exc:
            _rollback(session)
            kind = UniqueViolation if _is_unique_violation(exc) else StorageError
            raise kind(f"trial database {self.url}: {_reason(exc)}") from exc
        except SQLAlchemyError as exc:
            _rollback(session)
            raise _runtime_error(exc, self.url) from exc
        except BaseException:
            _rollback(session)
            raise
        finally:
            session.close()

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def _rollback(session: Session) -> None:
    with contextlib.suppress(SQLAlchemyError):
        session.rollback()

"""Throwaway databases for tests of the storage (and of anything built on it).

A test suite parametrises over :data:`BACKENDS` and asks :func:`temporary_database`
for a fresh, empty database of each kind::

    @pytest.fixture(params=BACKENDS)
    def storage_url(request, tmp_path):
        reason = skip_reason(request.param)
        if reason:
            pytest.skip(reason)
        with temporary_database(request.param, tmp_path) as url:
            yield url

PostgreSQL tests need a server: set ``PROMPTSEARCH_TEST_POSTGRES_URL`` to a URL
whose user may create databases, e.g. with ``eval "$(bash .ci/postgres.sh)"``.
Each temporary database is created from that connection and dropped afterwards.
This module does not import pytest.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

__all__ = [
    "BACKENDS",
    "POSTGRES_URL_ENV",
    "postgres_admin_url",
    "skip_reason",
    "temporary_database",
]

BACKENDS: Final = ("sqlite", "postgresql")
POSTGRES_URL_ENV: Final = "PROMPTSEARCH_TEST_POSTGRES_URL"


def postgres_admin_url() -> str | None:
    """The PostgreSQL server tests may use (``$PROMPTSEARCH_TEST_POSTGRES_URL``)."""
    return os.environ.get(POSTGRES_URL_ENV) or None


def skip_reason(backend: str) -> str | None:
    """Why tests on *backend* cannot run here, or ``None`` when they can."""
    if backend == "sqlite":
        return None
    if backend == "postgresql":
        if postgres_admin_url() is None:
            return (
                f"PostgreSQL tests need ${POSTGRES_URL_ENV} (start a throwaway server with "
                '`eval "$(bash .ci/postgres.sh)"`)'
            )
        return None
    return f"unknown storage backend {backend!r}; known: {list(BACKENDS)}"


@contextlib.contextmanager
def temporary_database(backend: str, folder: Path) -> Iterator[str]:
    """The URL of a new, empty database of *backend*; it is deleted afterwards.

    SQLite databases are files in *folder*; PostgreSQL databases are created on the
    server named by ``$PROMPTSEARCH_TEST_POSTGRES_URL`` and dropped at the end.
    """
    reason = skip_reason(backend)
    if reason is not None:
        raise RuntimeError(reason)
    name = f"ps_test_{uuid.uuid4().hex[:16]}"
    if backend == "sqlite":
        yield f"sqlite:///{Path(folder) / (name + '.db')}"
        return
    admin_url = postgres_admin_url()
    if admin_url is None:  # pragma: no cover - skip_reason() covers it
        raise RuntimeError(f"${POSTGRES_URL_ENV} is not set")
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        try:
            url = make_url(admin_url).set(database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()

"""Alembic environment of the trial database.

:mod:`promptsearch.storage.database` configures Alembic in code (no ``alembic.ini``)
and hands over an open connection, already inside a transaction, in
``config.attributes["connection"]``; the migrations run in that transaction.  Without
one (a hand-made ``alembic`` call with ``sqlalchemy.url`` set), an engine is built
from the URL the same way :func:`promptsearch.storage.open_storage` does.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from promptsearch.errors import StorageError
from promptsearch.storage.orm import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite can only ALTER through table copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise StorageError(
            "the promptsearch migrations need a database: run them with "
            "`promptsearch db upgrade --storage URL`"
        )
    from promptsearch.storage.database import create_engine_for

    engine = create_engine_for(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise StorageError(
        "offline (--sql) migrations are not supported; run "
        "`promptsearch db upgrade --storage URL` against the database"
    )
run_migrations_online()

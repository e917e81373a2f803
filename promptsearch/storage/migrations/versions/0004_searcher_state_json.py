"""Searcher state as JSON: drop the pickled rows of ``searcher_states``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

Searcher states were pickles, and a pickle runs code when it is loaded; from this
revision on they are JSON state documents (see :mod:`promptsearch.study.state_codec`),
and anything else is refused.  The upgrade deletes every row whose ``state`` does not
begin with the document's magic bytes, without unpickling anything (the searchers of
those studies start afresh when the study resumes) and logs how many it deleted.  The
downgrade deletes the JSON rows, which the older version cannot read.

Self-contained like 0001: it does not import the models (nor the codec; the magic
bytes are written out here).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

MAGIC = b'{"format":"promptsearch-state",'  # promptsearch.study.state_codec.MAGIC at version 1

# Alembic loads this file by path, so __name__ is no package name: name the logger.
_log = logging.getLogger("promptsearch.storage.migrations")

_states = sa.table(
    "searcher_states",
    sa.column("study_id", sa.Integer()),
    sa.column("searcher", sa.String()),
    sa.column("state", sa.LargeBinary()),
)


def _delete(json_rows: bool) -> int:
    """Delete the rows that are (*json_rows*) or are not JSON state documents."""
    bind = op.get_bind()
    head = sa.func.substr(_states.c.state, 1, len(MAGIC), type_=sa.LargeBinary())
    rows = bind.execute(sa.select(_states.c.study_id, _states.c.searcher, head)).all()
    doomed = [
        (study_id, searcher)
        for study_id, searcher, start in rows
        if (start is not None and bytes(start) == MAGIC) == json_rows
    ]
    for study_id, searcher in doomed:
        bind.execute(
            sa.delete(_states).where(_states.c.study_id == study_id, _states.c.searcher == searcher)
        )
    return len(doomed)


def upgrade() -> None:
    dropped = _delete(json_rows=False)
    if dropped:
        _log.warning(
            "promptsearch db upgrade: dropped %d searcher state row(s) that were not JSON "
            "state documents (pickles of an older version); those searchers start afresh "
            "when their study resumes",
            dropped,
        )
    else:
        _log.debug("promptsearch db upgrade: no pickled searcher state rows to drop")


def downgrade() -> None:
    dropped = _delete(json_rows=True)
    _log.warning(
        "promptsearch db downgrade: dropped %d JSON searcher state row(s), which the older "
        "version cannot read",
        dropped,
    )

"""Selection: a tie-break statistic per trial and the study's stored pick.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Adds ``trials.dev_tiebreak``, the continuous statistic that orders trials with the
same dev score (the mean normalised probability of the gold label for classification,
the mean gold log-likelihood for generation; NULL for trials finished before this
revision, which then rank after the others of their score), and ``studies.selection``,
the JSON record of the study's final pick (the confirmation-split scores, paired
tests and the ensemble; see :mod:`promptsearch.study.selection`).

Self-contained like 0001: it does not import the models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("dev_tiebreak", sa.Double(), nullable=True))
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("selection", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("selection")
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("dev_tiebreak")

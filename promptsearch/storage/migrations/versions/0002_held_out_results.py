"""Held-out results: what `promptsearch final` records beside each test score.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-28

Adds to ``test_results`` the dev score and rank the prompt was picked by, whether it
is a seed prompt and whether it is the baseline (the best seed prompt by dev), the
paired test against that baseline (its name, p-value and the baseline prompt), the
scorer that produced the score and a JSON ``detail``; and makes a study hold one
result per prompt and split (``uq_test_results_study_prompt_split``), so that a
repeated ``final`` replaces its results.  Rows already there keep their values and
get "not a seed, not the baseline"; of duplicate rows, the newest is kept.

Self-contained like 0001: it does not import the models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # one row per (study, prompt, split) before the unique constraint: keep the newest
    op.execute(
        "DELETE FROM test_results WHERE id NOT IN "
        "(SELECT MAX(id) FROM test_results GROUP BY study_id, prompt_id, split)"
    )
    with op.batch_alter_table("test_results") as batch:
        batch.add_column(sa.Column("dev_score", sa.Double(), nullable=True))
        batch.add_column(sa.Column("dev_rank", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("is_seed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("is_baseline", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("baseline_prompt_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("test_name", sa.String(100), nullable=True))
        batch.add_column(sa.Column("p_value", sa.Double(), nullable=True))
        batch.add_column(sa.Column("scorer_fingerprint", sa.String(255), nullable=True))
        batch.add_column(sa.Column("detail", sa.JSON(), nullable=True))
        batch.create_foreign_key(
            "fk_test_results_baseline_prompt_id_prompts",
            "prompts",
            ["baseline_prompt_id"],
            ["id"],
        )
        batch.create_unique_constraint(
            "uq_test_results_study_prompt_split", ["study_id", "prompt_id", "split"]
        )
        batch.create_check_constraint(
            "ck_test_results_p_value", "p_value IS NULL OR (p_value >= 0 AND p_value <= 1)"
        )


def downgrade() -> None:
    with op.batch_alter_table("test_results") as batch:
        batch.drop_constraint("ck_test_results_p_value", type_="check")
        batch.drop_constraint("uq_test_results_study_prompt_split", type_="unique")
        batch.drop_constraint("fk_test_results_baseline_prompt_id_prompts", type_="foreignkey")
        for column in (
            "detail",
            "scorer_fingerprint",
            "p_value",
            "test_name",
            "baseline_prompt_id",
            "is_baseline",
            "is_seed",
            "dev_rank",
            "dev_score",
        ):
            batch.drop_column(column)

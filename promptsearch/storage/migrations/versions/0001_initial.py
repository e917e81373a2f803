"""The initial schema: studies, prompts, trials, the evaluation cache, searcher
states, study logs and test results.

Revision ID: 0001
Revises:
Create Date: 2025-11-21

Self-contained on purpose: it does not import the models, so later model changes
cannot alter what this revision builds.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("task_name", sa.String(255), nullable=False),
        sa.Column("task_hash", sa.String(64), nullable=False),
        sa.Column("task_spec", sa.JSON(), nullable=False),
        sa.Column("model_name", sa.Text(), nullable=False),
        sa.Column("model_fingerprint", sa.String(255), nullable=False),
        sa.Column("scorer_fingerprint", sa.String(255), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_studies"),
        sa.UniqueConstraint("name", name="uq_studies_name"),
        sa.CheckConstraint(
            "status IN ('running', 'finished', 'stopped')", name="ck_studies_status"
        ),
    )
    op.create_table(
        "prompts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_prompts"),
        sa.UniqueConstraint("content_hash", name="uq_prompts_content_hash"),
    )
    op.create_table(
        "trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("searcher", sa.String(100), nullable=False),
        sa.Column("operation", sa.String(100), nullable=False),
        sa.Column("parent_prompt_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("dev_score", sa.Double(), nullable=True),
        sa.Column("n_examples", sa.Integer(), nullable=False),
        sa.Column("forward_passes", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Double(), nullable=False),
        sa.Column("worker", sa.String(255), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _timestamp("heartbeat_at"),
        _timestamp("created_at"),
        _timestamp("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_trials"),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name="fk_trials_study_id_studies", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], name="fk_trials_prompt_id_prompts"),
        sa.ForeignKeyConstraint(
            ["parent_prompt_id"], ["prompts.id"], name="fk_trials_parent_prompt_id_prompts"
        ),
        sa.UniqueConstraint("study_id", "prompt_id", name="uq_trials_study_prompt"),
        sa.UniqueConstraint("study_id", "number", name="uq_trials_study_number"),
        sa.CheckConstraint(
            "state IN ('running', 'complete', 'pruned', 'failed')", name="ck_trials_state"
        ),
        sa.CheckConstraint(
            "state <> 'complete' OR dev_score IS NOT NULL", name="ck_trials_complete_has_score"
        ),
    )
    op.create_index("ix_trials_study_state", "trials", ["study_id", "state"])
    op.create_index("ix_trials_prompt_id", "trials", ["prompt_id"])
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scorer_fingerprint", sa.String(255), nullable=False),
        sa.Column("prompt_hash", sa.String(64), nullable=False),
        sa.Column("split", sa.String(100), nullable=False),
        sa.Column("example_key", sa.String(64), nullable=False),
        sa.Column("prediction", sa.Text(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_evaluations"),
        sa.UniqueConstraint(
            "scorer_fingerprint", "prompt_hash", "split", "example_key", name="uq_evaluations_key"
        ),
    )
    op.create_table(
        "searcher_states",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("searcher", sa.String(100), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("study_id", "searcher", name="pk_searcher_states"),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name="fk_searcher_states_study_id_studies",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "study_logs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("searcher", sa.String(100), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_study_logs"),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name="fk_study_logs_study_id_studies", ondelete="CASCADE"
        ),
    )
    op.create_index(
        "ix_study_logs_study_searcher_step", "study_logs", ["study_id", "searcher", "step"]
    )
    op.create_table(
        "test_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(100), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("ci_low", sa.Double(), nullable=True),
        sa.Column("ci_high", sa.Double(), nullable=True),
        sa.Column("n_examples", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_test_results"),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name="fk_test_results_study_id_studies",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["prompt_id"], ["prompts.id"], name="fk_test_results_prompt_id_prompts"
        ),
    )
    op.create_index("ix_test_results_study_id", "test_results", ["study_id"])


def downgrade() -> None:
    op.drop_table("test_results")
    op.drop_table("study_logs")
    op.drop_table("searcher_states")
    op.drop_table("evaluations")
    op.drop_table("trials")
    op.drop_table("prompts")
    op.drop_table("studies")

"""SQLAlchemy models of the trial database.

These classes must describe exactly the schema that the Alembic migrations in
``migrations/versions`` build; ``tests/test_storage.py`` checks that autogenerate
finds no difference.  Change a model only together with a new migration.

Portable choices (SQLite and PostgreSQL): ``JSON`` for structured values, ``Double``
for scores, strings with explicit lengths for keys, timestamps stored as UTC and
always returned timezone-aware (:class:`UTCDateTime`), every constraint and index
named explicitly so that migrations can refer to them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "HASH_LENGTH",
    "LABEL_LENGTH",
    "NAME_LENGTH",
    "Base",
    "EvaluationModel",
    "PromptModel",
    "SearcherStateModel",
    "StudyLogModel",
    "StudyModel",
    "TestResultModel",
    "TrialModel",
    "UTCDateTime",
    "utcnow",
]

NAME_LENGTH = 255  # study, task, worker names and fingerprints
HASH_LENGTH = 64  # SHA-256 hex digests
LABEL_LENGTH = 100  # searcher, operation, split, metric and log-key names

NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (UTC).

    SQLite keeps no offset, so values are normalised to UTC before they are written
    and tagged as UTC when read; PostgreSQL stores ``timestamp with time zone``.
    A naive datetime given to the database is taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012 - SQLAlchemy reads it as a class attribute
        datetime: UTCDateTime(),
        float: Double(),
        dict[str, Any]: JSON(),
        bytes: LargeBinary(),
        str: Text(),
    }


class StudyModel(Base):
    __tablename__ = "studies"
    __table_args__ = (
        UniqueConstraint("name", name="uq_studies_name"),
        CheckConstraint("status IN ('running', 'finished', 'stopped')", name="ck_studies_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    task_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    task_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    task_spec: Mapped[dict[str, Any]]
    model_name: Mapped[str]
    model_fingerprint: Mapped[str] = mapped_column(String(NAME_LENGTH))
    scorer_fingerprint: Mapped[str] = mapped_column(String(NAME_LENGTH))
    config: Mapped[dict[str, Any]]
    seed: Mapped[int] = mapped_column(BigInteger)
    versions: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]
    selection: Mapped[dict[str, Any] | None]  # the final pick; see promptsearch.study.selection


class PromptModel(Base):
    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("content_hash", name="uq_prompts_content_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    body: Mapped[dict[str, Any]]
    text: Mapped[str]
    length: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrialModel(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("study_id", "prompt_id", name="uq_trials_study_prompt"),
        UniqueConstraint("study_id", "number", name="uq_trials_study_number"),
        CheckConstraint(
            "state IN ('running', 'complete', 'pruned', 'failed')", name="ck_trials_state"
        ),
        CheckConstraint(
            "state <> 'complete' OR dev_score IS NOT NULL", name="ck_trials_complete_has_score"
        ),
        Index("ix_trials_study_state", "study_id", "state"),
        Index("ix_trials_prompt_id", "prompt_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    number: Mapped[int] = mapped_column(Integer)
    searcher: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    operation: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    parent_prompt_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id"))
    state: Mapped[str] = mapped_column(String(16))
    dev_score: Mapped[float | None]
    dev_tiebreak: Mapped[float | None]  # orders equal dev scores; see promptsearch.study.selection
    n_examples: Mapped[int] = mapped_column(Integer)
    forward_passes: Mapped[int] = mapped_column(BigInteger)
    seconds: Mapped[float]
    worker: Mapped[str] = mapped_column(String(NAME_LENGTH))
    error: Mapped[str | None]
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class EvaluationModel(Base):
    """The per-example score cache, shared by all studies.

    The unique constraint's index starts with (scorer_fingerprint, prompt_hash,
    split), so it also serves the cache lookup; no second index is needed.
    """

    __tablename__ = "evaluations"
    __table_args__ = (
        UniqueConstraint(
            "scorer_fingerprint", "prompt_hash", "split", "example_key", name="uq_evaluations_key"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scorer_fingerprint: Mapped[str] = mapped_column(String(NAME_LENGTH))
    prompt_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    split: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    example_key: Mapped[str] = mapped_column(String(HASH_LENGTH))
    prediction: Mapped[str]
    correct: Mapped[bool] = mapped_column(Boolean)
    score: Mapped[float]
    detail: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SearcherStateModel(Base):
    __tablename__ = "searcher_states"

    study_id: Mapped[int] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    searcher: Mapped[str] = mapped_column(String(LABEL_LENGTH), primary_key=True)
    state: Mapped[bytes]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StudyLogModel(Base):
    __tablename__ = "study_logs"
    __table_args__ = (Index("ix_study_logs_study_searcher_step", "study_id", "searcher", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    searcher: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    step: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    value: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TestResultModel(Base):
    __test__ = False  # not a pytest test class, despite the name
    __tablename__ = "test_results"
    __table_args__ = (
        Index("ix_test_results_study_id", "study_id"),
        UniqueConstraint(
            "study_id", "prompt_id", "split", name="uq_test_results_study_prompt_split"
        ),
        CheckConstraint(
            "p_value IS NULL OR (p_value >= 0 AND p_value <= 1)", name="ck_test_results_p_value"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    split: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    metric: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    value: Mapped[float]
    ci_low: Mapped[float | None]
    ci_high: Mapped[float | None]
    n_examples: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # revision 0002: what `promptsearch final` records beside the score
    dev_score: Mapped[float | None]
    dev_rank: Mapped[int | None] = mapped_column(Integer)
    is_seed: Mapped[bool] = mapped_column(Boolean, server_default=false())
    is_baseline: Mapped[bool] = mapped_column(Boolean, server_default=false())
    baseline_prompt_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id"))
    test_name: Mapped[str | None] = mapped_column(String(LABEL_LENGTH))
    p_value: Mapped[float | None]
    scorer_fingerprint: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    detail: Mapped[dict[str, Any] | None]

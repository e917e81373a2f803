"""The per-example evaluation cache, searcher states and study metrics.

Part of :class:`~promptsearch.storage.Storage`; kept apart from the study and trial
methods only to keep modules short.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from promptsearch.errors import ConfigError
from promptsearch.storage._common import (
    check_finite,
    check_hash,
    check_json,
    check_name,
    chunked,
    dialect_insert,
    require_study,
    unique,
)
from promptsearch.storage.database import Database
from promptsearch.storage.orm import (
    HASH_LENGTH,
    LABEL_LENGTH,
    NAME_LENGTH,
    EvaluationModel,
    SearcherStateModel,
    StudyLogModel,
    utcnow,
)
from promptsearch.storage.records import EvaluationRecord, MetricRecord

__all__ = ["CacheStore", "evaluation_rows", "insert_evaluations"]


def evaluation_rows(
    scorer_fingerprint: str, prompt_hash: str, split: str, records: Sequence[EvaluationRecord]
) -> list[dict[str, object]]:
    """Checked rows of the evaluation cache for *records*, one per example key (the
    first record of a key wins), sorted by key."""
    check_name("scorer_fingerprint", scorer_fingerprint, NAME_LENGTH)
    check_hash("prompt_hash", prompt_hash)
    check_name("split", split, LABEL_LENGTH)
    now = utcnow()
    rows: dict[str, dict[str, object]] = {}
    for i, record in enumerate(records):
        if not isinstance(record, EvaluationRecord):
            raise ConfigError(
                f"records[{i}] must be an EvaluationRecord; got {type(record).__name__}"
            )
        key = check_name(f"records[{i}].example_key", record.example_key, HASH_LENGTH)
        if not isinstance(record.prediction, str):
            raise ConfigError(
                f"records[{i}].prediction must be a string; got {record.prediction!r}"
            )
        if not isinstance(record.correct, bool):
            raise ConfigError(f"records[{i}].correct must be a bool; got {record.correct!r}")
        detail = (
            None if record.detail is None else check_json(f"records[{i}].detail", record.detail)
        )
        rows.setdefault(
            key,
            {
                "scorer_fingerprint": scorer_fingerprint,
                "prompt_hash": prompt_hash,
                "split": split,
                "example_key": key,
                "prediction": record.prediction,
                "correct": record.correct,
                "score": check_finite(f"records[{i}].score", record.score),
                "detail": detail,
                "created_at": now,
            },
        )
    # Sorted, so that concurrent writers lock keys in the same order (no deadlock).
    return [rows[key] for key in sorted(rows)]


def insert_evaluations(session: Session, rows: Sequence[dict[str, object]]) -> None:
    """Insert rows made by :func:`evaluation_rows`; keys already cached keep theirs."""
    statement = dialect_insert(session, EvaluationModel).on_conflict_do_nothing(
        index_elements=["scorer_fingerprint", "prompt_hash", "split", "example_key"]
    )
    for chunk in chunked(rows):
        session.execute(statement, list(chunk))


class CacheStore(Database):
    """Evaluation cache, searcher state and metric methods of the storage."""

    # -- evaluation cache ---------------------------------------------------------------

    def cached_evaluations(
        self,
        scorer_fingerprint: str,
        prompt_hash: str,
        split: str,
        example_keys: Sequence[str],
    ) -> dict[str, EvaluationRecord]:
        """The cached results among *example_keys*, by example key (missing keys absent)."""
        check_name("scorer_fingerprint", scorer_fingerprint, NAME_LENGTH)
        check_hash("prompt_hash", prompt_hash)
        check_name("split", split, LABEL_LENGTH)
        if isinstance(example_keys, str):
            raise ConfigError(
                f"example_keys must be a sequence of keys, not one string; got {example_keys!r}"
            )
        keys = unique(example_keys)
        found: dict[str, EvaluationRecord] = {}
        model = EvaluationModel
        with self.session(write=False) as session:
            for chunk in chunked(keys):
                rows = session.execute(
                    select(
                        model.example_key,
                        model.prediction,
                        model.correct,
                        model.score,
                        model.detail,
                    ).where(
                        model.scorer_fingerprint == scorer_fingerprint,
                        model.prompt_hash == prompt_hash,
                        model.split == split,
                        model.example_key.in_(chunk),
                    )
                )
                for key, prediction, correct, score, detail in rows:
                    found[key] = EvaluationRecord(
                        example_key=key,
                        prediction=prediction,
                        correct=bool(correct),
                        score=float(score),
                        detail=None if detail is None else dict(detail),
                    )
        return found

    def add_evaluations(
        self,
        scorer_fingerprint: str,
        prompt_hash: str,
        split: str,
        records: Sequence[EvaluationRecord],
    ) -> None:
        """Cache *records*; keys already cached (by anyone) keep their first result."""
        rows = evaluation_rows(scorer_fingerprint, prompt_hash, split, records)
        if not rows:
            return
        with self.session() as session:
            insert_evaluations(session, rows)

    # -- searcher states ----------------------------------------------------------------

    def save_searcher_state(self, study_name: str, searcher: str, state: bytes) -> None:
        """Store (replace) the serialised state of *searcher* in the study."""
        check_name("searcher", searcher, LABEL_LENGTH)
        if not isinstance(state, bytes | bytearray | memoryview):
            raise ConfigError(f"state must be bytes; got {type(state).__name__}")
        with self.session() as session:
            study = require_study(session, study_name, self.url)
            statement = dialect_insert(session, SearcherStateModel).values(
                study_id=study.id, searcher=searcher, state=bytes(state), updated_at=utcnow()
            )
            statement = statement.on_conflict_do_update(
                index_elements=["study_id", "searcher"],
                set_={
                    "state": statement.excluded.state,
                    "updated_at": statement.excluded.updated_at,
                },
            )
            session.execute(statement)

    def load_searcher_state(self, study_name: str, searcher: str) -> bytes | None:
        """The state last saved by *searcher* in the study, or ``None``."""
        check_name("searcher", searcher, LABEL_LENGTH)
        with self.session(write=False) as session:
            study = require_study(session, study_name, self.url)
            state = session.scalar(
                select(SearcherStateModel.state).where(
                    SearcherStateModel.study_id == study.id,
                    SearcherStateModel.searcher == searcher,
                )
            )
        return None if state is None else bytes(state)

    # -- metrics ------------------------------------------------------------------------

    def log_metric(self, study_name: str, searcher: str, step: int, key: str, value: float) -> None:
        """Record *value* of metric *key* (a reward, a loss ...) at *step* of *searcher*."""
        check_name("searcher", searcher, LABEL_LENGTH)
        check_name("key", key, LABEL_LENGTH)
        if isinstance(step, bool) or not isinstance(step, int):
            raise ConfigError(f"step must be a whole number; got {step!r}")
        number = check_finite("value", value, allow_infinite=True)
        with self.session() as session:
            study = require_study(session, study_name, self.url)
            row = StudyLogModel(
                study_id=study.id, searcher=searcher, step=step, key=key, value=number
            )
            session.add(row)

    def metrics(self, study_name: str, searcher: str | None = None) -> list[MetricRecord]:
        """Logged metrics of the study (of one searcher if given), ordered by searcher,
        key, step and then logging order."""
        model = StudyLogModel
        with self.session(write=False) as session:
            study = require_study(session, study_name, self.url)
            query = select(model).where(model.study_id == study.id)
            if searcher is not None:
                query = query.where(model.searcher == searcher)
            rows = session.scalars(query.order_by(model.searcher, model.key, model.step, model.id))
            return [
                MetricRecord(
                    searcher=row.searcher,
                    step=row.step,
                    key=row.key,
                    value=row.value,
                    created_at=row.created_at,
                )
                for row in rows
            ]

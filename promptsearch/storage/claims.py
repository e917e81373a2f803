"""Claiming trials: how many workers share one study without doing anything twice.

Part of :class:`~promptsearch.storage.Storage`; used by :mod:`promptsearch.study.worker`.

* **Claim.**  A worker claims a candidate by inserting its trial, in state
  "running", under its worker name and with a fresh heartbeat
  (:meth:`ClaimStore.claim_trial`).  The study row is locked first (PostgreSQL
  ``SELECT ... FOR UPDATE``; on SQLite every write transaction starts with
  ``BEGIN IMMEDIATE`` and so runs alone), so claims of one study happen one at a
  time: the check that nobody holds the prompt yet and the check of the budget
  (trials and forward passes so far) see every earlier claim.  The unique
  constraint on (study, prompt) backs this up.
* **Heartbeat.**  While it scores, the worker renews the heartbeat
  (:meth:`ClaimStore.beat`); the answer tells it whether the trial is still its own.
* **Reclaim.**  A running trial whose heartbeat is older than a timeout belongs to
  a worker that died (or stalled).  Another worker takes it over
  (:meth:`ClaimStore.reclaim_trial`): PostgreSQL picks it with
  ``FOR UPDATE SKIP LOCKED``, SQLite inside its one writer's transaction, and the
  trial's worker and heartbeat change in the same transaction, so exactly one
  worker wins.  The old owner can no longer finish it: ``finish_trial(...,
  claimed_by=OLD)`` raises :class:`~promptsearch.errors.ClaimLostError`.

Times are the database server's clock on PostgreSQL (workers on several machines
need not agree on the time) and this machine's on SQLite (one machine anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from sqlalchemy import ColumnElement, case, func, or_, select, update
from sqlalchemy.orm import Session

from promptsearch.errors import ConfigError, StorageError
from promptsearch.storage._common import check_finite, check_hash, check_name, require_study
from promptsearch.storage.database import Database, UniqueViolation
from promptsearch.storage.orm import LABEL_LENGTH, NAME_LENGTH, TrialModel, utcnow
from promptsearch.storage.records import TrialRecord
from promptsearch.storage.trials import (
    _add_running_trial,
    _prompt_id,
    _trial_record,
    _trial_rows,
)

__all__ = ["Claim", "ClaimCounts", "ClaimStore"]

_CLAIM_ATTEMPTS: Final = 5
_LONG_AGO: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Claim:
    """The answer to :meth:`ClaimStore.claim_trial`.

    ``status`` is "claimed" (``trial`` is the new running trial, this worker's),
    "taken" (the study already has a trial of the prompt: ``trial`` is that one, in
    whatever state and of whichever worker) or "budget" (the study's budget is
    claimed in full; ``trial`` is ``None``).
    """

    status: Literal["claimed", "taken", "budget"]
    trial: TrialRecord | None


@dataclass(frozen=True)
class ClaimCounts:
    """Where a study stands: its trials (any state), those still running, and the
    forward passes its finished trials spent."""

    trials: int
    running: int
    forward_passes: int


def _db_now(session: Session) -> datetime:
    """The current time by the database's clock (PostgreSQL) or this machine's (SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        now = session.scalar(select(func.now()))
        if isinstance(now, datetime):
            return now.astimezone(UTC)
    return utcnow()


def _check_limit(field: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{field} must be a whole number ≥ 0 or None; got {value!r}")
    return value


def _check_timeout(stale_after: object) -> float:
    seconds = check_finite("stale_after", stale_after)
    if seconds <= 0:
        raise ConfigError(f"stale_after must be > 0 seconds; got {stale_after!r}")
    return seconds


class ClaimStore(Database):
    """Claim, heartbeat and reclaim methods of the storage (see the module docstring)."""

    def claim_trial(
        self,
        study_name: str,
        content_hash: str,
        *,
        searcher: str,
        operation: str,
        parent_hash: str | None,
        worker: str,
        max_trials: int | None = None,
        max_forward_passes: int | None = None,
    ) -> Claim:
        """Claim the evaluation of a stored prompt for *worker*, within the budget.

        The prompt is "taken" when the study has a trial of it already (that trial
        is returned); else the claim is refused ("budget") when the study has
        *max_trials* trials (in any state) or its finished trials spent
        *max_forward_passes*; else a new running trial, numbered after the study's
        last one, is "claimed".
        """
        check_hash("content_hash", content_hash)
        if parent_hash is not None:
            check_hash("parent_hash", parent_hash)
        check_name("searcher", searcher, LABEL_LENGTH)
        check_name("operation", operation, LABEL_LENGTH)
        check_name("worker", worker, NAME_LENGTH)
        limit = _check_limit("max_trials", max_trials)
        passes_limit = _check_limit("max_forward_passes", max_forward_passes)
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                with self.session() as session:
                    study = require_study(session, study_name, self.url, lock=True)
                    prompt_id = _prompt_id(session, content_hash, "content_hash", self.url)
                    taken = _trial_rows(
                        session, TrialModel.study_id == study.id, TrialModel.prompt_id == prompt_id
                    )
                    if taken:
                        return Claim("taken", _trial_record(*taken[0]))
                    n_trials, passes, last = session.execute(
                        select(
                            func.count(TrialModel.id),
                            func.coalesce(func.sum(TrialModel.forward_passes), 0),
                            func.max(TrialModel.number),
                        ).where(TrialModel.study_id == study.id)
                    ).one()
                    if (limit is not None and n_trials >= limit) or (
                        passes_limit is not None and passes >= passes_limit
                    ):
                        return Claim("budget", None)
                    parent_id = (
                        None
                        if parent_hash is None
                        else _prompt_id(session, parent_hash, "parent_hash", self.url)
                    )
                    trial = _add_running_trial(
                        session,
                        study,
                        prompt_id=prompt_id,
                        last_number=last,
                        searcher=searcher,
                        operation=operation,
                        parent_id=parent_id,
                        worker=worker,
                        now=_db_now(session),
                    )
                    record = _trial_record(trial, study_name, content_hash, parent_hash)
                    return Claim("claimed", record)
            except UniqueViolation:
                continue  # a trial that was not there a moment ago: look again
        raise StorageError(
            f"could not claim a trial in study {study_name!r} of {self.url} after "
            f"{_CLAIM_ATTEMPTS} attempts: other workers kept writing the same rows; retry"
        )

    def beat(self, trial_id: int, worker: str) -> bool:
        """Renew the heartbeat of *worker*'s running trial; False when the trial is
        no longer running under *worker* (finished, or reclaimed by another worker)."""
        check_name("worker", worker, NAME_LENGTH)
        with self.session() as session:
            now = _db_now(session)
            result = session.execute(
                update(TrialModel)
                .where(
                    TrialModel.id == trial_id,
                    TrialModel.worker == worker,
                    TrialModel.state == "running",
                )
                .values(heartbeat_at=now)
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(result, "rowcount", 0) == 1)

    def release_trial(self, trial_id: int, worker: str) -> bool:
        """Give up *worker*'s running trial (it is stopping): its heartbeat is set
        long ago, so that any other worker reclaims it at once.  False when the trial
        was not running under *worker*."""
        check_name("worker", worker, NAME_LENGTH)
        with self.session() as session:
            result = session.execute(
                update(TrialModel)
                .where(
                    TrialModel.id == trial_id,
                    TrialModel.worker == worker,
                    TrialModel.state == "running",
                )
                .values(heartbeat_at=_LONG_AGO)
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(result, "rowcount", 0) == 1)

    def reclaim_trial(
        self,
        study_name: str,
        worker: str,
        *,
        stale_after: float,
        trial_id: int | None = None,
    ) -> TrialRecord | None:
        """Take over one running trial of the study whose worker stopped beating.

        A trial qualifies when its heartbeat is more than *stale_after* seconds old,
        or when it already runs under *worker* (the same worker name, started again:
        this process is not scoring it).  With *trial_id*, only that trial.  The
        trial (lowest number first) passes to *worker* with a fresh heartbeat and is
        returned; ``None`` when no trial qualifies or another worker was quicker.
        """
        check_name("worker", worker, NAME_LENGTH)
        timeout = timedelta(seconds=_check_timeout(stale_after))

        def conditions(study_id: int, now: datetime) -> list[ColumnElement[bool]]:
            found: list[ColumnElement[bool]] = [
                TrialModel.study_id == study_id,
                TrialModel.state == "running",
                or_(TrialModel.heartbeat_at < now - timeout, TrialModel.worker == worker),
            ]
            if trial_id is not None:
                found.append(TrialModel.id == trial_id)
            return found

        # a read first: it takes no lock, and nearly always finds nothing
        with self.session(write=False) as session:
            study_id = require_study(session, study_name, self.url).id
            where = conditions(study_id, _db_now(session))
            if session.scalar(select(TrialModel.id).where(*where).limit(1)) is None:
                return None
        with self.session() as session:
            now = _db_now(session)
            query = (
                select(TrialModel)
                .where(*conditions(study_id, now))
                .order_by(TrialModel.number)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            trial = session.scalars(query).first()
            if trial is None:
                return None
            trial.worker = worker  # locked (PostgreSQL) or alone (SQLite): no one else wins
            trial.heartbeat_at = now
            session.flush()
            return _trial_record(*_trial_rows(session, TrialModel.id == trial.id)[0])

    def claim_counts(self, study_name: str) -> ClaimCounts:
        """The study's trials (any state), running trials, and forward passes spent."""
        with self.session(write=False) as session:
            study = require_study(session, study_name, self.url)
            n_trials, running, passes = session.execute(
                select(
                    func.count(TrialModel.id),
                    func.coalesce(func.sum(case((TrialModel.state == "running", 1), else_=0)), 0),
                    func.coalesce(func.sum(TrialModel.forward_passes), 0),
                ).where(TrialModel.study_id == study.id)
            ).one()
        return ClaimCounts(trials=int(n_trials), running=int(running), forward_passes=int(passes))

"""Trial methods of the storage: starting and finishing trials, leaderboards, lineage.

Part of :class:`~promptsearch.storage.Storage`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, case, func, select, update
from sqlalchemy.orm import Session, aliased

from promptsearch.errors import ClaimLostError, ConfigError, StorageError
from promptsearch.storage._common import (
    check_choice,
    check_count,
    check_finite,
    check_hash,
    check_name,
    require_study,
    resolve_prompt,
)
from promptsearch.storage.cache import CacheStore, evaluation_rows, insert_evaluations
from promptsearch.storage.database import UniqueViolation
from promptsearch.storage.orm import (
    LABEL_LENGTH,
    NAME_LENGTH,
    PromptModel,
    StudyModel,
    TrialModel,
    utcnow,
)
from promptsearch.storage.records import (
    FINISHED_TRIAL_STATES,
    TRIAL_STATES,
    EvaluationRecord,
    LeaderboardRow,
    LineageEntry,
    StudyTotals,
    TrialRecord,
)

__all__ = ["TrialStore"]

_START_ATTEMPTS = 5
_Parent = aliased(PromptModel, name="parent_prompt")


_TrialRow = tuple[TrialModel, str, str, str | None]  # trial, study name, hash, parent hash


def _trial_rows(
    session: Session,
    *conditions: ColumnElement[bool],
    lock: bool = False,
) -> list[_TrialRow]:
    """Trials matching *conditions*, by number, with their study name and prompt hashes."""
    query = (
        select(TrialModel, StudyModel.name, PromptModel.content_hash, _Parent.content_hash)
        .join(StudyModel, StudyModel.id == TrialModel.study_id)
        .join(PromptModel, PromptModel.id == TrialModel.prompt_id)
        .outerjoin(_Parent, _Parent.id == TrialModel.parent_prompt_id)
        .where(*conditions)
        .order_by(TrialModel.number)
    )
    if lock:
        query = query.with_for_update(of=TrialModel)
    rows = session.execute(query)
    return [(trial, study, prompt, parent) for trial, study, prompt, parent in rows]


def _trial_record(trial: TrialModel, study: str, content: str, parent: str | None) -> TrialRecord:
    return TrialRecord(
        id=trial.id,
        study_name=study,
        number=trial.number,
        content_hash=content,
        searcher=trial.searcher,
        operation=trial.operation,
        parent_hash=parent,
        state=trial.state,
        dev_score=trial.dev_score,
        n_examples=trial.n_examples,
        forward_passes=trial.forward_passes,
        seconds=trial.seconds,
        worker=trial.worker,
        error=trial.error,
        heartbeat_at=trial.heartbeat_at,
        created_at=trial.created_at,
        finished_at=trial.finished_at,
        dev_tiebreak=trial.dev_tiebreak,
    )


def _add_running_trial(
    session: Session,
    study: StudyModel,
    *,
    prompt_id: int,
    last_number: int | None,
    searcher: str,
    operation: str,
    parent_id: int | None,
    worker: str,
    now: datetime,
) -> TrialModel:
    """Add the study's next trial, running under *worker* since *now*, and flush it."""
    trial = TrialModel(
        study_id=study.id,
        prompt_id=prompt_id,
        number=0 if last_number is None else last_number + 1,
        searcher=searcher,
        operation=operation,
        parent_prompt_id=parent_id,
        state="running",
        n_examples=0,
        forward_passes=0,
        seconds=0.0,
        worker=worker,
        heartbeat_at=now,
        created_at=now,
    )
    session.add(trial)
    study.updated_at = now
    session.flush()
    return trial


def _prompt_id(session: Session, content_hash: str, field: str, url: str) -> int:
    query = select(PromptModel.id).where(PromptModel.content_hash == content_hash)
    prompt_id = session.scalar(query)
    if prompt_id is None:
        raise StorageError(
            f"{field} {content_hash[:12]}… is not a stored prompt in {url}; store the prompt "
            "with add_prompt() before starting a trial that uses it"
        )
    return prompt_id


class TrialStore(CacheStore):
    """Trial, leaderboard and lineage methods of the storage."""

    def start_trial(
        self,
        study_name: str,
        content_hash: str,
        *,
        searcher: str,
        operation: str,
        parent_hash: str | None,
        worker: str,
    ) -> TrialRecord | None:
        """Claim the evaluation of a stored prompt in the study.

        Returns the new running trial (numbered after the study's last one), or
        ``None`` when the study already has a trial of that prompt, made by this or
        any other worker.
        """
        check_hash("content_hash", content_hash)
        if parent_hash is not None:
            check_hash("parent_hash", parent_hash)
        check_name("searcher", searcher, LABEL_LENGTH)
        check_name("operation", operation, LABEL_LENGTH)
        check_name("worker", worker, NAME_LENGTH)
        for _ in range(_START_ATTEMPTS):
            try:
                with self.session() as session:
                    study = require_study(session, study_name, self.url, lock=True)
                    prompt_id = _prompt_id(session, content_hash, "content_hash", self.url)
                    parent_id = (
                        None
                        if parent_hash is None
                        else _prompt_id(session, parent_hash, "parent_hash", self.url)
                    )
                    taken = session.scalar(
                        select(TrialModel.id).where(
                            TrialModel.study_id == study.id, TrialModel.prompt_id == prompt_id
                        )
                    )
                    if taken is not None:
                        return None
                    last = session.scalar(
                        select(func.max(TrialModel.number)).where(TrialModel.study_id == study.id)
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
                        now=utcnow(),
                    )
                    return _trial_record(trial, study_name, content_hash, parent_hash)
            except UniqueViolation:
                continue  # a concurrent worker took the number or the prompt: look again
        raise StorageError(
            f"could not start a trial in study {study_name!r} of {self.url} after "
            f"{_START_ATTEMPTS} attempts: other workers kept writing the same rows; retry"
        )

    def finish_trial(
        self,
        trial_id: int,
        *,
        state: str,
        dev_score: float | None,
        n_examples: int,
        forward_passes: int,
        seconds: float,
        dev_tiebreak: float | None = None,
        error: str | None = None,
        scorer_fingerprint: str | None = None,
        evaluations: Sequence[EvaluationRecord] = (),
        claimed_by: str | None = None,
    ) -> TrialRecord:
        """Record the outcome of a running trial; a complete trial needs a dev score.

        *claimed_by* (a worker name): finish the trial only if it still runs under
        that worker, else raise :class:`~promptsearch.errors.ClaimLostError` (another
        worker reclaimed it; see :mod:`promptsearch.storage.claims`).

        A pruned trial (stopped early) may be finished again, e.g. once it has been
        scored on all examples; complete and failed trials are final.

        *evaluations* (with the *scorer_fingerprint* that made them) are the trial's
        per-example dev results: they go into the evaluation cache in the same
        transaction, so a crash leaves either the finished trial with its results or
        the running trial without them, never results of a trial that is still running.
        """
        check_choice("state", state, FINISHED_TRIAL_STATES)
        score = None if dev_score is None else check_finite("dev_score", dev_score)
        if state == "complete" and score is None:
            raise ConfigError(
                "dev_score must be given for a complete trial; finish it as 'pruned' or "
                "'failed' if it has no score"
            )
        tiebreak = None if dev_tiebreak is None else check_finite("dev_tiebreak", dev_tiebreak)
        check_count("n_examples", n_examples)
        check_count("forward_passes", forward_passes)
        spent = check_finite("seconds", seconds)
        if spent < 0:
            raise ConfigError(f"seconds must be ≥ 0; got {seconds!r}")
        if error is not None and not isinstance(error, str):
            raise ConfigError(f"error must be a string or None; got {type(error).__name__}")
        if evaluations and scorer_fingerprint is None:
            raise ConfigError(
                "evaluations need the scorer_fingerprint of the scorer that made them"
            )
        with self.session() as session:
            rows = _trial_rows(session, TrialModel.id == trial_id, lock=True)
            if not rows:
                raise StorageError(f"no trial with id {trial_id!r} in {self.url}")
            trial, study_name, content, parent = rows[0]
            if claimed_by is not None and trial.worker != claimed_by:
                raise ClaimLostError(
                    f"trial {trial_id} (number {trial.number} of study {study_name!r}) is no "
                    f"longer claimed by worker {claimed_by!r}: worker {trial.worker!r} took it "
                    f"over when this one's heartbeat stopped (it is {trial.state} now)"
                )
            if trial.state not in ("running", "pruned"):
                raise StorageError(
                    f"trial {trial_id} (number {trial.number} of study {study_name!r}) is "
                    f"already {trial.state}; complete and failed trials are final"
                )
            now = utcnow()
            trial.state = state
            trial.dev_score = score
            trial.dev_tiebreak = tiebreak
            trial.n_examples = n_examples
            trial.forward_passes = forward_passes
            trial.seconds = spent
            trial.error = error
            trial.heartbeat_at = now
            trial.finished_at = now
            if evaluations and scorer_fingerprint is not None:
                cached = evaluation_rows(scorer_fingerprint, content, "dev", evaluations)
                insert_evaluations(session, cached)
            session.execute(
                update(StudyModel).where(StudyModel.id == trial.study_id).values(updated_at=now)
            )
            session.flush()
            return _trial_record(trial, study_name, content, parent)

    def heartbeat(self, trial_id: int) -> None:
        """Mark a running trial as still being worked on."""
        with self.session() as session:
            trial = session.get(TrialModel, trial_id)
            if trial is None:
                raise StorageError(f"no trial with id {trial_id!r} in {self.url}")
            trial.heartbeat_at = utcnow()

    def get_trial(self, study_name: str, content_hash: str) -> TrialRecord | None:
        """The study's trial of the prompt, or ``None``."""
        check_hash("content_hash", content_hash)
        with self.session(write=False) as session:
            study = require_study(session, study_name, self.url)
            rows = _trial_rows(
                session, TrialModel.study_id == study.id, PromptModel.content_hash == content_hash
            )
            return _trial_record(*rows[0]) if rows else None

    def trials(self, study_name: str, *, states: Iterable[str] | None = None) -> list[TrialRecord]:
        """The study's trials (only those in *states* if given), by number."""
        wanted = None
        if states is not None:
            if isinstance(states, str):
                raise ConfigError(
                    f"states must be a list of states, not one string; got {states!r}"
                )
            wanted = [check_choice("states[]", s, TRIAL_STATES) for s in states]
        with self.session(write=False) as session:
            study = require_study(session, study_name, self.url)
            conditions = [TrialModel.study_id == study.id]
            if wanted is not None:
                conditions.append(TrialModel.state.in_(wanted))
            return [_trial_record(*row) for row in _trial_rows(session, *conditions)]

    def leaderboard(
        self,
        study_name: str,
        *,
        top: int | None = None,
        searcher: str | None = None,
        include_pruned: bool = False,
    ) -> list[LeaderboardRow]:
        """Complete trials, best first: by dev score, then by the tie-break statistic
        (``dev_tiebreak``, higher first, missing last), then more examples, then earlier.

        With *include_pruned*, the trials racing stopped early follow, those that got
        further first (more examples), then by their partial dev score.
        """
        if not isinstance(include_pruned, bool):
            raise ConfigError(f"include_pruned must be True or False; got {include_pruned!r}")
        if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
            raise ConfigError(f"top must be a whole number ≥ 1 or None; got {top!r}")
        with self.session(write=False) as session:
            study = require_study(session, study_name, self.url)
            shown = TrialModel.state == "complete"
            if include_pruned:
                pruned = (TrialModel.state == "pruned") & TrialModel.dev_score.is_not(None)
                shown = shown | pruned
            is_pruned = case((TrialModel.state == "pruned", 1), else_=0)
            pruned_n = case((TrialModel.state == "pruned", TrialModel.n_examples), else_=0)
            query = (
                select(TrialModel, PromptModel, _Parent.content_hash)
                .join(PromptModel, PromptModel.id == TrialModel.prompt_id)
                .outerjoin(_Parent, _Parent.id == TrialModel.parent_prompt_id)
                .where(TrialModel.study_id == study.id, shown)
                .order_by(
                    is_pruned,
                    pruned_n.desc(),
                    TrialModel.dev_score.desc(),
                    TrialModel.dev_tiebreak.desc().nulls_last(),
                    TrialModel.n_examples.desc(),
                    TrialModel.number,
                )
            )
            if searcher is not None:
                query = query.where(TrialModel.searcher == searcher)
            if top is not None:
                query = query.limit(top)
            return [
                LeaderboardRow(
                    rank=rank,
                    content_hash=prompt.content_hash,
                    dev_score=float(
                        trial.dev_score or 0.0
                    ),  # not NULL: ck_trials_complete_has_score
                    n_examples=trial.n_examples,
                    searcher=trial.searcher,
                    operation=trial.operation,
                    text=prompt.text,
                    body=dict(prompt.body),
                    forward_passes=trial.forward_passes,
                    number=trial.number,
                    parent_hash=parent,
                    state=trial.state,
                    dev_tiebreak=trial.dev_tiebreak,
                )
                for rank, (trial, prompt, parent) in enumerate(session.execute(query), start=1)
            ]

    def lineage(self, content_hash: str, study_name: str | None = None) -> list[LineageEntry]:
        """The prompt and its ancestors, nearest first (depth 0 is the prompt itself).

        Parents are followed through trials of *study_name*, or, without one, through
        each prompt's first trial in any study.  The chain stops at a prompt without a
        parent or without a trial there, and before any prompt seen already (a cycle).
        """
        with self.session(write=False) as session:
            study_id = (
                None if study_name is None else require_study(session, study_name, self.url).id
            )
            prompt = resolve_prompt(session, content_hash, self.url)
            entries: list[LineageEntry] = []
            seen: set[int] = set()
            current: PromptModel | None = prompt
            while current is not None and current.id not in seen:
                seen.add(current.id)
                query = (
                    select(TrialModel, StudyModel.name)
                    .join(StudyModel, StudyModel.id == TrialModel.study_id)
                    .where(TrialModel.prompt_id == current.id)
                    .order_by(TrialModel.id)
                    .limit(1)
                )
                if study_id is not None:
                    query = query.where(TrialModel.study_id == study_id)
                found = session.execute(query).one_or_none()
                trial, trial_study = found if found is not None else (None, None)
                entries.append(
                    LineageEntry(
                        depth=len(entries),
                        content_hash=current.content_hash,
                        text=current.text,
                        study_name=trial_study,
                        number=None if trial is None else trial.number,
                        searcher=None if trial is None else trial.searcher,
                        operation=None if trial is None else trial.operation,
                        state=None if trial is None else trial.state,
                        dev_score=None if trial is None else trial.dev_score,
                    )
                )
                if trial is None or trial.parent_prompt_id is None:
                    break
                current = session.get(PromptModel, trial.parent_prompt_id)
            return entries

    def totals(self, study_name: str) -> StudyTotals:
        """How many trials the study has, how many complete, and what they cost."""
        with self.session(write=False) as session:
            study = require_study(session, study_name, self.url)
            n_trials, n_complete, passes, seconds = session.execute(
                select(
                    func.count(TrialModel.id),
                    func.coalesce(func.sum(case((TrialModel.state == "complete", 1), else_=0)), 0),
                    func.coalesce(func.sum(TrialModel.forward_passes), 0),
                    func.coalesce(func.sum(TrialModel.seconds), 0.0),
                ).where(TrialModel.study_id == study.id)
            ).one()
        return StudyTotals(
            n_trials=int(n_trials),
            n_complete=int(n_complete),
            forward_passes=int(passes),
            seconds=float(seconds),
        )

"""The storage API: studies and prompts here, trials in :mod:`.trials`, the
evaluation cache, searcher states and metrics in :mod:`.cache`, held-out (test)
results in :mod:`.heldout`.

Every method opens its own short transaction through :meth:`Database.session` and
returns plain frozen records, so callers never hold sessions or ORM objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import case, func, select

from promptsearch.errors import ConfigError, StorageError, StudyConflictError
from promptsearch.storage._common import (
    check_choice,
    check_count,
    check_hash,
    check_json,
    check_name,
    dialect_insert,
    require_study,
    resolve_prompt,
    study_record,
)
from promptsearch.storage.claims import ClaimStore
from promptsearch.storage.database import UniqueViolation
from promptsearch.storage.heldout import HeldOutStore
from promptsearch.storage.orm import NAME_LENGTH, PromptModel, StudyModel, TrialModel, utcnow
from promptsearch.storage.records import (
    STUDY_STATUSES,
    PromptRecord,
    StudyRecord,
    StudySummary,
)
from promptsearch.storage.trials import TrialStore
from promptsearch.validation import control_characters

__all__ = ["Storage"]


class Storage(ClaimStore, TrialStore, HeldOutStore):
    """The trial database.  Open one with :func:`promptsearch.storage.open_storage`.

    Safe to share between threads; several processes (or machines, with PostgreSQL)
    may work on the same database at once.
    """

    # -- studies ------------------------------------------------------------------------

    def create_or_resume_study(
        self,
        name: str,
        *,
        task_name: str,
        task_hash: str,
        task_spec: Mapping[str, Any],
        model_name: str,
        model_fingerprint: str,
        scorer_fingerprint: str,
        config: Mapping[str, Any],
        seed: int,
        versions: Mapping[str, Any],
    ) -> StudyRecord:
        """Create study *name*, or resume it when it exists with the same task data,
        model and scorer (its status goes back to "running"; config, seed and versions
        are updated).  A study of that name with another task, model or scorer raises
        :class:`~promptsearch.errors.StudyConflictError`."""
        check_name("study name", name, NAME_LENGTH)
        odd = control_characters(name)
        if odd:
            raise ConfigError(
                f"study name {name!r} holds control character(s) {odd}; name the study with "
                "printable characters only"
            )
        check_name("task_name", task_name, NAME_LENGTH)
        check_hash("task_hash", task_hash)
        if not isinstance(model_name, str) or not model_name:
            raise ConfigError(f"model_name must be a non-empty string; got {model_name!r}")
        check_name("model_fingerprint", model_fingerprint, NAME_LENGTH)
        check_name("scorer_fingerprint", scorer_fingerprint, NAME_LENGTH)
        if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**63:
            raise ConfigError(f"seed must be a whole number (64-bit); got {seed!r}")
        values: dict[str, Any] = {
            "task_name": task_name,
            "task_hash": task_hash,
            "task_spec": check_json("task_spec", task_spec),
            "model_name": model_name,
            "model_fingerprint": model_fingerprint,
            "scorer_fingerprint": scorer_fingerprint,
            "config": check_json("config", config),
            "seed": seed,
            "versions": check_json("versions", versions),
        }
        for _ in range(2):  # a second round only if another process created it meanwhile
            try:
                with self.session() as session:
                    query = select(StudyModel).where(StudyModel.name == name).with_for_update()
                    study = session.scalars(query).one_or_none()
                    if study is None:
                        study = StudyModel(name=name, status="running", **values)
                        session.add(study)
                    else:
                        self._check_same_study(study, values)
                        study.status = "running"
                        study.finished_at = None
                        study.config = values["config"]
                        study.seed = seed
                        study.versions = values["versions"]
                        study.updated_at = utcnow()
                    session.flush()
                    return study_record(study)
            except UniqueViolation:
                continue
        raise StudyConflictError(
            f"study {name!r} in {self.url} is being created by another process at the same "
            "time; retry"
        )

    @staticmethod
    def _check_same_study(study: StudyModel, new: Mapping[str, Any]) -> None:
        differences = []
        if study.task_hash != new["task_hash"]:
            differences.append(
                f"task: stored {study.task_name!r} (data hash {study.task_hash[:12]}) vs. given "
                f"{new['task_name']!r} (data hash {new['task_hash'][:12]})"
            )
        if study.model_fingerprint != new["model_fingerprint"]:
            differences.append(
                f"model: stored {study.model_name!r} (fingerprint {study.model_fingerprint}) vs. "
                f"given {new['model_name']!r} (fingerprint {new['model_fingerprint']})"
            )
        if study.scorer_fingerprint != new["scorer_fingerprint"]:
            differences.append(
                f"scorer: stored {study.scorer_fingerprint!r} vs. given "
                f"{new['scorer_fingerprint']!r}"
            )
        if differences:
            raise StudyConflictError(
                f"study {study.name!r} already exists with a different "
                + "; ".join(differences)
                + "; rerun with the same task and model to resume it, or pick another "
                "--study name"
            )

    def get_study(self, name: str) -> StudyRecord | None:
        """The study called *name*, or ``None``."""
        with self.session(write=False) as session:
            study = session.scalars(select(StudyModel).where(StudyModel.name == name)).one_or_none()
            return None if study is None else study_record(study)

    def list_studies(self) -> list[StudySummary]:
        """Every study, oldest first, with its trial count and best dev score."""
        stats = (
            select(
                TrialModel.study_id,
                func.count(TrialModel.id).label("n_trials"),
                func.max(case((TrialModel.state == "complete", TrialModel.dev_score))).label(
                    "best"
                ),
            )
            .group_by(TrialModel.study_id)
            .subquery()
        )
        query = (
            select(StudyModel, stats.c.n_trials, stats.c.best)
            .outerjoin(stats, stats.c.study_id == StudyModel.id)
            .order_by(StudyModel.id)
        )
        with self.session(write=False) as session:
            return [
                StudySummary(
                    name=study.name,
                    task_name=study.task_name,
                    model_name=study.model_name,
                    n_trials=int(n_trials or 0),
                    best_dev_score=None if best is None else float(best),
                    status=study.status,
                    created_at=study.created_at,
                    updated_at=study.updated_at,
                )
                for study, n_trials, best in session.execute(query)
            ]

    def set_study_status(self, name: str, status: str) -> None:
        """Mark the study "running", "finished" or "stopped"."""
        check_choice("status", status, STUDY_STATUSES)
        with self.session() as session:
            study = require_study(session, name, self.url, lock=True)
            now = utcnow()
            study.status = status
            study.finished_at = None if status == "running" else now
            study.updated_at = now

    def set_study_selection(self, name: str, selection: Mapping[str, Any] | None) -> None:
        """Store the study's final pick (a JSON mapping; see :mod:`promptsearch.study.selection`),
        or clear it with ``None``."""
        record = None if selection is None else check_json("selection", selection)
        with self.session() as session:
            study = require_study(session, name, self.url, lock=True)
            study.selection = record
            study.updated_at = utcnow()

    # -- prompts ------------------------------------------------------------------------

    def add_prompt(self, body: Mapping[str, Any], content_hash: str, text: str, length: int) -> int:
        """Store a prompt once (by content hash, for all studies); return its id.

        Idempotent, also when several processes add the same prompt at once.
        """
        check_hash("content_hash", content_hash)
        if not isinstance(text, str):
            raise ConfigError(f"text must be a string; got {type(text).__name__}")
        row = {
            "content_hash": content_hash,
            "body": check_json("body", body),
            "text": text,
            "length": check_count("length", length),
            "created_at": utcnow(),
        }
        with self.session() as session:
            known = session.scalar(
                select(PromptModel.id).where(PromptModel.content_hash == content_hash)
            )
            if known is not None:
                return known
            # INSERT ... ON CONFLICT DO NOTHING: a concurrent insert of the same hash is
            # not an error; the SELECT below then finds the winner's row.
            session.execute(
                dialect_insert(session, PromptModel)
                .values(**row)
                .on_conflict_do_nothing(index_elements=["content_hash"])
            )
            prompt_id = session.scalar(
                select(PromptModel.id).where(PromptModel.content_hash == content_hash)
            )
            if prompt_id is None:  # pragma: no cover - the row exists, ours or theirs
                raise StorageError(f"prompt {content_hash} could not be stored in {self.url}")
            return prompt_id

    def has_prompt(self, content_hash: str) -> bool:
        """Whether the prompt with exactly this content hash is stored."""
        with self.session(write=False) as session:
            query = select(PromptModel.id).where(PromptModel.content_hash == content_hash)
            return session.scalar(query) is not None

    def get_prompt(self, hash_or_prefix: str) -> PromptRecord:
        """The prompt whose content hash is, or uniquely starts with, the given hex."""
        with self.session(write=False) as session:
            prompt = resolve_prompt(session, hash_or_prefix, self.url)
            return PromptRecord(
                id=prompt.id,
                content_hash=prompt.content_hash,
                body=dict(prompt.body),
                text=prompt.text,
                length=prompt.length,
                created_at=prompt.created_at,
            )

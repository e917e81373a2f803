"""The study's Optuna mirror (``--optuna-storage``): every trial of every searcher,
copied into a persistent Optuna study, so that ``optuna-dashboard`` and Optuna's plots
show the whole search.  See docs/optuna.md.

* **Study.**  Named after the promptsearch study unless named otherwise, direction
  maximize; its user attributes name the promptsearch study and task.
* **Trials.**  One Optuna trial per promptsearch trial, written when the trial
  finishes: complete (value: the dev score), pruned by racing (the rung scores as
  intermediate values, by the rung's number of dev examples) or failed (FAIL).  A
  complete trial of a racing study has its rung scores and the full dev score as
  intermediate values too.  The prompt text, its content hash, the searcher, the
  operation, the trial number and the worker are user attributes; the ``optuna``
  searcher's trials keep their parameters (pool indices), other searchers' have none.
* **No copies.**  A trial is keyed by (promptsearch study, content hash), a key the
  mirror skips when the Optuna study holds it: a resumed study, which replays its
  trials, adds none.  A ``run`` first copies the finished trials the Optuna study
  lacks (in trial order, without parameters): a study mirrored late, or trials whose
  copy failed.  Workers copy only the trials they finish, each exactly once, so many
  workers can share one Optuna storage (an RDB storage or a journal file).
* **Failures.**  The storage is opened before the search starts: an unreachable one
  stops the study with one line.  A write that fails later is a logged warning, and
  the search goes on (the next ``run``, or ``promptsearch db mirror-optuna``, copies
  what is missing).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError, StorageError
from promptsearch.searchers._optuna_mirror import (
    JOURNAL_PREFIX,
    MirrorParams,
    OptunaMirror,
    check_optuna_url,
    open_optuna_storage,
    public_url,
)

if TYPE_CHECKING:
    from promptsearch.storage import Storage, TrialRecord
    from promptsearch.study.racing import Race

__all__ = ["StudyMirror", "check_optuna_storage"]

logger = logging.getLogger(__name__)

_FINISHED = ("complete", "pruned", "failed")
_STATES = {"complete": "complete", "pruned": "pruned", "failed": "fail"}


def _same_database(optuna_url: str, storage_url: str) -> bool:
    """Whether the Optuna URL names the promptsearch database (whose tables ``studies``
    and ``trials`` Optuna's own would clash with)."""
    if optuna_url.startswith(JOURNAL_PREFIX):
        return False
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        ours = make_url(storage_url)
        theirs = make_url(optuna_url)
    except ArgumentError:
        return False
    if ours.get_backend_name() != theirs.get_backend_name():
        return False
    if ours.get_backend_name() == "sqlite":
        if not ours.database or not theirs.database:
            return False
        return Path(ours.database).resolve() == Path(theirs.database).resolve()
    return (ours.host, ours.port, ours.database) == (theirs.host, theirs.port, theirs.database)


def check_optuna_storage(url: object, storage_url: str | None = None) -> str:
    """*url*, checked (an Optuna storage URL or ``journal:PATH``, not the promptsearch
    database at *storage_url*) and opened once, so that a bad one fails with one line
    before any model loads.  Raises :class:`ConfigError` or :class:`StorageError`."""
    checked = check_optuna_url(url)
    if storage_url is not None and _same_database(checked, storage_url):
        raise ConfigError(
            f"--optuna-storage {public_url(checked)!r} is the study's own database; give "
            "Optuna another one (both keep tables named studies and trials), e.g. "
            "sqlite:///optuna.db or journal:optuna.log"
        )
    try:
        open_optuna_storage(checked)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise StorageError(
            f"--optuna-storage: cannot open the Optuna storage {public_url(checked)!r}: "
            f"{type(error).__name__}: {reason}"
        ) from error
    return checked


class StudyMirror:
    """The Optuna mirror of promptsearch study *study_name* (of task *task_name*) in
    the storage at *url*, as Optuna study *optuna_study* (default: *study_name*)."""

    def __init__(
        self, url: str, study_name: str, task_name: str, optuna_study: str | None = None
    ) -> None:
        self.url = check_optuna_url(url)
        if optuna_study is not None and (not isinstance(optuna_study, str) or not optuna_study):
            raise ConfigError(
                f"--optuna-study must be a non-empty name (default: the study's); "
                f"got {optuna_study!r}"
            )
        self.study_name = study_name
        self.optuna_study = optuna_study or study_name
        self.mirror = OptunaMirror(
            self.url,
            self.optuna_study,
            {"promptsearch_study": study_name, "promptsearch_task": task_name},
            owner="--optuna-storage",
        )
        self.failed_writes = 0

    def record(self) -> dict[str, str]:
        """What the study's configuration keeps of the mirror: the URL without its
        password, and the Optuna study's name (workers that join mirror there too)."""
        return {"storage": public_url(self.url), "study": self.optuna_study}

    def open(self) -> None:
        """Open (or create) the Optuna study; an unreachable storage raises
        :class:`StorageError` with one line."""
        self.mirror.open()

    def add(
        self,
        trial: TrialRecord,
        text: str,
        *,
        params: MirrorParams | None = None,
        race: Race | None = None,
        strict: bool = False,
    ) -> bool:
        """Copy finished *trial* (prompt *text*) unless the Optuna study holds it; True
        if written.  A failed write raises with *strict*, else logs a warning."""
        attrs: dict[str, Any] = {
            "promptsearch_study": self.study_name,
            "promptsearch_trial": trial.number,
            "content_hash": trial.content_hash,
            "prompt": text,
            "searcher": trial.searcher,
            "operation": trial.operation,
            "n_examples": trial.n_examples,
            "forward_passes": trial.forward_passes,
            "worker": trial.worker,
        }
        if trial.parent_hash:
            attrs["parent_hash"] = trial.parent_hash
        if trial.error:
            attrs["error"] = trial.error[:500]
        if params is not None:
            attrs.update(params.attrs)
        state = _STATES.get(trial.state, "fail")
        value = trial.dev_score
        if state == "complete" and value is None:
            state = "fail"
        try:
            return self.mirror.add(
                params={} if params is None else params.params,
                distributions={} if params is None else params.distributions,
                state=state,
                value=value,
                attrs=attrs,
                intermediate=_steps(trial, state, race),
            )
        except StorageError as error:
            if strict:
                raise
            self.failed_writes += 1
            logger.warning(
                "trial #%d is not in the Optuna mirror, the search goes on: %s",
                trial.number,
                error,
            )
            return False

    def catch_up(self, storage: Storage, race: Race | None = None, *, strict: bool = False) -> int:
        """Copy the study's finished trials that the Optuna study lacks, in trial order;
        return how many were written."""
        written = 0
        for trial in storage.trials(self.study_name, states=list(_FINISHED)):
            if self.mirror.has({"content_hash": trial.content_hash}):
                continue
            text = storage.get_prompt(trial.content_hash).text
            written += self.add(trial, text, race=race, strict=strict)
        return written


def _steps(trial: TrialRecord, state: str, race: Race | None) -> Mapping[int, float] | None:
    """Intermediate values: the rung scores of a racing study (and, for a complete
    trial, its dev score on all of dev); a pruned trial without them: its partial
    score at the number of examples it reached."""
    if state == "fail" or trial.dev_score is None:
        return None
    steps: dict[int, float] = {}
    if race is not None:
        steps = race.rung_metrics(trial.content_hash, trial.n_examples)
        if state == "complete" and steps:
            steps[trial.n_examples] = trial.dev_score
    if state == "pruned" and not steps:
        steps = {trial.n_examples: trial.dev_score}
    return steps or None

"""Plain, frozen values returned by :class:`~promptsearch.storage.Storage`.

Callers never see ORM objects or sessions: every method hands back one of these.
Mapping fields (``task_spec``, ``config``, prompt ``body`` ...) are fresh ``dict``
copies decoded from JSON; changing them changes nothing in the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

__all__ = [
    "FINISHED_TRIAL_STATES",
    "STUDY_STATUSES",
    "TRIAL_STATES",
    "EvaluationRecord",
    "LeaderboardRow",
    "LineageEntry",
    "MetricRecord",
    "PromptRecord",
    "StudyRecord",
    "StudySummary",
    "StudyTotals",
    "TrialRecord",
]

STUDY_STATUSES: Final = ("running", "finished", "stopped")
TRIAL_STATES: Final = ("running", "complete", "pruned", "failed")
FINISHED_TRIAL_STATES: Final = ("complete", "pruned", "failed")


@dataclass(frozen=True)
class StudyRecord:
    """One study: what is searched (task), with what (model, scorer) and how (config)."""

    id: int
    name: str
    task_name: str
    task_hash: str
    task_spec: dict[str, Any]
    model_name: str
    model_fingerprint: str
    scorer_fingerprint: str
    config: dict[str, Any]
    seed: int
    versions: dict[str, Any]
    status: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    selection: dict[str, Any] | None = None
    """The stored final pick (see :mod:`promptsearch.study.selection`), if one was made."""


@dataclass(frozen=True)
class StudySummary:
    """A line of ``promptsearch studies``."""

    name: str
    task_name: str
    model_name: str
    n_trials: int
    best_dev_score: float | None
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PromptRecord:
    """A prompt as stored once, by content hash, for all studies."""

    id: int
    content_hash: str
    body: dict[str, Any]
    text: str
    length: int
    created_at: datetime


@dataclass(frozen=True)
class TrialRecord:
    """One evaluation of one prompt in one study."""

    id: int
    study_name: str
    number: int
    content_hash: str
    searcher: str
    operation: str
    parent_hash: str | None
    state: str
    dev_score: float | None
    n_examples: int
    forward_passes: int
    seconds: float
    worker: str
    error: str | None
    heartbeat_at: datetime
    created_at: datetime
    finished_at: datetime | None
    dev_tiebreak: float | None = None


@dataclass(frozen=True)
class LeaderboardRow:
    """A complete trial, ranked (1 = best) within its study; or, when asked for, a
    trial that racing pruned (``state`` "pruned"), ranked after every complete one,
    whose ``dev_score`` rests on its first ``n_examples`` dev examples only."""

    rank: int
    content_hash: str
    dev_score: float
    n_examples: int
    searcher: str
    operation: str
    text: str
    body: dict[str, Any]
    forward_passes: int
    number: int
    parent_hash: str | None
    state: str = "complete"
    dev_tiebreak: float | None = None
    """What orders equal dev scores (see :mod:`promptsearch.study.selection`); ``None`` for
    trials stored before it was kept."""


@dataclass(frozen=True)
class LineageEntry:
    """One step of a prompt's ancestry; ``depth`` 0 is the prompt asked about.

    The trial fields are ``None`` when the prompt has no trial in the study looked at
    (the chain stops there).
    """

    depth: int
    content_hash: str
    text: str
    study_name: str | None
    number: int | None
    searcher: str | None
    operation: str | None
    state: str | None
    dev_score: float | None


@dataclass(frozen=True)
class StudyTotals:
    """Counts and spent budget of a study."""

    n_trials: int
    n_complete: int
    forward_passes: int
    seconds: float


@dataclass(frozen=True)
class EvaluationRecord:
    """The cached score of one prompt on one example (keyed by ``example_key``)."""

    example_key: str
    prediction: str
    correct: bool
    score: float
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class MetricRecord:
    """One logged value of a searcher's metric (a reward, a loss ...) at a step."""

    searcher: str
    step: int
    key: str
    value: float
    created_at: datetime

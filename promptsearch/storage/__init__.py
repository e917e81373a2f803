"""The trial database: studies, prompts, trials, the evaluation cache and more.

::

    from promptsearch.storage import open_storage

    storage = open_storage("runs.db")  # or "postgresql://user:password@host/db"
    for study in storage.list_studies():
        print(study.name, study.best_dev_score)

SQLite (the default, ``promptsearch.db`` in the current folder) suits one machine;
PostgreSQL suits many workers.  The schema is created on first use and managed by
Alembic migrations shipped in this package (``promptsearch db upgrade``).
Importing this package does not import torch or transformers.
"""

from __future__ import annotations

from promptsearch.storage.claims import Claim, ClaimCounts
from promptsearch.storage.database import (
    DEFAULT_SQLITE_FILE,
    head_revision,
    known_revisions,
    mask_url,
    open_storage,
    upgrade,
)
from promptsearch.storage.heldout import HeldOutRecord, HeldOutResult
from promptsearch.storage.records import (
    FINISHED_TRIAL_STATES,
    STUDY_STATUSES,
    TRIAL_STATES,
    EvaluationRecord,
    LeaderboardRow,
    LineageEntry,
    MetricRecord,
    PromptRecord,
    StudyRecord,
    StudySummary,
    StudyTotals,
    TrialRecord,
)
from promptsearch.storage.repository import Storage

__all__ = [
    "DEFAULT_SQLITE_FILE",
    "FINISHED_TRIAL_STATES",
    "STUDY_STATUSES",
    "TRIAL_STATES",
    "Claim",
    "ClaimCounts",
    "EvaluationRecord",
    "HeldOutRecord",
    "HeldOutResult",
    "LeaderboardRow",
    "LineageEntry",
    "MetricRecord",
    "PromptRecord",
    "Storage",
    "StudyRecord",
    "StudySummary",
    "StudyTotals",
    "TrialRecord",
    "head_revision",
    "known_revisions",
    "mask_url",
    "open_storage",
    "upgrade",
]

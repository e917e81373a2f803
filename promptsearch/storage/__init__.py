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

What lives here: :mod:`~promptsearch.storage.orm` (the SQLAlchemy models),
:mod:`~promptsearch.storage.records` (the frozen values every method returns),
:class:`Storage` (:mod:`~promptsearch.storage.repository`, with its trial, claim, cache
and held-out methods in :mod:`~promptsearch.storage.trials`,
:mod:`~promptsearch.storage.claims`, :mod:`~promptsearch.storage.cache` and
:mod:`~promptsearch.storage.heldout`), the session helper and URL handling
(:mod:`~promptsearch.storage.database`), schema revisions
(:mod:`~promptsearch.storage.schema`), the Alembic migrations, and throwaway
databases for tests (:mod:`~promptsearch.storage.testing`).  :func:`open_storage` sits
here, above the :class:`Storage` it builds and the database set-up it runs.
"""

from __future__ import annotations

from promptsearch.storage.claims import Claim, ClaimCounts
from promptsearch.storage.database import (
    DEFAULT_SQLITE_FILE,
    _is_memory,
    _prepare,
    create_engine_for,
    head_revision,
    known_revisions,
    mask_url,
    parse_url,
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


def open_storage(url: str | None = None) -> Storage:
    """Open (and, when empty, create) the trial database at *url*.

    ``None`` means ``promptsearch.db`` in the current folder; a plain path is an
    SQLite file; ``postgresql://user:password@host:port/db`` a PostgreSQL database.
    Raises :class:`~promptsearch.errors.StorageError` when the database cannot be
    opened, holds an older schema (run ``promptsearch db upgrade``), a newer one, or
    is not a promptsearch database.
    """
    parsed = parse_url(url)
    if _is_memory(parsed):
        engine = create_engine_for(parsed)
        try:
            _prepare(parsed, upgrade_old=False, engine=engine)
        except BaseException:
            engine.dispose()
            raise
        return Storage(engine, parsed)
    _prepare(parsed, upgrade_old=False)
    return Storage(create_engine_for(parsed), parsed)

"""Parts of :mod:`promptsearch.study.worker`: worker names, its report, the heartbeat
thread, and searchers rebuilt from a study's stored configuration."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError, StorageError
from promptsearch.prompt import Prompt
from promptsearch.searchers import get_searcher_class
from promptsearch.searchers.base import LEADERBOARD_SIZE, ScoredPrompt, Searcher

if TYPE_CHECKING:
    from promptsearch.storage import Storage, StudyRecord, TrialRecord

__all__ = [
    "Heartbeat",
    "Pending",
    "WorkerReport",
    "default_worker_id",
    "info",
    "missing_study_message",
    "searchers_from_config",
    "warn",
]


def default_worker_id() -> str:
    """``<host>-<pid>``: unique among the processes working on a database."""
    return f"{socket.gethostname()}-{os.getpid()}"


def missing_study_message(study: str, url: str) -> str:
    return (
        f"no study named {study!r} in {url}; create it first with `promptsearch run "
        f"--task TASK --study {study} --create-only --storage URL` (with the --model, "
        "--searcher and --budget options of a normal run), then start the workers"
    )


@dataclass
class WorkerReport:
    """What one worker did.

    ``claimed``: new trials it created; ``reclaimed``: running trials of stopped
    workers it took over; ``evaluated``: trials it scored and stored;
    ``skipped``: proposals it did not score because the study already had a trial
    of the prompt (a duplicate: another worker's, or an earlier run's); a prompt
    this worker proposes twice is not counted; ``waited``: proposals it
    waited on while another worker scored them; ``lost``: trials taken from it
    after its heartbeat stopped; ``stopped_by``: "budget" (the study's budget is
    spent and no trial is running), "searchers" (its searchers ran dry),
    "seconds" (its time limit) or "interrupted".
    """

    study: str
    worker: str
    claimed: int = 0
    reclaimed: int = 0
    evaluated: int = 0
    skipped: int = 0
    waited: int = 0
    lost: int = 0
    stopped_by: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"worker {self.worker!r} on study {self.study!r}: claimed {self.claimed}, "
            f"reclaimed {self.reclaimed}, evaluated {self.evaluated}, skipped {self.skipped} "
            f"duplicate(s) (waited on {self.waited}), lost {self.lost}; "
            f"stopped by: {self.stopped_by}"
        )


@dataclass(frozen=True)
class Pending:
    """A candidate another worker is scoring: its trial and the resolved prompt."""

    trial: TrialRecord
    prompt: Prompt


class Heartbeat:
    """Renews a claimed trial's heartbeat from a thread while the worker scores it."""

    def __init__(self, storage: Storage, trial_id: int, worker: str, every: float) -> None:
        self._storage = storage
        self._trial_id = trial_id
        self._worker = worker
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}", daemon=True)
        self.lost = False

    def _run(self) -> None:
        warned = False
        while not self._stop.wait(self._every):
            try:
                if not self._storage.beat(self._trial_id, self._worker):
                    self.lost = True  # reclaimed by another worker (or finished)
                    return
            except StorageError as error:  # the next beat may get through
                if not warned:
                    warn(f"heartbeat of trial {self._trial_id} failed, retrying: {error}")
                    warned = True

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()


def _revive(value: Any) -> Any:
    """Searcher parameters as stored (JSON) → Python values: prompts come back as Prompts."""
    if isinstance(value, list):
        return [_revive(v) for v in value]
    if isinstance(value, Mapping) and "template" in value:
        try:
            return Prompt.from_dict(value)
        except ConfigError:
            return dict(value)
    return value


def searchers_from_config(record: StudyRecord) -> list[Searcher]:
    """New searchers built from the names and parameters the study recorded."""
    entries = record.config.get("searchers")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(
            f"study {record.name!r} records no searchers; pass searchers= to run_worker()"
        )
    searchers: list[Searcher] = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"study {record.name!r} records a malformed searcher: {entry!r}")
        name = entry["name"]
        params = entry.get("params") or {}
        cls = get_searcher_class(name)
        try:
            searchers.append(cls(**{str(k): _revive(v) for k, v in params.items()}))
        except (ConfigError, TypeError) as error:
            raise ConfigError(
                f"study {record.name!r}: searcher {name!r} cannot be rebuilt from its stored "
                f"parameters {params!r} ({error}); pass searchers= to run_worker()"
            ) from None
    return searchers


def study_leaderboard(storage: Storage, study: str) -> tuple[ScoredPrompt, ...]:
    """The study's best complete trials from the database, by every worker (prompts and
    dev scores only), for searchers that learn from the others' best."""
    return tuple(
        ScoredPrompt(Prompt.from_dict(row.body), row.content_hash, row.dev_score, row.searcher)
        for row in storage.leaderboard(study, top=LEADERBOARD_SIZE)
    )


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def info(message: str) -> None:
    print(message, file=sys.stderr)

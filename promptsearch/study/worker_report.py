"""What :mod:`promptsearch.study.worker` tells and hands back: worker names, the
message for a missing study, a candidate another worker is scoring, and its report.

The heartbeat thread is :mod:`promptsearch.study.heartbeat`; searchers rebuilt from a
study's stored configuration are in :mod:`promptsearch.study.rebuild`."""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from promptsearch.prompt import Prompt

if TYPE_CHECKING:
    from promptsearch.storage import TrialRecord

__all__ = [
    "Pending",
    "WorkerReport",
    "default_worker_id",
    "missing_study_message",
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

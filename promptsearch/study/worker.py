"""Many workers on one study: ``promptsearch worker`` processes share it through the database.

A study is created once (``promptsearch run ... --create-only``, or any earlier
``run``); then any number of workers, on one machine or many, join it by name.
Each rebuilds the task, model and scorer from the study's record (as ``final``
does) and its searchers from the study's configuration, seeded with (study seed,
worker name) so that workers propose different candidates.

* **Claims.**  A worker claims a candidate before scoring it, by inserting its
  trial as "running" under its name (:mod:`promptsearch.storage.claims`).  A prompt
  that has a trial already is not scored again: a finished trial's result goes to
  the searcher (a skipped duplicate); one another worker is scoring is waited for,
  after the candidate's siblings.
* **Budget.**  A claim is refused once the study has as many trials (any state)
  as its budget of evaluations, or its finished trials spent its forward passes.
  The limit in seconds is each worker's own wall clock, as for ``run``.
* **Nothing is lost.**  A heartbeat thread renews the trial while it is scored.
  A running trial whose heartbeat is older than the timeout is taken over by the
  next worker that looks, and scored again.  Once the budget is claimed, a worker
  waits for the running trials, rescuing stale ones, before it leaves.  Ctrl-C
  hands the trial back at once; a worker that stalled past the timeout cannot
  store its result over the new owner's (:class:`~promptsearch.errors.ClaimLostError`).

Workers are not replayed like a single-process ``run``: each proposes afresh and
saves no searcher state.  Two processes must not share a worker name.

A :class:`Worker` is a :class:`~promptsearch.study.loop.Study` that runs the study's
loop as is; all of the above is its trials, :class:`ClaimedTrials` (the call order
is in :mod:`promptsearch.study.trials`).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from promptsearch.errors import ClaimLostError, ConfigError, StorageError, StudyConflictError
from promptsearch.prompt import Prompt
from promptsearch.searchers.base import (
    Candidate,
    RemainingBudget,
    ScoredPrompt,
    Searcher,
    TrialResult,
)
from promptsearch.study.budget import Budget, limit_reached
from promptsearch.study.heartbeat import Heartbeat
from promptsearch.study.loop import Study
from promptsearch.study.rebuild import rebuild_study, searchers_from_config, study_leaderboard
from promptsearch.study.support import ScorerLike
from promptsearch.study.trials import Trials
from promptsearch.study.worker_report import (
    Pending,
    WorkerReport,
    default_worker_id,
    missing_study_message,
)
from promptsearch.task import Task
from promptsearch.validation import check_float

if TYPE_CHECKING:
    from promptsearch.models.base import LanguageModel
    from promptsearch.storage import Storage, TrialRecord

__all__ = [
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "ClaimedTrials",
    "Worker",
    "WorkerReport",
    "default_worker_id",
    "missing_study_message",
    "run_worker",
    "searchers_from_config",
]

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_TIMEOUT: Final = 60.0
_BEATS_PER_TIMEOUT: Final = 4  # heartbeats per timeout: three may be missed before a reclaim
_FIRST_PAUSE: Final = 0.02  # seconds; waits for other workers' trials grow from this to 1 s


class Worker(Study):
    """One of many workers on a stored study: a :class:`Study` whose trials are
    :class:`ClaimedTrials` (see the module docstring).

    Takes what :class:`Study` takes (from the study's record: :func:`run_worker`
    builds it), plus *worker*, its name (default ``<host>-<pid>``), and
    *heartbeat_timeout*, the seconds after which a silent worker's trial is taken
    over; *progress* logs a line per trial it scores.  :meth:`work` runs it.
    """

    def __init__(
        self,
        name: str,
        task: Task,
        scorer: ScorerLike,
        searchers: Sequence[Searcher | str],
        budget: Budget | int | Mapping[str, Any],
        storage: Storage,
        *,
        seed: int = 0,
        candidates_per_round: int = 4,
        worker: str | None = None,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        racing: Mapping[str, Any] | None = None,
        progress: bool = False,
        selection: Mapping[str, Any] | None = None,
        optuna_storage: str | None = None,
        optuna_study: str | None = None,
    ) -> None:
        worker_id = default_worker_id() if worker is None else worker
        if not isinstance(worker_id, str) or not worker_id.strip() or len(worker_id) > 255:
            raise ConfigError(
                f"worker must be a non-empty name of at most 255 characters; got {worker!r}"
            )
        super().__init__(
            name,
            task,
            scorer,
            searchers,
            budget,
            storage,
            seed=seed,
            candidates_per_round=candidates_per_round,
            worker=worker_id,
            progress=False,  # no progress bar: a line per trial, if progress
            racing=racing,
            selection=selection,
            optuna_storage=optuna_storage,
            optuna_study=optuna_study,
        )
        self.heartbeat_timeout = check_float(
            heartbeat_timeout,
            "heartbeat_timeout",
            minimum=0,
            exclusive_minimum=True,
            owner="worker",
        )
        self.trials = self.claims = ClaimedTrials(self, self.heartbeat_timeout, bool(progress))
        self.report = self.claims.report

    def work(self) -> WorkerReport:
        """Work on the study until its budget is spent (and no trial is left running),
        this worker's searchers run dry, or its time is up; return what it did."""
        self.run()
        return self.report


class ClaimedTrials(Trials):
    """The trials of one worker of a stored study, claimed in the database (see the
    module docstring; the call order is :class:`~promptsearch.study.trials.Trials`').

    The budget is the study's, counted from the database: a claim is refused once the
    study has as many trials (any state) as its budget of evaluations, or its finished
    trials spent its forward passes.  Seconds are this worker's own clock.
    """

    saves_searcher_state = False  # a state saved by one of many workers would be the others'
    copies_missing_trials = False  # each worker copies the trials it finishes, once

    def __init__(self, study: Study, heartbeat_timeout: float, verbose: bool) -> None:
        super().__init__(study)
        self.worker = study.worker
        self.claimed_by = study.worker
        self.heartbeat_timeout = heartbeat_timeout
        self.verbose = verbose
        self._beat_every = heartbeat_timeout / _BEATS_PER_TIMEOUT
        self._poll = min(1.0, self._beat_every)
        self._order = random.Random(f"{study.seed}:{study.worker}:order")
        self.report = WorkerReport(study.name, study.worker)
        self.storage = study.storage
        self.name = study.name

    def join(self) -> None:
        """Join the stored study: it must exist, with this task, model and scorer."""
        study = self.study
        record = self.storage.get_study(self.name)
        if record is None:
            raise StorageError(missing_study_message(self.name, self.storage.url))
        problems = []
        if record.task_hash != study.task.spec()["data_hash"]:
            problems.append(f"task data (study: {record.task_name!r} {record.task_hash[:12]})")
        if record.model_fingerprint != getattr(study.scorer.model, "fingerprint", None):
            problems.append(f"model (study: {record.model_name!r})")
        elif record.scorer_fingerprint != study.scorer.fingerprint:
            problems.append("scorer settings")
        if problems:
            raise StudyConflictError(
                f"worker {self.worker!r} cannot join study {self.name!r}: its "
                + ", ".join(problems)
                + " differ from the study's; start the worker with the study's task data "
                "(--data-dir, --task-seed) and model (--model, --dtype)"
            )
        self.storage.set_study_status(self.name, "running")

    def searcher_rng(self, index: int, searcher: Searcher) -> random.Random:
        """Seeded with the worker's name too, so that workers propose different candidates."""
        return random.Random(f"{self.study.seed}:{self.worker}:{index}:{searcher.name}")

    def start(self) -> None:
        super().start()
        self._rescue_all()

    def remaining(self) -> RemainingBudget:
        counts = self.storage.claim_counts(self.name)
        return self.study.budget.left(counts.trials, counts.forward_passes, self.started)

    def leaderboard(self) -> tuple[ScoredPrompt, ...]:
        """The study's best complete trials, by every worker."""
        return study_leaderboard(self.storage, self.name)

    def finish(self) -> bool:
        """Once the budget is claimed, wait for the running trials (rescuing stale
        ones); the last worker out makes the pick."""
        reason = limit_reached(self.remaining())
        if reason == "budget":
            self._drain()
        self.report.stopped_by = reason or "searchers"
        return self.storage.claim_counts(self.name).running == 0

    def interrupted(self) -> None:
        self.report.stopped_by = "interrupted"

    # -- claims ------------------------------------------------------------------------------

    def evaluate(self, searcher: Searcher, proposals: Sequence[Candidate]) -> list[TrialResult]:
        """The candidates are tried in a worker-seeded order, so that workers with the
        same proposals start on different ones; those another worker is scoring are
        waited for last."""
        order = list(range(len(proposals)))
        self._order.shuffle(order)
        outcomes: dict[int, TrialResult | Pending] = {}
        for index in order:
            outcome = self._try(searcher, proposals[index])
            if outcome is None:  # the study's budget is claimed in full
                break
            outcomes[index] = outcome
        results: list[TrialResult] = []
        for index, candidate in enumerate(proposals):
            outcome = outcomes.get(index)
            if outcome is None:
                break
            if isinstance(outcome, Pending):
                outcome = self._await(searcher, candidate, outcome)
            results.append(outcome)
        return results

    def _try(self, searcher: Searcher, candidate: Candidate) -> TrialResult | Pending | None:
        """Claim and score *candidate*; its stored result if the study has it; a
        :class:`Pending` if another worker is scoring it; None if the budget is spent
        (or this worker's time is up)."""
        seconds = self.study.budget.seconds
        if seconds is not None and time.monotonic() - self.started >= seconds:
            return None
        self._rescue_all()
        prompt = self._resolve(searcher, candidate)
        if isinstance(prompt, TrialResult):  # unusable, or proposed before by this worker
            return prompt
        key = prompt.content_hash
        self.storage.add_prompt(
            prompt.to_dict(), key, prompt.describe(), len(prompt.head() + prompt.template)
        )
        claim = self.storage.claim_trial(
            self.name,
            key,
            searcher=searcher.name,
            operation=candidate.operation,
            parent_hash=candidate.parent,
            worker=self.worker,
            max_trials=self.study.budget.evaluations,
            max_forward_passes=self.study.budget.forward_passes,
        )
        if claim.status == "budget" or claim.trial is None:
            return None
        if claim.status == "claimed":
            self.report.claimed += 1
            return self._score_claimed(searcher, candidate, claim.trial, prompt)
        if claim.trial.state == "running":
            return Pending(claim.trial, prompt)
        self.report.skipped += 1
        return self._from_record(searcher, candidate, prompt, claim.trial, new=False)

    def _score_claimed(
        self, searcher: Searcher, candidate: Candidate, trial: TrialRecord, prompt: Prompt
    ) -> TrialResult:
        """Score a trial this worker holds, beating meanwhile."""
        try:
            with Heartbeat(self.storage, trial.id, self.worker, self._beat_every):
                result, _ = self._score(searcher, candidate, prompt, trial)
        except ClaimLostError as error:
            self.report.lost += 1
            logger.warning("%s", error)
            return self._await(searcher, candidate, Pending(trial, prompt))
        except KeyboardInterrupt:
            self._release(trial.id)
            raise
        self.report.evaluated += 1
        if self.verbose:
            score = "-" if result.score is None else f"{result.score:.4f}"
            logger.info(
                "[%s] trial #%d %s %s (%s, %s)",
                self.worker,
                trial.number,
                result.state,
                score,
                result.searcher,
                result.operation,
            )
        return result

    def _await(self, searcher: Searcher, candidate: Candidate, pending: Pending) -> TrialResult:
        """The result of a trial another worker is scoring; this worker takes it over
        (and scores it) if that worker stops beating."""
        self.report.waited += 1
        pause = _FIRST_PAUSE
        while True:
            current = self.storage.get_trial(self.name, pending.trial.content_hash)
            if current is None:
                raise StorageError(
                    f"trial of prompt {pending.trial.content_hash[:12]} vanished from study "
                    f"{self.name!r}"
                )
            if current.state != "running":
                self.report.skipped += 1
                return self._from_record(searcher, candidate, pending.prompt, current, new=False)
            taken = self.storage.reclaim_trial(
                self.name, self.worker, stale_after=self.heartbeat_timeout, trial_id=current.id
            )
            if taken is not None:
                self.report.reclaimed += 1
                return self._score_claimed(searcher, candidate, taken, pending.prompt)
            self._rescue_all()
            time.sleep(pause)
            pause = min(pause * 1.5, self._poll)

    # -- trials of stopped workers --------------------------------------------------------

    def _rescue_all(self) -> None:
        """Take over and score every running trial whose worker stopped beating."""
        while True:
            trial = self.storage.reclaim_trial(
                self.name, self.worker, stale_after=self.heartbeat_timeout
            )
            if trial is None:
                return
            self.report.reclaimed += 1
            self._rescue(trial)

    def _rescue(self, trial: TrialRecord) -> None:
        searchers = self.study.searchers
        prompt = Prompt.from_dict(self.storage.get_prompt(trial.content_hash).body)
        searcher = next((s for s in searchers if s.name == trial.searcher), searchers[0])
        candidate = Candidate(prompt, operation=trial.operation, parent=trial.parent_hash)
        try:
            resolved = prompt.resolve(self.study.task)
        except ConfigError:
            resolved = None
        if resolved is None or resolved.content_hash != trial.content_hash:
            # not a prompt this study stored: fail it rather than score another
            self.storage.finish_trial(
                trial.id,
                state="failed",
                dev_score=None,
                n_examples=0,
                forward_passes=0,
                seconds=0.0,
                error="the stored prompt does not resolve to the same prompt on this task",
                claimed_by=self.worker,
            )
            return
        self._score_claimed(searcher, candidate, trial, resolved)

    def _drain(self) -> None:
        """The budget is claimed: wait for the running trials, rescuing stale ones."""
        pause = _FIRST_PAUSE
        while True:
            self._rescue_all()
            if self.storage.claim_counts(self.name).running == 0:
                return
            time.sleep(pause)
            pause = min(pause * 1.5, self._poll)

    def _release(self, trial_id: int) -> None:
        with contextlib.suppress(StorageError):  # else it goes stale after the timeout
            self.storage.release_trial(trial_id, self.worker)


# -- building a worker from the stored study ------------------------------------------------


def run_worker(
    study: str,
    *,
    storage: Storage | str | None = None,
    worker: str | None = None,
    task: Task | str | None = None,
    model: LanguageModel | str | None = None,
    scorer: ScorerLike | None = None,
    searchers: Sequence[Searcher | str] | None = None,
    data_dir: str | None = None,
    task_seed: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    batch_size: int | str = 16,
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
    progress: bool = False,
    optuna_storage: str | None = None,
) -> WorkerReport:
    """Join stored study *study* as worker *worker* and work until it is done.

    The task, model and scorer are rebuilt from the study's record unless given
    (*task*: a Task or built-in name; *scorer* replaces *model*), as are the
    searchers, from its configuration, with their seeds mixed with the worker name.
    The budget, seed, candidates per round and racing are the study's.  The worker
    copies the trials it finishes into the Optuna storage *optuna_storage*, or else
    into the one the study records (``run --optuna-storage``; without its password,
    which then comes from ``PGPASSWORD`` or ``~/.pgpass``).
    """
    from promptsearch.storage import Storage, open_storage

    check_float(heartbeat_timeout, "heartbeat_timeout", minimum=0, exclusive_minimum=True)
    store = storage if isinstance(storage, Storage) else open_storage(storage)
    record = store.get_study(study) if isinstance(study, str) and study else None
    if record is None:
        raise StorageError(missing_study_message(str(study), store.url))
    mirror, mirror_study = _optuna_settings(record.config, optuna_storage, store.url)
    rebuilt = rebuild_study(
        record,
        task=task,
        model=model,
        scorer=scorer,
        data_dir=data_dir,
        task_seed=task_seed,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
    )
    config = record.config
    budget = config.get("budget")
    if not isinstance(budget, Mapping):
        raise ConfigError(f"study {record.name!r} records no budget; it cannot take workers")
    racing = config.get("racing")
    selection = config.get("selection")  # the same search part of dev as the study's
    return Worker(
        record.name,
        rebuilt.task,
        rebuilt.scorer,
        list(searchers) if searchers else searchers_from_config(record),
        {k: v for k, v in budget.items() if v is not None},
        store,
        seed=record.seed,
        candidates_per_round=int(config.get("candidates_per_round", 4)),
        worker=worker,
        heartbeat_timeout=heartbeat_timeout,
        racing=racing if isinstance(racing, Mapping) else None,
        progress=progress,
        selection=selection if isinstance(selection, Mapping) else None,
        optuna_storage=mirror,
        optuna_study=mirror_study,
    ).work()


def _optuna_settings(
    config: Mapping[str, Any], given: str | None, storage_url: str
) -> tuple[str | None, str | None]:
    """The Optuna storage a worker mirrors to (*given*, else the study's record) and the
    Optuna study's name, checked and opened once before the model loads."""
    from promptsearch.study.optuna_mirror import check_optuna_storage

    recorded = config.get("optuna")
    recorded = recorded if isinstance(recorded, Mapping) else {}
    url = given if given is not None else recorded.get("storage")
    if url is None:
        return None, None
    name = recorded.get("study")
    return check_optuna_storage(url, storage_url), name if isinstance(name, str) else None

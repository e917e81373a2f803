"""How a study runs its trials and counts its budget: what differs between a study run
in one process and a worker sharing a stored study with others.

:class:`~promptsearch.study.loop.Study` owns the search loop, written once: searchers
propose, their candidates are scored as trials, the searchers observe the results,
until a limit of the budget is reached or the searchers run dry.  Its
:class:`Trials` decide the rest:

* :class:`LocalTrials`, for ``Study.run`` in one process: it creates or resumes the
  stored study, scores every new candidate itself, counts the budget this run walked
  through (a resumed run replays the trials of earlier runs: free, but counted), and
  has the searchers' states saved, so that a rerun resumes.
* :class:`~promptsearch.study.worker.ClaimedTrials`, for ``promptsearch worker``: it
  joins a stored study, claims each candidate in the database before scoring it,
  heartbeats while it scores, waits for candidates other workers are scoring, takes
  over the trials of workers that stopped, and counts the budget from the database
  (the trials of all workers).

Call order
----------
``Study.run`` calls its trials in this order::

    join()                             once, before anything else is written: create or
                                       update the study's record, or check the stored one
    searcher_rng(index, searcher)      once per searcher, as the searchers are set up
    start()                            once: the clock of the time limit starts (a
                                       worker takes over stopped workers' trials)
    for each searcher in turn, round after round:
        remaining()                    the loop ends as soon as a limit is reached
        leaderboard()                  what the searcher reads before it proposes
        evaluate(searcher, proposals)  the results of the proposals, in order (fewer when
                                       the budget runs out); the searcher observes them,
                                       then its metrics are stored, and its state too
                                       if saves_searcher_state
    finish()                           the loop ended: True if this process is to make
                                       the final pick and mark the study finished
    interrupted()                      instead, on Ctrl-C from start() to the end of
                                       the final pick
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from promptsearch.errors import ConfigError, PromptSearchError, StorageError
from promptsearch.prompt import Prompt
from promptsearch.searchers.base import (
    LEADERBOARD_SIZE,
    Candidate,
    RemainingBudget,
    ScoredPrompt,
    Searcher,
    TrialResult,
)
from promptsearch.study.budget import limit_reached
from promptsearch.study.support import Scored

if TYPE_CHECKING:
    from promptsearch.storage import TrialRecord
    from promptsearch.study.loop import Study

__all__ = ["FINISHED", "LocalTrials", "Trials"]

logger = logging.getLogger(__name__)

FINISHED = ("complete", "pruned", "failed")
"""The states of a trial that is done: its result stands."""


class Trials(ABC):
    """The trials of *study*: see the module docstring for what calls what, and when.

    Also what both kinds share: the results this process knows (:attr:`known`, by
    prompt hash), and turning a candidate into a prompt, a stored trial into a result
    and a held trial into a scored and stored one.
    """

    saves_searcher_state: ClassVar[bool]
    """Whether the study stores its searchers' states (a resumed run loads them)."""

    copies_missing_trials: ClassVar[bool]
    """Whether the study's Optuna mirror first copies the finished trials it lacks (one
    process only: two workers doing so at once would copy a trial twice)."""

    def __init__(self, study: Study) -> None:
        self.study = study
        self.known: dict[str, TrialResult] = {}
        self.started = 0.0  # time.monotonic() at start()
        self.claimed_by: str | None = None  # finish only trials this worker still holds

    @abstractmethod
    def join(self) -> None:
        """Create or update the study's record, or check the stored study's."""

    def searcher_rng(self, index: int, searcher: Searcher) -> random.Random:
        """The random generator of the *index*-th searcher."""
        return random.Random(f"{self.study.seed}:{index}:{searcher.name}")

    def start(self) -> None:
        """The search starts."""
        self.started = time.monotonic()

    @abstractmethod
    def remaining(self) -> RemainingBudget:
        """What is left of the study's budget."""

    @abstractmethod
    def leaderboard(self) -> tuple[ScoredPrompt, ...]:
        """The best complete trials, best first (prompts and dev scores only)."""

    @abstractmethod
    def evaluate(self, searcher: Searcher, proposals: Sequence[Candidate]) -> list[TrialResult]:
        """The results of *searcher*'s *proposals*, in order; fewer (the first ones)
        when the budget runs out."""

    @abstractmethod
    def finish(self) -> bool:
        """The loop ended; True if this process makes the pick and finishes the study."""

    @abstractmethod
    def interrupted(self) -> None:
        """Ctrl-C stopped the study."""

    # -- shared by both --------------------------------------------------------------------

    def _resolve(self, searcher: Searcher, candidate: Candidate) -> Prompt | TrialResult:
        """The candidate's prompt, resolved on the task; or its result, if it is unusable
        (failed, with a warning, and not stored) or this process knows it already (free)."""
        try:
            prompt = candidate.prompt.resolve(self.study.task)
        except ConfigError as error:
            logger.warning(
                "searcher %r proposed an unusable prompt, skipped: %s", searcher.name, error
            )
            return TrialResult(
                prompt=candidate.prompt,
                content_hash=candidate.prompt.content_hash,
                score=None,
                state="failed",
                n_examples=0,
                searcher=searcher.name,
                operation=candidate.operation,
                parent=candidate.parent,
                new=False,
            )
        known = self.known.get(prompt.content_hash)
        if known is None:
            return prompt
        return TrialResult(
            **{
                **known.__dict__,
                "searcher": searcher.name,
                "operation": candidate.operation,
                "parent": candidate.parent,
                "new": False,
            }
        )

    def _from_record(
        self,
        searcher: Searcher,
        candidate: Candidate,
        prompt: Prompt,
        trial: TrialRecord,
        *,
        new: bool,
    ) -> TrialResult:
        """The result of a finished stored trial, as *searcher* sees it; now known."""
        result = TrialResult(
            prompt=prompt,
            content_hash=trial.content_hash,
            score=trial.dev_score if trial.state == "complete" else None,
            state=trial.state,
            n_examples=trial.n_examples,
            searcher=searcher.name,
            operation=candidate.operation,
            parent=candidate.parent,
            new=new,
        )
        self.known[trial.content_hash] = result
        return result

    def _score(
        self, searcher: Searcher, candidate: Candidate, prompt: Prompt, trial: TrialRecord
    ) -> tuple[TrialResult, int]:
        """Score *prompt* as *trial* (running, held by this process), store the finished
        trial with its per-example records, and return its result (now known) and the
        forward passes spent.  A failing prompt fails its trial, not the study."""
        study = self.study
        key = prompt.content_hash
        started = time.monotonic()
        scored = Scored(None, 0, 0, [], False, None)
        error_text: str | None = None
        try:
            scored = study.scoring.score(prompt, key)
        except StorageError:
            raise  # the database failed, not the prompt: stop; the trial is retried on resume
        except Exception as error:
            # a model error or NaN on one batch, an input that cannot fit: the trial
            # fails, with the reason, and the search goes on
            error_text = f"{type(error).__name__}: {error}"
            logger.warning(
                "trial of prompt %s failed, the search goes on: %s", key[:12], error_text
            )
        pruned = scored.pruned
        state = "failed" if error_text is not None else "pruned" if pruned else "complete"
        study.storage.finish_trial(
            trial.id,
            state=state,
            dev_score=scored.score,
            dev_tiebreak=None if error_text is not None else scored.tiebreak,
            n_examples=scored.n_examples,
            forward_passes=scored.forward_passes,
            seconds=time.monotonic() - started,
            error=error_text,
            scorer_fingerprint=study.scorer.fingerprint,
            evaluations=scored.records,
            claimed_by=self.claimed_by,
        )
        if study.mirror is not None:
            finished = dataclasses.replace(
                trial,
                state=state,
                dev_score=scored.score,
                n_examples=scored.n_examples,
                forward_passes=scored.forward_passes,
                error=error_text,
                worker=self.claimed_by or trial.worker,
            )
            params = searcher.optuna_params(key)
            study.mirror.add(finished, prompt.describe(), params=params, race=study.scoring.race)
        result = TrialResult(
            prompt=prompt,
            content_hash=key,
            score=None if pruned else scored.score,  # a pruned trial's partial score stays stored
            state=state,
            n_examples=scored.n_examples,
            searcher=searcher.name,
            operation=candidate.operation,
            parent=candidate.parent,
        )
        self.known[key] = result
        return result, scored.forward_passes


class LocalTrials(Trials):
    """The trials of a study run in one process (``Study.run``).

    The budget counts what this run walked through: the trials it scored, and those
    of earlier runs that it replayed (at no cost, as the searchers saw them then, so
    that a resumed run proposes what the uninterrupted run would have).
    """

    saves_searcher_state = True
    copies_missing_trials = True

    def __init__(self, study: Study) -> None:
        super().__init__(study)
        self._parents: set[str] = set()  # parent hashes known to be stored
        self._spent_evaluations = 0
        self._spent_forward = 0

    def join(self) -> None:
        self.study._record()

    def remaining(self) -> RemainingBudget:
        return self.study.budget.left(self._spent_evaluations, self._spent_forward, self.started)

    def leaderboard(self) -> tuple[ScoredPrompt, ...]:
        """The best complete trials this run knows."""
        done = [r for r in self.known.values() if r.state == "complete" and r.score is not None]
        done.sort(key=lambda r: (-(r.score or 0.0), r.content_hash))
        return tuple(
            ScoredPrompt(r.prompt, r.content_hash, float(r.score or 0.0), r.searcher)
            for r in done[:LEADERBOARD_SIZE]
        )

    def evaluate(self, searcher: Searcher, proposals: Sequence[Candidate]) -> list[TrialResult]:
        results = []
        for candidate in proposals:
            result = self._evaluate(searcher, candidate)
            if result is None:
                break
            results.append(result)
        return results

    def finish(self) -> bool:
        return True

    def interrupted(self) -> None:
        self.study.storage.set_study_status(self.study.name, "stopped")

    def _evaluate(self, searcher: Searcher, candidate: Candidate) -> TrialResult | None:
        """Score one candidate as a trial; None if the budget is spent."""
        prompt = self._resolve(searcher, candidate)
        if isinstance(prompt, TrialResult):
            return prompt
        study, key = self.study, prompt.content_hash
        existing = study.storage.get_trial(study.name, key)
        if existing is not None and existing.state in FINISHED:
            # scored by an earlier run of this study: replay it at no cost, exactly as
            # the searcher saw it then (new=True too, or a resumed run that replays a few
            # rounds would count them as stale and stop early)
            result = self._from_record(searcher, candidate, prompt, existing, new=True)
            self._account(existing.forward_passes)
            return result
        if limit_reached(self.remaining()):
            return None
        study.storage.add_prompt(
            prompt.to_dict(), key, prompt.describe(), len(prompt.head() + prompt.template)
        )
        trial = existing or study.storage.start_trial(
            study.name,
            key,
            searcher=searcher.name,
            operation=candidate.operation,
            parent_hash=self._stored_parent(candidate.parent),
            worker=study.worker,
        )
        if trial is None:  # another process created it in between
            trial = study.storage.get_trial(study.name, key)
            if trial is None:
                raise PromptSearchError(f"trial for prompt {key[:12]} vanished from the database")
        result, spent = self._score(searcher, candidate, prompt, trial)
        self._account(spent)
        return result

    def _stored_parent(self, parent: str | None) -> str | None:
        """*parent* if the database holds it; a searcher may derive a candidate from a
        prompt the study never scored (a seed prompt when ``manual`` is not running)."""
        if parent is None or parent in self._parents:
            return parent
        if not self.study.storage.has_prompt(parent):
            return None
        self._parents.add(parent)
        return parent

    def _account(self, forward_passes: int) -> None:
        self._spent_evaluations += 1
        self._spent_forward += forward_passes
        bar = self.study.bar
        if bar is not None:
            bar.update(1)
            best = max((r.score for r in self.known.values() if r.score is not None), default=None)
            if best is not None:
                bar.set_postfix(best=f"{best:.3f}", refresh=False)

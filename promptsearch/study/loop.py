"""The study loop: searchers propose, the scorer scores on dev, storage keeps it all.

A study is named and stored.  Running a study of the same name again resumes it:
the searchers are rebuilt with the same seeds and replay their proposals, every
prompt the study already scored is answered from the database at no cost, and
new work starts where the last run stopped.  Per-example scores are cached by
(scorer fingerprint, prompt hash, split, example), so a prompt is never scored
twice on the same examples by the same model, across searchers, studies and
crashes.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError, PromptSearchError, StorageError
from promptsearch.metrics import aggregate
from promptsearch.prompt import Prompt
from promptsearch.scoring.finite import check_finite_results, check_finite_value
from promptsearch.searchers import make_searcher
from promptsearch.searchers.base import (
    LEADERBOARD_SIZE,
    Candidate,
    RemainingBudget,
    ScoredPrompt,
    SearchContext,
    Searcher,
    TrainView,
    TrialResult,
)
from promptsearch.study.budget import Budget
from promptsearch.study.final_pick import check_same_selection, search_and_confirm, select_final
from promptsearch.study.racing import Race, Racing, check_same_racing
from promptsearch.study.results import BestPrompt, StudyResult
from promptsearch.study.selection import Selection, tiebreak
from promptsearch.study.state_codec import encode_state, load_saved_states
from promptsearch.study.support import (
    Scored,
    ScorerLike,
    evaluation_records,
    example_key,
    jsonable,
    versions,
    warn,
)
from promptsearch.task import Example, Task
from promptsearch.validation import check_int

if TYPE_CHECKING:
    from promptsearch.storage import EvaluationRecord, Storage

__all__ = ["BestPrompt", "Budget", "Racing", "Study", "StudyResult", "example_key"]

STALE_ROUNDS = 3  # stop after this many rounds in which no searcher proposed anything new


class Study:
    """A named, stored, resumable prompt search.

    Parameters
    ----------
    name:
        Study name, unique in the storage.  Running an existing study resumes it.
    task:
        The task; searchers see only its train split, the study scores on dev.
    scorer:
        Scores prompts (a :class:`promptsearch.scoring.scorer.Scorer` over a model).
    searchers:
        Searcher instances or specs (``"random-edit"``, ``"random-edit:top_k=2"``).
    budget:
        A :class:`Budget`, or an int number of evaluations.
    storage:
        An open :class:`promptsearch.storage.Storage`.
    seed:
        Seeds every searcher's random generator (each gets its own stream).
    candidates_per_round:
        How many candidates each searcher proposes per round.
    racing:
        A :class:`~promptsearch.study.racing.Racing` (or a mapping of its fields, or True
        for the defaults): score candidates on growing subsets of dev and stop the
        weak ones early (trial state "pruned").  None: every candidate on all of dev.
    selection:
        A :class:`~promptsearch.study.selection.Selection` (or a mapping of its fields, or
        True for the defaults): hold back part of dev to confirm the final pick, which
        replaces the best seed prompt only with evidence.  None: the pick is the top of
        the leaderboard.  Racing and the searchers then see the search part of dev only.
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
        worker: str = "main",
        progress: bool = True,
        racing: Racing | Mapping[str, Any] | bool | None = None,
        selection: Selection | Mapping[str, Any] | bool | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"study name must be a non-empty string; got {name!r}")
        if not searchers:
            raise ConfigError(
                "searchers: give at least one searcher, e.g. ['manual', 'random-edit']"
            )
        self.name = name
        self.task = task
        self.scorer = scorer
        self.searchers = [make_searcher(s) for s in searchers]
        names = [s.name for s in self.searchers]
        if len(set(names)) != len(names):
            raise ConfigError(f"searchers: each searcher may appear once; got {names}")
        self.budget = Budget.coerce(budget)
        self.storage = storage
        self.seed = check_int(seed, "seed", owner="study")
        self.candidates_per_round = check_int(
            candidates_per_round, "candidates_per_round", minimum=1, owner="study"
        )
        self.worker = worker
        self._claimed_by: str | None = None  # a worker finishes only trials it still holds
        self.progress = progress
        self.selection = Selection.coerce(selection)
        self.search_task, self.confirm_examples = search_and_confirm(task, self.selection)
        self.racing = Racing.coerce(racing)
        if self.racing is not None:
            self.racing.check_dev(len(self.search_task.dev))
        self._race: Race | None = None
        # run-local accounting (replay-safe: counts what this run walked through)
        self._known: dict[str, TrialResult] = {}
        self._parents: set[str] = set()
        self._spent_evaluations = 0
        self._spent_forward = 0
        self._started = 0.0
        self._bar: Any = None

    # -- set-up ----------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "searchers": [
                {"name": s.name, "params": jsonable(s.get_params())} for s in self.searchers
            ],
            "budget": self.budget.to_dict(),
            "candidates_per_round": self.candidates_per_round,
        }
        calibration = getattr(self.scorer, "calibration", None)
        if calibration is not None:  # also part of the scorer fingerprint
            config["calibration"] = jsonable(calibration)
        if self.racing is not None:
            config["racing"] = self.racing.to_dict()
        if self.selection is not None:
            config["selection"] = self.selection.to_dict()
        return config

    def create(self) -> StudyResult:
        """Create the study, or check and update the record of an existing one, without
        searching: ``promptsearch worker`` processes then join it by name."""
        self._record()
        return StudyResult(self.name, self.storage)

    def _record(self) -> None:
        spec = self.task.spec()
        stored = self.storage.get_study(self.name)
        check_same_racing(stored, self.racing)
        check_same_selection(stored, self.selection)
        self.storage.create_or_resume_study(
            self.name,
            task_name=self.task.name,
            task_hash=spec["data_hash"],
            task_spec=spec,
            model_name=self.scorer.model.name,
            model_fingerprint=self.scorer.model.fingerprint,
            scorer_fingerprint=self.scorer.fingerprint,
            config=self._config(),
            seed=self.seed,
            versions=versions(),
        )

    def _open(self) -> None:
        # decoded before anything is written: a row that cannot be loaded changes nothing
        saved = load_saved_states(self.storage, self.name, [s.name for s in self.searchers])
        self._record()
        view = TrainView.from_task(self.task)
        for index, searcher in enumerate(self.searchers):
            context = SearchContext(
                task=view,
                rng=self._searcher_rng(index, searcher),
                remaining=RemainingBudget(),
                study_name=self.name,
                model=getattr(self.scorer, "model", None)
                if searcher.needs_model or searcher.uses_model
                else None,
                scorer=self.scorer if searcher.needs_model else None,  # type: ignore[arg-type]
            )
            searcher.setup(context)
            if searcher.name in saved:
                searcher.load_state_dict(saved[searcher.name])
        if self.racing is not None:
            keys = [example_key(e) for e in self.search_task.dev]
            self._race = Race(
                self.racing,
                self.search_task,
                keys,
                self.storage,
                self.name,
                self.scorer.fingerprint,
            )

    def _searcher_rng(self, index: int, searcher: Searcher) -> random.Random:
        """The random generator of the *index*-th searcher (a worker seeds its own)."""
        return random.Random(f"{self.seed}:{index}:{searcher.name}")

    # -- budget ------------------------------------------------------------------------------

    def _remaining(self) -> RemainingBudget:
        b = self.budget
        return RemainingBudget(
            evaluations=None if b.evaluations is None else b.evaluations - self._spent_evaluations,
            forward_passes=None
            if b.forward_passes is None
            else b.forward_passes - self._spent_forward,
            seconds=None if b.seconds is None else b.seconds - (time.monotonic() - self._started),
        )

    def _exhausted(self) -> bool:
        left = self._remaining()
        return any(
            v is not None and v <= 0 for v in (left.evaluations, left.forward_passes, left.seconds)
        )

    # -- scoring -----------------------------------------------------------------------------

    def _score(self, prompt: Prompt, key: str) -> Scored:
        """Dev score of *prompt* (on the search part of dev), using the per-example cache.

        The caller stores the new records together with the finished trial.  NaN
        from the model raises :class:`~promptsearch.errors.ModelError`.
        """
        model_name = str(getattr(self.scorer.model, "name", "?"))
        examples = self.search_task.dev
        keys = [example_key(e) for e in examples]
        if self._race is not None:
            seen: dict[str, EvaluationRecord] = {}

            def evaluate(
                part: Sequence[Example], known: Mapping[str, EvaluationRecord]
            ) -> tuple[dict[str, EvaluationRecord], list[EvaluationRecord], int]:
                out = self._records(prompt, key, part, known)
                seen.update(out[0])
                return out

            race = self._race.run(key, evaluate)
            value = check_finite_value(race.score, prompt=prompt.describe(), model=model_name)
            tie = None if race.pruned else self._tiebreak(examples, seen, keys)
            return Scored(
                value, race.n_examples, race.forward_passes, race.records, race.pruned, tie
            )
        cached, records, spent = self._records(prompt, key, examples, {})
        ordered = [cached[k] for k in keys]
        value = aggregate(
            self.task.metric,
            [r.score for r in ordered],
            [r.prediction for r in ordered],
            [e.target for e in examples],
        )
        value = check_finite_value(value, prompt=prompt.describe(), model=model_name)
        tie = self._tiebreak(examples, cached, keys)
        return Scored(value, len(examples), spent, records, False, tie)

    def _tiebreak(
        self,
        examples: Sequence[Example],
        records: Mapping[str, EvaluationRecord],
        keys: Sequence[str],
    ) -> float | None:
        return tiebreak(self.task.kind, self.task.labels, examples, records, keys)

    def _records(
        self,
        prompt: Prompt,
        key: str,
        examples: Sequence[Example],
        known: Mapping[str, EvaluationRecord],
    ) -> tuple[dict[str, EvaluationRecord], list[EvaluationRecord], int]:
        """Per-example results of *prompt* on *examples*, by example key, from *known*,
        the cache or the scorer; also the new records and the forward passes spent."""
        keys = [example_key(e) for e in examples]
        fingerprint = self.scorer.fingerprint
        wanted = [k for k in keys if k not in known]
        cached = dict(known)
        if wanted:
            cached.update(self.storage.cached_evaluations(fingerprint, key, "dev", wanted))
        missing = [e for e, k in zip(examples, keys, strict=True) if k not in cached]
        spent = 0
        records: list[EvaluationRecord] = []
        model_name = str(getattr(self.scorer.model, "name", "?"))
        if missing:
            report = self.scorer.score(prompt, missing, self.task)
            spent = int(report.forward_passes)
            check_finite_results(report.results, prompt=prompt.describe(), model=model_name)
            records = evaluation_records(missing, report.results)
            cached.update({r.example_key: r for r in records})
        return cached, records, spent

    def _evaluate(self, searcher: Searcher, candidate: Candidate) -> TrialResult | None:
        """Score one candidate as a trial; None if the budget is spent."""
        try:
            prompt = candidate.prompt.resolve(self.task)
        except ConfigError as error:
            warn(f"searcher {searcher.name!r} proposed an unusable prompt, skipped: {error}")
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
        key = prompt.content_hash
        if key in self._known:  # proposed before in this run: free
            known = self._known[key]
            return TrialResult(
                **{
                    **known.__dict__,
                    "searcher": searcher.name,
                    "operation": candidate.operation,
                    "parent": candidate.parent,
                    "new": False,
                }
            )
        existing = self.storage.get_trial(self.name, key)
        if existing is not None and existing.state in ("complete", "pruned", "failed"):
            # scored by an earlier run of this study: replay it at no cost, exactly as
            # the searcher saw it then (new=True too, or a resumed run that replays a few
            # rounds would count them as stale and stop early)
            result = TrialResult(
                prompt=prompt,
                content_hash=key,
                score=existing.dev_score if existing.state == "complete" else None,
                state=existing.state,
                n_examples=existing.n_examples,
                searcher=searcher.name,
                operation=candidate.operation,
                parent=candidate.parent,
            )
            self._account(result, existing.forward_passes)
            return result
        if self._exhausted():
            return None
        self.storage.add_prompt(
            prompt.to_dict(), key, prompt.describe(), len(prompt.head() + prompt.template)
        )
        trial = existing or self.storage.start_trial(
            self.name,
            key,
            searcher=searcher.name,
            operation=candidate.operation,
            parent_hash=self._stored_parent(candidate.parent),
            worker=self.worker,
        )
        if trial is None:  # another worker created it in between
            trial = self.storage.get_trial(self.name, key)
            if trial is None:
                raise PromptSearchError(f"trial for prompt {key[:12]} vanished from the database")
        started = time.monotonic()
        scored = Scored(None, 0, 0, [], False, None)
        error_text: str | None = None
        try:
            scored = self._score(prompt, key)
        except StorageError:
            raise  # the database failed, not the prompt: stop; the trial is retried on resume
        except Exception as error:
            # a failing prompt (a model error or NaN on one batch, an input that cannot fit)
            # fails its trial, with the reason, not the study
            error_text = f"{type(error).__name__}: {error}"
            warn(f"trial of prompt {key[:12]} failed, the search goes on: {error_text}")
        pruned = scored.pruned
        state = "failed" if error_text is not None else "pruned" if pruned else "complete"
        self.storage.finish_trial(
            trial.id,
            state=state,
            dev_score=scored.score,
            dev_tiebreak=None if error_text is not None else scored.tiebreak,
            n_examples=scored.n_examples,
            forward_passes=scored.forward_passes,
            seconds=time.monotonic() - started,
            error=error_text,
            scorer_fingerprint=self.scorer.fingerprint,
            evaluations=scored.records,
            claimed_by=self._claimed_by,
        )
        result = TrialResult(
            prompt=prompt,
            content_hash=key,
            # a pruned trial's partial score stays stored
            score=None if pruned else scored.score,
            state=state,
            n_examples=scored.n_examples,
            searcher=searcher.name,
            operation=candidate.operation,
            parent=candidate.parent,
        )
        self._account(result, scored.forward_passes)
        return result

    def _stored_parent(self, parent: str | None) -> str | None:
        """*parent* if the database holds it; a searcher may derive a candidate from a
        prompt the study never scored (a seed prompt when ``manual`` is not running)."""
        if parent is None or parent in self._parents:
            return parent
        if not self.storage.has_prompt(parent):
            return None
        self._parents.add(parent)
        return parent

    def _account(self, result: TrialResult, forward_passes: int) -> None:
        self._known[result.content_hash] = result
        self._spent_evaluations += 1
        self._spent_forward += forward_passes
        if self._bar is not None:
            self._bar.update(1)
            best = max((r.score for r in self._known.values() if r.score is not None), default=None)
            if best is not None:
                self._bar.set_postfix(best=f"{best:.3f}", refresh=False)

    def _leaderboard(self) -> tuple[ScoredPrompt, ...]:
        """The best complete trials this run knows, best first, for searchers to read
        (prompts and dev scores only)."""
        done = [r for r in self._known.values() if r.state == "complete" and r.score is not None]
        done.sort(key=lambda r: (-(r.score or 0.0), r.content_hash))
        return tuple(
            ScoredPrompt(r.prompt, r.content_hash, float(r.score or 0.0), r.searcher)
            for r in done[:LEADERBOARD_SIZE]
        )

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> StudyResult:
        """Run (or resume) the study until the budget is spent or searchers run dry.

        Ctrl-C stops after saving what was finished; rerunning resumes.
        """
        self._open()
        self._started = time.monotonic()
        if self.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.budget.evaluations,
                desc=self.name,
                unit="prompt",
                file=sys.stderr,
                leave=True,
            )
        try:
            self._loop()
        except KeyboardInterrupt:
            self.storage.set_study_status(self.name, "stopped")
            return StudyResult(self.name, self.storage, stopped=True)
        finally:
            if self._bar is not None:
                self._bar.close()
        if self.selection is not None:
            select_final(self)
        self.storage.set_study_status(self.name, "finished")
        return StudyResult(self.name, self.storage)

    def _loop(self) -> None:
        active = list(self.searchers)
        stale = 0
        while active and not self._exhausted() and stale < STALE_ROUNDS:
            new_in_round = 0
            for searcher in list(active):
                if self._exhausted():
                    break
                left = self._remaining()
                searcher.ctx.remaining = left
                searcher.ctx.leaderboard = self._leaderboard()
                n = self.candidates_per_round
                if left.evaluations is not None:
                    n = min(n, left.evaluations)
                proposals = searcher.propose(n)[:n]
                if not proposals:
                    active.remove(searcher)
                    continue
                results = []
                for candidate in proposals:
                    result = self._evaluate(searcher, candidate)
                    if result is None:
                        break
                    results.append(result)
                    new_in_round += result.new
                searcher.observe(results)
                self._save_searcher(searcher)
            stale = 0 if new_in_round else stale + 1

    def _save_searcher(self, searcher: Searcher) -> None:
        for step, key, value in searcher.ctx.metrics.drain():
            self.storage.log_metric(self.name, searcher.name, step, key, value)
        state = searcher.state_dict()
        if state is not None:
            blob = encode_state(state, what=f"state_dict() of searcher {searcher.name!r}")
            self.storage.save_searcher_state(self.name, searcher.name, blob)

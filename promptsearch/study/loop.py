"""The study loop: searchers propose, the scorer scores on dev, storage keeps it all.

A study is named and stored.  Running a study of the same name again resumes it:
the searchers are rebuilt with the same seeds and replay their proposals, every
prompt the study already scored is answered from the database at no cost, and
new work starts where the last run stopped.  Per-example scores are cached
(:mod:`promptsearch.study.dev_scoring`), so a prompt is never scored twice on the
same examples by the same model, across searchers, studies and crashes.

The loop is written once, here; how its trials are run and its budget counted is
its :class:`~promptsearch.study.trials.Trials` (see there for the call order): one
process (:class:`~promptsearch.study.trials.LocalTrials`) or one of many workers
(:class:`~promptsearch.study.worker.Worker`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.searchers import make_searcher
from promptsearch.searchers.base import (
    RemainingBudget,
    SearchContext,
    Searcher,
    TrainView,
    check_local_model,
    check_task_kind,
)
from promptsearch.study.budget import Budget, limit_reached
from promptsearch.study.dev_scoring import DevScoring
from promptsearch.study.final_pick import select_final
from promptsearch.study.held_back import (
    announce_confirmation,
    check_same_selection,
    search_and_confirm,
)
from promptsearch.study.optuna_mirror import StudyMirror
from promptsearch.study.racing import Race, Racing, check_same_racing
from promptsearch.study.results import BestPrompt, StudyResult
from promptsearch.study.selection import Selection
from promptsearch.study.state_codec import encode_state, load_saved_states
from promptsearch.study.support import (
    ScorerLike,
    check_same_chat_template,
    example_key,
    jsonable,
    versions,
)
from promptsearch.study.trials import LocalTrials, Trials
from promptsearch.task import Task
from promptsearch.validation import check_int

if TYPE_CHECKING:
    from promptsearch.storage import Storage

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
    worker:
        The name its trials are stored under.
    optuna_storage:
        An Optuna storage URL (``sqlite:///optuna.db``, ``postgresql://...``) or
        ``journal:PATH``: every trial of every searcher is copied into an Optuna study
        there (:mod:`promptsearch.study.optuna_mirror`).  None: no mirror.
    optuna_study:
        The Optuna study's name (default: *name*).

    :attr:`trials` runs the trials and counts the budget: :class:`LocalTrials` here,
    the claims of many workers in a :class:`~promptsearch.study.worker.Worker`.
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
        optuna_storage: str | None = None,
        optuna_study: str | None = None,
        run_config: Mapping[str, Any] | None = None,
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
        for searcher in self.searchers:  # before anything is stored
            check_task_kind(searcher, task)
            check_local_model(searcher, getattr(scorer, "model", None))
        self.budget = Budget.coerce(budget)
        self.storage = storage
        self.seed = check_int(seed, "seed", owner="study")
        self.candidates_per_round = check_int(
            candidates_per_round, "candidates_per_round", minimum=1, owner="study"
        )
        self.worker = worker
        self.progress = progress
        chosen = Selection.coerce(selection)
        # "auto" settings made numbers for this dev split, before anything is stored
        self.selection = None if chosen is None else chosen.for_dev(len(task.dev))
        if run_config is not None and not isinstance(run_config, Mapping):
            raise ConfigError(f"run_config must be a mapping (JSON) or None; got {run_config!r}")
        self.run_config = None if run_config is None else dict(run_config)
        self.search_task, self.confirm_examples, self.held_train = search_and_confirm(
            task, self.selection
        )
        self.racing = Racing.coerce(racing)
        if self.racing is not None:
            self.racing.check_dev(len(self.search_task.dev))
        self.scoring = DevScoring(task, self.search_task, scorer, storage, None)  # see _open
        self.bar: Any = None  # the progress bar while run() searches
        self.trials: Trials = LocalTrials(self)
        self.mirror: StudyMirror | None = None
        if optuna_storage is not None:
            self.mirror = StudyMirror(optuna_storage, name, task.name, optuna_study)

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
        chat = _chat_settings(self.scorer)
        if chat is not None:  # likewise; workers and final render prompts the same way
            config["chat_template"] = chat
        if self.racing is not None:
            config["racing"] = self.racing.to_dict()
        if self.selection is not None:
            config["selection"] = self.selection.to_dict()
        if self.mirror is not None:  # never with a password: see StudyMirror.record
            config["optuna"] = self.mirror.record()
        if self.run_config is not None:
            config["run"] = self.run_config
        return config

    def create(self) -> StudyResult:
        """Create the study, or check and update the record of an existing one, without
        searching: ``promptsearch worker`` processes then join it by name.  The Optuna
        mirror's study is created too, so that the workers find it."""
        if self.mirror is not None:
            self.mirror.open()
        self._record()
        return StudyResult(self.name, self.storage)

    def _record(self) -> None:
        spec = self.task.spec()
        stored = self.storage.get_study(self.name)
        check_same_racing(stored, self.racing)
        check_same_selection(stored, self.selection)
        check_same_chat_template(stored, _chat_settings(self.scorer))
        config = self._config()
        if "optuna" not in config and stored is not None and "optuna" in stored.config:
            config["optuna"] = stored.config["optuna"]  # kept for the workers that join
        if "run" not in config and stored is not None and "run" in stored.config:
            config["run"] = stored.config["run"]  # resumed from Python: keep how it was run
        self.storage.create_or_resume_study(
            self.name,
            task_name=self.task.name,
            task_hash=spec["data_hash"],
            task_spec=spec,
            model_name=self.scorer.model.name,
            model_fingerprint=self.scorer.model.fingerprint,
            scorer_fingerprint=self.scorer.fingerprint,
            config=config,
            seed=self.seed,
            versions=versions(),
        )

    def _open(self) -> None:
        # decoded before anything is written: a row that cannot be loaded changes nothing
        saved = load_saved_states(self.storage, self.name, [s.name for s in self.searchers])
        if self.mirror is not None:  # an unreachable storage stops here, before any write
            self.mirror.open()
        self.trials.join()
        view = TrainView.from_task(self.search_task)  # less the held-back train examples
        for index, searcher in enumerate(self.searchers):
            context = SearchContext(
                task=view,
                rng=self.trials.searcher_rng(index, searcher),
                remaining=RemainingBudget(),
                study_name=self.name,
                model=getattr(self.scorer, "model", None)
                if searcher.needs_model or searcher.uses_model
                else None,
                scorer=self.scorer  # type: ignore[arg-type]
                if searcher.needs_model or searcher.uses_model
                else None,
                calibrated=bool(getattr(self.scorer, "calibrate", False)),
            )
            searcher.setup(context)
            if searcher.name in saved:
                searcher.load_state_dict(saved[searcher.name])
        race = None
        if self.racing is not None:
            keys = [example_key(e) for e in self.search_task.dev]
            race = Race(
                self.racing,
                self.search_task,
                keys,
                self.storage,
                self.name,
                self.scorer.fingerprint,
            )
        self.scoring = DevScoring(self.task, self.search_task, self.scorer, self.storage, race)
        if self.mirror is not None and self.trials.copies_missing_trials:
            self.mirror.catch_up(self.storage, race)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> StudyResult:
        """Run (or resume) the study until the budget is spent or searchers run dry.

        Ctrl-C stops after saving what was finished; rerunning resumes.
        """
        self._open()
        announce_confirmation(self)
        try:
            self.trials.start()
            with self._progress_bar():
                self._loop()
            if self.trials.finish():
                if self.selection is not None:
                    select_final(self)
                self.storage.set_study_status(self.name, "finished")
        except KeyboardInterrupt:
            self.trials.interrupted()
            return StudyResult(self.name, self.storage, stopped=True)
        return StudyResult(self.name, self.storage)

    def _loop(self) -> None:
        """Each searcher in turn proposes, its candidates are evaluated and it observes
        the results, until a limit of the budget is reached, the searchers run dry, or
        STALE_ROUNDS rounds in a row bring nothing new."""
        active = list(self.searchers)
        stale = 0
        while active and stale < STALE_ROUNDS:
            new_in_round = 0
            for searcher in list(active):
                left = self.trials.remaining()
                if limit_reached(left):
                    return
                searcher.ctx.remaining = left
                searcher.ctx.leaderboard = self.trials.leaderboard()
                n = self.candidates_per_round
                if left.evaluations is not None:
                    n = min(n, left.evaluations)
                proposals = searcher.propose(n)[:n]
                if not proposals:
                    active.remove(searcher)
                    continue
                results = self.trials.evaluate(searcher, proposals)
                searcher.observe(results)
                self._save_searcher(searcher)
                new_in_round += sum(result.new for result in results)
            stale = 0 if new_in_round else stale + 1

    @contextlib.contextmanager
    def _progress_bar(self) -> Iterator[None]:
        """A progress bar on stderr while the study searches, if *progress*."""
        if self.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.budget.evaluations,
                desc=self.name,
                unit="prompt",
                file=sys.stderr,
                leave=True,
            )
        try:
            yield
        finally:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    def _save_searcher(self, searcher: Searcher) -> None:
        for step, key, value in searcher.ctx.metrics.drain():
            self.storage.log_metric(self.name, searcher.name, step, key, value)
        if not self.trials.saves_searcher_state:
            return
        state = searcher.state_dict()
        if state is not None:
            blob = encode_state(state, what=f"state_dict() of searcher {searcher.name!r}")
            self.storage.save_searcher_state(self.name, searcher.name, blob)


def _chat_settings(scorer: ScorerLike) -> dict[str, str] | None:
    """The chat turns *scorer* renders prompts in (as the study stores them), or ``None``."""
    chat = getattr(scorer, "chat", None)
    return None if chat is None else dict(chat.to_dict())

"""The study loop on a real SQLite database, with a fast deterministic fake scorer.

(The same loop on the real embedded model is in test_end_to_end.py.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from promptsearch import Budget, ConfigError, Prompt, StudyConflictError, Task
from promptsearch.storage import Storage, open_storage
from promptsearch.study.loop import Study
from promptsearch.task import Example
from promptsearch.testing.fakes import FakeModel, FakeReport, FakeResult
from promptsearch.testing.searchers import contract_task_with_dev


@dataclass
class FakeScorer:
    """Correct on an example iff a hash of (prompt, example) says so; counts its work."""

    model: FakeModel = field(default_factory=FakeModel)
    fail_on: str | None = None
    interrupt_after: int | None = None
    calls: int = 0
    forward_passes: int = 0

    @property
    def fingerprint(self) -> str:
        return "s" * 64

    def score(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> FakeReport:
        self.calls += 1
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt
        if self.fail_on is not None and self.fail_on in prompt.template:
            raise RuntimeError("boom")
        results = []
        for example in examples:
            digest = hashlib.sha256((prompt.content_hash + example.id).encode()).digest()
            correct = digest[0] % 3 != 0
            prediction = example.target if correct else "wrong"
            results.append(FakeResult(example.id, prediction, correct, float(correct)))
        self.forward_passes += len(examples)
        return FakeReport(results, len(examples))


def big_task() -> Task:
    return contract_task_with_dev(10)


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return open_storage(f"sqlite:///{tmp_path / 'study.db'}")


def run(
    storage: Storage,
    scorer: FakeScorer,
    budget: int | Budget = 12,
    name: str = "s",
    task: Task | None = None,
    seed: int = 0,
) -> Study:
    study = Study(
        name,
        task or big_task(),
        scorer,
        ["manual", "random-edit"],
        budget,
        storage,
        seed=seed,
        candidates_per_round=3,
        progress=False,
    )
    study.run()
    return study


def board(storage: Storage, name: str = "s") -> list[tuple[str, float]]:
    return [(row.content_hash, row.dev_score) for row in storage.leaderboard(name)]


def test_budget_of_evaluations_is_respected_and_leaderboard_sorted(storage: Storage) -> None:
    scorer = FakeScorer()
    run(storage, scorer, budget=12)
    rows = storage.leaderboard("s")
    assert len(storage.trials("s")) == 12
    assert [r.dev_score for r in rows] == sorted((r.dev_score for r in rows), reverse=True)
    assert {r.searcher for r in rows} == {"manual", "random-edit"}
    assert scorer.forward_passes == 12 * 10  # every trial is new: 10 dev examples each


def test_rerun_scores_nothing_twice_and_gives_the_same_leaderboard(storage: Storage) -> None:
    first = FakeScorer()
    run(storage, first, budget=12)
    again = FakeScorer()
    run(storage, again, budget=12)
    assert again.forward_passes == 0
    assert board(storage) == board(storage)


def test_resume_after_interrupt_equals_uninterrupted_run(tmp_path: Path) -> None:
    whole = open_storage(f"sqlite:///{tmp_path / 'whole.db'}")
    run(whole, FakeScorer(), budget=15)
    broken = open_storage(f"sqlite:///{tmp_path / 'broken.db'}")
    interrupted = FakeScorer(interrupt_after=5)
    Study(
        "s",
        big_task(),
        interrupted,
        ["manual", "random-edit"],
        15,
        broken,
        seed=0,
        candidates_per_round=3,
        progress=False,
    ).run()
    record = broken.get_study("s")
    assert record is not None
    assert record.status == "stopped"
    assert len(broken.trials("s", states=["complete"])) == 5
    resumed = FakeScorer()
    run(broken, resumed, budget=15)
    assert resumed.forward_passes == 10 * 10  # only the 10 trials that were missing
    assert board(broken) == board(whole)


def test_raising_the_budget_continues_the_study(storage: Storage) -> None:
    run(storage, FakeScorer(), budget=6)
    more = FakeScorer()
    run(storage, more, budget=10)
    assert len(storage.trials("s")) == 10
    assert more.forward_passes == 4 * 10


def test_cache_is_shared_across_studies(storage: Storage) -> None:
    run(storage, FakeScorer(), budget=6, name="a")
    other = FakeScorer()
    run(storage, other, budget=6, name="b")
    assert other.forward_passes == 0  # same prompts, same examples, same scorer
    assert board(storage, "a") == board(storage, "b")


def test_failed_trial_is_recorded_and_search_goes_on(storage: Storage) -> None:
    run(storage, FakeScorer(fail_on="It was"), budget=8)
    trials = storage.trials("s")
    failed = [t for t in trials if t.state == "failed"]
    assert failed and all("RuntimeError: boom" in (t.error or "") for t in failed)
    assert len(trials) == 8
    assert all(row.dev_score is not None for row in storage.leaderboard("s"))


def test_forward_pass_budget(storage: Storage) -> None:
    scorer = FakeScorer()
    run(storage, scorer, budget=Budget(forward_passes=35))
    assert 35 <= scorer.forward_passes < 35 + 10


def test_conflicting_study_is_refused_and_data_kept(storage: Storage) -> None:
    run(storage, FakeScorer(), budget=4)
    before = board(storage)
    task = big_task()
    other = Task(
        name="other",
        kind=task.kind,
        input_fields=task.input_fields,
        train=task.train,
        dev=task.dev[:5],
        labels=task.labels,
        verbalizer=task.verbalizer,
        seed_prompts=task.seed_prompts,
    )
    with pytest.raises(StudyConflictError, match=r"--study|study name"):
        run(storage, FakeScorer(), budget=4, task=other)
    assert board(storage) == before


@pytest.mark.parametrize("budget", [0, -1, {"evaluation": 3}, "ten", Budget.__new__(Budget)])
def test_bad_budgets(budget: object, storage: Storage) -> None:
    with pytest.raises(ConfigError, match="budget"):
        Study(
            "s",
            big_task(),
            FakeScorer(),
            ["manual"],
            Budget.coerce(budget)  # type: ignore[arg-type]
            if not isinstance(budget, Budget)
            else Budget(),
            storage,
        )


def test_unknown_searcher_lists_known_ones(storage: Storage) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown searcher 'random-edits'.*did you mean random-edit"
    ):
        Study("s", big_task(), FakeScorer(), ["random-edits"], 3, storage)


class Recorder:
    """Stands in for a study's trials and records which of their methods the study
    calls (their calls to themselves go past it)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> object:
        value = getattr(self.inner, name)
        if not callable(value):
            return value

        def record(*args: object) -> object:
            self.calls.append(name)
            return value(*args)

        return record


def test_the_loop_calls_its_trials_in_the_documented_order(storage: Storage) -> None:
    """The call order in promptsearch/study/trials.py's docstring."""
    study = Study(
        "s", big_task(), FakeScorer(), ["manual", "random-edit"], 7, storage,
        candidates_per_round=3, progress=False,
    )  # fmt: skip
    recorder = Recorder(study.trials)
    study.trials = recorder  # type: ignore[assignment]
    study.run()
    calls = recorder.calls
    assert calls[:4] == ["join", "searcher_rng", "searcher_rng", "start"]
    assert calls[-2:] == ["remaining", "finish"]  # the last turn finds the budget spent
    turns = " ".join(calls[4:-2]).replace("remaining", "|remaining").split("|")[1:]
    # a searcher that proposes nothing gets no evaluate (manual, out of seed prompts)
    assert set(map(str.strip, turns)) == {
        "remaining leaderboard evaluate",
        "remaining leaderboard",
    }
    assert len(storage.trials("s")) == 7

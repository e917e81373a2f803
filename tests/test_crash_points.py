"""A crash at any point of a study loses nothing and resumes to the same result.

In-process and fast: the study runs with a deterministic fake scorer, and a
``Crash`` (a ``BaseException``, so no ``except Exception`` handler sees it, as with
SIGKILL) is raised just before or just after the k-th database write or scoring
call.  A write that the crash interrupts is rolled back, as SQLite does when the
process dies mid-transaction.  A new storage object (a new process) then resumes the
study, and everything must match a run that was never interrupted.
(``test_kill.py`` does the same with a real model and real SIGKILLs.)
"""

from __future__ import annotations

import hashlib
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from promptsearch import Prompt, Task
from promptsearch.storage import Storage, open_storage
from promptsearch.study.loop import Study
from promptsearch.task import Example
from promptsearch.testing.fakes import FakeModel as Model
from promptsearch.testing.fakes import FakeReport as Report
from promptsearch.testing.fakes import FakeResult as Result
from promptsearch.testing.searchers import contract_task_with_dev

BUDGET = 14
WRITES = (
    "create_or_resume_study",
    "add_prompt",
    "start_trial",
    "finish_trial",
    "save_searcher_state",
    "log_metric",
    "set_study_status",
)


class Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even ``except Exception``."""


@dataclass
class FakeScorer:
    """Right on an example iff a hash of (prompt, example) says so; logs what it scores."""

    model: Model = field(default_factory=Model)
    scored: list[str] = field(default_factory=list)
    before_scoring: Callable[[], None] = lambda: None

    @property
    def fingerprint(self) -> str:
        return "s" * 64

    def score(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> Report:
        self.before_scoring()
        self.scored.append(prompt.content_hash)
        results = []
        for example in examples:
            digest = hashlib.sha256((prompt.content_hash + example.id).encode()).digest()
            correct = digest[0] % 3 != 0
            results.append(
                Result(example.id, example.target if correct else "?", correct, float(correct))
            )
        return Report(results, 2 * len(examples))


def task() -> Task:
    return contract_task_with_dev(6)


def run(storage: Storage, scorer: FakeScorer) -> None:
    Study(
        "crash",
        task(),
        scorer,
        ["manual", "random-edit"],
        BUDGET,
        storage,
        seed=11,
        candidates_per_round=2,
        progress=False,
    ).run()


def install_crash(storage: Storage, scorer: FakeScorer, at: int, after: bool) -> list[str]:
    """Make the *at*-th write or scoring call crash (before or *after* it happens)."""
    calls: list[str] = []

    def step(name: str, action: Callable[[], Any]) -> Any:
        calls.append(name)
        if len(calls) == at and not after:
            raise Crash(name)
        value = action()
        if len(calls) == at and after:
            raise Crash(name)
        return value

    for name in WRITES:
        real = getattr(storage, name)

        def wrapper(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            return step(_name, lambda: _real(*args, **kw))

        setattr(storage, name, wrapper)
    real_score = scorer.score

    def score(prompt: Prompt, examples: Sequence[Example], task: Task) -> Report:
        report: Report = step("score", lambda: real_score(prompt, examples, task))
        return report

    scorer.score = score  # type: ignore[method-assign]
    return calls


def snapshot(storage: Storage) -> list[tuple[Any, ...]]:
    trials = sorted(
        (t.number, t.content_hash, t.state, t.dev_score, t.n_examples, t.forward_passes, t.searcher)
        for t in storage.trials("crash")
    )
    totals = storage.totals("crash")
    status = storage.get_study("crash")
    return [*trials, (totals.n_trials, totals.forward_passes, status and status.status)]


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with the schema and nothing else, copied for each case (fast)."""
    path = tmp_path_factory.mktemp("crash") / "empty.db"
    open_storage(str(path)).close()
    return path


@pytest.fixture(scope="module")
def reference(empty_db: Path) -> tuple[list[tuple[Any, ...]], int]:
    path = empty_db.with_name("reference.db")
    shutil.copy(empty_db, path)
    with open_storage(str(path)) as storage:
        scorer = FakeScorer()
        calls = install_crash(storage, scorer, at=-1, after=False)  # counts, never crashes
        run(storage, scorer)
        assert sorted(scorer.scored) == sorted({t.content_hash for t in storage.trials("crash")})
        return snapshot(storage), len(calls)


def crash_points() -> list[tuple[int, bool]]:
    """Every third point of an uninterrupted run, before and after, plus the first ones."""
    total = 4 * BUDGET + 2  # a little more than the writes and scoring calls of one run
    rng = random.Random(3)
    points = {(1, False), (1, True), (2, True), (3, True)}
    points |= {(at, rng.random() < 0.5) for at in range(4, total, 3)}
    return sorted(points)


@pytest.mark.parametrize("at, after", crash_points())
def test_crash_then_resume_equals_an_uninterrupted_run(
    at: int,
    after: bool,
    empty_db: Path,
    reference: tuple[list[tuple[Any, ...]], int],
    tmp_path: Path,
) -> None:
    expected, n_calls = reference
    if at > n_calls:
        pytest.skip(f"the run makes only {n_calls} calls")
    path = tmp_path / "crash.db"
    shutil.copy(empty_db, path)
    crashed = open_storage(str(path))
    first = FakeScorer()
    install_crash(crashed, first, at, after)
    with pytest.raises(Crash):
        run(crashed, first)
    crashed.close()
    with open_storage(str(path)) as storage:
        exists = storage.get_study("crash") is not None
        before = {t.content_hash: t for t in storage.trials("crash")} if exists else {}
        complete = {key for key, t in before.items() if t.state == "complete"}
        running = {key for key, t in before.items() if t.state == "running"}
        assert len(running) <= 1
        # the finish of a trial and its cache rows are one transaction
        for key in running:
            assert cached(storage, key) == 0
        for key in complete:
            assert cached(storage, key) == len(task().dev)
        assert complete <= set(first.scored)
        assert set(first.scored) - complete <= running

        again = FakeScorer()
        run(storage, again)
        assert snapshot(storage) == expected
        assert not complete & set(again.scored), "a completed trial was scored again"
        assert running <= set(again.scored), "a trial in flight was not retried"
        assert len(again.scored) == len(set(again.scored))
        keys = {t.content_hash for t in storage.trials("crash")}
        assert complete | set(again.scored) == keys


def cached(storage: Storage, key: str) -> int:
    from promptsearch.study.loop import example_key

    keys = [example_key(e) for e in task().dev]
    return len(storage.cached_evaluations("s" * 64, key, "dev", keys))


def test_a_trial_and_its_cache_rows_are_written_together(storage: Storage) -> None:
    """finish_trial(evaluations=...) writes both or neither (on every backend)."""
    from promptsearch.errors import ConfigError
    from promptsearch.storage import EvaluationRecord

    prompt = Prompt("Review: {sentence}\nSentiment: {answer}")
    key = prompt.content_hash
    storage.create_or_resume_study(
        "atomic",
        task_name="t",
        task_hash="a" * 64,
        task_spec={},
        model_name="m",
        model_fingerprint="m" * 64,
        scorer_fingerprint="s" * 64,
        config={},
        seed=0,
        versions={},
    )
    storage.add_prompt(prompt.to_dict(), key, prompt.describe(), 10)
    trial = storage.start_trial(
        "atomic", key, searcher="manual", operation="seed", parent_hash=None, worker="w"
    )
    assert trial is not None
    good = [EvaluationRecord(f"k{i}", "1", True, 1.0, None) for i in range(3)]
    bad = [*good, EvaluationRecord("k9", "1", True, float("nan"), None)]
    with pytest.raises(ConfigError, match=r"records\[3\]\.score must be a finite number"):
        storage.finish_trial(
            trial.id,
            state="complete",
            dev_score=1.0,
            n_examples=4,
            forward_passes=8,
            seconds=0.1,
            scorer_fingerprint="s" * 64,
            evaluations=bad,
        )
    keys = ["k0", "k1", "k2", "k9"]
    assert storage.get_trial("atomic", key).state == "running"  # type: ignore[union-attr]
    assert storage.cached_evaluations("s" * 64, key, "dev", keys) == {}
    with pytest.raises(ConfigError, match="scorer_fingerprint"):
        storage.finish_trial(
            trial.id,
            state="complete",
            dev_score=1.0,
            n_examples=3,
            forward_passes=6,
            seconds=0.1,
            evaluations=good,
        )
    storage.finish_trial(
        trial.id,
        state="complete",
        dev_score=1.0,
        n_examples=3,
        forward_passes=6,
        seconds=0.1,
        scorer_fingerprint="s" * 64,
        evaluations=good,
    )
    assert storage.get_trial("atomic", key).state == "complete"  # type: ignore[union-attr]
    assert sorted(storage.cached_evaluations("s" * 64, key, "dev", keys)) == ["k0", "k1", "k2"]

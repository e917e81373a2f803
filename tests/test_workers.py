"""Many workers on one study (promptsearch/study/worker.py), counted: worker threads.

Four worker threads with a fake scorer, each with its own Storage, on SQLite and
PostgreSQL: the claims and the study's budget shared by all, racing and the final
pick with workers, a trial its dead owner left running, and the error for a study
that does not exist.  Real worker processes, and one killed mid-trial, are in
test_worker_processes.py.

Every scenario counts, from the workers' own reports and from the database: the
candidates claimed, evaluated and skipped as duplicates, what the scorer was asked
to score (every scoring call is logged), the trials and the cache rows
(:func:`worker_support.check_counts`).

PostgreSQL runs when $PROMPTSEARCH_TEST_POSTGRES_URL is set
(``eval "$(bash .ci/postgres.sh)"``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from storage_support import in_threads
from worker_support import STUDY, WORKERS, check_counts

from promptsearch import Prompt, Task
from promptsearch.cli import main
from promptsearch.storage import open_storage
from promptsearch.study.loop import Study
from promptsearch.study.worker import WorkerReport, run_worker
from promptsearch.task import Example
from promptsearch.testing.fakes import FakeModel, FakeReport, FakeResult
from promptsearch.testing.searchers import contract_task_with_dev


@pytest.fixture
def database(storage_url: str) -> str:
    """A fresh database of each backend (conftest's ``storage_url``)."""
    return storage_url


@dataclass
class FakeScorer:
    """Right on an example iff a hash of (prompt, example) says so; logs every call."""

    log: list[str]
    lock: threading.Lock
    delay: float = 0.01
    model: FakeModel = field(default_factory=FakeModel)

    @property
    def fingerprint(self) -> str:
        return "s" * 64

    def score(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> FakeReport:
        with self.lock:
            self.log.append(prompt.content_hash)
        time.sleep(self.delay)
        results = []
        for example in examples:
            digest = hashlib.sha256((prompt.content_hash + example.id).encode()).digest()
            correct = digest[0] % 3 != 0
            results.append(
                FakeResult(example.id, example.target if correct else "x", correct, float(correct))
            )
        return FakeReport(results, len(examples))


def fake_task() -> Task:
    return contract_task_with_dev(6)


def create_fake_study(url: str, budget: int, log: list[str], lock: threading.Lock) -> None:
    with open_storage(url) as storage:
        Study(
            STUDY,
            fake_task(),
            FakeScorer(log, lock),
            ["manual", "random-edit"],
            budget,
            storage,
            seed=3,
            candidates_per_round=3,
            progress=False,
        ).create()
        assert storage.trials(STUDY) == []


def test_worker_threads_share_one_study(database: str) -> None:
    log: list[str] = []
    budget, lock = 16, threading.Lock()
    create_fake_study(database, budget, log, lock)

    def work(i: int) -> WorkerReport:
        return run_worker(
            STUDY,
            storage=database,
            worker=f"thread-{i}",
            task=fake_task(),
            scorer=FakeScorer(log, lock),
            heartbeat_timeout=5,
        )

    reports = in_threads(WORKERS, work)
    totals = check_counts(database, reports, log, budget, n_dev=6)
    assert totals["reclaimed"] == 0
    assert totals["skipped (duplicates)"] >= WORKERS - 1  # the seed prompts, proposed by all
    assert {r.stopped_by for r in reports} == {"budget"}


@dataclass
class ExampleLog(FakeScorer):
    """Also logs (prompt, example) pairs: racing scores a trial in several calls."""

    pairs: list[str] = field(default_factory=list)

    def score(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> FakeReport:
        with self.lock:
            self.pairs.extend(f"{prompt.content_hash}:{e.id}" for e in examples)
        return super().score(prompt, examples, task)


def test_racing_workers_prune_and_finish_every_trial_once(database: str) -> None:
    log: list[str] = []
    budget, lock = 12, threading.Lock()
    racing = {"min_examples": 2, "eta": 2, "min_trials": 2, "seed": 0}
    with open_storage(database) as storage:
        Study(
            STUDY,
            fake_task(),
            FakeScorer([], lock),
            ["manual", "random-edit"],
            budget,
            storage,
            seed=3,
            candidates_per_round=3,
            progress=False,
            racing=racing,
        ).create()

    def work(i: int) -> WorkerReport:
        scorer = ExampleLog([], lock, pairs=log)
        return run_worker(STUDY, storage=database, worker=f"r{i}", task=fake_task(), scorer=scorer)

    reports = in_threads(WORKERS, work)
    with open_storage(database) as storage:
        trials = storage.trials(STUDY)
    assert len(trials) == budget == sum(r.evaluated for r in reports)
    assert {t.state for t in trials} <= {"complete", "pruned"}
    pairs = Counter(log)
    assert set(pairs.values()) == {1}  # no prompt scored twice on an example
    scored = Counter(pair.split(":")[0] for pair in pairs)
    for trial in trials:
        assert scored[trial.content_hash] == trial.n_examples
        assert trial.state == "pruned" or trial.n_examples == 6


def test_workers_search_the_same_part_of_dev_and_the_last_one_makes_the_pick(
    database: str,
) -> None:
    budget, lock = 8, threading.Lock()
    task = contract_task_with_dev(16)
    with open_storage(database) as storage:
        study = Study(
            STUDY, task, FakeScorer([], lock), ["manual", "random-edit"], budget, storage,
            seed=3, candidates_per_round=3, progress=False, selection=True,
        )  # fmt: skip
        study.create()
        searched = {e.id for e in study.search_task.dev}

    def work(i: int) -> WorkerReport:
        return run_worker(
            STUDY, storage=database, worker=f"s{i}", task=task, scorer=FakeScorer([], lock)
        )

    reports = in_threads(2, work)
    assert sum(r.evaluated for r in reports) == budget
    with open_storage(database) as storage:
        assert {t.n_examples for t in storage.trials(STUDY)} == {len(searched)} == {8}
        record = storage.get_study(STUDY)
    assert record is not None and record.selection is not None
    assert record.selection["n_search"] == 8 and record.selection["n_confirm"] == 8


def test_worker_finishes_a_trial_its_dead_owner_left_running(tmp_path: Path) -> None:
    """A running trial of a stopped worker (or of a killed `run`) that no searcher
    proposes again is taken over, scored and finished; a new worker on a study whose
    budget is spent claims nothing."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    log: list[str] = []
    lock = threading.Lock()
    create_fake_study(url, 3, log, lock)
    orphan = Prompt(template="Orphan: {sentence} => {answer}").resolve(fake_task())
    with open_storage(url) as storage:
        storage.add_prompt(orphan.to_dict(), orphan.content_hash, orphan.describe(), 10)
        claim = storage.claim_trial(
            STUDY,
            orphan.content_hash,
            searcher="manual",
            operation="seed",
            parent_hash=None,
            worker="ghost",
        )
        assert claim.trial is not None
        time.sleep(0.5)  # its heartbeat goes stale

    report = run_worker(
        STUDY,
        storage=url,
        worker="rescuer",
        task=fake_task(),
        scorer=FakeScorer(log, lock),
        heartbeat_timeout=0.4,
    )
    assert (report.reclaimed, report.claimed, report.evaluated) == (1, 2, 3)
    with open_storage(url) as storage:
        rescued = storage.get_trial(STUDY, orphan.content_hash)
        assert rescued is not None
        assert (rescued.state, rescued.worker, rescued.number) == ("complete", "rescuer", 0)
        assert len(storage.trials(STUDY, states=["complete"])) == 3
    again = run_worker(
        STUDY, storage=url, worker="late", task=fake_task(), scorer=FakeScorer(log, lock)
    )
    assert (again.claimed, again.evaluated, again.stopped_by) == (0, 0, "budget")
    assert len(log) == 3


def test_a_worker_logs_a_line_per_trial_it_scores(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With progress, on the ``promptsearch`` logger at INFO (the CLI prints them)."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    lock = threading.Lock()
    create_fake_study(url, 2, [], lock)
    with caplog.at_level(logging.INFO, logger="promptsearch"):
        report = run_worker(
            STUDY,
            storage=url,
            worker="solo",
            task=fake_task(),
            scorer=FakeScorer([], lock),
            progress=True,
        )
    lines = [r for r in caplog.records if r.name == "promptsearch.study.worker"]
    assert report.evaluated == len(lines) == 2
    assert {r.levelno for r in lines} == {logging.INFO}
    for record in lines:
        assert re.fullmatch(
            r"\[solo\] trial #[01] complete \d\.\d{4} \(\S+, \S+\)", record.getMessage()
        )


def test_worker_on_a_missing_study_names_the_command_that_creates_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "x.db")
    assert main(["worker", "--study", "nope", "--storage", db]) == 2
    err = capsys.readouterr().err
    assert "no study named 'nope'" in err and "--create-only" in err
    create_fake_study(f"sqlite:///{db}", 3, [], threading.Lock())
    assert main(["worker", "--study", STUDY, "--storage", db, "--heartbeat-timeout", "0"]) == 2
    assert "heartbeat_timeout must be > 0" in capsys.readouterr().err

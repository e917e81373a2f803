"""Many workers on one study (promptsearch/study/worker.py), counted.

Fast part: four worker threads with a fake scorer, each with its own Storage, on
SQLite and PostgreSQL.  Slow part: four real ``promptsearch worker`` processes with
a tiny transformers model saved to a folder (rebuilt by each worker from the
study's record) on an SQLite file in WAL mode and on a real PostgreSQL server, and
a worker killed with SIGKILL in the middle of a trial.

Every scenario counts, from the workers' own reports and from the database: the
candidates claimed, evaluated and skipped as duplicates, what the scorer was asked
to score (every scoring call is logged), the trials and the cache rows.

PostgreSQL runs when $PROMPTSEARCH_TEST_POSTGRES_URL is set
(``eval "$(bash .ci/postgres.sh)"``).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from storage_support import in_threads
from test_kill import N_DEV, save_tiny_model, write_kshot_data

from promptsearch import Prompt, Task
from promptsearch.cli import main
from promptsearch.storage import open_storage
from promptsearch.study.loop import Study
from promptsearch.study.worker import WorkerReport, run_worker
from promptsearch.task import Example
from promptsearch.testing.fakes import FakeModel, FakeReport, FakeResult
from promptsearch.testing.searchers import contract_task_with_dev

REPO = Path(__file__).resolve().parent.parent
WORKERS = 4
STUDY = "shared"


@pytest.fixture
def database(storage_url: str) -> str:
    """A fresh database of each backend (conftest's ``storage_url``)."""
    return storage_url


# -- counting ----------------------------------------------------------------------------


def check_counts(
    url: str, reports: Sequence[WorkerReport], scored: Sequence[str], budget: int, n_dev: int
) -> dict[str, int]:
    """The checks every scenario shares; returns the totals (printed with -s)."""
    with open_storage(url) as storage:
        trials = storage.trials(STUDY)
        with storage.session(write=False) as session:
            rows = session.execute(
                sa.text(
                    "SELECT prompt_hash, example_key, count(*) FROM evaluations "
                    "GROUP BY prompt_hash, example_key"
                )
            ).all()
        status = storage.get_study(STUDY)
    claimed = sum(r.claimed for r in reports)
    reclaimed = sum(r.reclaimed for r in reports)
    evaluated = sum(r.evaluated for r in reports)
    skipped = sum(r.skipped for r in reports)
    # the study's budget holds for all workers together, and every trial is finished
    assert len(trials) == budget
    assert sorted(t.number for t in trials) == list(range(budget))
    assert {t.state for t in trials} == {"complete"}
    assert claimed == budget
    assert evaluated == budget  # each trial finished once, by the worker holding it then
    # each trial is stored once, by the worker that holds it
    by_worker = Counter(t.worker for t in trials)
    for report in reports:
        assert by_worker[report.worker] == report.evaluated, report
    # one cache row per (prompt, example), for the trials' prompts only
    assert all(n == 1 for _, _, n in rows)
    assert {h for h, _, _ in rows} == {t.content_hash for t in trials}
    assert len(rows) == budget * n_dev
    # what the scorer was asked: each trial's prompt, once, plus one re-score per reclaim
    assert Counter(scored).total() == budget + reclaimed
    assert set(scored) == {t.content_hash for t in trials}
    assert status is not None and status.status == "finished"
    totals = {
        "claimed": claimed,
        "reclaimed": reclaimed,
        "evaluated": evaluated,
        "skipped (duplicates)": skipped,
        "scoring calls": len(scored),
        "trials": len(trials),
    }
    print(f"\n{url.split('://')[0]}: {totals}")
    for report in reports:
        print("  " + report.summary())
    return totals


# -- fast: worker threads with a fake scorer ------------------------------------------


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
    budget, log, lock = 16, [], threading.Lock()
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
    budget, log, lock = 12, [], threading.Lock()
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


# -- slow: four real worker processes -----------------------------------------------------

RUNNER = """
import os, sys, time
from pathlib import Path
import promptsearch.scoring.scorer as scorer_module
import promptsearch.study.worker as worker_module

log = os.open(os.environ["WORKERTEST_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
delay = float(os.environ["WORKERTEST_DELAY"])
hang = float(os.environ.get("WORKERTEST_HANG", "0"))
real_score = scorer_module.Scorer.score

def score(self, prompt, examples, task):
    os.write(log, (prompt.content_hash + "\\n").encode())
    time.sleep(hang or delay)  # a slower model; the victim hangs in its first trial
    return real_score(self, prompt, examples, task)

real_work = worker_module.Worker.work

def work(self):  # model and task are loaded: wait for the others, then start together
    Path(os.environ["WORKERTEST_LOG"] + ".ready").touch()
    go = Path(os.environ["WORKERTEST_GO"])
    while not go.exists():
        time.sleep(0.01)
    return real_work(self)

scorer_module.Scorer.score = score
worker_module.Worker.work = work
from promptsearch.cli import main
sys.exit(main(sys.argv[1:]))
"""

BUDGET = 12
DELAY_S = 0.4
TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Assets:
    data: Path
    model: Path


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    base = tmp_path_factory.mktemp("workers")
    return Assets(write_kshot_data(base / "data"), save_tiny_model(base / "model"))


def create_study(url: str, assets: Assets) -> None:
    code = main(
        [
            "run",
            "--create-only",
            "--no-selection",  # the claims of the search loop; the pick: test_selection.py
            "--task",
            "sst2",
            "--data-dir",
            str(assets.data),
            "--model",
            str(assets.model),
            "--searcher",
            "manual",
            "--searcher",
            "random-edit",
            "--budget",
            str(BUDGET),
            "--study",
            STUDY,
            "--seed",
            "5",
            "--candidates-per-round",
            "4",
            "--storage",
            url,
            "--quiet",
        ]
    )
    assert code == 0


@dataclass
class Process:
    worker: str
    process: subprocess.Popen[bytes]
    log: Path

    def scored(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def finish(self, timeout: float = 240) -> tuple[int, str, str]:
        code = self.process.wait(timeout=timeout)
        out = self.log.with_suffix(".out").read_text(errors="replace")
        return code, out, self.log.with_suffix(".err").read_text(errors="replace")


def start_workers(url: str, assets: Assets, folder: Path, hang: dict[str, float]) -> list[Process]:
    go = folder / "go"
    processes = []
    for i in range(WORKERS):
        worker = f"w{i}"
        log = folder / f"{worker}.log"
        env = dict(os.environ)
        env.update(
            PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            TOKENIZERS_PARALLELISM="false",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_VERBOSITY="error",
            WORKERTEST_LOG=str(log),
            WORKERTEST_GO=str(go),
            WORKERTEST_DELAY=str(DELAY_S),
            WORKERTEST_HANG=str(hang.get(worker, 0)),
        )
        args = ["worker", "--study", STUDY, "--storage", url, "--data-dir", str(assets.data)]
        args += ["--worker-id", worker, "--batch-size", "4", "--json"]
        args += ["--heartbeat-timeout", str(TIMEOUT_S)]
        with log.with_suffix(".out").open("wb") as out, log.with_suffix(".err").open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-c", RUNNER, *args], env=env, stdout=out, stderr=err
            )
        processes.append(Process(worker, process, log))
    deadline = time.monotonic() + 180
    while not all(Path(str(p.log) + ".ready").exists() for p in processes):
        for p in processes:
            if p.process.poll() is not None:
                pytest.fail(f"{p.worker} ended before it started working:\n{p.finish()[2][-3000:]}")
        assert time.monotonic() < deadline, "the workers did not start in 180 s"
        time.sleep(0.05)
    go.touch()
    return processes


def reports_of(processes: Sequence[Process]) -> list[WorkerReport]:
    reports = []
    for p in processes:
        code, out, err = p.finish()
        assert code == 0, f"{p.worker} exited {code}:\n{err[-3000:]}"
        reports.append(WorkerReport(**json.loads(out.strip().splitlines()[-1])))
    return reports


def stop(processes: Sequence[Process]) -> None:
    for p in processes:
        if p.process.poll() is None:
            p.process.kill()
            p.process.wait()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")
def test_four_worker_processes_share_one_study(
    database: str, assets: Assets, tmp_path: Path
) -> None:
    create_study(database, assets)
    processes = start_workers(database, assets, tmp_path, hang={})
    try:
        reports = reports_of(processes)
    finally:
        stop(processes)
    scored = [key for p in processes for key in p.scored()]
    totals = check_counts(database, reports, scored, BUDGET, N_DEV)
    assert totals["reclaimed"] == 0 and totals["scoring calls"] == BUDGET
    assert totals["skipped (duplicates)"] >= WORKERS - 1  # all four propose the seed prompts
    assert all(r.evaluated >= 1 for r in reports), [r.summary() for r in reports]
    assert {r.stopped_by for r in reports} == {"budget"}
    if database.startswith("sqlite"):
        db = database.removeprefix("sqlite:///")
        mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")
def test_a_worker_killed_mid_trial_loses_nothing(
    database: str, assets: Assets, tmp_path: Path
) -> None:
    create_study(database, assets)
    processes = start_workers(database, assets, tmp_path, hang={"w0": 120.0})
    victim, survivors = processes[0], processes[1:]
    try:
        deadline = time.monotonic() + 60
        while not victim.scored():
            assert victim.process.poll() is None, victim.finish()[2][-3000:]
            assert time.monotonic() < deadline, "the victim never started a trial"
            time.sleep(0.01)
        [key] = victim.scored()
        # longer than the timeout: the heartbeat keeps the slow trial the victim's
        time.sleep(TIMEOUT_S * 1.5)
        with open_storage(database) as storage:
            held = storage.get_trial(STUDY, key)
        assert held is not None and (held.state, held.worker) == ("running", "w0")
        victim.process.send_signal(signal.SIGKILL)
        assert victim.process.wait(timeout=30) == -signal.SIGKILL
        reports = reports_of(survivors)
    finally:
        stop(processes)
    scored = [k for p in survivors for k in p.scored()]
    victim_report = WorkerReport(STUDY, "w0", claimed=1)  # what its kill left unsaid
    totals = check_counts(database, [victim_report, *reports], [key, *scored], BUDGET, N_DEV)
    assert totals["reclaimed"] == 1
    with open_storage(database) as storage:
        rescued = storage.get_trial(STUDY, key)
    assert rescued is not None and rescued.state == "complete"
    assert rescued.worker in {p.worker for p in survivors} and rescued.number == held.number
    assert Counter([key, *scored])[key] == 2  # the victim's try, and the rescuer's

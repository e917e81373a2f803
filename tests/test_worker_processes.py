"""Many workers on one study (promptsearch/study/worker.py), counted: real processes.

Four real ``promptsearch worker`` processes with a tiny transformers model saved to
a folder (rebuilt by each worker from the study's record) on an SQLite file in WAL
mode and on a real PostgreSQL server; then a worker killed with SIGKILL in the
middle of a trial, whose trial another worker takes over.  The same scenarios with
threads and a fake scorer are in test_workers.py; the counts both check are
:func:`worker_support.check_counts`.

PostgreSQL runs when $PROMPTSEARCH_TEST_POSTGRES_URL is set
(``eval "$(bash .ci/postgres.sh)"``).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_kill import N_DEV, save_tiny_model, write_kshot_data
from worker_support import STUDY, WORKERS, check_counts

from promptsearch.cli import main
from promptsearch.storage import open_storage
from promptsearch.study.worker import WorkerReport

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def database(storage_url: str) -> str:
    """A fresh database of each backend (conftest's ``storage_url``)."""
    return storage_url


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

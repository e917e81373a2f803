"""Crash safety of a real search: SIGKILL and Ctrl-C at random moments, then resume.

One scenario, run once for the module: the real ``promptsearch run`` command (a tiny
real transformers model saved to a folder, a small built-in k-shot task, an SQLite
file) is started again and again and stopped at seeded random moments: a SIGKILL
as soon as the database file appears (schema creation, study set-up), a SIGKILL
while a trial is being scored, SIGKILLs after random delays, a SIGINT (Ctrl-C) and a
SIGTERM.
Then the same command runs to the end.  The same search runs once more without
interruption, in its own database, as the reference.

Each run logs every prompt it hands to the scorer (the runner below wraps
``Scorer.score``), so the tests can tell what was scored, by which run.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from process_support import default_sigint

from promptsearch.storage import open_storage

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals"),
    pytest.mark.slow,  # seven processes that each import torch and load a (tiny) model
]

REPO = Path(__file__).resolve().parent.parent
STUDY = "kill"
BUDGET = 20
N_DEV = 12
KILL_SEED = 20240607
SLOW_SCORING_S = 0.12  # every scoring call of an interrupted run sleeps this long first
IN_TRIAL_S = 0.5  # ... and this long in the runs meant to be stopped inside a trial

RUNNER = """
import os, sys, time
import promptsearch.scoring.scorer as scorer_module

log = os.open(os.environ["KILLTEST_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
delay = float(os.environ.get("KILLTEST_DELAY", "0"))
real_score = scorer_module.Scorer.score

def score(self, prompt, examples, task):
    os.write(log, (prompt.content_hash + "\\n").encode())
    time.sleep(delay)  # a slower model: most of a run is spent inside a trial
    return real_score(self, prompt, examples, task)

scorer_module.Scorer.score = score
from promptsearch.cli import main
sys.exit(main(sys.argv[1:]))
"""

POSITIVE = [
    "a great movie",
    "the film was good",
    "the acting was great",
    "a good story",
    "i loved it",
    "the music was fine",
    "a great film with good actors",
    "overall the story was great",
    "the camera work was good",
    "i would watch it again",
    "a good and great film",
    "the ending was great",
    "good actors and a good story",
    "the review is positive",
]
NEGATIVE = [
    "a terrible movie",
    "the film was bad",
    "the acting was awful",
    "a bad story",
    "i hated it",
    "the plot was bad",
    "a terrible film with bad actors",
    "the movie was boring",
    "the ending was awful",
    "a bad and terrible film",
    "it was terrible",
    "bad actors and a bad story",
    "the review is negative",
    "the story was boring",
]


def write_kshot_data(root: Path) -> Path:
    """A tiny sst2 in the k-shot layout: 16-13/{train,dev}.tsv and test.tsv."""
    folder = root / "kshot" / "SST-2" / "16-13"
    folder.mkdir(parents=True)
    rows = [(text, 1) for text in POSITIVE] + [(text, 0) for text in NEGATIVE]
    random.Random(0).shuffle(rows)
    dev, train, test = rows[:N_DEV], rows[N_DEV:22], rows[22:]
    for path, part in ((folder / "train.tsv", train), (folder / "dev.tsv", dev)):
        path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in part))
    (folder.parent / "test.tsv").write_text(
        "sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in test)
    )
    return root


def save_tiny_model(folder: Path) -> Path:
    pytest.importorskip("torch")
    from promptsearch.testing import tiny_causal_lm

    lm = tiny_causal_lm(seed=3)
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


# -- reading the database the way an outside observer would ------------------------------


@dataclass(frozen=True)
class Trial:
    number: int
    state: str
    dev_score: float | None
    n_examples: int
    forward_passes: int


def read_trials(db: Path) -> dict[str, Trial]:
    """The study's trials by prompt hash ({} while the schema or study does not exist)."""
    if not db.exists():
        return {}
    connection = sqlite3.connect(db, timeout=30)
    try:
        rows = connection.execute(
            "SELECT p.content_hash, t.number, t.state, t.dev_score, t.n_examples, "
            "t.forward_passes FROM trials t JOIN prompts p ON p.id = t.prompt_id "
            "JOIN studies s ON s.id = t.study_id WHERE s.name = ?",
            (STUDY,),
        ).fetchall()
    except sqlite3.OperationalError:  # no tables yet
        return {}
    finally:
        connection.close()
    return {row[0]: Trial(*row[1:]) for row in rows}


def status(db: Path) -> str | None:
    try:
        rows = query(db, f"SELECT status FROM studies WHERE name = '{STUDY}'")
    except sqlite3.OperationalError:
        return None
    return str(rows[0][0]) if rows else None


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(db, timeout=30)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


# -- the scenario ------------------------------------------------------------------------


@dataclass
class Interruption:
    how: str  # "kill-early", "kill-in-trial", "kill-random", "sigint"
    returncode: int
    stderr: str
    log: Path
    after: dict[str, Trial]  # the study's trials once the process was gone
    status: str | None  # the study's status then


@dataclass
class Scenario:
    db: Path
    reference_db: Path
    interruptions: list[Interruption] = field(default_factory=list)
    final_log: Path | None = None
    final_stdout: str = ""
    reference_log: Path | None = None


def command(data: Path, model: Path, db: Path) -> list[str]:
    return [
        "run",
        "--task",
        "sst2",
        "--data-dir",
        str(data),
        "--model",
        str(model),
        "--searcher",
        "manual",
        "--searcher",
        "random-edit",
        # the search loop's crash safety: the final pick's extra scoring on held-back dev
        # examples is covered by tests/test_selection.py
        "--no-selection",
        "--budget",
        str(BUDGET),
        "--study",
        STUDY,
        "--seed",
        "5",
        "--batch-size",
        "4",
        "--candidates-per-round",
        "2",
        "--storage",
        str(db),
        "--quiet",
    ]


def environment(log: Path, delay: float) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        KILLTEST_LOG=str(log),
        KILLTEST_DELAY=str(delay),
    )
    return env


@dataclass
class Run:
    """A started ``promptsearch run``, its output going to files beside its log."""

    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, args: list[str], log: Path, delay: float) -> Run:
        with log.with_suffix(".out").open("wb") as out, log.with_suffix(".err").open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-c", RUNNER, *args],
                env=environment(log, delay),
                cwd=log.parent,
                stdout=out,
                stderr=err,
                preexec_fn=default_sigint,
            )
        return cls(process, log)

    def wait(self, timeout: float = 300) -> tuple[int, str, str]:
        code = self.process.wait(timeout=timeout)
        out = self.log.with_suffix(".out").read_text(errors="replace")
        return code, out, self.log.with_suffix(".err").read_text(errors="replace")

    def scoring(self, calls: int = 1) -> bool:
        """This run has started scoring its *calls*-th prompt (and sleeps in it)."""
        return self.log.exists() and len(self.log.read_bytes().split()) >= calls

    def wait_until(self, ready: Callable[[], bool], timeout: float = 120.0) -> None:
        """Poll until ``ready()``; fail if the process ends first or it takes too long."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                _, _, err = self.wait()
                pytest.fail(f"{self.log.stem} ended before it could be interrupted:\n{err[-3000:]}")
            if ready():
                return
            time.sleep(0.005)
        pytest.fail(f"{self.log.stem} never reached the point to interrupt it in {timeout:.0f} s")


def run_scenario(base: Path) -> Scenario:
    data = write_kshot_data(base / "data")
    model = save_tiny_model(base / "model")
    scenario = Scenario(db=base / "killed.db", reference_db=base / "reference.db")
    args = command(data, model, scenario.db)
    reference = Run.start(command(data, model, scenario.reference_db), base / "reference.log", 0)
    runs = [reference]
    rng = random.Random(KILL_SEED)
    plan = ["kill-early", "kill-in-trial", "kill-random", "kill-random", "sigint", "sigterm"]
    try:
        for index, how in enumerate(plan):
            delay = IN_TRIAL_S if how in ("kill-in-trial", "sigint", "sigterm") else SLOW_SCORING_S
            run = Run.start(args, base / f"run-{index}.log", delay)
            runs.append(run)
            if how == "kill-early":
                run.wait_until(scenario.db.exists)
                time.sleep(rng.uniform(0.0, 0.05))
            elif how in ("kill-in-trial", "sigint", "sigterm"):
                run.wait_until(run.scoring)
            else:  # inside or just after the k-th trial of this run, k random
                calls = rng.randint(2, 5)
                run.wait_until(functools.partial(run.scoring, calls))
                time.sleep(rng.uniform(0.0, 1.5 * SLOW_SCORING_S))
            if how == "sigint":
                run.process.send_signal(signal.SIGINT)
            elif how == "sigterm":
                run.process.send_signal(signal.SIGTERM)
            else:
                run.process.kill()
            code, _, err = run.wait()
            after = read_trials(scenario.db)
            interruption = Interruption(how, code, err, run.log, after, status(scenario.db))
            scenario.interruptions.append(interruption)

        final = Run.start(args, base / "final.log", 0)
        runs.append(final)
        code, out, err = final.wait()
        assert code == 0, err[-3000:]
        scenario.final_log, scenario.final_stdout = final.log, out
        code, _, err = reference.wait()
        assert code == 0, err[-3000:]
        scenario.reference_log = reference.log
    finally:
        for run in runs:
            if run.process.poll() is None:
                run.process.kill()
                run.process.wait()
    return scenario


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    yield run_scenario(tmp_path_factory.mktemp("kill"))


def logged(path: Path | None) -> list[str]:
    if path is None or not path.exists():
        return []
    return path.read_text().split()


# -- the checks --------------------------------------------------------------------------


def test_every_interruption_really_interrupted(scenario: Scenario) -> None:
    kills = [i for i in scenario.interruptions if i.how.startswith("kill")]
    codes = [i.returncode for i in kills]
    assert codes == [-signal.SIGKILL] * len(kills), codes
    # at least one SIGKILL left a trial half-scored, so that resuming had one to retry
    in_flight = [i for i in kills if _running(i.after)]
    assert in_flight, "no SIGKILL landed inside a trial"


def test_no_completed_trial_is_lost_or_changed(scenario: Scenario) -> None:
    final = read_trials(scenario.db)
    for interruption in scenario.interruptions:
        for key, trial in interruption.after.items():
            if trial.state == "complete":
                assert final[key] == trial, (interruption.how, key)


def test_trials_in_flight_are_retried_and_complete(scenario: Scenario) -> None:
    final = read_trials(scenario.db)
    assert {t.state for t in final.values()} == {"complete"}
    for interruption in scenario.interruptions:
        for key in _running(interruption.after):
            before = interruption.after[key]
            assert final[key].state == "complete"
            assert final[key].number == before.number  # the same trial, not a second one


def test_nothing_is_scored_twice(scenario: Scenario) -> None:
    runs = [(i.log, i.after) for i in scenario.interruptions]
    for index, (log, after) in enumerate(runs):
        done = {key for key, trial in after.items() if trial.state == "complete"}
        later = [other for other, _ in runs[index + 1 :]] + [scenario.final_log]
        again = done & {key for path in later for key in logged(path)}
        assert not again, f"{len(again)} completed prompt(s) scored again after {log.name}"
        # what this run scored and did not finish is exactly the trial it was killed in
        unfinished = set(logged(log)) - done
        assert unfinished <= _running(after)
    for path in (scenario.final_log, scenario.reference_log):
        calls = logged(path)
        assert len(calls) == len(set(calls)), f"{path}: a prompt was scored twice in one run"
    # one trial per prompt, one cache row per (prompt, example), and no cache rows of
    # prompts whose trial never completed
    db = scenario.db
    assert not query(db, "SELECT study_id, prompt_id FROM trials GROUP BY 1, 2 HAVING count(*) > 1")
    duplicated = query(
        db,
        "SELECT scorer_fingerprint, prompt_hash, split, example_key FROM evaluations "
        "GROUP BY 1, 2, 3, 4 HAVING count(*) > 1",
    )
    assert not duplicated
    complete = {key for key, t in read_trials(db).items() if t.state == "complete"}
    cached = {row[0] for row in query(db, "SELECT DISTINCT prompt_hash FROM evaluations")}
    assert cached == complete
    assert query(db, "SELECT count(*) FROM evaluations") == [(len(complete) * N_DEV,)]


def test_leaderboard_equals_an_uninterrupted_run(scenario: Scenario) -> None:
    def board(db: Path) -> list[tuple[object, ...]]:
        with open_storage(str(db)) as storage:
            rows = storage.leaderboard(STUDY)
            totals = storage.totals(STUDY)
            study = storage.get_study(STUDY)
        assert study is not None
        return [
            *[
                (r.content_hash, r.dev_score, r.n_examples, r.searcher, r.operation, r.number)
                for r in rows
            ],
            ("trials", totals.n_trials, totals.n_complete, totals.forward_passes, study.status),
        ]

    resumed = board(scenario.db)
    assert resumed == board(scenario.reference_db)
    assert resumed[-1][1] == BUDGET
    assert read_trials(scenario.db) == read_trials(scenario.reference_db)
    assert sorted(logged(scenario.reference_log)) == sorted(read_trials(scenario.reference_db))


@pytest.mark.parametrize(("how", "code"), [("sigint", 130), ("sigterm", 143)])
def test_ctrl_c_and_sigterm_stop_cleanly_and_say_how_to_resume(
    scenario: Scenario, how: str, code: int
) -> None:
    (sigint,) = [i for i in scenario.interruptions if i.how == how]
    assert sigint.returncode == code, sigint.stderr[-2000:]
    assert "run the same command again to resume" in sigint.stderr
    assert "Traceback" not in sigint.stderr
    assert sigint.status == "stopped"
    # consistent: finished trials, and at most the one trial it was scoring still open
    assert {t.state for t in sigint.after.values()} <= {"complete", "running"}
    assert len(_running(sigint.after)) <= 1
    # the final run resumed it to the end
    assert status(scenario.db) == "finished"
    assert f"study {STUDY!r}: {BUDGET} prompts scored" in scenario.final_stdout


def test_sigkill_leaves_the_study_running_and_resumable(scenario: Scenario) -> None:
    for interruption in scenario.interruptions:
        if interruption.how.startswith("kill"):
            assert interruption.status in (None, "running"), interruption.how


def _running(trials: dict[str, Trial]) -> set[str]:
    return {key for key, trial in trials.items() if trial.state == "running"}

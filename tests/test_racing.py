"""Racing studies (fake scorer and tiny real model); the rung logic is in test_racing_rungs.py.

The study tests check every stored decision against the rule of
:mod:`promptsearch.study.racing`, recomputed from the evaluation cache, and check that a
study resumed after a crash ends exactly like one that never stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_crash_points import Crash, install_crash

from promptsearch import Prompt, StudyConflictError, Task
from promptsearch.cli import main
from promptsearch.errors import ConfigError
from promptsearch.searchers.base import TrialResult
from promptsearch.searchers.manual import ManualSearcher
from promptsearch.storage import Storage, open_storage
from promptsearch.study.loop import Study, example_key
from promptsearch.study.racing import Racing, racing_order, survives
from promptsearch.task import Example
from promptsearch.testing.fakes import FakeModel, FakeReport, FakeResult
from promptsearch.testing.searchers import contract_task, contract_task_with_dev

# -- racing studies with a fast fake scorer ---------------------------------------------------


@dataclass
class FakeScorer:
    """Each prompt has its own accuracy level; right or wrong per example by a hash."""

    model: FakeModel = field(default_factory=FakeModel)
    forward_passes: int = 0
    scored: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return "s" * 64

    def score(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> FakeReport:
        self.scored.append(prompt.content_hash)
        level = 0.25 + 0.6 * hashlib.sha256(prompt.content_hash.encode()).digest()[0] / 255
        results = []
        for example in examples:
            digest = hashlib.sha256((prompt.content_hash + example.id).encode()).digest()
            correct = digest[0] / 255 < level
            gold = 0.5 + (0.5 if correct else -0.5) * (digest[1] + 1) / 257
            other = "0" if example.target == "1" else "1"
            logprobs = {example.target: math.log(gold), other: math.log(1 - gold)}
            prediction = example.target if correct else other
            results.append(FakeResult(example.id, prediction, correct, float(correct), logprobs))
        self.forward_passes += len(examples)
        return FakeReport(results, len(examples))


def racing_task(n_dev: int = 54) -> Task:
    return contract_task_with_dev(n_dev)


RACING = Racing(min_examples=6, eta=3, min_trials=3, seed=1)  # rungs 6, 18, 54


class SpySearcher(ManualSearcher):
    """The manual searcher, recording every result it is given."""

    def __init__(
        self, prompts: Sequence[Prompt | str] = (), include_seed_prompts: bool = True
    ) -> None:
        super().__init__(prompts, include_seed_prompts)
        self.seen: list[TrialResult] = []

    def observe(self, results: Sequence[TrialResult]) -> None:
        self.seen.extend(results)


def run_racing(
    storage: Storage,
    scorer: Any,
    *,
    budget: int = 30,
    racing: Racing | None = RACING,
    searchers: list[Any] | None = None,
    name: str = "race",
    task: Task | None = None,
) -> Study:
    study = Study(
        name,
        task or racing_task(),
        scorer,
        searchers or ["manual", "random-edit"],
        budget,
        storage,
        seed=5,
        candidates_per_round=3,
        progress=False,
        racing=racing,
    )
    study.run()
    return study


def rung_scores(
    storage: Storage, task: Task, racing: Racing, key: str, n: int
) -> list[tuple[float, float]]:
    """A trial's (accuracy, mean gold probability) on each decision rung it reached,
    from the evaluation cache."""
    order = [task.dev[i] for i in racing_order([e.target for e in task.dev], racing.seed)]
    keys = [example_key(e) for e in order]
    found = storage.cached_evaluations("s" * 64, key, "dev", keys)
    rungs = [r for r in racing.rungs(len(task.dev))[:-1] if r <= n]
    out = []
    for r in rungs:
        probabilities = []
        for e, k in zip(order[:r], keys[:r], strict=True):
            logprobs = (found[k].detail or {})["label_logprobs"]
            probabilities.append(math.exp(logprobs[e.target]))  # the two sum to one
        out.append((sum(found[k].score for k in keys[:r]) / r, sum(probabilities) / r))
    return out


def check_decisions(storage: Storage, task: Task, racing: Racing, name: str = "race") -> None:
    """Every stored trial went on, or stopped, exactly as the rule says, given the
    trials finished before it (one worker: those with smaller numbers)."""
    rungs = racing.rungs(len(task.dev))
    history: list[list[tuple[float, float]]] = []
    for trial in storage.trials(name):
        assert trial.state in ("complete", "pruned")
        assert trial.n_examples in rungs
        assert (trial.state == "complete") == (trial.n_examples == len(task.dev))
        scores = rung_scores(storage, task, racing, trial.content_hash, trial.n_examples)
        for rung, score in enumerate(scores):
            others = [h[rung] for h in history if len(h) > rung]
            went_on = trial.n_examples > rungs[rung]
            assert went_on == survives(score, others, racing.eta, racing.min_trials)
        if trial.state == "pruned":
            assert trial.dev_score == pytest.approx(scores[-1][0])
        history.append(scores)


@pytest.fixture
def sqlite(tmp_path: Path) -> Storage:
    return open_storage(f"sqlite:///{tmp_path / 'race.db'}")


def test_racing_study_prunes_weak_candidates_and_scores_survivors_fully(sqlite: Storage) -> None:
    scorer = FakeScorer()
    spy = SpySearcher()
    run_racing(sqlite, scorer, searchers=[spy, "random-edit"])
    task = racing_task()
    trials = sqlite.trials("race")
    assert len(trials) == 30  # an evaluation counts once, pruned or not
    pruned = [t for t in trials if t.state == "pruned"]
    complete = [t for t in trials if t.state == "complete"]
    assert pruned and complete
    assert {t.n_examples for t in pruned} <= {6, 18}
    assert {t.n_examples for t in complete} == {54}
    check_decisions(sqlite, task, RACING)
    # forward passes count what was run: each trial exactly its examples (fresh cache)
    assert scorer.forward_passes == sum(t.n_examples for t in trials)
    assert sqlite.totals("race").forward_passes == scorer.forward_passes
    assert scorer.forward_passes < 0.6 * 30 * 54
    for trial in trials:  # cache rows: exactly the examples scored
        keys = [example_key(e) for e in task.dev]
        assert len(sqlite.cached_evaluations("s" * 64, trial.content_hash, "dev", keys)) == (
            trial.n_examples
        )
    # searchers get no score for a pruned candidate, and how far it got
    by_hash = {t.content_hash: t for t in trials}
    for result in spy.seen:
        stored = by_hash[result.content_hash]
        assert result.state == stored.state and result.n_examples == stored.n_examples
        assert result.score == (stored.dev_score if stored.state == "complete" else None)


def test_survivors_score_like_full_evaluation(tmp_path: Path) -> None:
    raced = open_storage(f"sqlite:///{tmp_path / 'raced.db'}")
    full = open_storage(f"sqlite:///{tmp_path / 'full.db'}")
    prompts = [f"Review {i}: {{sentence}}\nSentiment: {{answer}}" for i in range(27)]
    run_racing(raced, FakeScorer(), searchers=[ManualSearcher(prompts)])
    run_racing(full, FakeScorer(), racing=None, searchers=[ManualSearcher(prompts)])
    full_scores = {t.content_hash: t.dev_score for t in full.trials("race")}
    complete = raced.trials("race", states=["complete"])
    assert complete
    for trial in complete:
        assert trial.dev_score == full_scores[trial.content_hash]  # exactly, not approximately
    assert all(t.state == "complete" and t.n_examples == 54 for t in full.trials("race"))


def test_leaderboard_lists_pruned_trials_after_complete_ones(sqlite: Storage) -> None:
    run_racing(sqlite, FakeScorer())
    only_complete = sqlite.leaderboard("race")
    rows = sqlite.leaderboard("race", include_pruned=True)
    assert all(r.state == "complete" and r.n_examples == 54 for r in only_complete)
    states = [r.state for r in rows]
    assert states == sorted(states)  # "complete" rows, then "pruned" ones
    assert rows[: len(only_complete)] == only_complete
    pruned = rows[len(only_complete) :]
    assert pruned and all(r.n_examples < 54 for r in pruned)
    assert [r.n_examples for r in pruned] == sorted((r.n_examples for r in pruned), reverse=True)
    assert [r.rank for r in rows] == list(range(1, len(rows) + 1))
    with pytest.raises(ConfigError, match="include_pruned"):
        sqlite.leaderboard("race", include_pruned="yes")  # type: ignore[arg-type]


def test_cli_leaderboard_shows_n_and_marks_pruned_rows(
    sqlite: Storage, capsys: pytest.CaptureFixture[str]
) -> None:
    run_racing(sqlite, FakeScorer())
    board = ["leaderboard", "--study", "race", "--top", "100", "--storage", str(sqlite.url)]
    assert main(board) == 0
    table = capsys.readouterr().out
    assert " 54  " in table and "6p  " in table
    assert "p: pruned by racing" in table
    assert main([*board, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["state"], r["n_examples"] == 54) for r in rows} == {
        ("complete", True),
        ("pruned", False),
    }
    assert main([*board, "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    assert "state" in header and "n_examples" in header


def test_cli_run_options_build_a_racing() -> None:
    from promptsearch.cli import build_parser
    from promptsearch.cli.run import _racing

    parser = build_parser()
    plain = parser.parse_args(["run", "--task", "sst2"])
    assert _racing(plain) == "auto"  # racing where the searched part of dev allows it
    on = parser.parse_args(["run", "--task", "sst2", "--racing"])
    assert _racing(on) == Racing()
    sized = parser.parse_args(["run", "--task", "sst2", "--racing-min-examples", "4"])
    assert _racing(sized) == Racing(min_examples=4)
    bad = parser.parse_args(["run", "--task", "sst2", "--racing", "--racing-eta", "1"])
    with pytest.raises(ConfigError, match="racing: eta must be >= 2"):
        _racing(bad)


def test_racing_settings_are_stored_and_a_change_is_refused(sqlite: Storage) -> None:
    run_racing(sqlite, FakeScorer(), budget=6)
    stored = sqlite.get_study("race")
    assert stored is not None and stored.config["racing"] == RACING.to_dict()
    before = [(t.content_hash, t.state, t.dev_score) for t in sqlite.trials("race")]
    for other in (Racing(min_examples=6, eta=2, min_trials=3, seed=1), None):
        with pytest.raises(StudyConflictError, match="racing"):
            run_racing(sqlite, FakeScorer(), budget=10, racing=other)
    assert [(t.content_hash, t.state, t.dev_score) for t in sqlite.trials("race")] == before
    run_racing(sqlite, FakeScorer(), budget=6, racing=None, name="plain")
    with pytest.raises(StudyConflictError, match="racing"):
        run_racing(sqlite, FakeScorer(), budget=6, name="plain")


def test_racing_needs_a_dev_set_larger_than_the_first_rung(sqlite: Storage) -> None:
    with pytest.raises(ConfigError, match="min_examples"):
        run_racing(sqlite, FakeScorer(), task=racing_task(6))


def test_rerun_replays_pruned_trials_for_free(sqlite: Storage) -> None:
    run_racing(sqlite, FakeScorer(), budget=20)
    first = [(t.content_hash, t.state, t.dev_score, t.n_examples) for t in sqlite.trials("race")]
    again = FakeScorer()
    run_racing(sqlite, again, budget=20)
    assert again.forward_passes == 0
    more = FakeScorer()
    run_racing(sqlite, more, budget=30)
    trials = sqlite.trials("race")
    assert [(t.content_hash, t.state, t.dev_score, t.n_examples) for t in trials[:20]] == first
    assert more.forward_passes == sum(t.n_examples for t in trials[20:])
    check_decisions(sqlite, racing_task(), RACING)


# -- a crash at any point resumes to the same result ------------------------------------------

CRASH_BUDGET = 14


def crash_snapshot(storage: Storage, name: str = "race") -> list[tuple[Any, ...]]:
    trials = [
        (t.number, t.content_hash, t.state, t.dev_score, t.n_examples, t.forward_passes)
        for t in storage.trials(name)
    ]
    status = storage.get_study(name)
    return [*trials, (storage.totals(name).forward_passes, status and status.status)]


@pytest.fixture(scope="module")
def crash_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], int, Path]:
    folder = tmp_path_factory.mktemp("race-crash")
    empty = folder / "empty.db"
    open_storage(str(empty)).close()
    shutil.copy(empty, folder / "reference.db")
    with open_storage(str(folder / "reference.db")) as storage:
        scorer = FakeScorer()
        # counts the calls, never crashes (any scorer with .score will do)
        calls = install_crash(storage, scorer, at=-1, after=False)  # type: ignore[arg-type]
        run_racing(storage, scorer, budget=CRASH_BUDGET)
        assert storage.trials("race", states=["pruned"]), "nothing pruned: a weak test"
        return crash_snapshot(storage), len(calls), empty


def racing_crash_points() -> list[tuple[int, bool]]:
    rng = random.Random(8)
    return sorted({(1, True), (2, True)} | {(at, rng.random() < 0.5) for at in range(3, 70, 4)})


@pytest.mark.parametrize("at, after", racing_crash_points())
def test_crash_then_resume_equals_an_uninterrupted_racing_run(
    at: int, after: bool, crash_reference: tuple[list[Any], int, Path], tmp_path: Path
) -> None:
    expected, n_calls, empty = crash_reference
    if at > n_calls:
        pytest.skip(f"the run makes only {n_calls} calls")
    path = tmp_path / "crash.db"
    shutil.copy(empty, path)
    crashed = open_storage(str(path))
    first = FakeScorer()
    install_crash(crashed, first, at, after)  # type: ignore[arg-type]
    with pytest.raises(Crash):
        run_racing(crashed, first, budget=CRASH_BUDGET)
    crashed.close()
    with open_storage(str(path)) as storage:
        again = FakeScorer()
        run_racing(storage, again, budget=CRASH_BUDGET)
        assert crash_snapshot(storage) == expected
        check_decisions(storage, racing_task(), RACING)


# -- a real (tiny) model, on every storage backend ----------------------------------------------


def tiny_task() -> Task:
    base = contract_task()
    texts = [e.inputs["sentence"] for e in base.train]
    dev = tuple(
        Example(
            f"dev-{i}", {"sentence": f"{texts[i % len(texts)]} ({i})"}, base.train[i % 16].target
        )
        for i in range(24)
    )
    return Task(
        name="tiny-race",
        kind=base.kind,
        input_fields=base.input_fields,
        train=base.train,
        dev=dev,
        labels=base.labels,
        verbalizer=base.verbalizer,
        seed_prompts=base.seed_prompts,
    )


TINY_RACING = Racing(min_examples=3, eta=2, min_trials=2)  # rungs 3, 6, 12, 24
TINY_BUDGET = 12


def run_tiny(storage: Storage, scorer: Any) -> None:
    Study(
        "tiny",
        tiny_task(),
        scorer,
        ["manual", "random-edit"],
        TINY_BUDGET,
        storage,
        seed=3,
        candidates_per_round=3,
        progress=False,
        racing=TINY_RACING,
    ).run()


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    pytest.importorskip("torch")
    from promptsearch.scoring.scorer import Scorer
    from promptsearch.testing import tiny_model

    path = tmp_path_factory.mktemp("tiny-race") / "reference.db"
    with open_storage(str(path)) as storage:
        run_tiny(storage, Scorer(tiny_model("causal"), batch_size=8))
        return crash_snapshot(storage, "tiny")


@pytest.mark.parametrize("crash_at", [None, 4, 9])
def test_tiny_model_racing_study_and_resume_on_each_backend(
    storage_url: str, tiny_reference: list[Any], crash_at: int | None
) -> None:
    from promptsearch.scoring.scorer import Scorer
    from promptsearch.testing import tiny_model

    if crash_at is not None:
        crashed = open_storage(storage_url)
        scorer = Scorer(tiny_model("causal"), batch_size=8)
        calls = 0
        real = scorer.score

        def crashing(prompt: Prompt, examples: Sequence[Example], task: Task) -> Any:
            nonlocal calls
            calls += 1
            if calls == crash_at:
                raise Crash("score")
            return real(prompt, examples, task)

        scorer.score = crashing  # type: ignore[method-assign]
        with pytest.raises(Crash):
            run_tiny(crashed, scorer)
        crashed.close()
    with open_storage(storage_url) as storage:
        run_tiny(storage, Scorer(tiny_model("causal"), batch_size=8))
        assert crash_snapshot(storage, "tiny") == tiny_reference
        trials = storage.trials("tiny")
        assert len(trials) == TINY_BUDGET
        complete = [t for t in trials if t.state == "complete"]
        pruned = [t for t in trials if t.state == "pruned"]
        assert complete and pruned
        assert all(t.n_examples == 24 for t in complete)
        assert all(t.n_examples in (3, 6, 12) for t in pruned)
        rows = storage.leaderboard("tiny", include_pruned=True)
        assert [r.n_examples for r in rows[: len(complete)]] == [24] * len(complete)
        assert all(r.state == "pruned" and r.n_examples < 24 for r in rows[len(complete) :])
        assert len(rows) == len(trials)
        assert math.isfinite(sum(r.dev_score for r in rows))


def test_api_search_with_racing(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from promptsearch import search
    from promptsearch.testing import tiny_model

    url = f"sqlite:///{tmp_path / 'api.db'}"
    with pytest.raises(ConfigError, match="min_examples"):
        search(tiny_task(), model=tiny_model("causal"), storage=url, racing={"min_examples": 24})
    result = search(
        tiny_task(),
        model=tiny_model("causal"),
        searchers=["manual", "random-edit"],
        budget=8,
        storage=url,
        progress=False,
        racing={"min_examples": 3, "eta": 2, "min_trials": 1},
        selection=False,  # all of dev is raced
    )
    assert result.name.endswith("-racing")
    stored = result.storage.get_study(result.name)
    assert stored is not None
    assert stored.config["racing"] == Racing(min_examples=3, eta=2, min_trials=1).to_dict()
    rows = result.leaderboard(include_pruned=True)
    assert len(rows) == 8 and rows[0].state == "complete" and rows[0].n_examples == 24
    assert result.best is not None and result.best.n_examples == 24

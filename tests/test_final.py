"""Held-out evaluation (`promptsearch final`): top prompts and seed prompts scored once on
test, bootstrap intervals, paired tests against the best seed prompt by dev, storage on
SQLite and PostgreSQL, and proof that test labels never reach a searcher.  Real studies
on the tiny GPT-2 of promptsearch.testing.  (The command line and the 0002 migration:
test_final_cli.py.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from promptsearch import api
from promptsearch.errors import ConfigError, StorageError
from promptsearch.models.base import LanguageModel
from promptsearch.prompt import Prompt
from promptsearch.scoring.scorer import ExampleResult, Scorer, ScoreReport
from promptsearch.searchers.base import Candidate, SearchContext, Searcher, TrialResult
from promptsearch.storage import Storage
from promptsearch.study.loop import Study, example_key
from promptsearch.study.rebuild import rebuild_study
from promptsearch.study.worker import run_worker
from promptsearch.task import Example, Task
from promptsearch.testing.searchers import contract_task

TEST_SENTINEL = "QQTESTONLYQQ"
WORDS = ["great", "terrible", "good", "bad", "fine", "awful", "lovely", "dull"]


def sentinel_task(metric: str = "accuracy", n_test: int = 24) -> Task:
    """The contract task with clean dev examples and test inputs that carry a sentinel."""
    base = contract_task()
    dev = tuple(
        Example(f"dev-{i}", {"sentence": f"the film was {WORDS[i % 8]}"}, str(i % 2))
        for i in range(8)
    )
    test = tuple(
        Example(
            f"test-{i}",
            {"sentence": f"{TEST_SENTINEL} {i}: it was {WORDS[(i * 3) % 8]}"},
            str(i % 2),
        )
        for i in range(n_test)
    )
    return Task(
        name="final-sentiment",
        kind="classification",
        input_fields=base.input_fields,
        train=base.train,
        dev=dev,
        test=test,
        metric=metric,
        labels=base.labels,
        verbalizer=base.verbalizer,
        seed_prompts=base.seed_prompts,
    )


class CountingScorer(Scorer):
    """A real scorer that counts the forward passes it spends and the examples it sees."""

    def __init__(self, model: LanguageModel) -> None:
        super().__init__(model, batch_size=8)
        self.spent = 0
        self.seen: list[str] = []

    def score(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> ScoreReport:
        report = super().score(prompt, examples, task)
        self.spent += report.forward_passes
        self.seen.extend(e.id for e in examples)
        return report


@pytest.fixture(scope="module")
def model() -> LanguageModel:
    pytest.importorskip("torch")
    from promptsearch.testing import tiny_gpt2_lm

    return tiny_gpt2_lm(seed=1)


def count(storage: Storage, sql: str) -> int:
    with storage.session(write=False) as session:
        return int(session.execute(sa.text(sql)).scalar_one())


def run_study(
    storage: Storage,
    model: LanguageModel,
    task: Task,
    searchers: Sequence[Searcher | str] = ("manual", "random-edit"),
    budget: int = 6,
    name: str = "s",
) -> None:
    Study(
        name, task, Scorer(model, batch_size=8), list(searchers), budget, storage, progress=False
    ).run()


# -- the evaluation on a real study --------------------------------------------------------


def test_final_scores_top_and_seed_prompts_and_reruns_for_free(
    storage: Storage, model: LanguageModel
) -> None:
    task = sentinel_task()
    run_study(storage, model, task)
    board = storage.leaderboard("s")
    scorer = CountingScorer(model)
    report = api.final("s", storage=storage, task=task, scorer=scorer, top=3)

    assert [r.content_hash for r in report.rows if r.in_top] == [b.content_hash for b in board[:3]]
    assert [r.dev_rank for r in report.rows if r.in_top] == [1, 2, 3]
    seeds = {p.resolve(task).content_hash for p in task.seed_prompts}
    assert {r.content_hash for r in report.rows if r.is_seed} == seeds
    assert len(report.rows) == len({r.content_hash for r in report.rows})
    (baseline,) = [r for r in report.rows if r.is_baseline]
    assert baseline.is_seed and baseline.comparison is None
    assert baseline.dev_score == max(r.dev_score or 0.0 for r in report.rows if r.is_seed)
    assert report.baseline_hash == baseline.content_hash and report.paired_test == "mcnemar"
    assert report.n_examples == report.n_available == len(task.test)
    plain = Scorer(model, batch_size=8)
    for row in report.rows:
        expected = plain.score(row.prompt, task.test, task).value
        assert row.test.estimate == pytest.approx(expected)
        assert row.test.low <= row.test.estimate <= row.test.high
        if row is not baseline:
            assert row.comparison is not None and row.comparison.test == "mcnemar"
            assert 0.0 <= row.comparison.p_value <= 1.0
    assert scorer.spent == report.forward_passes > 0
    assert {i for i in scorer.seen if not i.startswith("test-")} == set()  # seeds were scored

    stored = storage.held_out_results("s")
    assert [s.content_hash for s in stored][:3] == [b.content_hash for b in board[:3]]
    by_hash = {s.content_hash: s for s in stored}
    assert set(by_hash) == {r.content_hash for r in report.rows}
    for row in report.rows:
        record = by_hash[row.content_hash]
        assert record.value == pytest.approx(row.test.estimate)
        assert (record.ci_low, record.ci_high) == (row.test.low, row.test.high)
        assert record.n_examples == len(task.test) and record.metric == "accuracy"
        assert record.is_seed == row.is_seed and record.is_baseline == row.is_baseline
        assert record.dev_rank == row.dev_rank
        assert record.scorer_fingerprint == scorer.fingerprint
        if row.comparison is None:
            assert record.p_value is None and record.baseline_hash is None
        else:
            assert record.p_value == pytest.approx(row.comparison.p_value)
            assert record.baseline_hash == baseline.content_hash
            assert record.test_name == "mcnemar"
    cached_test = count(storage, "SELECT COUNT(*) FROM evaluations WHERE split = 'test'")
    assert cached_test == len(report.rows) * len(task.test)

    again = CountingScorer(model)
    rerun = api.final("s", storage=storage, task=task, scorer=again, top=3)
    assert again.spent == 0 and rerun.forward_passes == 0
    assert rerun.rows == report.rows
    assert count(storage, "SELECT COUNT(*) FROM test_results") == len(report.rows)

    smaller = api.final("s", storage=storage, task=task, scorer=again, top=1, test_limit=10)
    assert smaller.n_examples == 10 and smaller.n_available == len(task.test)
    assert {s.content_hash for s in storage.held_out_results("s")} == {
        r.content_hash for r in smaller.rows
    }
    assert count(storage, "SELECT COUNT(*) FROM test_results") == len(smaller.rows)
    assert again.spent == 0  # the sample is a subset of the cached examples


@dataclass
class FixedSearcher(Searcher):
    """Proposes one prompt that is not a seed prompt, once."""

    name = "fixed"
    template: str = "Text: {sentence}\nLabel: {answer}"

    def propose(self, n: int) -> list[Candidate]:
        if getattr(self, "_done", False) or n < 1:
            return []
        self._done = True
        return [Candidate(prompt=Prompt(template=self.template), operation="fixed")]


def test_seed_prompts_the_study_never_scored_are_scored_on_dev_first(
    storage: Storage, model: LanguageModel
) -> None:
    task = sentinel_task()
    run_study(storage, model, task, searchers=[FixedSearcher()], budget=3)
    assert len(storage.trials("s")) == 1
    report = api.final("s", storage=storage, task=task, model=model, top=1)
    top, *seeds = report.rows
    assert top.in_top and not top.is_seed and top.dev_rank == 1
    plain = Scorer(model, batch_size=8)
    fingerprint = plain.fingerprint
    keys = [example_key(e) for e in task.dev]
    for row in seeds:
        assert row.is_seed and row.dev_rank is None and not row.in_top
        assert row.dev_score == pytest.approx(plain.score(row.prompt, task.dev, task).value)
        cached = storage.cached_evaluations(fingerprint, row.content_hash, "dev", keys)
        assert len(cached) == len(keys)
    best = max(seeds, key=lambda r: r.dev_score or 0.0)
    assert report.baseline is not None
    assert report.baseline.dev_score == best.dev_score
    assert len(storage.trials("s")) == 1  # final adds no trial


# -- baseline choice and paired tests, with a scripted scorer ---------------------------------


@dataclass
class ScriptedModel:
    name: str = "scripted"
    fingerprint: str = "m" * 64


class ScriptedScorer:
    """Right on dev examples only ("Dev-good"), on test only ("Test-good"), else on
    even-numbered examples; predictions are labels, so macro-F1 works too."""

    def __init__(self) -> None:
        self.model = ScriptedModel()

    @property
    def fingerprint(self) -> str:
        return "d" * 64

    def score(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> Any:
        results = []
        for example in examples:
            split, number = example.id.split("-")
            if prompt.template.startswith("Dev-good"):
                right = split == "dev"
            elif prompt.template.startswith("Test-good"):
                right = split == "test"
            else:
                right = int(number) % 2 == 0
            prediction = example.target if right else ("1" if example.target == "0" else "0")
            results.append(
                ExampleResult(example.id, prediction, right, float(right), None, None, False)
            )
        return ScoreReport(task.metric, 0.0, results, len(examples), 0.0, 0)


def scripted_task(metric: str = "accuracy") -> Task:
    task = sentinel_task(metric=metric, n_test=12)
    return Task(
        name=task.name,
        kind=task.kind,
        input_fields=task.input_fields,
        train=task.train,
        dev=task.dev,
        test=task.test,
        metric=metric,
        labels=task.labels,
        verbalizer=task.verbalizer,
        seed_prompts=(
            Prompt(template="Test-good: {sentence} {answer}"),
            Prompt(template="Dev-good: {sentence} {answer}"),
            Prompt(template="Plain: {sentence} {answer}"),
        ),
    )


def test_baseline_is_the_best_seed_on_dev_never_on_test(storage: Storage) -> None:
    task = scripted_task()
    scorer = ScriptedScorer()
    Study("s", task, scorer, ["manual"], 3, storage, progress=False).run()
    report = api.final("s", storage=storage, task=task, scorer=scorer, top=3)
    by_template = {r.prompt.template.split(":")[0]: r for r in report.rows}
    dev_good, test_good = by_template["Dev-good"], by_template["Test-good"]
    assert dev_good.is_baseline and dev_good.dev_score == 1.0 and dev_good.test.estimate == 0.0
    assert not test_good.is_baseline and test_good.test.estimate == 1.0
    comparison = test_good.comparison
    assert comparison is not None and comparison.test == "mcnemar"
    assert (comparison.a_only, comparison.b_only, comparison.delta) == (12, 0, 1.0)
    assert comparison.p_value == pytest.approx(2 / 2**12)
    plain = by_template["Plain"].comparison
    assert plain is not None and (plain.a_only, plain.b_only) == (6, 0)
    assert plain.p_value == pytest.approx(2 / 2**6)
    assert report.top1 is not None and report.top1.content_hash == dev_good.content_hash


def test_macro_f1_uses_the_paired_bootstrap(storage: Storage) -> None:
    task = scripted_task(metric="macro_f1")
    scorer = ScriptedScorer()
    Study("s", task, scorer, ["manual"], 3, storage, progress=False).run()
    report = api.final("s", storage=storage, task=task, scorer=scorer, n_resamples=500)
    assert report.paired_test == "paired-bootstrap"
    test_good = next(r for r in report.rows if r.prompt.template.startswith("Test-good"))
    assert test_good.test.estimate == 1.0
    assert test_good.comparison is not None and test_good.comparison.delta == 1.0
    assert test_good.comparison.p_value == pytest.approx(1 / 501)
    stored = {r.content_hash: r for r in storage.held_out_results("s")}
    assert stored[test_good.content_hash].test_name == "paired-bootstrap"
    with pytest.raises(ConfigError, match="paired_test='mcnemar' needs right/wrong outcomes"):
        api.final("s", storage=storage, task=task, scorer=scorer, paired_test="mcnemar")


def test_final_refuses_another_task_or_scorer(storage: Storage) -> None:
    task = scripted_task()
    scorer = ScriptedScorer()
    Study("s", task, scorer, ["manual"], 3, storage, progress=False).run()
    other = sentinel_task(n_test=5)
    with pytest.raises(ConfigError, match="other data than study 's'"):
        api.final("s", storage=storage, task=other, scorer=scorer)

    class OtherScorer(ScriptedScorer):
        @property
        def fingerprint(self) -> str:
            return "e" * 64

    with pytest.raises(ConfigError, match="scorer differs"):
        api.final("s", storage=storage, task=task, scorer=OtherScorer())
    with pytest.raises(StorageError, match="no study named 'nope'"):
        api.final("nope", storage=storage, task=task, scorer=scorer)
    with pytest.raises(ConfigError, match="top must be >= 1"):
        api.final("s", storage=storage, task=task, scorer=scorer, top=0)


def test_final_and_workers_rebuild_a_study_the_same_way(storage: Storage) -> None:
    """``final`` and ``run_worker`` check what they are given in one place (rebuild_study)."""
    task, scorer = scripted_task(), ScriptedScorer()
    Study("s", task, scorer, ["manual"], 3, storage, progress=False).run()
    for call in (api.final, run_worker):
        with pytest.raises(ConfigError, match="task must be a Task, a built-in task name or None"):
            call("s", storage=storage, task=42, scorer=scorer)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="give scorer= or model=, not both"):
            call("s", storage=storage, task=task, scorer=scorer, model="x")
    record = storage.get_study("s")
    assert record is not None
    rebuilt = rebuild_study(record, task=task, scorer=scorer)
    assert (rebuilt.task, rebuilt.scorer, rebuilt.model) == (task, scorer, scorer.model)


# -- test labels never reach a searcher ---------------------------------------------------------


class SpySearcher(Searcher):
    """Records everything a searcher is given: its context, every result it observes,
    and every example passed to the scorer it may use (it is a white-box searcher)."""

    name = "spy"
    needs_model = True

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.scores: list[float | None] = []
        self.scored_ids: list[str] = []
        self._round = 0

    def setup(self, context: SearchContext) -> None:
        super().setup(context)
        self.seen.append(repr(context.task))
        self.seen.append(repr(context.remaining))
        scorer = context.scorer
        assert scorer is not None
        original = scorer.score

        def spying(prompt: Prompt, examples: Sequence[Example], task: Task) -> ScoreReport:
            self.scored_ids.extend(e.id for e in examples)
            self.seen.extend(repr(e) for e in examples)
            return original(prompt, examples, task)

        scorer.score = spying  # type: ignore[method-assign]

    def propose(self, n: int) -> list[Candidate]:
        if self._round >= 3:
            return []
        self._round += 1
        word = WORDS[self._round]
        return [
            Candidate(prompt=Prompt(template=f"{word} {i}: {{sentence}}\n{{answer}}"))
            for i in range(min(n, 2))
        ]

    def observe(self, results: Sequence[TrialResult]) -> None:
        for result in results:
            self.seen.append(repr(result))
            self.scores.append(result.score)


def test_test_labels_never_reach_a_searcher_across_run_final_and_resume(
    storage: Storage, model: LanguageModel
) -> None:
    task = sentinel_task()
    first = SpySearcher()
    run_study(storage, model, task, searchers=["manual", first], budget=6)
    trials_before = storage.trials("s")
    states_before = storage.load_searcher_state("s", "spy")

    report = api.final("s", storage=storage, task=task, model=model, top=10)
    assert report.rows and report.forward_passes > 0
    assert storage.trials("s") == trials_before  # final leaves the search record alone
    assert storage.load_searcher_state("s", "spy") == states_before

    second = SpySearcher()
    run_study(storage, model, task, searchers=["manual", second], budget=12)
    dev_scores = {t.dev_score for t in storage.trials("s")}
    test_scores = {r.test.estimate for r in report.rows}
    for spy in (first, second):
        assert spy.seen, "the spy saw nothing: the test proves nothing"
        text = "\n".join(spy.seen)
        assert TEST_SENTINEL not in text
        assert not any(i.startswith("test-") for i in spy.scored_ids)
        assert {s for s in spy.scores} <= dev_scores
    # held-out numbers exist only in test_results and the test part of the cache
    assert count(storage, "SELECT COUNT(*) FROM evaluations WHERE split = 'test'") > 0
    assert all(t.n_examples == len(task.dev) for t in storage.trials("s"))
    assert test_scores  # (they may coincide with dev scores; the spies only saw dev ones)

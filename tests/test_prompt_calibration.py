"""Contextual calibration as a property of a prompt: its identity, the scorer honouring
it per prompt, the study's cache keeping calibrated and raw scores apart, ensembles
voting with a calibrated member's calibrated probabilities, and the ``optuna``
searcher's calibration dimension."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path

import pytest

from promptsearch import Example, Prompt, Task
from promptsearch.api import search
from promptsearch.errors import ConfigError
from promptsearch.hashing import content_hash
from promptsearch.models.base import LanguageModel
from promptsearch.scoring.scorer import Scorer
from promptsearch.searchers.base import ScoredPrompt, SearchContext, TrainView
from promptsearch.searchers.manual import ManualSearcher
from promptsearch.searchers.optuna_search import OptunaSearcher
from promptsearch.storage import open_storage
from promptsearch.study.ensemble import PromptEnsemble
from promptsearch.study.selection import gold_probabilities
from promptsearch.study.support import example_key
from promptsearch.testing import tiny_gpt2_lm
from promptsearch.testing.searchers import contract_task, synthetic_score

TEMPLATE = "Review: {sentence}\nSentiment: {answer}"
REVIEWS = [
    ("a fine and moving film", "1"),
    ("dull, long and badly acted", "0"),
    ("I loved every minute", "1"),
    ("the worst film of the year", "0"),
    ("warm and funny", "1"),
    ("a waste of time", "0"),
]


def sentiment_task() -> Task:
    records = [{"sentence": s, "label": label} for s, label in REVIEWS]
    return Task.from_records(
        "tiny-sentiment",
        {"train": records[:2], "dev": records},
        input_fields=["sentence"],
        label_field="label",
        verbalizer={"0": "negative", "1": "positive"},
        seed_prompts=[Prompt(TEMPLATE)],
    )


@pytest.fixture(scope="module")
def lm() -> LanguageModel:
    return tiny_gpt2_lm()


# -- identity ---------------------------------------------------------------------------------


def test_a_prompt_without_calibration_keeps_its_old_hash_and_dict() -> None:
    demo = Example("d1", {"sentence": "fun"}, "1")
    prompt = Prompt(
        TEMPLATE,
        instruction="Classify it.",
        verbalizer={"0": "bad", "1": "good"},
        demonstrations=(demo,),
    )
    # the hash promptsearch gave this prompt before prompts could be calibrated
    assert prompt.content_hash == "4e79917cf6f65912713c13ebb33a9505ff8a09c29b1755b56808588137cb8d1e"
    assert prompt.content_hash == content_hash(
        {"text": prompt.canonical()["text"], "verbalizer": prompt.canonical()["verbalizer"]}
    )
    assert "calibrate" not in prompt.to_dict() and "calibrate" not in prompt.canonical()
    assert Prompt.from_dict(prompt.to_dict()) == prompt


def test_a_calibrated_prompt_is_another_prompt() -> None:
    plain = Prompt(TEMPLATE, verbalizer={"0": "bad", "1": "good"})
    calibrated = replace(plain, calibrate=True)
    assert calibrated.content_hash != plain.content_hash
    assert calibrated.to_dict()["calibrate"] is True
    back = Prompt.from_dict(calibrated.to_dict())
    assert back.calibrate and back.content_hash == calibrated.content_hash
    assert calibrated.describe().endswith("[calibrated]")
    assert "[calibrated]" not in plain.describe()
    # resolving against a task keeps it
    task = sentiment_task()
    assert Prompt(TEMPLATE, calibrate=True).resolve(task).calibrate


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_calibrate_must_be_a_bool(value: object) -> None:
    with pytest.raises(ConfigError, match="calibrate must be True or False"):
        Prompt(TEMPLATE, calibrate=value)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="calibrate must be True or False"):
        Prompt.from_dict({"template": TEMPLATE, "calibrate": value})


def test_a_calibrated_generation_prompt_is_refused() -> None:
    task = contract_task("generation")
    prompt = Prompt("Input: {input}\nOutput: {answer}", calibrate=True)
    with pytest.raises(ConfigError, match="classification prompts only"):
        prompt.resolve(task)


# -- the scorer ----------------------------------------------------------------------------------


def test_the_scorer_calibrates_a_calibrated_prompt(lm: LanguageModel) -> None:
    task = sentiment_task()
    plain = Prompt(TEMPLATE)
    by_scorer = Scorer(lm, batch_size=4, calibrate=True).score(plain, task.dev, task)
    raw_scorer = Scorer(lm, batch_size=4)
    by_prompt = raw_scorer.score(replace(plain, calibrate=True), task.dev, task)
    raw = raw_scorer.score(plain, task.dev, task)
    assert by_prompt.content_free_probs == pytest.approx(by_scorer.content_free_probs)
    assert raw.content_free_probs is None
    assert by_prompt.forward_passes == by_scorer.forward_passes > raw.forward_passes
    for mine, theirs, plain_row in zip(
        by_prompt.results, by_scorer.results, raw.results, strict=True
    ):
        assert mine.prediction == theirs.prediction
        assert mine.calibrated_logprobs == pytest.approx(theirs.calibrated_logprobs)
        assert mine.label_logprobs == pytest.approx(plain_row.label_logprobs)  # stay raw
        assert plain_row.calibrated_logprobs is None
    assert by_prompt.value == pytest.approx(by_scorer.value)
    # a calibrating scorer calibrates a calibrated prompt once, the same way
    twice = Scorer(lm, batch_size=4, calibrate=True).score(
        replace(plain, calibrate=True), task.dev, task
    )
    assert twice.forward_passes == by_scorer.forward_passes
    assert twice.content_free_probs == pytest.approx(by_scorer.content_free_probs)


def test_an_ensemble_votes_with_a_calibrated_members_calibrated_probabilities(
    lm: LanguageModel,
) -> None:
    task = sentiment_task()
    calibrated = Prompt(TEMPLATE, calibrate=True)
    other = Prompt("{sentence} It was {answer}.", verbalizer={"0": "bad", "1": "good"})
    scorer = Scorer(lm, batch_size=4)
    report = PromptEnsemble((calibrated, other)).score(scorer, task.dev, task)
    first = scorer.score(calibrated, task.dev, task).results
    second = scorer.score(other, task.dev, task).results
    labels = list(task.labels)
    for row, a, b in zip(report.results, first, second, strict=True):
        assert a.calibrated_logprobs is not None
        pa = gold_probabilities(a.calibrated_logprobs, labels)
        pb = gold_probabilities(b.label_logprobs or {}, labels)
        mean = {label: (pa[label] + pb[label]) / 2 for label in labels}
        assert row.prediction == max(labels, key=lambda label: (mean[label], -labels.index(label)))
        for label in labels:
            assert math.exp(row.label_logprobs[label]) == pytest.approx(mean[label])  # type: ignore[index]


# -- the study --------------------------------------------------------------------------------


def test_a_study_keeps_calibrated_and_raw_scores_apart(lm: LanguageModel, tmp_path: Path) -> None:
    task = sentiment_task()
    url = str(tmp_path / "per-prompt.db")
    extra = [Prompt(TEMPLATE, verbalizer=dict(task.verbalizer), calibrate=True)]
    result = search(
        task,
        model=lm,
        searchers=[ManualSearcher(prompts=extra)],
        budget=4,
        storage=url,
        progress=False,
        selection=False,
    )
    rows = result.leaderboard()
    assert len(rows) == 2
    by_calibration = {bool(row.body.get("calibrate", False)): row for row in rows}
    assert set(by_calibration) == {False, True}
    assert "[calibrated]" in by_calibration[True].text
    want = Scorer(lm, calibrate=True).score(Prompt(TEMPLATE), task.dev, task)
    assert by_calibration[True].dev_score == pytest.approx(want.value)
    raw = Scorer(lm).score(Prompt(TEMPLATE), task.dev, task)
    assert by_calibration[False].dev_score == pytest.approx(raw.value)
    with open_storage(url) as storage:
        study = storage.get_study(result.name)
        assert study is not None and "calibration" not in study.config  # per prompt only
        keys = [row.content_hash for row in rows]
        wanted = [example_key(e) for e in task.dev]
        cached = [
            storage.cached_evaluations(study.scorer_fingerprint, key, "dev", wanted) for key in keys
        ]
    details = [next(iter(c.values())).detail or {} for c in cached]
    assert sorted("calibrated_logprobs" in d for d in details) == [False, True]


# -- the optuna searcher ----------------------------------------------------------------------


def _context(task: Task, *, calibrated: bool = False) -> SearchContext:
    return SearchContext(
        task=TrainView.from_task(task), rng=random.Random(0), calibrated=calibrated
    )


def test_optuna_searches_calibration_on_classification_tasks_only() -> None:
    searcher = OptunaSearcher(sampler="random")
    searcher.setup(_context(contract_task()))
    assert "calibrate" in searcher.space.names()
    assert searcher.space.sizes()["calibrate"] == 2
    generation = OptunaSearcher()
    generation.setup(_context(contract_task("generation")))
    assert "calibrate" not in generation.space.names()
    off = OptunaSearcher(calibrate=False)
    off.setup(_context(contract_task()))
    assert "calibrate" not in off.space.names()
    # study-level calibration calibrates every prompt: nothing to search
    study_level = OptunaSearcher()
    study_level.setup(_context(contract_task(), calibrated=True))
    assert "calibrate" not in study_level.space.names()
    for batch in [off.propose(6), generation.propose(6), study_level.propose(6)]:
        assert batch and not any(c.prompt.calibrate for c in batch)


def test_optuna_proposes_both_and_maps_calibrated_prompts_back() -> None:
    task = contract_task()
    searcher = OptunaSearcher(sampler="random", max_demonstrations=1)
    searcher.setup(_context(task))
    seen: list[Prompt] = []
    for _ in range(4):
        batch = searcher.propose(4)
        seen.extend(c.prompt for c in batch)
        searcher.observe([_result(c.prompt, task) for c in batch])
    assert {p.calibrate for p in seen} == {False, True}
    for prompt in seen:
        point = searcher.space.point(prompt)
        assert point is not None and searcher.space.prompt(point) == prompt
        assert searcher.space.describe(point)["calibrate"] is prompt.calibrate


def test_a_calibrated_leaderboard_prompt_joins_the_history_only_where_searched() -> None:
    task = contract_task()
    prompt = task.seed_prompts[1].resolve(task)
    row = replace(prompt, instruction="Judge the review.", calibrate=True)
    board = (ScoredPrompt(row, row.content_hash, 0.9, "other"),)
    on, off = OptunaSearcher(sampler="random"), OptunaSearcher(sampler="random", calibrate=False)
    for searcher in (on, off):
        context = _context(task)
        searcher.setup(context)
        context.leaderboard = board
        searcher.propose(1)
        assert "Judge the review." in searcher.space.instructions  # parts join either way
    assert any(score == 0.9 for _, _, score in on.history)
    assert not any(score == 0.9 for _, _, score in off.history)


@pytest.mark.parametrize("value", ["yes", True, 1, None])
def test_optuna_calibrate_is_validated(value: object) -> None:
    with pytest.raises(ConfigError, match="OptunaSearcher: calibrate must be 'auto' or False"):
        OptunaSearcher(calibrate=value)  # type: ignore[arg-type]


def _result(prompt: Prompt, task: Task):
    from promptsearch.searchers.base import TrialResult

    return TrialResult(
        prompt=prompt,
        content_hash=prompt.content_hash,
        score=synthetic_score(prompt),
        state="complete",
        n_examples=len(task.dev),
        searcher="optuna",
        operation="random",
    )


def test_the_study_tells_searchers_when_it_calibrates_every_prompt(
    lm: LanguageModel, tmp_path: Path
) -> None:
    task = sentiment_task()
    searchers = {}
    for calibrate in (False, True):
        searcher = OptunaSearcher(sampler="random", max_demonstrations=0)
        search(
            task,
            model=lm,
            searchers=[searcher],
            budget=2,
            storage=str(tmp_path / f"study-{calibrate}.db"),
            progress=False,
            selection=False,
            calibrate=calibrate,
        )
        searchers[calibrate] = searcher
    assert searchers[True].ctx.calibrated and "calibrate" not in searchers[True].space.names()
    assert not searchers[False].ctx.calibrated
    assert "calibrate" in searchers[False].space.names()

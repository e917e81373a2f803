"""A real search on the embedded model, through the Python API (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

import promptsearch
from promptsearch.scoring.scorer import Scorer
from promptsearch.storage import open_storage
from promptsearch.study.loop import Study

pytestmark = pytest.mark.slow

REVIEWS = [
    ("A moving, beautifully acted film.", 1),
    ("Dull, slow and far too long.", 0),
    ("I laughed the whole way through.", 1),
    ("The plot makes no sense at all.", 0),
    ("A warm and clever little gem.", 1),
    ("Badly written and badly acted.", 0),
    ("One of the best films of the year.", 1),
    ("A boring, lifeless mess.", 0),
    ("Charming, funny and sweet.", 1),
    ("I wanted to leave after ten minutes.", 0),
    ("Gorgeous to look at and smart too.", 1),
    ("Painful to sit through.", 0),
]


def review_task() -> promptsearch.Task:
    return promptsearch.Task.from_records(
        "tiny-reviews",
        [{"text": t, "label": y} for t, y in REVIEWS],
        input_fields=["text"],
        label_field="label",
        verbalizer={0: "negative", 1: "positive"},
        seed_prompts=["Review: {text}\nSentiment: {answer}", "{text} It was {answer}."],
        dev_size=6,
        seed=0,
    )


class CountingScorer(Scorer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.spent = 0

    def score(self, prompt, examples, task):
        report = super().score(prompt, examples, task)
        self.spent += report.forward_passes
        return report


@pytest.fixture(scope="module")
def model() -> promptsearch.models.base.LanguageModel:
    pytest.importorskip("torch")
    from promptsearch.testing import embedded_model

    return embedded_model()


def test_python_api_search_then_resume_scores_nothing_twice(model, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    searchers = ["manual", "random-edit"]
    result = promptsearch.search(
        review_task(), model=model, searchers=searchers, budget=5, storage=url, study="e2e",
        progress=False,
    )  # fmt: skip
    assert result.best is not None and 0.0 <= result.best.score <= 1.0
    rows = result.leaderboard()
    assert len(rows) == 5
    assert {r.searcher for r in rows} == set(searchers)

    storage = open_storage(url)
    scorer = CountingScorer(model)
    Study("e2e", review_task(), scorer, ["manual", "random-edit"], 5, storage, progress=False).run()
    assert scorer.spent == 0, "a resumed study scored a prompt again"
    assert [(r.content_hash, r.dev_score) for r in storage.leaderboard("e2e")] == [
        (r.content_hash, r.dev_score) for r in rows
    ]
    # a larger budget continues the same study: only the new prompts cost forward passes
    Study("e2e", review_task(), scorer, ["manual", "random-edit"], 7, storage, progress=False).run()
    assert len(storage.trials("e2e")) == 7
    assert 0 < scorer.spent <= 2 * 6 * 2  # two new prompts, 6 dev examples, <= 2 labels each


def test_evaluate_finds_the_gap_between_a_good_and_a_bad_prompt(model) -> None:
    task = review_task()
    good = promptsearch.evaluate(
        task, "Review: {text}\nSentiment: {answer}", model=model, split="train"
    )
    bad = promptsearch.evaluate(
        task,
        promptsearch.Prompt("{text} The sky is {answer}", verbalizer={0: "blue", 1: "green"}),
        model=model,
        split="train",
    )
    assert good.value - bad.value >= 0.2, (good.value, bad.value)

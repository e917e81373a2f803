"""Racing's rung logic and example order, on synthetic scores (no study, no model)."""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

import pytest

from promptsearch.errors import ConfigError
from promptsearch.storage import EvaluationRecord
from promptsearch.study.racing import Racing, gold_probability, racing_order, survives

# -- the rung logic on synthetic scores -----------------------------------------------------


def test_rungs_grow_by_eta_up_to_the_whole_dev_set() -> None:
    assert Racing(min_examples=8, eta=3).rungs(120) == (8, 24, 72, 120)
    assert Racing(min_examples=8, eta=3).rungs(72) == (8, 24, 72)
    assert Racing(min_examples=8, eta=3).rungs(9) == (8, 9)
    assert Racing(min_examples=4, eta=2).rungs(32) == (4, 8, 16, 32)
    with pytest.raises(ConfigError, match=r"min_examples \(8\) must be smaller than the dev set"):
        Racing(min_examples=8).rungs(8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_examples": 0}, "racing: min_examples must be >= 1"),
        ({"eta": 1}, "racing: eta must be >= 2"),
        ({"eta": 2.5}, "racing: eta must be an integer"),
        ({"min_trials": -1}, "racing: min_trials must be >= 0"),
        ({"seed": "x"}, "racing: seed must be an integer"),
    ],
)
def test_racing_is_validated_eagerly(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Racing(**kwargs)


def test_coerce() -> None:
    assert Racing.coerce(None) is None and Racing.coerce(False) is None
    assert Racing.coerce(True) == Racing()
    assert Racing.coerce({"eta": 2}) == Racing(eta=2)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['min_example'\]"):
        Racing.coerce({"min_example": 4})
    with pytest.raises(ConfigError, match="racing must be a Racing"):
        Racing.coerce(3)  # type: ignore[arg-type]


def test_survives_keeps_the_top_third_and_ties_go_to_the_candidate() -> None:
    others = [0.9, 0.8, 0.7, 0.6, 0.5]  # with the candidate: 6 scores, the top 2 go on
    assert survives(0.95, others, eta=3, min_trials=0)
    assert survives(0.85, others, eta=3, min_trials=0)
    assert survives(0.8, others, eta=3, min_trials=0)  # tied with the second: kept
    assert not survives(0.75, others, eta=3, min_trials=0)
    assert not survives(0.1, others, eta=3, min_trials=0)
    # eta 2: half of 6 = 3 go on
    assert survives(0.7, others, eta=2, min_trials=0)
    assert not survives(0.65, others, eta=2, min_trials=0)
    # the first candidate at a rung always goes on; all tied: all go on
    assert survives(0.0, [], eta=3, min_trials=0)
    assert survives(0.5, [0.5] * 20, eta=3, min_trials=0)


def test_ties_of_the_metric_are_broken_by_the_gold_probability() -> None:
    others = [(0.75, 0.9), (0.75, 0.6), (0.5, 0.99), (0.5, 0.5), (0.25, 0.7)]  # 2 of 6 go on
    assert survives((0.75, 0.7), others, eta=3, min_trials=0)
    assert not survives((0.75, 0.5), others, eta=3, min_trials=0)
    assert survives((0.75, 0.6), others, eta=3, min_trials=0)  # tied on both: kept


def test_gold_probability_from_the_stored_detail() -> None:
    def record(detail: dict[str, Any] | None) -> EvaluationRecord:
        return EvaluationRecord("k", "1", True, 1.0, detail)

    labels = {"label_logprobs": {"0": math.log(0.2), "1": math.log(0.6)}}
    assert gold_probability(record(labels), "1") == pytest.approx(0.75)
    assert gold_probability(record(labels), "0") == pytest.approx(0.25)
    underflow = {"label_logprobs": {"0": None, "1": -3.0}}  # -inf is stored as null
    assert gold_probability(record(underflow), "1") == 1.0
    assert gold_probability(record(underflow), "0") == 0.0
    assert gold_probability(record({"gold_logprob": math.log(0.5)}), "x") == pytest.approx(0.5)
    assert gold_probability(record(None), "1") == 0.0


def test_warm_up_stops_no_one_until_min_trials_scores_are_recorded() -> None:
    assert survives(0.0, [1.0, 1.0, 1.0], eta=3, min_trials=4)
    assert not survives(0.0, [1.0, 1.0, 1.0, 1.0], eta=3, min_trials=4)


def test_asynchronous_halving_on_a_stream_keeps_about_one_in_eta() -> None:
    rng = random.Random(0)
    recorded: list[float] = []
    kept = 0
    for _ in range(300):
        score = rng.random()
        kept += survives(score, recorded, eta=3, min_trials=5)
        recorded.append(score)
    assert 300 / 3 * 0.6 < kept < 300 / 3 * 1.4
    # the best of the stream is never stopped
    best = max(recorded)
    assert survives(best, [s for s in recorded if s != best], eta=3, min_trials=5)


# -- the racing order ---------------------------------------------------------------------


@pytest.mark.parametrize("counts", [{"0": 16, "1": 16}, {"a": 30, "b": 10, "c": 5}, {"x": 7}])
def test_racing_order_is_a_seeded_stratified_permutation(counts: dict[str, int]) -> None:
    targets = [label for label, n in counts.items() for _ in range(n)]
    random.Random(1).shuffle(targets)
    order = racing_order(targets, seed=4)
    assert sorted(order) == list(range(len(targets)))
    assert order == racing_order(targets, seed=4)
    if len(counts) > 1:
        assert order != racing_order(targets, seed=5)
    total = len(targets)
    for size in range(1, total + 1):
        seen = Counter(targets[i] for i in order[:size])
        for label, n in counts.items():
            assert abs(seen[label] - size * n / total) <= 1, (size, label)


def test_without_stratification_the_order_is_a_plain_shuffle() -> None:
    targets = [str(i) for i in range(50)]  # generation: every target different
    order = racing_order(targets, seed=0, stratify=False)
    assert sorted(order) == list(range(50)) and order != list(range(50))

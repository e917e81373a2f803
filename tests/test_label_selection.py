"""Choosing label words from a matrix of answer-slot scores
(promptsearch/searchers/_tokens/label_selection.py): pure tensors, no model."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from promptsearch.errors import ConfigError
from promptsearch.searchers._tokens.label_selection import (
    LabelWordChoice,
    class_candidates,
    evaluate_combinations,
    select_label_words,
)


def _planted(
    n_words: int = 30, per_class: int = 8, seed: int = 0
) -> tuple[torch.Tensor, list[str]]:
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(2 * per_class, n_words, generator=generator) - 8.0
    scores[:per_class, 4] += 5.0  # word 4 is likely for class "neg"
    scores[per_class:, 17] += 5.0  # word 17 is likely for class "pos"
    return scores, ["neg"] * per_class + ["pos"] * per_class


def test_selection_finds_planted_words() -> None:
    scores, targets = _planted()
    words = [f"w{k}" for k in range(scores.shape[1])]
    choices = select_label_words(scores, words, targets, ["neg", "pos"], top_per_class=5)
    assert isinstance(choices[0], LabelWordChoice)
    assert choices[0].verbalizer == {"neg": ["w4"], "pos": ["w17"]}
    assert choices[0].train_accuracy == 1.0 and choices[0].margin > 3.0
    assert len(choices) == 25  # 5 x 5 combinations, all evaluated
    ranked = [(-c.train_accuracy, -c.margin) for c in choices]
    assert ranked == sorted(ranked)
    for choice in choices:  # one word never serves two labels
        assert choice.verbalizer["neg"] != choice.verbalizer["pos"]


def test_class_candidates_use_the_likelihood_ratio() -> None:
    scores = torch.tensor(
        [
            [-1.0, -1.2, -9.0, -5.0],  # class 0
            [-1.0, -1.3, -9.0, -5.0],  # class 0
            [-1.0, -6.0, -2.0, -5.0],  # class 1
        ]
    )
    lists = class_candidates(scores, [0, 0, 1], 2, top_per_class=2, pool=None)
    # word 0 is likely everywhere (ratio 0), word 1 is likely for class 0 only,
    # word 2 for class 1 only, word 3 is equally unlikely everywhere
    assert lists[0][0] == 1 and lists[1][0] == 2
    assert not set(lists[0]) & set(lists[1])
    # with a likelihood pool of 1, each class may use only its most likely word
    assert class_candidates(scores, [0, 0, 1], 2, top_per_class=1, pool=1) == [[0], [2]]


def test_combination_accuracy_and_margin_brute_force() -> None:
    generator = torch.Generator().manual_seed(5)
    scores = torch.randint(-4, 0, (12, 6), generator=generator).float()  # many ties
    classes = [k % 3 for k in range(12)]
    combos = torch.tensor(list(itertools.permutations(range(6), 3)))
    accuracy, margin = evaluate_combinations(scores, classes, combos)
    for m, combo in enumerate(combos.tolist()):
        correct, margins = 0, []
        for i, gold in enumerate(classes):
            values = [scores[i, w].item() for w in combo]
            predicted = max(range(3), key=lambda c: (values[c], -c))  # first label on ties
            correct += predicted == gold
            margins.append(values[gold] - max(v for c, v in enumerate(values) if c != gold))
        assert accuracy[m].item() == pytest.approx(correct / len(classes))
        assert margin[m].item() == pytest.approx(sum(margins) / len(margins))


def test_sampled_combinations_are_capped_and_seeded() -> None:
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(16, 60, generator=generator)
    targets = [str(k % 4) for k in range(16)]
    labels = ["0", "1", "2", "3"]

    def run(seed: int) -> list[LabelWordChoice]:
        return select_label_words(
            scores, [f"w{k}" for k in range(60)], targets, labels,
            top_per_class=6, max_combinations=50, rng=random.Random(seed),
        )  # fmt: skip

    first = run(3)
    assert first == run(3)
    # 6**4 combinations: 50 sampled, plus at most a few greedy rounds of 4 x 6
    assert 50 <= len(first) <= 50 + 8 * 4 * 6
    best = max(first, key=lambda c: (c.train_accuracy, c.margin))
    assert first[0] == best


def _lucky_and_steady() -> tuple[torch.Tensor, list[str], list[str]]:
    """Eight examples, two folds (0, 1, 4, 5 and 2, 3, 6, 7): ``bad``/``good`` separate
    the labels everywhere by a small margin; ``odd``/``queer`` by a large one on fold 0
    and the wrong way round on fold 1."""
    targets = ["neg", "pos"] * 4
    scores = torch.zeros(8, 4)
    for i, target in enumerate(targets):
        neg = target == "neg"
        scores[i, 0] = -1.0 if neg else -2.0
        scores[i, 1] = -2.0 if neg else -1.0
        if i in (0, 1, 4, 5):
            scores[i, 2] = -0.1 if neg else -6.0
            scores[i, 3] = -6.0 if neg else -0.1
        else:
            scores[i, 2] = -3.0 if neg else -2.5
            scores[i, 3] = -2.5 if neg else -3.0
    return scores, ["bad", "good", "odd", "queer"], targets


def test_cross_fitting_ranks_words_on_the_examples_they_were_not_chosen_on() -> None:
    scores, words, targets = _lucky_and_steady()
    labels = ["neg", "pos"]
    # chosen on all eight, the large margin on fold 0 wins the one slot per label
    (only,) = select_label_words(scores, words, targets, labels, top_per_class=1, pool=None)
    assert only.verbalizer == {"neg": ["odd"], "pos": ["queer"]}
    assert only.train_accuracy == 0.5
    # cross-fitted: fold 1 chooses bad/good and fold 0 confirms them; fold 0 chooses
    # odd/queer and fold 1 gets them all wrong
    choices = select_label_words(
        scores, words, targets, labels, top_per_class=1, pool=None, folds=2
    )
    assert [c.verbalizer for c in choices] == [
        {"neg": ["bad"], "pos": ["good"]},
        {"neg": ["odd"], "pos": ["queer"]},
    ]
    assert choices[0].train_accuracy == 1.0 and choices[0].margin == pytest.approx(1.0)
    assert choices[1].train_accuracy == 0.0 and choices[1].margin == pytest.approx(-0.5)


def test_cross_fitting_scores_words_both_folds_chose_on_every_example() -> None:
    scores, targets = _planted(per_class=8)
    words = [f"w{k}" for k in range(scores.shape[1])]
    choices = select_label_words(scores, words, targets, ["neg", "pos"], top_per_class=5, folds=2)
    # the planted words separate every example: both folds choose them, and they are
    # scored on all 16 (an accuracy of 1 on one fold's 8 would tie, not lead by margin)
    assert choices[0].verbalizer == {"neg": ["w4"], "pos": ["w17"]}
    assert choices[0].train_accuracy == 1.0
    ranked = [(-c.train_accuracy, -c.margin) for c in choices]
    assert ranked == sorted(ranked)
    assert len({tuple(c.verbalizer.values()).__repr__() for c in choices}) == len(choices)


def test_cross_fitting_needs_every_label_in_every_fold() -> None:
    scores, targets = _planted(per_class=3)
    words = [f"w{k}" for k in range(scores.shape[1])]
    labels = ["neg", "pos"]
    plain = select_label_words(scores, words, targets, labels, top_per_class=4)
    # three examples a label: ten folds are lowered to three, not an error
    assert select_label_words(scores, words, targets, labels, top_per_class=4, folds=10)
    # one example of "neg": no cross-fitting is possible, the plain search runs
    one = [0, 3, 4, 5]
    single = [targets[i] for i in one]
    assert select_label_words(
        scores[one], words, single, labels, top_per_class=4, folds=2
    ) == select_label_words(scores[one], words, single, labels, top_per_class=4)
    assert plain == select_label_words(scores, words, targets, labels, top_per_class=4, folds=1)
    with pytest.raises(ConfigError, match="folds must be <= 10; got 11"):
        select_label_words(scores, words, targets, labels, folds=11)

"""promptsearch.evaluation.stats against hand-computed values, exact bootstrap
distributions, scikit-learn and itself (seeds)."""

from __future__ import annotations

import math
import random
import warnings
from fractions import Fraction
from math import comb

import numpy as np
import pytest
from scipy.stats import binom
from sklearn.metrics import f1_score

from promptsearch.errors import ConfigError
from promptsearch.evaluation import stats
from promptsearch.metrics import aggregate

# -- McNemar and the binomial test ------------------------------------------------------


def _outcomes(a_only: int, b_only: int, both: int = 3, neither: int = 2) -> tuple[list[bool], ...]:
    a = [True] * a_only + [False] * b_only + [True] * both + [False] * neither
    b = [False] * a_only + [True] * b_only + [True] * both + [False] * neither
    return a, b


@pytest.mark.parametrize(
    ("a_only", "b_only", "expected"),
    [
        (1, 9, 22 / 1024),  # 2 * (C(10,0) + C(10,1)) / 2**10
        (9, 1, 22 / 1024),  # symmetric
        (0, 5, 2 / 32),  # 2 * C(5,0) / 2**5
        (2, 8, 2 * (1 + 10 + 45) / 1024),
        (5, 5, 1.0),  # 2 * 638 / 1024 > 1: capped
        (0, 0, 1.0),  # no discordant pair: no evidence
        (0, 20, 2 / 2**20),
    ],
)
def test_mcnemar_exact_matches_hand_computed_binomial(
    a_only: int, b_only: int, expected: float
) -> None:
    a, b = _outcomes(a_only, b_only)
    result = stats.mcnemar(a, b)
    assert result.test == "mcnemar"
    assert result.a_only == a_only and result.b_only == b_only
    assert result.p_value == pytest.approx(expected, rel=1e-12)
    assert result.delta == pytest.approx((a_only - b_only) / len(a))
    assert result.n_examples == len(a)


def test_mcnemar_chi_square_with_continuity_correction() -> None:
    a, b = _outcomes(1, 9)
    result = stats.mcnemar(a, b, exact=False)
    # statistic (|1 - 9| - 1)^2 / 10 = 4.9; chi-square(1) survival = erfc(sqrt(4.9 / 2))
    assert result.test == "mcnemar-chi2"
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(2.45)), rel=1e-12)
    assert result.p_value == pytest.approx(0.026857, abs=1e-6)
    assert stats.mcnemar([True], [True], exact=False).p_value == 1.0


def test_binomial_p_against_direct_sums() -> None:
    for n in (1, 2, 7, 30):
        for k in range(n + 1):
            tail = sum(comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
            assert stats.binomial_two_sided_p(k, n) == pytest.approx(min(1.0, 2 * tail))
    # a large n, against the exact fraction 2 * sum C(2000, i) / 2**2000, i <= 930
    exact = 2 * Fraction(sum(comb(2000, i) for i in range(931)), 2**2000)
    assert stats.binomial_two_sided_p(930, 2000) == pytest.approx(float(exact), rel=1e-9)
    assert stats.binomial_two_sided_p(1070, 2000) == pytest.approx(float(exact), rel=1e-9)
    assert stats.binomial_two_sided_p(0, 0) == 1.0
    assert stats.binomial_two_sided_p(50_000, 100_000) == 1.0


# -- bootstrap intervals ----------------------------------------------------------------


def test_bootstrap_ci_contains_estimate_and_is_deterministic() -> None:
    rng = random.Random(0)
    scores = [float(rng.random() < 0.7) for _ in range(200)]
    first = stats.bootstrap_ci("accuracy", scores, seed=3)
    again = stats.bootstrap_ci("accuracy", scores, seed=3)
    other = stats.bootstrap_ci("accuracy", scores, seed=4)
    assert first == again
    assert (other.low, other.high) != (first.low, first.high)
    assert first.estimate == pytest.approx(sum(scores) / len(scores))
    assert first.estimate in first
    assert first.low < first.estimate < first.high
    assert first.n_resamples == stats.DEFAULT_RESAMPLES == 2000 and first.n_examples == 200
    # the normal approximation of a proportion's interval, roughly
    half = 1.96 * math.sqrt(first.estimate * (1 - first.estimate) / 200)
    assert first.high - first.low == pytest.approx(2 * half, rel=0.15)


def test_bootstrap_ci_simple_cases() -> None:
    assert stats.bootstrap_ci("accuracy", [1.0, 1.0, 1.0]) == stats.ConfidenceInterval(
        1.0, 1.0, 1.0, 0.95, 2000, 3
    )
    one = stats.bootstrap_ci("accuracy", [0.0])
    assert (one.low, one.estimate, one.high) == (0.0, 0.0, 0.0)
    # two examples, one right: resample means 0, 1/2, 1 with chances 1/4, 1/2, 1/4
    two = stats.bootstrap_ci("accuracy", [0.0, 1.0], n_resamples=4000)
    assert (two.low, two.high) == (0.0, 1.0)
    narrow = stats.bootstrap_ci("accuracy", [0.0, 1.0], confidence=0.2, n_resamples=4000)
    assert narrow.low == narrow.high == 0.5
    # graded per-example metrics (token F1) average like accuracy
    graded = stats.bootstrap_ci("token_f1", [0.5, 0.25, 1.0, 0.0])
    assert graded.estimate == pytest.approx(0.4375)
    assert 0.0 <= graded.low <= graded.estimate <= graded.high <= 1.0


@pytest.mark.parametrize(("n", "right", "seed"), [(200, 140, 3), (60, 45, 0), (500, 260, 11)])
def test_bootstrap_ci_matches_the_exact_bootstrap_distribution(
    n: int, right: int, seed: int
) -> None:
    # resampling n right/wrong outcomes, `right` of them right, gives a resampled
    # accuracy of Binomial(n, right / n) / n exactly: the percentile interval is close
    # to that distribution's quantiles (within two or so steps of 1/n: Monte Carlo error)
    scores = [1.0] * right + [0.0] * (n - right)
    interval = stats.bootstrap_ci("accuracy", scores, seed=seed)
    low, high = binom.ppf([0.025, 0.975], n, right / n) / n
    assert interval.low == pytest.approx(low, abs=2.5 / n)
    assert interval.high == pytest.approx(high, abs=2.5 / n)
    ninety = stats.bootstrap_ci("accuracy", scores, confidence=0.9, seed=seed)
    low, high = binom.ppf([0.05, 0.95], n, right / n) / n
    assert ninety.low == pytest.approx(low, abs=2.5 / n)
    assert ninety.high == pytest.approx(high, abs=2.5 / n)
    assert interval.low <= ninety.low <= ninety.high <= interval.high


def test_degenerate_resamples_give_a_point_and_no_warning() -> None:
    # every resample the same (all right, one example, a prompt against itself):
    # the interval is that one value, and scipy is not left to warn about it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stats.bootstrap_ci("accuracy", [1.0] * 50).low == 1.0
        assert stats.bootstrap_ci("accuracy", [0.0] * 50).high == 0.0
        single = stats.bootstrap_ci("token_f1", [0.25], n_resamples=10)
        assert (single.low, single.estimate, single.high) == (0.25, 0.25, 0.25)
        labels = ["x", "y"] * 5
        perfect = stats.bootstrap_ci("macro_f1", [1.0] * 10, predictions=labels, targets=labels)
        assert (perfect.low, perfect.high) == (1.0, 1.0)
        one = stats.paired_bootstrap("accuracy", [1.0], [0.0], n_resamples=9)
        assert (one.low, one.delta, one.high) == (1.0, 1.0, 1.0)
        assert one.p_value == pytest.approx(1 / 10)  # every resample differs by 1


def test_macro_f1_interval_matches_resampling_with_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    labels = ["a", "b", "c"]
    targets = [labels[i] for i in rng.integers(0, 3, 80)]
    predictions = [t if rng.random() < 0.7 else labels[rng.integers(0, 3)] for t in targets]
    scores = [float(p == t) for p, t in zip(predictions, targets, strict=True)]
    interval = stats.bootstrap_ci(
        "macro_f1", scores, predictions=predictions, targets=targets, n_resamples=1000
    )
    # an independent percentile bootstrap: other resamples, scikit-learn's macro-F1
    gold, pred = np.asarray(targets), np.asarray(predictions)
    values = []
    for _ in range(1000):
        row = rng.integers(0, 80, 80)
        values.append(f1_score(gold[row], pred[row], average="macro", zero_division=0))
    low, high = np.quantile(values, [0.025, 0.975])
    assert interval.low == pytest.approx(low, abs=0.03)
    assert interval.high == pytest.approx(high, abs=0.03)


def test_macro_f1_resamples_match_scikit_learn() -> None:
    rng = np.random.default_rng(7)
    labels = ["a", "b", "c"]
    targets = [labels[i] for i in rng.integers(0, 3, 60)]
    predictions = [t if rng.random() < 0.6 else labels[rng.integers(0, 3)] for t in targets]
    codes = {label: i for i, label in enumerate(labels)}
    index = rng.integers(0, 60, size=(50, 60))
    gold = np.asarray([codes[t] for t in targets])[index]
    pred = np.asarray([codes[p] for p in predictions])[index]
    fast = stats._macro_f1(gold, pred, len(labels))
    for row, value in zip(index, fast, strict=True):
        expected = aggregate(
            "macro_f1", [], [predictions[i] for i in row], [targets[i] for i in row]
        )
        assert value == pytest.approx(expected, abs=1e-12)
    # a resample where a label is absent from gold and predictions leaves it out
    only_a = stats._macro_f1(np.asarray([[0, 0]]), np.asarray([[0, 1]]), 3)
    assert only_a[0] == pytest.approx(aggregate("macro_f1", [], ["a", "b"], ["a", "a"]))

    scores = [float(p == t) for p, t in zip(predictions, targets, strict=True)]
    interval = stats.bootstrap_ci("macro_f1", scores, predictions=predictions, targets=targets)
    assert interval.estimate == pytest.approx(aggregate("macro_f1", scores, predictions, targets))
    assert interval.low < interval.estimate < interval.high


# -- paired bootstrap -------------------------------------------------------------------


def test_paired_bootstrap_no_difference_and_clear_difference() -> None:
    rng = random.Random(1)
    a = [float(rng.random() < 0.6) for _ in range(100)]
    same = stats.paired_bootstrap("accuracy", a, list(a))
    assert same.delta == 0.0 and same.p_value == 1.0 and same.low == same.high == 0.0

    better = [1.0] * 100
    clear = stats.paired_bootstrap("accuracy", better, a, n_resamples=999)
    assert clear.test == "paired-bootstrap"
    assert clear.delta == pytest.approx(1.0 - sum(a) / 100)
    assert clear.p_value == pytest.approx(1 / 1000)  # the smallest the +1 rule allows
    assert clear.low is not None and clear.high is not None
    assert 0.0 < clear.low <= clear.delta <= clear.high
    assert stats.paired_bootstrap("accuracy", better, a, n_resamples=999) == clear


def test_paired_bootstrap_interval_and_p_value_against_normal_theory() -> None:
    # 300 examples: A alone right on 40, B alone right on 20, the rest tied
    a = [1.0] * 40 + [0.0] * 20 + [1.0] * 150 + [0.0] * 90
    b = [0.0] * 40 + [1.0] * 20 + [1.0] * 150 + [0.0] * 90
    result = stats.paired_bootstrap("accuracy", a, b, n_resamples=4000, seed=5)
    # the difference of paired proportions: mean d = (40 - 20) / 300, and its standard
    # error sqrt((p10 + p01 - d^2) / n)
    n, d = 300, 20 / 300
    se = math.sqrt((40 / n + 20 / n - d * d) / n)
    assert result.delta == pytest.approx(d)
    assert result.low is not None and result.high is not None
    assert result.low == pytest.approx(d - 1.96 * se, abs=0.01)
    assert result.high == pytest.approx(d + 1.96 * se, abs=0.01)
    # the two-sided normal-theory p-value of d / se, roughly (Monte Carlo error)
    normal_p = math.erfc(d / se / math.sqrt(2))
    assert result.p_value == pytest.approx(normal_p, abs=0.01)
    # and about the exact McNemar p-value of the same outcomes
    exact = stats.mcnemar([x == 1.0 for x in a], [x == 1.0 for x in b]).p_value
    assert result.p_value == pytest.approx(exact, abs=0.02)


def test_paired_bootstrap_macro_f1_uses_both_predictions() -> None:
    targets = ["x", "y"] * 20
    good = list(targets)
    bad = ["x"] * 40
    result = stats.paired_bootstrap(
        "macro_f1",
        [1.0] * 40,
        [float(t == "x") for t in targets],
        predictions_a=good,
        predictions_b=bad,
        targets=targets,
    )
    expected = 1.0 - aggregate("macro_f1", [], bad, targets)
    assert result.delta == pytest.approx(expected)
    assert result.p_value < 0.01


def test_mean_std() -> None:
    summary = stats.mean_std([0.8, 0.9, 1.0])
    assert summary.mean == pytest.approx(0.9) and summary.std == pytest.approx(0.1)
    assert summary.n == 3 and str(summary) == "0.900 ± 0.100 (n=3)"
    assert stats.mean_std([0.8, 0.9, 1.0], ddof=0).std == pytest.approx(0.1 * math.sqrt(2 / 3))
    single = stats.mean_std([0.5])
    assert single.std is None and str(single) == "0.500 ± n/a (n=1)"


# -- argument checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: stats.bootstrap_ci("nope", [1.0]), "metric must be one of"),
        (lambda: stats.bootstrap_ci("accuracy", []), "scores is empty"),
        (lambda: stats.bootstrap_ci("accuracy", "101"), "scores must be a sequence"),  # type: ignore[arg-type]
        (lambda: stats.bootstrap_ci("accuracy", [1.0, float("nan")]), "scores must hold finite"),
        (lambda: stats.bootstrap_ci("accuracy", [True, False]), "scores must hold numbers"),
        (lambda: stats.bootstrap_ci("accuracy", [1.0], confidence=95), "confidence must be"),
        (lambda: stats.bootstrap_ci("accuracy", [1.0], n_resamples=0), "n_resamples must be"),
        (lambda: stats.bootstrap_ci("accuracy", [1.0], seed=-1), "seed must be"),
        (lambda: stats.bootstrap_ci("macro_f1", [1.0]), "targets is required"),
        (
            lambda: stats.bootstrap_ci("macro_f1", [1.0], predictions=["a", "b"], targets=["a"]),
            "predictions has 2 items but there are 1 examples",
        ),
        (lambda: stats.paired_bootstrap("accuracy", [1.0], [1.0, 0.0]), "scores_b has 2 scores"),
        (lambda: stats.mcnemar([True], [True, False]), "correct_a has 1 outcomes"),
        (lambda: stats.mcnemar(["yes"], [True]), r"correct_a\[0\] must be"),  # type: ignore[list-item]
        (lambda: stats.mcnemar([], []), "correct_a is empty"),
        (lambda: stats.mean_std([]), "values is empty"),
        (lambda: stats.mean_std([1.0], ddof=-1), "ddof must be"),
        (lambda: stats.binomial_two_sided_p(3, 2), "k must be at most n"),
    ],
)
def test_bad_arguments_name_the_argument(call: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()  # type: ignore[operator]

"""Statistics for held-out results: bootstrap confidence intervals, paired tests,
and mean ± standard deviation over repeated runs.

The procedures are scipy's and numpy's; nothing here loads a model.

* :func:`bootstrap_ci` -- a percentile bootstrap interval of a task metric
  (``scipy.stats.bootstrap``).  Examples are resampled with replacement and the metric
  is recomputed on every resample, so it works for per-example metrics (accuracy,
  exact match, token F1 ...) and for corpus-level ones (macro-F1) alike.
* :func:`paired_bootstrap` -- the difference of two prompts' metric on the same
  examples, its interval and a two-sided p-value (``scipy.stats.bootstrap`` with
  ``paired=True``: both prompts see the same resamples).
* :func:`mcnemar` -- the exact two-sided McNemar test on paired right/wrong
  outcomes: a binomial test on the discordant pairs (``scipy.stats.binomtest``), or
  its chi-square approximation (``scipy.stats.chi2``).
* :func:`mean_std` -- the mean ± standard deviation over seeds (``numpy``), as LM-BFF
  and RLPrompt report their results.

Resamples are drawn from ``numpy.random.default_rng(seed)`` (scipy's ``rng=``): the
same inputs and seed always give the same numbers.  The interval is scipy's
percentile one, not its default BCa: BCa is undefined (scipy warns, returns NaN) when
every resample scores the same -- a prompt right on every example, or a baseline
against itself -- and needs a jackknife pass of the metric besides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from promptsearch.errors import ConfigError
from promptsearch.metrics import METRICS, aggregate

__all__ = [
    "CORPUS_METRICS",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "PAIRED_TESTS",
    "ConfidenceInterval",
    "MeanStd",
    "PairedTest",
    "binomial_two_sided_p",
    "bootstrap_ci",
    "mcnemar",
    "mean_std",
    "paired_bootstrap",
]

DEFAULT_RESAMPLES: Final = 2000
DEFAULT_CONFIDENCE: Final = 0.95
CORPUS_METRICS: Final = frozenset({"macro_f1"})
"""Metrics computed from all predictions at once rather than averaged per example."""
PAIRED_TESTS: Final = ("mcnemar", "mcnemar-chi2", "paired-bootstrap")
"""Names of the paired tests, as stored with held-out results."""

_EXTRA_METRICS: Final = frozenset({"gold_logprob"})  # the scorer's likelihood-only metric
_CELLS_PER_CHUNK: Final = 2_000_000  # resample × example cells drawn at once (memory bound)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Statistic = Callable[..., FloatArray]


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate and its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    n_examples: int

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of prompt A against prompt B on the same examples.

    ``delta`` is metric(A) − metric(B).  ``low``/``high`` bound ``delta`` (paired
    bootstrap only).  ``a_only``/``b_only`` count the examples only A (only B) got
    right (McNemar only).
    """

    test: str
    delta: float
    p_value: float
    n_examples: int
    low: float | None = None
    high: float | None = None
    a_only: int | None = None
    b_only: int | None = None


@dataclass(frozen=True)
class MeanStd:
    """Mean and standard deviation of values from repeated runs (e.g. k-shot seeds).

    ``std`` is ``None`` when there are too few values for it (one value with
    ``ddof=1``).
    """

    mean: float
    std: float | None
    n: int

    def __str__(self) -> str:
        spread = "n/a" if self.std is None else f"{self.std:.3f}"
        return f"{self.mean:.3f} ± {spread} (n={self.n})"


# -- argument checks ------------------------------------------------------------------


def _check_metric(metric: object) -> str:
    if not isinstance(metric, str) or (metric not in METRICS and metric not in _EXTRA_METRICS):
        known = sorted({*METRICS, *_EXTRA_METRICS})
        raise ConfigError(f"metric must be one of {known}; got {metric!r}")
    return metric


def _check_scores(name: str, values: object) -> FloatArray:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        raise ConfigError(f"{name} must be a sequence of numbers; got {type(values).__name__}")
    if any(isinstance(v, bool) for v in values):
        raise ConfigError(f"{name} must hold numbers, not booleans (use 1.0 and 0.0)")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must hold only numbers; got {list(values)[:5]!r}") from None
    if array.ndim != 1:
        raise ConfigError(f"{name} must be one-dimensional; got shape {array.shape}")
    if array.size == 0:
        raise ConfigError(f"{name} is empty; give one score per example")
    if not np.all(np.isfinite(array)):
        raise ConfigError(f"{name} must hold finite numbers (no NaN or infinity)")
    return array


def _check_bools(name: str, values: object) -> npt.NDArray[np.bool_]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        raise ConfigError(f"{name} must be a sequence of booleans; got {type(values).__name__}")
    items = list(values)
    if not items:
        raise ConfigError(f"{name} is empty; give one outcome per example")
    for i, v in enumerate(items):
        if not isinstance(v, bool | np.bool_) and v not in (0, 1):
            raise ConfigError(f"{name}[{i}] must be True/False (or 1/0); got {v!r}")
    return np.asarray([bool(v) for v in items], dtype=np.bool_)


def _check_labels(name: str, values: object, size: int) -> list[str]:
    if values is None:
        raise ConfigError(f"{name} is required for a corpus-level metric such as macro_f1")
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        raise ConfigError(f"{name} must be a sequence of strings; got {type(values).__name__}")
    items = [str(v) for v in values]
    if len(items) != size:
        raise ConfigError(f"{name} has {len(items)} items but there are {size} examples")
    return items


def _check_resamples(n_resamples: object) -> int:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ConfigError(f"n_resamples must be a whole number ≥ 1; got {n_resamples!r}")
    return n_resamples


def _check_confidence(confidence: object) -> float:
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, int | float)
        or not 0.0 < float(confidence) < 1.0
    ):
        raise ConfigError(
            f"confidence must be a number between 0 and 1 (e.g. 0.95); got {confidence!r}"
        )
    return float(confidence)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a whole number ≥ 0; got {seed!r}")
    return seed


# -- resampling -------------------------------------------------------------------------


def _bootstrap(
    data: Sequence[npt.NDArray[Any]],
    statistic: Statistic,
    *,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> tuple[FloatArray, float, float]:
    """The bootstrap distribution of *statistic* over the examples of *data* (arrays of
    one value per example, resampled together) and its percentile interval.

    *statistic* takes the resampled arrays, shape ``(resamples, examples)``, and
    ``axis=-1``, and returns one value per resample.
    """
    size = int(data[0].shape[-1])
    if size == 1:
        # scipy.stats.bootstrap wants two or more examples; every resample of a single
        # example is that example, so the distribution is one point
        value = float(statistic(*(array[np.newaxis, :] for array in data), axis=-1)[0])
        return np.full(n_resamples, value), value, value
    from scipy.stats import bootstrap

    result = bootstrap(
        tuple(data),
        statistic,
        n_resamples=n_resamples,
        batch=max(1, _CELLS_PER_CHUNK // size),
        vectorized=True,
        paired=True,  # resample examples: the i-th values of all arrays stay together
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    distribution: FloatArray = np.asarray(result.bootstrap_distribution, dtype=np.float64)
    interval = result.confidence_interval
    return distribution, float(interval.low), float(interval.high)


class _System:
    """One prompt's outcomes, ready to be recomputed on resamples."""

    def __init__(
        self,
        metric: str,
        scores: FloatArray,
        predictions: list[str] | None,
        targets: list[str] | None,
        codes: dict[str, int] | None,
    ) -> None:
        self.metric = metric
        self.scores = scores
        self.predictions = predictions
        self.targets = targets
        if metric in CORPUS_METRICS:
            if predictions is None or targets is None or codes is None:  # pragma: no cover
                raise ConfigError("predictions and targets are required for a corpus metric")
            self.n_labels = len(codes)
            self.pred_codes = np.asarray([codes[p] for p in predictions], dtype=np.int64)
            self.gold_codes = np.asarray([codes[t] for t in targets], dtype=np.int64)

    def value(self) -> float:
        """The metric on all examples, from :func:`promptsearch.metrics.aggregate`."""
        return aggregate(
            self.metric,
            self.scores.tolist(),
            self.predictions or [],
            self.targets or [],
        )

    def data(self) -> tuple[npt.NDArray[Any], ...]:
        """What is resampled: the per-example scores, or the gold and predicted label
        codes of a corpus metric."""
        if self.metric not in CORPUS_METRICS:
            return (self.scores,)
        return (self.gold_codes, self.pred_codes)

    def statistic(self, *arrays: npt.NDArray[Any], axis: int = -1) -> FloatArray:
        """The metric of each resample, from resampled :meth:`data` (``axis=-1``)."""
        if self.metric not in CORPUS_METRICS:
            (scores,) = arrays
            result: FloatArray = np.mean(scores, axis=axis)
            return result
        gold, pred = arrays
        return _macro_f1(gold, pred, self.n_labels)


def _macro_f1(gold: IntArray, pred: IntArray, n_labels: int) -> FloatArray:
    """Macro-F1 of each row, over the labels present in that row's gold or predictions
    (what scikit-learn's ``f1_score(average="macro", zero_division=0)`` computes)."""
    rows = gold.shape[0]
    cells = (np.arange(rows, dtype=np.int64)[:, None] * n_labels + gold) * n_labels + pred
    confusion = np.bincount(cells.ravel(), minlength=rows * n_labels * n_labels)
    confusion = confusion.reshape(rows, n_labels, n_labels).astype(np.float64)
    tp = np.diagonal(confusion, axis1=1, axis2=2)
    fn = confusion.sum(axis=2) - tp
    fp = confusion.sum(axis=1) - tp
    denominator = 2 * tp + fp + fn
    present = denominator > 0
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=present)
    result: FloatArray = f1.sum(axis=1) / present.sum(axis=1)
    return result


def _systems(
    metric: str,
    named_scores: Sequence[tuple[str, object]],
    named_predictions: Sequence[tuple[str, object]],
    targets: object,
) -> list[_System]:
    arrays = [_check_scores(name, values) for name, values in named_scores]
    size = arrays[0].size
    for (name, _), array in zip(named_scores, arrays, strict=True):
        if array.size != size:
            raise ConfigError(
                f"{name} has {array.size} scores but {named_scores[0][0]} has {size}; a paired "
                "comparison needs the same examples in the same order"
            )
    if metric not in CORPUS_METRICS:
        return [_System(metric, array, None, None, None) for array in arrays]
    gold = _check_labels("targets", targets, size)
    predictions = [_check_labels(name, values, size) for name, values in named_predictions]
    labels = sorted({*gold, *(p for preds in predictions for p in preds)})
    codes = {label: i for i, label in enumerate(labels)}
    return [
        _System(metric, array, preds, gold, codes)
        for array, preds in zip(arrays, predictions, strict=True)
    ]


# -- public functions -------------------------------------------------------------------


def bootstrap_ci(
    metric: str,
    scores: Sequence[float],
    *,
    predictions: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> ConfidenceInterval:
    """A percentile bootstrap interval of *metric* over examples.

    *scores* are the per-example metric values (as the scorer reports them).  For a
    corpus-level metric (``macro_f1``) give *predictions* and *targets* too; the
    metric is then recomputed from the resampled predictions.
    """
    metric = _check_metric(metric)
    confidence = _check_confidence(confidence)
    n_resamples = _check_resamples(n_resamples)
    seed = _check_seed(seed)
    (system,) = _systems(metric, [("scores", scores)], [("predictions", predictions)], targets)
    _, low, high = _bootstrap(
        system.data(),
        system.statistic,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )
    return ConfidenceInterval(
        estimate=system.value(),
        low=low,
        high=high,
        confidence=confidence,
        n_resamples=n_resamples,
        n_examples=int(system.scores.size),
    )


def paired_bootstrap(
    metric: str,
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    *,
    predictions_a: Sequence[str] | None = None,
    predictions_b: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedTest:
    """Paired bootstrap comparison of prompt A with prompt B on the same examples.

    Both prompts are scored on the same resamples (``scipy.stats.bootstrap`` with
    ``paired=True``); ``low``/``high`` is the percentile interval of the difference.
    The two-sided p-value tests "no difference" with the bootstrap distribution of
    the difference shifted to mean zero: the share of resamples whose difference lies
    at least as far from the observed one as the observed one lies from zero, counted
    as ``(hits + 1) / (n_resamples + 1)`` so that it is never exactly zero.  scipy has
    no bootstrap p-value (its paired permutation test is another procedure), so this
    count is made here, on scipy's bootstrap distribution.
    """
    metric = _check_metric(metric)
    confidence = _check_confidence(confidence)
    n_resamples = _check_resamples(n_resamples)
    seed = _check_seed(seed)
    a, b = _systems(
        metric,
        [("scores_a", scores_a), ("scores_b", scores_b)],
        [("predictions_a", predictions_a), ("predictions_b", predictions_b)],
        targets,
    )
    observed = a.value() - b.value()
    data_a, data_b = a.data(), b.data()
    # a corpus metric's gold codes are shared: resample them once, next to both predictions
    shared = data_a[:-1]
    data = (*shared, data_a[-1], data_b[-1])

    def difference(*arrays: npt.NDArray[Any], axis: int = -1) -> FloatArray:
        *gold, own_a, own_b = arrays
        delta: FloatArray = a.statistic(*gold, own_a, axis=axis) - b.statistic(
            *gold, own_b, axis=axis
        )
        return delta

    deltas, low, high = _bootstrap(
        data, difference, n_resamples=n_resamples, confidence=confidence, seed=seed
    )
    tolerance = 1e-12
    hits = int(np.count_nonzero(np.abs(deltas - observed) >= abs(observed) - tolerance))
    return PairedTest(
        test="paired-bootstrap",
        delta=observed,
        p_value=min(1.0, (hits + 1) / (n_resamples + 1)),
        n_examples=int(a.scores.size),
        low=low,
        high=high,
    )


def binomial_two_sided_p(k: int, n: int) -> float:
    """Two-sided p-value of *k* successes in *n* fair coin flips (Binomial(n, ½)):
    ``scipy.stats.binomtest(k, n).pvalue``, which for a fair coin is twice the smaller
    tail, at most 1.  1.0 when *n* is 0 (no flips, no evidence)."""
    for name, value in (("k", k), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be a whole number ≥ 0; got {value!r}")
    if k > n:
        raise ConfigError(f"k must be at most n; got k={k}, n={n}")
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(k, n, 0.5).pvalue)


def mcnemar(
    correct_a: Sequence[bool], correct_b: Sequence[bool], *, exact: bool = True
) -> PairedTest:
    """McNemar's test of paired right/wrong outcomes of prompts A and B.

    Only the discordant examples matter: ``a_only`` (A right, B wrong) and
    ``b_only`` (A wrong, B right).  Under "no difference" each discordant example is
    a fair coin, so the exact test is a two-sided binomial test on them.
    ``exact=False`` gives the chi-square approximation with continuity correction
    (for very large samples; the exact test is fast enough for any test split).
    ``delta`` is accuracy(A) − accuracy(B).
    """
    a = _check_bools("correct_a", correct_a)
    b = _check_bools("correct_b", correct_b)
    if a.size != b.size:
        raise ConfigError(
            f"correct_a has {a.size} outcomes but correct_b has {b.size}; a paired test needs "
            "the same examples in the same order"
        )
    if not isinstance(exact, bool):
        raise ConfigError(f"exact must be True or False; got {exact!r}")
    a_only = int(np.count_nonzero(a & ~b))
    b_only = int(np.count_nonzero(~a & b))
    discordant = a_only + b_only
    if exact:
        p_value = binomial_two_sided_p(a_only, discordant)
        name = "mcnemar"
    else:
        name = "mcnemar-chi2"
        if discordant == 0:
            p_value = 1.0
        else:
            from scipy.stats import chi2

            statistic = max(0.0, abs(a_only - b_only) - 1.0) ** 2 / discordant
            p_value = float(chi2.sf(statistic, df=1))
    return PairedTest(
        test=name,
        delta=(a_only - b_only) / a.size,
        p_value=min(1.0, p_value),
        n_examples=int(a.size),
        a_only=a_only,
        b_only=b_only,
    )


def mean_std(values: Sequence[float], *, ddof: int = 1) -> MeanStd:
    """Mean and standard deviation of *values* (``ddof=1``: the sample standard
    deviation, as ``statistics.stdev``; ``ddof=0``: the population one, as numpy's
    default)."""
    array = _check_scores("values", values)
    if isinstance(ddof, bool) or not isinstance(ddof, int) or ddof < 0:
        raise ConfigError(f"ddof must be a whole number ≥ 0; got {ddof!r}")
    std = float(np.std(array, ddof=ddof)) if array.size > ddof else None
    return MeanStd(mean=float(np.mean(array)), std=std, n=int(array.size))

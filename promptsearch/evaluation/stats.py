"""Statistics for held-out results: bootstrap confidence intervals, paired tests,
and mean ± standard deviation over repeated runs.

Pure numpy and the standard library; nothing here loads a model.

* :func:`bootstrap_ci` -- a percentile bootstrap interval of a task metric.  Examples
  are resampled with replacement and the metric is recomputed on every resample, so
  it works for per-example metrics (accuracy, exact match, token F1 ...) and for
  corpus-level ones (macro-F1) alike.
* :func:`paired_bootstrap` -- the difference of two prompts' metric on the same
  examples, its interval and a two-sided p-value (both prompts see the same
  resamples).
* :func:`mcnemar` -- the exact two-sided McNemar test on paired right/wrong
  outcomes: a binomial test on the discordant pairs.
* :func:`mean_std` -- the mean ± standard deviation over seeds, as LM-BFF and
  RLPrompt report their results.

Resamples are drawn from ``numpy.random.default_rng(seed)``: the same inputs and
seed always give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

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
_EXACT_LIMIT: Final = 100_000  # McNemar: exact integer arithmetic up to this many pairs

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


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


def _resamples(n_examples: int, n_resamples: int, seed: int) -> Iterator[IntArray]:
    """Index arrays of shape (chunk, n_examples), *n_resamples* rows in all."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CELLS_PER_CHUNK // n_examples)
    left = n_resamples
    while left > 0:
        rows = min(per_chunk, left)
        yield rng.integers(0, n_examples, size=(rows, n_examples), dtype=np.int64)
        left -= rows


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

    def on(self, index: IntArray) -> FloatArray:
        """The metric on each resample (one row of *index* each)."""
        if self.metric not in CORPUS_METRICS:
            result: FloatArray = self.scores[index].mean(axis=1)
            return result
        return _macro_f1(self.gold_codes[index], self.pred_codes[index], self.n_labels)


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


def _interval(values: FloatArray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


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
    size = system.scores.size
    values = np.concatenate([system.on(index) for index in _resamples(size, n_resamples, seed)])
    low, high = _interval(values, confidence)
    return ConfidenceInterval(
        estimate=system.value(),
        low=low,
        high=high,
        confidence=confidence,
        n_resamples=n_resamples,
        n_examples=size,
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

    Both prompts are scored on the same resamples.  The two-sided p-value tests
    "no difference" with the bootstrap distribution of the difference shifted to
    mean zero: the share of resamples whose difference lies at least as far from the
    observed one as the observed one lies from zero, counted as
    ``(hits + 1) / (n_resamples + 1)`` so that it is never exactly zero.
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
    size = a.scores.size
    observed = a.value() - b.value()
    deltas = np.concatenate(
        [a.on(index) - b.on(index) for index in _resamples(size, n_resamples, seed)]
    )
    tolerance = 1e-12
    hits = int(np.count_nonzero(np.abs(deltas - observed) >= abs(observed) - tolerance))
    low, high = _interval(deltas, confidence)
    return PairedTest(
        test="paired-bootstrap",
        delta=observed,
        p_value=min(1.0, (hits + 1) / (n_resamples + 1)),
        n_examples=size,
        low=low,
        high=high,
    )


def binomial_two_sided_p(k: int, n: int) -> float:
    """Two-sided p-value of *k* successes in *n* fair coin flips (Binomial(n, ½)):
    twice the smaller tail, at most 1."""
    for name, value in (("k", k), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be a whole number ≥ 0; got {value!r}")
    if k > n:
        raise ConfigError(f"k must be at most n; got k={k}, n={n}")
    if n == 0:
        return 1.0
    small = min(k, n - k)
    if n <= _EXACT_LIMIT:
        term, total = 1, 1
        for i in range(small):
            term = term * (n - i) // (i + 1)
            total += term
        return min(1.0, 2 * total / 2**n)
    # log space for very large n: log C(n, i) - n log 2, summed stably
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
        for i in range(small + 1)
    ]
    top = max(logs)
    return min(1.0, 2 * math.exp(top) * math.fsum(math.exp(v - top) for v in logs))


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
            statistic = max(0.0, abs(a_only - b_only) - 1.0) ** 2 / discordant
            p_value = math.erfc(math.sqrt(statistic / 2.0))  # chi-square, 1 degree of freedom
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

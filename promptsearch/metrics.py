"""Task metrics.

Per-example metrics (exact match, token F1, contains, precision@1, accuracy) give a
number per example that is averaged; corpus metrics (macro-F1) need all predictions.

A metric of your own is a Python function ``(prediction, answer) -> float`` (higher is
better; the best over an example's accepted answers counts, averaged over examples),
made known by :func:`register_metric` or given as ``Task(metric=function)``, which
registers it under its ``__name__``.  Studies store the metric's name only, never the
function: a process that reopens such a study registers the same function first.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

from promptsearch.errors import ConfigError

__all__ = [
    "BUILT_IN_METRICS",
    "METRICS",
    "MetricFunction",
    "aggregate",
    "check_metric",
    "example_score",
    "metric_name",
    "normalize_answer",
    "register_metric",
]

MetricFunction = Callable[[str, str], float]
"""A per-example metric: (prediction, accepted answer) -> score, higher is better."""

# metric name -> task kinds it applies to
METRICS: dict[str, tuple[str, ...]] = {
    "accuracy": ("classification",),
    "macro_f1": ("classification",),
    "exact_match": ("generation",),
    "token_f1": ("generation",),
    "contains": ("generation",),
    "precision_at_1": ("generation",),
}
BUILT_IN_METRICS: frozenset[str] = frozenset(METRICS)
"""The metrics promptsearch defines; :func:`register_metric` adds to :data:`METRICS`."""
_METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,99}$")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def check_metric(metric: str, kind: str) -> None:
    """Raise :class:`ConfigError` unless *metric* exists and suits a task of *kind*."""
    if metric not in METRICS:
        raise ConfigError(
            f"metric {metric!r} is unknown; choose one of {sorted(METRICS)}, or register "
            "a function of that name first (promptsearch.metrics.register_metric; a study "
            "stores a Python metric by name only)"
        )
    if kind not in METRICS[metric]:
        allowed = sorted(m for m, kinds in METRICS.items() if kind in kinds)
        raise ConfigError(
            f"metric {metric!r} does not apply to a {kind} task; choose one of {allowed}"
        )


def normalize_answer(text: str) -> str:
    """Lower-case, strip punctuation and articles, squeeze whitespace (SQuAD style)."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def _exact(prediction: str, answer: str) -> float:
    return float(prediction.strip().lower() == answer.strip().lower())


def _token_f1(prediction: str, answer: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _contains(prediction: str, answer: str) -> float:
    return float(normalize_answer(answer) in normalize_answer(prediction))


def _first_answer(prediction: str, answer: str) -> float:
    # precision@1 for fact retrieval: the top prediction (first line, normalised) is the object
    top = prediction.strip().split("\n")[0]
    return float(normalize_answer(top) == normalize_answer(answer))


_PER_EXAMPLE: dict[str, Callable[[str, str], float]] = {
    "exact_match": _exact,
    "token_f1": _token_f1,
    "contains": _contains,
    "precision_at_1": _first_answer,
    "accuracy": _exact,
    "macro_f1": _exact,
}


def register_metric(
    name: str,
    function: MetricFunction,
    *,
    kinds: Sequence[str] = ("classification", "generation"),
) -> str:
    """Make *function* ``(prediction, answer) -> float`` the metric called *name*, for
    tasks of *kinds*; returns *name*.

    Registering the same function again is a no-op; another function under a name
    already taken (a built-in one included) is refused, so that stored scores keep
    their meaning within a process."""
    if not isinstance(name, str) or not _METRIC_NAME.match(name):
        raise ConfigError(
            f"metric name {name!r} must start with a letter or _ and hold letters, digits, "
            "'_', '.', ':' or '-' (at most 100 characters); name the function with def"
        )
    if not callable(function):
        raise ConfigError(f"metric {name!r}: expected a function, got {type(function).__name__}")
    chosen = tuple(kinds)
    odd = [k for k in chosen if k not in ("classification", "generation")]
    if odd or not chosen:
        raise ConfigError(
            f"metric {name!r}: kinds must name 'classification' and/or 'generation'; got {kinds!r}"
        )
    known = _PER_EXAMPLE.get(name)
    if known is not None:
        if known is function and METRICS[name] == chosen:
            return name
        what = "a built-in metric" if name in BUILT_IN_METRICS else "another function"
        raise ConfigError(
            f"metric name {name!r} is taken by {what}; give your function another name"
        )
    _PER_EXAMPLE[name] = function
    METRICS[name] = chosen
    return name


def metric_name(metric: str | MetricFunction) -> str:
    """*metric* as a name: a name as is, a function registered under its ``__name__``."""
    if isinstance(metric, str):
        return metric
    if not callable(metric):
        raise ConfigError(
            f"metric must be a metric name or a function (prediction, answer) -> float; "
            f"got {type(metric).__name__}"
        )
    name = getattr(metric, "__name__", "")
    if name == "<lambda>" or not name:
        raise ConfigError(
            "metric: a lambda has no name a study can store; define the function with def "
            "(its name is stored), or call promptsearch.metrics.register_metric(NAME, function)"
        )
    return register_metric(name, metric)


def example_score(metric: str, prediction: str, answers: Sequence[str]) -> float:
    """The metric of one prediction against the accepted *answers* (best match)."""
    function = _PER_EXAMPLE[metric]
    best = max(float(function(prediction, answer)) for answer in answers)
    if not math.isfinite(best):
        raise ConfigError(
            f"metric {metric!r} gave {best} for prediction {prediction[:60]!r}; a metric must "
            "return a finite number"
        )
    return best


def aggregate(
    metric: str, scores: Sequence[float], predictions: Sequence[str], targets: Sequence[str]
) -> float:
    """The task-level metric from per-example *scores* (or predictions for macro-F1)."""
    if metric == "macro_f1":
        if not predictions:
            return 0.0
        from sklearn.metrics import f1_score

        return float(f1_score(list(targets), list(predictions), average="macro", zero_division=0))
    if not scores:
        return 0.0
    return float(sum(scores) / len(scores))

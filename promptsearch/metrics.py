"""Task metrics.

Per-example metrics (exact match, token F1, contains, precision@1, accuracy) give a
number per example that is averaged; corpus metrics (macro-F1) need all predictions.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

from promptsearch.errors import ConfigError

__all__ = ["METRICS", "aggregate", "check_metric", "example_score", "normalize_answer"]

# metric name -> task kinds it applies to
METRICS: dict[str, tuple[str, ...]] = {
    "accuracy": ("classification",),
    "macro_f1": ("classification",),
    "exact_match": ("generation",),
    "token_f1": ("generation",),
    "contains": ("generation",),
    "precision_at_1": ("generation",),
}

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def check_metric(metric: str, kind: str) -> None:
    """Raise :class:`ConfigError` unless *metric* exists and suits a task of *kind*."""
    if metric not in METRICS:
        raise ConfigError(f"metric {metric!r} is unknown; choose one of {sorted(METRICS)}")
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


def example_score(metric: str, prediction: str, answers: Sequence[str]) -> float:
    """The metric of one prediction against the accepted *answers* (best match)."""
    function = _PER_EXAMPLE[metric]
    return max(function(prediction, answer) for answer in answers)


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

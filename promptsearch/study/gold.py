"""How sure a prompt is of the gold answer, from its results or stored records: the
label probabilities as a distribution, the gold label's share of it (classification)
or the gold log-likelihood (generation), and their mean, which breaks ties between
equal dev scores (:mod:`promptsearch.study.selection`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from promptsearch.storage import EvaluationRecord
    from promptsearch.task import Example

__all__ = ["gold_probabilities", "gold_values", "record_distribution", "tiebreak"]


def gold_probabilities(
    label_logprobs: Mapping[str, float | None], labels: Sequence[str]
) -> dict[str, float]:
    """The labels' log-probabilities as a distribution over *labels* (softmax)."""
    values = [label_logprobs.get(label) for label in labels]
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {label: 1.0 / len(labels) for label in labels}
    top = max(finite)
    weights = [math.exp(v - top) if v is not None and math.isfinite(v) else 0.0 for v in values]
    total = sum(weights)
    return {label: w / total for label, w in zip(labels, weights, strict=True)}


def record_distribution(record: EvaluationRecord, labels: Sequence[str]) -> dict[str, float] | None:
    detail = record.detail or {}
    logprobs = detail.get("calibrated_logprobs") or detail.get("label_logprobs")
    if not isinstance(logprobs, Mapping):
        return None
    return gold_probabilities(logprobs, labels)


def gold_values(
    kind: str,
    labels: Sequence[str],
    examples: Sequence[Example],
    records: Mapping[str, EvaluationRecord],
    keys: Sequence[str],
) -> list[float] | None:
    """Per example, how sure the prompt is of the gold answer (higher is better): the
    normalised probability of the gold label (classification; calibrated when the
    scorer calibrates) or the gold log-likelihood (generation).  ``None`` when a
    record lacks what it needs."""
    values: list[float] = []
    for example, key in zip(examples, keys, strict=True):
        record = records.get(key)
        if record is None:
            return None
        if kind == "classification":
            distribution = record_distribution(record, labels)
            if distribution is None:
                return None
            values.append(distribution.get(example.target, 0.0))
        else:
            gold = (record.detail or {}).get("gold_logprob")
            if gold is None or not math.isfinite(gold):
                return None
            values.append(float(gold))
    return values


def tiebreak(
    kind: str,
    labels: Sequence[str],
    examples: Sequence[Example],
    records: Mapping[str, EvaluationRecord],
    keys: Sequence[str],
) -> float | None:
    """The continuous statistic that orders equal dev scores (higher is better): the
    mean of :func:`gold_values`; ``None`` when a record lacks what it needs."""
    values = gold_values(kind, labels, examples, records, keys)
    return sum(values) / len(values) if values else None

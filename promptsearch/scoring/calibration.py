"""Contextual calibration of classification scores (Zhao et al., 2021).

A prompt can lean toward some labels whatever the input: its wording, its label
words or its demonstrations make the model say "positive" more readily than
"negative".  Contextual calibration measures that lean by showing the prompt
*content-free* inputs (``"N/A"``, ``""``, ``"[MASK]"`` in every input field), and
divides it out:

1. For each content-free input, normalise the label log-probabilities into a
   distribution over the labels, then average those distributions: ``p_cf``.
2. For each real input, normalise its label log-probabilities the same way into
   ``p(y|x)`` and predict ``argmax_y p(y|x) / p_cf(y)``.  This is the paper's
   ``W = diag(p_cf)^-1``, ``b = 0``.

The paper passes ``W p + b`` through a softmax.  Here the calibrated scores are
``p(y|x) / p_cf(y)`` *renormalised* to sum to one, returned as log-probabilities.
Both give the same argmax, so the same predictions.

Everything works on ``{label: log-probability}`` mappings, the form
:attr:`promptsearch.scoring.scorer.ExampleResult.label_logprobs` has.  So a benchmark can
score once with the raw scorer, score the content-free inputs once, and get both
raw and calibrated predictions from the same numbers.

Edge cases (they occur only when half-precision log-probabilities underflow):

- A row whose labels are all ``-inf`` counts as uniform.
- A label with content-free probability exactly zero is given the smallest
  positive float instead.  Wherever the input gives that label any probability
  at all, it then wins, which is the limit of the division.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence

from promptsearch.errors import ConfigError

__all__ = [
    "CONTENT_FREE_INPUTS",
    "apply_calibration",
    "calibrate_label_logprobs",
    "check_content_free_inputs",
    "content_free_prior",
    "label_distribution",
    "predict_label",
]

CONTENT_FREE_INPUTS: tuple[str, ...] = ("N/A", "", "[MASK]")
"""Zhao et al.'s content-free strings; each one fills every input field of the prompt.

The strings are tokenized as text, so for a tokenizer whose mask token is spelled
``[MASK]`` (BERT's) the third one becomes a real mask token; give the scorer other
``content_free_inputs`` if that is not wanted."""

_LOG_FLOOR = math.log(sys.float_info.min)  # about -708.4: log of the smallest normal float


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


def _check_row(where: str, row: object) -> Mapping[str, float]:
    if not isinstance(row, Mapping) or not row:
        raise ConfigError(
            f"{where} must be a non-empty mapping from label to log-probability; got {row!r}"
        )
    for label, value in row.items():
        bad_type = isinstance(value, bool) or not isinstance(value, (int, float))
        if bad_type or math.isnan(value) or value == math.inf:
            raise ConfigError(
                f"{where}[{label!r}] must be a log-probability (a number, -inf allowed); "
                f"got {value!r}"
            )
    return row


def _normalised_logs(row: Mapping[str, float]) -> dict[str, float]:
    """log p(y) over the labels of *row* (log-softmax); all ``-inf`` counts as uniform."""
    total = _logsumexp(list(row.values()))
    if total == -math.inf:
        uniform = -math.log(len(row))
        return dict.fromkeys(row, uniform)
    return {label: value - total for label, value in row.items()}


def label_distribution(logprobs: Mapping[str, float]) -> dict[str, float]:
    """The label log-probabilities of one example as probabilities that sum to one."""
    row = _check_row("logprobs", logprobs)
    return {label: math.exp(value) for label, value in _normalised_logs(row).items()}


def content_free_prior(content_free: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """``p_cf``: the mean of the label distributions of the content-free inputs."""
    if isinstance(content_free, Mapping) or not isinstance(content_free, Sequence):
        raise ConfigError(
            "content_free must be a list of {label: log-probability} mappings, one per "
            f"content-free input; got {type(content_free).__name__}"
        )
    if not content_free:
        raise ConfigError(
            "content_free is empty; give the label log-probabilities of at least one "
            "content-free input"
        )
    rows = [_check_row(f"content_free[{i}]", row) for i, row in enumerate(content_free)]
    labels = list(rows[0])
    for i, row in enumerate(rows[1:], start=1):
        if list(row) != labels:
            raise ConfigError(
                f"content_free[{i}] has labels {list(row)}; content_free[0] has {labels}; every "
                "row must list the same labels in the same order"
            )
    distributions = [label_distribution(row) for row in rows]
    return {label: sum(d[label] for d in distributions) / len(rows) for label in labels}


def _check_prior(prior: Mapping[str, float]) -> Mapping[str, float]:
    if not isinstance(prior, Mapping) or not prior:
        raise ConfigError(
            f"prior must be a non-empty mapping from label to probability; got {prior!r}"
        )
    for label, value in prior.items():
        bad_type = isinstance(value, bool) or not isinstance(value, (int, float))
        if bad_type or math.isnan(value) or not 0.0 <= value <= 1.0 + 1e-9:
            raise ConfigError(f"prior[{label!r}] must be a probability in [0, 1]; got {value!r}")
    return prior


def apply_calibration(
    logprobs: Mapping[str, float], prior: Mapping[str, float]
) -> dict[str, float]:
    """Calibrated label log-probabilities of one example: log(p(y|x) / p_cf(y)), renormalised.

    *logprobs* are the example's raw label log-probabilities; *prior* is ``p_cf``
    from :func:`content_free_prior` (probabilities, same labels).
    """
    row = _check_row("logprobs", logprobs)
    _check_prior(prior)
    if set(row) != set(prior):
        raise ConfigError(
            f"logprobs has labels {list(row)} but the content-free prior has {list(prior)}; "
            "both must come from the same task and prompt"
        )
    normalised = _normalised_logs(row)
    shifted = {
        label: value - (math.log(prior[label]) if prior[label] > 0 else _LOG_FLOOR)
        for label, value in normalised.items()
    }
    return _normalised_logs(shifted)


def calibrate_label_logprobs(
    raw: Sequence[Mapping[str, float]], content_free: Sequence[Mapping[str, float]]
) -> list[dict[str, float]]:
    """Calibrate every row of *raw* with the prior of the *content_free* rows.

    *raw*: one ``{label: log-probability}`` per example, as the scorer returns
    them.  *content_free*: the same for each content-free input of the same
    prompt.  Returns calibrated, normalised label log-probabilities per example,
    labels in each raw row's order.  :func:`predict_label` of a row is its
    calibrated prediction.
    """
    if isinstance(raw, Mapping) or not isinstance(raw, Sequence):
        raise ConfigError(
            "raw must be a list of {label: log-probability} mappings, one per example; "
            f"got {type(raw).__name__}"
        )
    prior = content_free_prior(content_free)
    out = []
    for i, row in enumerate(raw):
        _check_row(f"raw[{i}]", row)
        out.append(apply_calibration(row, prior))
    return out


def predict_label(logprobs: Mapping[str, float]) -> str:
    """The label with the highest score; on a tie, the one listed first (as the scorer does)."""
    row = _check_row("logprobs", logprobs)
    labels = list(row)
    best = labels[0]
    for label in labels[1:]:
        if row[label] > row[best]:
            best = label
    return best


def check_content_free_inputs(value: object) -> tuple[str, ...]:
    """Validate a list of content-free strings; ConfigError naming ``content_free_inputs``."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(
            "content_free_inputs must be a list of strings, e.g. ['N/A', '', '[MASK]']; "
            f"got {value!r}"
        )
    items = tuple(value)
    if not items:
        raise ConfigError(
            "content_free_inputs is empty; give at least one string, e.g. ['N/A', '', '[MASK]']"
        )
    bad = [item for item in items if not isinstance(item, str)]
    if bad:
        raise ConfigError(f"content_free_inputs must hold strings only; got {bad[0]!r}")
    return items

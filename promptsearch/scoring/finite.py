"""Guards against non-finite model output: a NaN never turns into a score.

A model that overflows (float16 activations, broken weights) gives NaN logits; the
argmax over NaN label log-probabilities still names *some* label, so without a check
such a prompt would get an accuracy that means nothing.  The scorer and the study
both call :func:`check_finite_results` and turn the problem into a
:class:`~promptsearch.errors.ModelError` that names the example and the prompt; the
study records it as the reason of a failed trial and goes on.

``-inf`` label log-probabilities are allowed (a word the model gives no mass at
all, or float16 underflow); NaN never is, nor a non-finite per-example score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from promptsearch.errors import ModelError

__all__ = ["check_finite_results", "check_finite_value"]

_HINT = (
    "the model produced NaN (often a float16 overflow: try dtype='float32' or 'bfloat16', "
    "or check the model's weights)"
)


def _as_float(value: Any) -> float | None:
    """*value* as a float, or ``None`` if it is not a real number."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _is_nan(value: Any) -> bool:
    number = _as_float(value)
    return number is None or math.isnan(number)


def _is_finite(value: Any) -> bool:
    number = _as_float(value)
    return number is not None and math.isfinite(number)


def _clip(text: str, width: int = 120) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _nan_keys(values: Mapping[str, Any] | None) -> list[str]:
    if not values:
        return []
    return [str(key) for key, value in values.items() if _is_nan(value)]


def check_finite_results(
    results: Iterable[Any], *, prompt: str, model: str, infinite_scores: bool = False
) -> None:
    """Raise :class:`ModelError` if any per-example result holds NaN or a non-finite score.

    *results* are :class:`~promptsearch.scoring.scorer.ExampleResult`-like objects (with
    ``example_id``, ``score``, ``label_logprobs``, ``gold_logprob`` and optionally
    ``calibrated_logprobs``); *prompt* and *model* name what was scored, for the message.
    ``infinite_scores=True`` lets a score of ±inf through (a gold log-likelihood of
    ``-inf`` in a score report); NaN never passes.
    """
    prompt = _clip(prompt)
    for result in results:
        where = f"example {getattr(result, 'example_id', '?')!r} under prompt {prompt!r}"
        bad = [f"label {k}" for k in _nan_keys(getattr(result, "label_logprobs", None))]
        calibrated = _nan_keys(getattr(result, "calibrated_logprobs", None))
        bad += [f"calibrated label {k}" for k in calibrated]
        gold = getattr(result, "gold_logprob", None)
        if gold is not None and _is_nan(gold):
            bad.append("the gold answer")
        if bad:
            raise ModelError(
                f"model {model!r} gave NaN log-probabilities ({', '.join(bad)}) for {where}; "
                f"{_HINT}"
            )
        score = getattr(result, "score", None)
        if _is_nan(score) or not (infinite_scores or _is_finite(score)):
            raise ModelError(
                f"model {model!r} gave a non-finite score ({score!r}) for {where}; a trial "
                "score must be a finite number"
            )


def check_finite_value(value: Any, *, prompt: str, model: str) -> float:
    """*value* as a float if it is a finite metric value, else :class:`ModelError`."""
    number = _as_float(value)
    if number is None or not math.isfinite(number):
        raise ModelError(
            f"prompt {_clip(prompt)!r} got a non-finite metric value ({value!r}) from model "
            f"{model!r}; {_HINT}"
        )
    return number

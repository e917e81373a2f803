"""What the study loop needs around it: the scorer protocol, the example cache key,
and small helpers for what it stores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from promptsearch.hashing import content_hash
from promptsearch.prompt import Prompt
from promptsearch.task import Example, Task

__all__ = [
    "ModelLike",
    "Scored",
    "ScorerLike",
    "check_same_chat_template",
    "check_same_setting",
    "evaluation_records",
    "example_key",
    "finite_or_none",
    "jsonable",
    "versions",
]


class ModelLike(Protocol):
    name: str
    fingerprint: str


class ScorerLike(Protocol):
    """What the study needs of a scorer (see :class:`promptsearch.scoring.scorer.Scorer`)."""

    model: Any

    @property
    def fingerprint(self) -> str: ...

    def score(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> Any: ...


def example_key(example: Example) -> str:
    """Content key of an example for the evaluation cache (inputs and answers)."""
    return content_hash(
        [sorted(example.inputs.items()), example.target, list(example.alternatives)]
    )


def finite_or_none(value: float) -> float | None:
    """JSON has no infinities: a log-probability of -inf (fp16 underflow) is stored as null."""
    return value if math.isfinite(value) else None


def jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Prompt):
        return value.to_dict()
    return repr(value)


@dataclass(frozen=True)
class Scored:
    """A prompt's dev score as the study computed it: the score, on how many examples,
    the forward passes spent now, the new per-example records (stored with the trial),
    whether racing stopped it early, and the tie-break statistic."""

    score: float | None
    n_examples: int
    forward_passes: int
    records: list[Any]
    pruned: bool
    tiebreak: float | None


def evaluation_records(examples: Sequence[Example], results: Sequence[Any]) -> list[Any]:
    """The cache records of *results* (scorer :class:`ExampleResult` rows) of *examples*:
    prediction, correctness, score, and the label log-probabilities (raw, and
    calibrated when the scorer calibrates) or the gold log-likelihood."""
    from promptsearch.storage import EvaluationRecord

    records = []
    for example, result in zip(examples, results, strict=True):
        detail: dict[str, Any] = {}
        for name in ("label_logprobs", "calibrated_logprobs"):
            values = getattr(result, name, None)
            if values is not None:
                detail[name] = {label: finite_or_none(v) for label, v in values.items()}
        if result.gold_logprob is not None:
            detail["gold_logprob"] = finite_or_none(result.gold_logprob)
        if result.truncated:
            detail["truncated"] = True
        records.append(
            EvaluationRecord(
                example_key=example_key(example),
                prediction=result.prediction,
                correct=bool(result.correct),
                score=float(result.score),
                detail=detail or None,
            )
        )
    return records


def check_same_setting(stored: Any, key: str, given: Mapping[str, Any] | None) -> None:
    """Refuse to resume the *stored* study (a ``StudyRecord`` or ``None``) with other
    *key* settings (or the feature turned on or off) than it was run with: its trials
    would not mean the same."""
    if stored is None:
        return
    before = stored.config.get(key)
    if before != (None if given is None else dict(given)):
        from promptsearch.errors import StudyConflictError

        raise StudyConflictError(
            f"study {stored.name!r} already exists with {key} {before or 'off'}; given "
            f"{given or 'off'}; resume it with the same {key} settings, or pick another "
            "--study name"
        )


def check_same_chat_template(stored: Any, given: Mapping[str, Any] | None) -> None:
    """Refuse to resume the *stored* study (a ``StudyRecord`` or ``None``) with prompts
    rendered otherwise (as chat turns or as plain text) than it was run with, in one
    line that says which ``--chat-template`` to rerun with."""
    if stored is None:
        return
    before = stored.config.get("chat_template")
    if before == (None if given is None else dict(given)):
        return
    from promptsearch.errors import StudyConflictError

    if before and given:
        raise StudyConflictError(
            f"study {stored.name!r} was run with other chat turns ({before!r}) than the "
            "model's chat template gives now; rerun with the model it was run with, or pick "
            "another --study name"
        )
    was, now = ("on", "off") if before else ("off", "on")
    what = "prompts scored as chat turns" if before else "plain-text prompts"
    raise StudyConflictError(
        f"study {stored.name!r} was run with --chat-template {was} ({what}); this run has "
        f"it {now}; rerun with --chat-template {was} (chat_template={was!r} in Python), or "
        "pick another --study name"
    )


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("promptsearch", "torch", "transformers"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "absent"
    return out

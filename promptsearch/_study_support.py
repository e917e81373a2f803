"""What the study loop needs around it: the scorer protocol, the example cache key,
and small helpers for what it stores and prints."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from promptsearch.hashing import content_hash
from promptsearch.prompt import Prompt
from promptsearch.task import Example, Task

__all__ = [
    "ModelLike",
    "ScorerLike",
    "example_key",
    "finite_or_none",
    "jsonable",
    "versions",
    "warn",
]


class ModelLike(Protocol):
    name: str
    fingerprint: str


class ScorerLike(Protocol):
    """What the study needs of a scorer (see :class:`promptsearch.scorer.Scorer`)."""

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


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


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


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("promptsearch", "torch", "transformers"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "absent"
    return out

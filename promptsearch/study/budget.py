"""The budget of a study: prompt evaluations, forward passes, wall-clock seconds, and
what is left of it."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptsearch.errors import ConfigError
from promptsearch.searchers.base import RemainingBudget
from promptsearch.validation import check_float, check_int

__all__ = ["Budget", "limit_reached"]


@dataclass(frozen=True)
class Budget:
    """How much a study may spend: prompt evaluations, forward passes, wall seconds.

    Any combination; the study stops at the first limit reached.  At least one is
    needed, since some searchers never run out of ideas.
    """

    evaluations: int | None = None
    forward_passes: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.evaluations is not None:
            check_int(self.evaluations, "evaluations", minimum=1, owner="budget")
        if self.forward_passes is not None:
            check_int(self.forward_passes, "forward_passes", minimum=1, owner="budget")
        if self.seconds is not None:
            check_float(self.seconds, "seconds", minimum=0, exclusive_minimum=True, owner="budget")
            if not math.isfinite(self.seconds):
                raise ConfigError(
                    f"budget: seconds must be a finite number; got {self.seconds!r} "
                    "(None means no time limit)"
                )
        if self.evaluations is None and self.forward_passes is None and self.seconds is None:
            raise ConfigError(
                "budget: give at least one of evaluations=, forward_passes= or seconds= "
                "(e.g. Budget(evaluations=30))"
            )

    @classmethod
    def coerce(cls, value: Budget | int | Mapping[str, Any]) -> Budget:
        """A budget from a Budget, an int (evaluations) or a mapping of its fields."""
        if isinstance(value, Budget):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(evaluations=value)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"evaluations", "forward_passes", "seconds"})
            if unknown:
                raise ConfigError(
                    f"budget has unknown key(s) {unknown}; use evaluations, forward_passes, seconds"
                )
            return cls(**value)
        raise ConfigError(
            f"budget must be a Budget, an int (number of evaluations) or a mapping; got {value!r}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "evaluations": self.evaluations,
            "forward_passes": self.forward_passes,
            "seconds": self.seconds,
        }

    def left(self, evaluations: int, forward_passes: int, started: float) -> RemainingBudget:
        """What is left after *evaluations* trials that spent *forward_passes*, with the
        clock started at *started* (:func:`time.monotonic`)."""
        return RemainingBudget(
            evaluations=None if self.evaluations is None else self.evaluations - evaluations,
            forward_passes=None
            if self.forward_passes is None
            else self.forward_passes - forward_passes,
            seconds=None if self.seconds is None else self.seconds - (time.monotonic() - started),
        )


def limit_reached(left: RemainingBudget) -> str | None:
    """Which limit *left* has reached: "seconds", "budget" (evaluations or forward
    passes), or None."""
    if left.seconds is not None and left.seconds <= 0:
        return "seconds"
    if any(v is not None and v <= 0 for v in (left.evaluations, left.forward_passes)):
        return "budget"
    return None

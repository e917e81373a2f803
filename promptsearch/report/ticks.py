"""Axis ticks of the report's charts (:mod:`promptsearch.report.svg`): round values and
their labels."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

__all__ = ["Format", "nice_ticks", "tick_format"]

Format = Callable[[float], str]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [*low*, *high*], about *count* of them."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks, value = [], first
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def tick_format(ticks: Sequence[float]) -> Format:
    """Labels for *ticks*: as many decimals as their step needs."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    digits = max(0, min(4, -math.floor(math.log10(step) + 1e-9))) if step > 0 else 0
    if digits == 0 and max((abs(t) for t in ticks), default=0) >= 10_000:
        return lambda v: f"{v:,.0f}"
    return lambda v: f"{v:.{digits}f}"

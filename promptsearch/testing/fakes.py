"""Stand-ins for a model's and a scorer's results, for fast tests of the study loop.

A fake scorer (each test writes its own ``score`` rule) returns a :class:`FakeReport`
of :class:`FakeResult` rows and carries a :class:`FakeModel`: the fields the study
reads of a real :class:`~promptsearch.scoring.scorer.ScoreReport`, nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FakeModel", "FakeReport", "FakeResult"]


@dataclass
class FakeModel:
    name: str = "fake-model"
    fingerprint: str = "f" * 64


@dataclass
class FakeResult:
    example_id: str
    prediction: str
    correct: bool
    score: float
    label_logprobs: dict[str, float] | None = None
    gold_logprob: float | None = None
    truncated: bool = False


@dataclass
class FakeReport:
    results: list[FakeResult]
    forward_passes: int

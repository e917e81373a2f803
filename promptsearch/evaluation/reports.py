"""What ``promptsearch final`` hands back: :class:`FinalReport` (one row per prompt
scored on test, :class:`HeldOutPrompt`, and the study's pick), and
:func:`summarize_studies`, the mean ± std over several studies (:class:`SeedSummary`).

The evaluation that fills them is :mod:`promptsearch.evaluation.heldout`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from promptsearch.errors import ConfigError
from promptsearch.evaluation import stats
from promptsearch.evaluation.pick import HeldOutPick
from promptsearch.prompt import Prompt

if TYPE_CHECKING:
    pass

__all__ = ["FinalReport", "HeldOutPrompt", "SeedSummary", "summarize_studies"]


@dataclass(frozen=True)
class HeldOutPrompt:
    """One prompt of the held-out evaluation.

    ``dev_rank``/``dev_score``: its place and score on the study's dev leaderboard
    (rank ``None`` for a seed prompt the study never scored; its dev score was then
    computed for the baseline choice).  ``in_top``: among the *top* prompts by dev.
    ``test``: the test score with its bootstrap interval.  ``comparison``: the paired
    test against the baseline (``None`` for the baseline itself, or with no seeds).
    """

    content_hash: str
    prompt: Prompt
    dev_rank: int | None
    dev_score: float | None
    in_top: bool
    is_seed: bool
    is_baseline: bool
    test: stats.ConfidenceInterval
    comparison: stats.PairedTest | None

    @property
    def role(self) -> str:
        """``top1`` ..., ``seed``, ``baseline`` (the best seed), joined by ``+``."""
        parts = [f"top{self.dev_rank}"] if self.in_top else []
        if self.is_baseline:
            parts.append("baseline")
        elif self.is_seed:
            parts.append("seed")
        return "+".join(parts)


@dataclass(frozen=True)
class FinalReport:
    """The held-out evaluation of one study.

    ``rows``: the top prompts by dev rank, then the other seed prompts.
    ``forward_passes``: spent by this call (0 when every score was cached).
    """

    study: str
    task: str
    metric: str
    split: str
    n_examples: int
    n_available: int
    rows: tuple[HeldOutPrompt, ...]
    baseline_hash: str | None
    paired_test: str | None
    confidence: float
    n_resamples: int
    seed: int
    forward_passes: int
    pick: HeldOutPick | None = None
    """What the study hands back (see :mod:`promptsearch.study.selection`), when it made a pick."""

    @property
    def baseline(self) -> HeldOutPrompt | None:
        """The best seed prompt by dev score."""
        return next((r for r in self.rows if r.is_baseline), None)

    @property
    def top1(self) -> HeldOutPrompt | None:
        """The prompt ranked first on dev."""
        return next((r for r in self.rows if r.in_top and r.dev_rank == 1), None)


@dataclass(frozen=True)
class SeedSummary:
    """Mean ± std over several studies (e.g. one per k-shot seed) of the test score
    of the best seed prompt, of the top-1 prompt by dev, and of their difference."""

    studies: tuple[str, ...]
    metric: str
    best_seed: stats.MeanStd | None
    top1: stats.MeanStd | None
    delta: stats.MeanStd | None


def summarize_studies(reports: Sequence[FinalReport], *, ddof: int = 1) -> SeedSummary:
    """Mean ± std over *reports* (one per study, e.g. per k-shot seed) of the best seed
    prompt's and the top-1 prompt's test score, and of top-1 minus best seed."""
    if not reports:
        raise ConfigError("reports is empty; give the reports of one or more studies")
    metrics = {r.metric for r in reports}
    if len(metrics) > 1:
        raise ConfigError(f"the studies use different metrics {sorted(metrics)}; summarize apart")
    seeds = [r.baseline.test.estimate for r in reports if r.baseline is not None]
    tops = [r.top1.test.estimate for r in reports if r.top1 is not None]
    deltas = [
        r.top1.test.estimate - r.baseline.test.estimate
        for r in reports
        if r.top1 is not None and r.baseline is not None
    ]
    return SeedSummary(
        studies=tuple(r.study for r in reports),
        metric=metrics.pop(),
        best_seed=stats.mean_std(seeds, ddof=ddof) if seeds else None,
        top1=stats.mean_std(tops, ddof=ddof) if tops else None,
        delta=stats.mean_std(deltas, ddof=ddof) if deltas else None,
    )

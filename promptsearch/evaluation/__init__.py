"""Held-out evaluation of finished studies (``promptsearch final``): the study's prompts
and its pick scored once on test, with bootstrap intervals, paired tests and
summaries over task seeds (:mod:`~promptsearch.evaluation.stats`).
"""

from __future__ import annotations

from promptsearch.evaluation.heldout import (
    PAIRED_TEST_CHOICES,
    evaluate_held_out,
    held_out_sample,
    score_with_cache,
)
from promptsearch.evaluation.reports import (
    FinalReport,
    HeldOutPrompt,
    SeedSummary,
    summarize_studies,
)

__all__ = [
    "PAIRED_TEST_CHOICES",
    "FinalReport",
    "HeldOutPrompt",
    "SeedSummary",
    "evaluate_held_out",
    "held_out_sample",
    "score_with_cache",
    "summarize_studies",
]

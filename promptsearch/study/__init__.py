"""The study: the search loop (:mod:`~promptsearch.study.loop`), its budget, racing,
the final pick (selection rules, confirmation, ensembles), what it hands back, searcher
state persistence, and many workers on one stored study.
"""

from __future__ import annotations

from promptsearch.study.budget import Budget
from promptsearch.study.loop import Study, example_key
from promptsearch.study.racing import Racing
from promptsearch.study.results import BestPrompt, StudyResult

__all__ = ["BestPrompt", "Budget", "Racing", "Study", "StudyResult", "example_key"]

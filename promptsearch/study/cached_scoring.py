"""Scoring prompts on held-out examples through the study's per-example cache.

Used by :mod:`promptsearch.evaluation.heldout`; the records have the same form as those the
study writes for dev, so the cache serves both.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from promptsearch.prompt import Prompt
from promptsearch.scoring.finite import check_finite_results
from promptsearch.task import Example, Task

if TYPE_CHECKING:
    from promptsearch.storage import EvaluationRecord, Storage
    from promptsearch.study.loop import ScorerLike

__all__ = ["held_out_sample", "score_with_cache"]


def score_with_cache(
    storage: Storage,
    scorer: ScorerLike,
    task: Task,
    prompt: Prompt,
    content_hash: str,
    split: str,
    examples: Sequence[Example],
) -> tuple[list[EvaluationRecord], int]:
    """Per-example results of *prompt* on *examples*, in order, and the forward passes
    spent: cached results (same scorer, prompt, split and example) are reused, the
    rest are scored and added to the cache."""
    from promptsearch.study.support import evaluation_records, example_key

    keys = [example_key(e) for e in examples]
    fingerprint = scorer.fingerprint
    cached = storage.cached_evaluations(fingerprint, content_hash, split, keys)
    missing = [(e, k) for e, k in zip(examples, keys, strict=True) if k not in cached]
    spent = 0
    if missing:
        report = scorer.score(prompt, [e for e, _ in missing], task)
        spent = int(report.forward_passes)
        model_name = str(getattr(scorer.model, "name", "?"))
        check_finite_results(report.results, prompt=prompt.describe(), model=model_name)
        new = evaluation_records([e for e, _ in missing], report.results)
        storage.add_evaluations(fingerprint, content_hash, split, new)
        cached.update({r.example_key: r for r in new})
    return [cached[k] for k in keys], spent


def held_out_sample(task: Task, limit: int | None, seed: int) -> tuple[list[Example], int]:
    """The test examples to score (a seeded random sample of *limit* when the split is
    larger, in split order) and the size of the whole split."""
    examples = list(task.split("test"))
    if limit is not None and limit < len(examples):
        chosen = sorted(random.Random(seed).sample(range(len(examples)), limit))
        return [examples[i] for i in chosen], len(examples)
    return examples, len(examples)

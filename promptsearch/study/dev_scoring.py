"""How a study scores a prompt on dev: through the per-example cache, and by racing
when the study races (:mod:`promptsearch.study.racing`).

Per-example scores are cached by (scorer fingerprint, prompt hash, split, example),
so a prompt is never scored twice on the same examples by the same model, across
searchers, studies, workers and crashes.  The new records come back with the score
and are stored together with the finished trial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from promptsearch.metrics import aggregate
from promptsearch.prompt import Prompt
from promptsearch.scoring.finite import check_finite_results, check_finite_value
from promptsearch.study.selection import tiebreak
from promptsearch.study.support import Scored, ScorerLike, evaluation_records, example_key
from promptsearch.task import Example, Task

if TYPE_CHECKING:
    from promptsearch.storage import EvaluationRecord, Storage
    from promptsearch.study.racing import Race

__all__ = ["DevScoring"]

Records = tuple[dict[str, "EvaluationRecord"], list["EvaluationRecord"], int]


class DevScoring:
    """Scores prompts on the search part of *task*'s dev (*search_task*: all of dev
    unless the study holds some back to confirm its pick), racing with *race*."""

    def __init__(
        self,
        task: Task,
        search_task: Task,
        scorer: ScorerLike,
        storage: Storage,
        race: Race | None,
    ) -> None:
        self.task = task
        self.search_task = search_task
        self.scorer = scorer
        self.storage = storage
        self.race = race

    def score(self, prompt: Prompt, key: str) -> Scored:
        """Dev score of *prompt* (content hash *key*), using the per-example cache.

        NaN from the model raises :class:`~promptsearch.errors.ModelError`.
        """
        model_name = str(getattr(self.scorer.model, "name", "?"))
        examples = self.search_task.dev
        keys = [example_key(e) for e in examples]
        if self.race is not None:
            seen: dict[str, EvaluationRecord] = {}

            def evaluate(part: Sequence[Example], known: Mapping[str, EvaluationRecord]) -> Records:
                out = self._records(prompt, key, part, known)
                seen.update(out[0])
                return out

            race = self.race.run(key, evaluate)
            value = check_finite_value(race.score, prompt=prompt.describe(), model=model_name)
            tie = None if race.pruned else self._tiebreak(examples, seen, keys)
            return Scored(
                value, race.n_examples, race.forward_passes, race.records, race.pruned, tie
            )
        cached, records, spent = self._records(prompt, key, examples, {})
        ordered = [cached[k] for k in keys]
        value = aggregate(
            self.task.metric,
            [r.score for r in ordered],
            [r.prediction for r in ordered],
            [e.target for e in examples],
        )
        value = check_finite_value(value, prompt=prompt.describe(), model=model_name)
        tie = self._tiebreak(examples, cached, keys)
        return Scored(value, len(examples), spent, records, False, tie)

    def _tiebreak(
        self,
        examples: Sequence[Example],
        records: Mapping[str, EvaluationRecord],
        keys: Sequence[str],
    ) -> float | None:
        return tiebreak(self.task.kind, self.task.labels, examples, records, keys)

    def _records(
        self,
        prompt: Prompt,
        key: str,
        examples: Sequence[Example],
        known: Mapping[str, EvaluationRecord],
    ) -> Records:
        """Per-example results of *prompt* on *examples*, by example key, from *known*,
        the cache or the scorer; also the new records and the forward passes spent."""
        keys = [example_key(e) for e in examples]
        fingerprint = self.scorer.fingerprint
        wanted = [k for k in keys if k not in known]
        cached = dict(known)
        if wanted:
            cached.update(self.storage.cached_evaluations(fingerprint, key, "dev", wanted))
        missing = [e for e, k in zip(examples, keys, strict=True) if k not in cached]
        spent = 0
        records: list[EvaluationRecord] = []
        model_name = str(getattr(self.scorer.model, "name", "?"))
        if missing:
            report = self.scorer.score(prompt, missing, self.task)
            spent = int(report.forward_passes)
            check_finite_results(report.results, prompt=prompt.describe(), model=model_name)
            records = evaluation_records(missing, report.results)
            cached.update({r.example_key: r for r in records})
        return cached, records, spent

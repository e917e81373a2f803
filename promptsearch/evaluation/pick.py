"""The study's pick in ``promptsearch final``: a prompt or an ensemble, scored on test
from the members' cached per-example results, with its interval and its paired test
against the baseline.

Used by :mod:`promptsearch.evaluation.heldout`; the pick itself comes from the selection record
stored with the study (see :mod:`promptsearch.study.selection`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptsearch.evaluation import stats
from promptsearch.prompt import Prompt
from promptsearch.study.cached_scoring import score_with_cache
from promptsearch.study.ensemble import PromptEnsemble, stored_vote, vote_records
from promptsearch.study.support import example_key
from promptsearch.task import Example, Task

if TYPE_CHECKING:
    from promptsearch.storage import EvaluationRecord, Storage
    from promptsearch.study.loop import ScorerLike

__all__ = ["HeldOutPick", "held_out_pick"]

Compare = Callable[[Sequence["EvaluationRecord"], Sequence["EvaluationRecord"]], stats.PairedTest]


@dataclass(frozen=True)
class HeldOutPick:
    """What the study hands back, on test.

    ``dev_score``: on the search part of dev; ``confirm_score``: on the held-back
    part (the estimate the search never tuned to); ``replaced_seed``: whether it beat
    the best seed prompt with evidence there; ``comparison``: the paired test on test
    against the baseline of ``final`` (``None`` when it is the baseline).
    """

    content_hash: str
    kind: str
    text: str
    dev_score: float
    confirm_score: float
    replaced_seed: bool
    test: stats.ConfidenceInterval
    comparison: stats.PairedTest | None

    def to_dict(self) -> dict[str, Any]:
        comparison = self.comparison
        return {
            "content_hash": self.content_hash,
            "kind": self.kind,
            "text": self.text,
            "dev_score": self.dev_score,
            "confirm_score": self.confirm_score,
            "replaced_seed": self.replaced_seed,
            "test_score": self.test.estimate,
            "test_ci_low": self.test.low,
            "test_ci_high": self.test.high,
            "n_examples": self.test.n_examples,
            "delta": None if comparison is None else comparison.delta,
            "p_value": None if comparison is None else comparison.p_value,
            "test_name": None if comparison is None else comparison.test,
        }


def held_out_pick(
    storage: Storage,
    scorer: ScorerLike,
    task: Task,
    record: Mapping[str, Any],
    examples: Sequence[Example],
    outcomes: Mapping[str, list[EvaluationRecord]],
    baseline: tuple[str, Sequence[EvaluationRecord]] | None,
    compare: Compare,
    *,
    confidence: float,
    n_resamples: int,
    seed: int,
) -> tuple[HeldOutPick, int]:
    """The pick of *record* on *examples* (test records already scored in
    *outcomes* are reused, the rest come from the cache or the scorer), and the
    forward passes spent."""
    from promptsearch.storage import EvaluationRecord

    key = record["pick"]
    spent = 0

    def records_of(content_hash: str, prompt: Prompt) -> list[EvaluationRecord]:
        nonlocal spent
        if content_hash in outcomes:
            return outcomes[content_hash]
        found, passes = score_with_cache(
            storage, scorer, task, prompt, content_hash, "test", examples
        )
        spent += passes
        return found

    stored = stored_vote(record)
    if stored is not None:
        ensemble = PromptEnsemble.from_dict(stored["body"])
        members = [
            records_of(h, p) for h, p in zip(stored["members"], ensemble.members, strict=True)
        ]
        keys = [example_key(e) for e in examples]
        voted = vote_records(
            task,
            examples,
            keys,
            [{r.example_key: r for r in m} for m in members],
            ensemble.priors,
        )
        mine = [
            EvaluationRecord(k, prediction, score == 1.0, score)
            for k, (prediction, score, _) in zip(keys, voted, strict=True)
        ]
        text, kind = ensemble.describe(), str(record["pick_kind"])
    else:
        prompt = Prompt.from_dict(record["prompts"][key])
        mine = records_of(key, prompt)
        text, kind = prompt.describe(), "prompt"
    interval = stats.bootstrap_ci(
        task.metric,
        [r.score for r in mine],
        predictions=[r.prediction for r in mine],
        targets=[e.target for e in examples],
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
    )
    comparison = None
    if baseline is not None and baseline[0] != key:
        comparison = compare(mine, baseline[1])
    row = next(r for r in record["candidates"] if r["key"] == key)
    pick = HeldOutPick(
        content_hash=key,
        kind=kind,
        text=text,
        dev_score=float(row["search_score"]),
        confirm_score=float(row["confirm_score"]),
        replaced_seed=bool(record["replaced_incumbent"]),
        test=interval,
        comparison=comparison,
    )
    return pick, spent

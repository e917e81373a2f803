"""Held-out evaluation of a finished study (``promptsearch final``).

The search picks prompts on the dev split; this module scores them once on the
test split, where nothing was picked (what it hands back is
:mod:`promptsearch.evaluation.reports`):

1. take the study's *top* prompts by dev score, plus the task's seed prompts (what
   the ``manual`` searcher proposes).  The best seed prompt **by dev score** is the
   baseline; seed prompts the study never scored are scored on dev first, so the
   baseline is always chosen on dev, never on test;
2. score each prompt on the test split (optionally a seeded sample of it) with the
   study's scorer, through the same per-example cache the study uses
   (``split="test"``), so a rerun costs no forward pass;
3. give each a percentile bootstrap interval and a paired test against the
   baseline (exact McNemar for right/wrong metrics, else a paired bootstrap);
4. store the results in the study's ``test_results``, replacing earlier ones.

Nothing here reaches a searcher: no searcher is built, and the study's trials and
searcher states are left as they are.  Test scores live only in ``test_results``
and in the evaluation cache under ``split="test"``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from promptsearch.errors import ConfigError, DataError, StorageError
from promptsearch.evaluation import stats
from promptsearch.evaluation.pick import held_out_pick
from promptsearch.evaluation.reports import FinalReport, HeldOutPrompt
from promptsearch.metrics import aggregate
from promptsearch.prompt import Prompt
from promptsearch.study.cached_scoring import held_out_sample, score_with_cache
from promptsearch.task import Example, Task
from promptsearch.validation import check_choice, check_float, check_int

if TYPE_CHECKING:
    from promptsearch.storage import EvaluationRecord, Storage
    from promptsearch.study.loop import ScorerLike

__all__ = [
    "PAIRED_TEST_CHOICES",
    "evaluate_held_out",
    "held_out_sample",
    "score_with_cache",
]

logger = logging.getLogger(__name__)

PAIRED_TEST_CHOICES: Final = ("auto", *stats.PAIRED_TESTS)
_BINARY_METRICS: Final = frozenset({"accuracy", "exact_match", "contains", "precision_at_1"})


@dataclass
class _Candidate:
    content_hash: str
    prompt: Prompt
    dev_rank: int | None
    dev_score: float | None
    in_top: bool
    is_seed: bool


# -- the evaluation ---------------------------------------------------------------------


def _candidates(
    storage: Storage, study: str, task: Task, top: int
) -> tuple[list[_Candidate], list[_Candidate]]:
    """The top prompts by dev and the seed prompts (the seeds may overlap the top)."""
    board = storage.leaderboard(study)
    chosen = [
        _Candidate(
            row.content_hash, Prompt.from_dict(row.body), row.rank, row.dev_score, True, False
        )
        for row in board[:top]
    ]
    by_hash = {c.content_hash: c for c in chosen}
    ranked = {row.content_hash: row for row in board}
    seeds: list[_Candidate] = []
    for index, seed_prompt in enumerate(task.seed_prompts):
        try:
            resolved = seed_prompt.resolve(task)
        except ConfigError as error:
            _warn(f"seed prompt {index} does not fit task {task.name!r}, left out: {error}")
            continue
        key = resolved.content_hash
        if key in by_hash:
            by_hash[key].is_seed = True
            if by_hash[key] not in seeds:
                seeds.append(by_hash[key])
            continue
        if any(s.content_hash == key for s in seeds):
            continue
        row = ranked.get(key)
        candidate = _Candidate(
            key,
            resolved,
            None if row is None else row.rank,
            None if row is None else row.dev_score,
            False,
            True,
        )
        seeds.append(candidate)
        chosen.append(candidate)
    return chosen, seeds


def _choose_test(requested: str, metric: str, scores: Sequence[Sequence[float]]) -> str:
    binary = metric in _BINARY_METRICS and all(s in (0.0, 1.0) for row in scores for s in row)
    if requested == "auto":
        return "mcnemar" if binary else "paired-bootstrap"
    if requested.startswith("mcnemar") and not binary:
        raise ConfigError(
            f"paired_test={requested!r} needs right/wrong outcomes, but metric {metric!r} gives "
            "graded or corpus-level scores here; use 'paired-bootstrap' or 'auto'"
        )
    return requested


def evaluate_held_out(
    storage: Storage,
    study: str,
    task: Task,
    scorer: ScorerLike,
    *,
    top: int = 5,
    test_limit: int | None = None,
    seed: int = 0,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    paired_test: str = "auto",
    progress: bool = False,
) -> FinalReport:
    """Score the study's *top* prompts by dev and the task's seed prompts on the test
    split, compare each with the best seed prompt by dev, store and return the results.

    *task* and *scorer* must be the study's own (same data hash, same scorer
    fingerprint).  *test_limit* scores a seeded random sample (seed *seed*) of that
    many test examples; *seed* also seeds the bootstrap.
    """
    top = check_int(top, "top", minimum=1)
    if test_limit is not None:
        test_limit = check_int(test_limit, "test_limit", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    n_resamples = check_int(n_resamples, "n_resamples", minimum=1)
    confidence = check_float(confidence, "confidence", minimum=0.0, exclusive_minimum=True)
    if confidence >= 1.0:
        raise ConfigError(f"confidence must be below 1 (e.g. 0.95); got {confidence!r}")
    check_choice(paired_test, "paired_test", PAIRED_TEST_CHOICES)
    record = storage.get_study(study)
    if record is None:
        raise StorageError(f"no study named {study!r} in {storage.url}")
    if task.spec()["data_hash"] != record.task_hash:
        raise ConfigError(
            f"task {task.name!r} holds other data than study {study!r} was run on (data hash "
            f"{task.spec()['data_hash'][:12]} vs. {record.task_hash[:12]}); give the same task "
            "(and task seed) as the run"
        )
    if scorer.fingerprint != record.scorer_fingerprint:
        raise ConfigError(
            f"the scorer differs from the one study {study!r} used (fingerprint "
            f"{scorer.fingerprint[:12]} vs. {record.scorer_fingerprint[:12]}); use the same "
            "model, dtype and scorer settings as the run"
        )
    examples, n_available = held_out_sample(task, test_limit, seed)
    chosen, seeds = _candidates(storage, study, task, top)
    if not chosen:
        raise DataError(
            f"study {study!r} has no complete trial and task {task.name!r} has no seed prompt: "
            "nothing to evaluate; run the study first"
        )
    spent = 0
    for candidate in seeds:
        if candidate.dev_score is not None:
            continue
        trial = storage.get_trial(study, candidate.content_hash)
        if trial is not None and trial.state == "failed":
            _warn(f"seed prompt {candidate.content_hash[:10]} failed in the study; left out")
            chosen.remove(candidate)
            continue
        records, passes = score_with_cache(
            storage, scorer, task, candidate.prompt, candidate.content_hash, "dev", task.dev
        )
        spent += passes
        candidate.dev_score = _value(task.metric, records, task.dev)
    seeds = [s for s in seeds if s in chosen]
    baseline: _Candidate | None = None
    for candidate in seeds:  # in task order: of equal dev scores, the first seed prompt wins
        if baseline is None or _dev(candidate) > _dev(baseline):
            baseline = candidate

    outcomes: dict[str, list[EvaluationRecord]] = {}
    for number, candidate in enumerate(chosen, start=1):
        if progress:
            logger.info(
                "%s: scoring prompt %d/%d on %d test examples",
                study,
                number,
                len(chosen),
                len(examples),
            )
        records, passes = score_with_cache(
            storage, scorer, task, candidate.prompt, candidate.content_hash, "test", examples
        )
        outcomes[candidate.content_hash] = records
        spent += passes

    metric = task.metric
    targets = [e.target for e in examples]
    test_name = None
    if baseline is not None and len(chosen) > 1:
        scores = [[r.score for r in records] for records in outcomes.values()]
        test_name = _choose_test(paired_test, metric, scores)
    rows = []
    for candidate in chosen:
        records = outcomes[candidate.content_hash]
        interval = stats.bootstrap_ci(
            metric,
            [r.score for r in records],
            predictions=[r.prediction for r in records],
            targets=targets,
            confidence=confidence,
            n_resamples=n_resamples,
            seed=seed,
        )
        comparison = None
        if baseline is not None and test_name is not None and candidate is not baseline:
            comparison = _compare(
                test_name,
                metric,
                records,
                outcomes[baseline.content_hash],
                targets,
                confidence=confidence,
                n_resamples=n_resamples,
                seed=seed,
            )
        rows.append(
            HeldOutPrompt(
                content_hash=candidate.content_hash,
                prompt=candidate.prompt,
                dev_rank=candidate.dev_rank,
                dev_score=candidate.dev_score,
                in_top=candidate.in_top,
                is_seed=candidate.is_seed,
                is_baseline=candidate is baseline,
                test=interval,
                comparison=comparison,
            )
        )
    pick = None
    if record.selection:

        def compare(
            mine: Sequence[EvaluationRecord], theirs: Sequence[EvaluationRecord]
        ) -> stats.PairedTest:
            name = test_name or _choose_test(
                paired_test, metric, [[r.score for r in mine], [r.score for r in theirs]]
            )
            return _compare(
                name,
                metric,
                mine,
                theirs,
                targets,
                confidence=confidence,
                n_resamples=n_resamples,
                seed=seed,
            )

        pick, passes = held_out_pick(
            storage,
            scorer,
            task,
            record.selection,
            examples,
            outcomes,
            None if baseline is None else (baseline.content_hash, outcomes[baseline.content_hash]),
            compare,
            confidence=confidence,
            n_resamples=n_resamples,
            seed=seed,
        )
        spent += passes
        storage.set_study_selection(study, {**record.selection, "final": pick.to_dict()})
    report = FinalReport(
        study=study,
        task=task.name,
        metric=metric,
        split="test",
        n_examples=len(examples),
        n_available=n_available,
        rows=tuple(rows),
        baseline_hash=None if baseline is None else baseline.content_hash,
        paired_test=test_name,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        forward_passes=spent,
        pick=pick,
    )
    _store(storage, report, scorer.fingerprint, top=top, test_limit=test_limit)
    return report


def _compare(
    test_name: str,
    metric: str,
    records: Sequence[EvaluationRecord],
    baseline: Sequence[EvaluationRecord],
    targets: Sequence[str],
    *,
    confidence: float,
    n_resamples: int,
    seed: int,
) -> stats.PairedTest:
    if test_name.startswith("mcnemar"):
        return stats.mcnemar(
            [r.score == 1.0 for r in records],
            [r.score == 1.0 for r in baseline],
            exact=test_name == "mcnemar",
        )
    return stats.paired_bootstrap(
        metric,
        [r.score for r in records],
        [r.score for r in baseline],
        predictions_a=[r.prediction for r in records],
        predictions_b=[r.prediction for r in baseline],
        targets=targets,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
    )


def _dev(candidate: _Candidate) -> float:
    return float("-inf") if candidate.dev_score is None else candidate.dev_score


def _value(metric: str, records: Sequence[EvaluationRecord], examples: Sequence[Example]) -> float:
    return aggregate(
        metric,
        [r.score for r in records],
        [r.prediction for r in records],
        [e.target for e in examples],
    )


def _store(
    storage: Storage, report: FinalReport, fingerprint: str, *, top: int, test_limit: int | None
) -> None:
    from promptsearch.storage import HeldOutResult

    results = []
    for row in report.rows:
        prompt = row.prompt
        storage.add_prompt(
            prompt.to_dict(),
            row.content_hash,
            prompt.describe(),
            len(prompt.head() + prompt.template),
        )
        comparison = row.comparison
        detail: dict[str, Any] = {
            "top": top,
            "in_top": row.in_top,
            "confidence": report.confidence,
            "n_resamples": report.n_resamples,
            "seed": report.seed,
            "test_limit": test_limit,
            "n_available": report.n_available,
        }
        if comparison is not None:
            detail.update(
                delta=comparison.delta,
                delta_low=comparison.low,
                delta_high=comparison.high,
                a_only=comparison.a_only,
                b_only=comparison.b_only,
            )
        results.append(
            HeldOutResult(
                content_hash=row.content_hash,
                metric=report.metric,
                value=row.test.estimate,
                n_examples=report.n_examples,
                ci_low=row.test.low,
                ci_high=row.test.high,
                dev_score=row.dev_score,
                dev_rank=row.dev_rank,
                is_seed=row.is_seed,
                is_baseline=row.is_baseline,
                baseline_hash=None if comparison is None else report.baseline_hash,
                test_name=None if comparison is None else comparison.test,
                p_value=None if comparison is None else comparison.p_value,
                scorer_fingerprint=fingerprint,
                detail=detail,
            )
        )
    storage.replace_held_out_results(report.study, results, split=report.split)


# -- several studies --------------------------------------------------------------------


def _warn(message: str) -> None:
    logger.warning("%s", message)

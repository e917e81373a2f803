"""Held-out (test) results of a study: what ``promptsearch final`` stores and reads.

Part of :class:`~promptsearch.storage.Storage`.  A study holds at most one result
per prompt and split; :meth:`HeldOutStore.replace_held_out_results` swaps a
study's whole set for a split in one transaction, so a repeated ``final`` replaces
the earlier results instead of adding to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import aliased

from promptsearch.errors import ConfigError, StorageError
from promptsearch.storage._common import (
    check_count,
    check_finite,
    check_hash,
    check_json,
    check_name,
    require_study,
)
from promptsearch.storage.database import Database
from promptsearch.storage.orm import (
    LABEL_LENGTH,
    NAME_LENGTH,
    PromptModel,
    TestResultModel,
    utcnow,
)

__all__ = ["HeldOutRecord", "HeldOutResult", "HeldOutStore"]

_Baseline = aliased(PromptModel, name="baseline_prompt")


@dataclass(frozen=True)
class HeldOutResult:
    """One prompt's held-out score, as handed to
    :meth:`HeldOutStore.replace_held_out_results`.

    ``dev_rank``/``dev_score``: the prompt's place and score on the study's dev
    leaderboard (``None`` when the study has no complete trial of it).
    ``is_seed``: it is one of the task's seed prompts; ``is_baseline``: it is the best
    seed prompt by dev score, the one the others are compared with.  ``test_name``,
    ``p_value`` and ``baseline_hash`` describe that paired comparison (``None`` for
    the baseline itself).
    """

    content_hash: str
    metric: str
    value: float
    n_examples: int
    ci_low: float | None = None
    ci_high: float | None = None
    dev_score: float | None = None
    dev_rank: int | None = None
    is_seed: bool = False
    is_baseline: bool = False
    baseline_hash: str | None = None
    test_name: str | None = None
    p_value: float | None = None
    scorer_fingerprint: str | None = None
    detail: dict[str, Any] | None = field(default=None)


@dataclass(frozen=True)
class HeldOutRecord:
    """A stored held-out result, with its prompt."""

    study_name: str
    split: str
    content_hash: str
    text: str
    body: dict[str, Any]
    metric: str
    value: float
    n_examples: int
    ci_low: float | None
    ci_high: float | None
    dev_score: float | None
    dev_rank: int | None
    is_seed: bool
    is_baseline: bool
    baseline_hash: str | None
    test_name: str | None
    p_value: float | None
    scorer_fingerprint: str | None
    detail: dict[str, Any] | None
    created_at: datetime


def _optional_number(field_name: str, value: object) -> float | None:
    return None if value is None else check_finite(field_name, value)


def _row(index: int, result: object) -> dict[str, Any]:
    """The checked column values of one result (prompt ids are filled in later)."""
    where = f"results[{index}]"
    if not isinstance(result, HeldOutResult):
        raise ConfigError(f"{where} must be a HeldOutResult; got {type(result).__name__}")
    check_hash(f"{where}.content_hash", result.content_hash)
    if result.baseline_hash is not None:
        check_hash(f"{where}.baseline_hash", result.baseline_hash)
    p_value = _optional_number(f"{where}.p_value", result.p_value)
    if p_value is not None and not 0.0 <= p_value <= 1.0:
        raise ConfigError(f"{where}.p_value must lie in [0, 1]; got {result.p_value!r}")
    if result.dev_rank is not None:
        rank = check_count(f"{where}.dev_rank", result.dev_rank)
        if rank < 1:
            raise ConfigError(f"{where}.dev_rank must be ≥ 1 or None; got {rank!r}")
    for flag in ("is_seed", "is_baseline"):
        if not isinstance(getattr(result, flag), bool):
            raise ConfigError(f"{where}.{flag} must be True or False")
    return {
        "metric": check_name(f"{where}.metric", result.metric, LABEL_LENGTH),
        "value": check_finite(f"{where}.value", result.value),
        "ci_low": _optional_number(f"{where}.ci_low", result.ci_low),
        "ci_high": _optional_number(f"{where}.ci_high", result.ci_high),
        "n_examples": check_count(f"{where}.n_examples", result.n_examples),
        "dev_score": _optional_number(f"{where}.dev_score", result.dev_score),
        "dev_rank": result.dev_rank,
        "is_seed": result.is_seed,
        "is_baseline": result.is_baseline,
        "test_name": None
        if result.test_name is None
        else check_name(f"{where}.test_name", result.test_name, LABEL_LENGTH),
        "p_value": p_value,
        "scorer_fingerprint": None
        if result.scorer_fingerprint is None
        else check_name(f"{where}.scorer_fingerprint", result.scorer_fingerprint, NAME_LENGTH),
        "detail": None if result.detail is None else check_json(f"{where}.detail", result.detail),
    }


class HeldOutStore(Database):
    """Held-out result methods of the storage."""

    def replace_held_out_results(
        self, study_name: str, results: Sequence[HeldOutResult], *, split: str = "test"
    ) -> int:
        """Store *results* as the study's held-out results on *split*, replacing any
        stored before (for every prompt) in one transaction; return how many.

        Every prompt (and baseline prompt) must have been stored with ``add_prompt``.
        """
        check_name("split", split, LABEL_LENGTH)
        if isinstance(results, HeldOutResult) or not isinstance(results, Sequence):
            raise ConfigError(
                f"results must be a list of HeldOutResult; got {type(results).__name__}"
            )
        rows = [_row(i, result) for i, result in enumerate(results)]
        hashes = [result.content_hash for result in results]
        repeated = sorted({h[:12] for h in hashes if hashes.count(h) > 1})
        if repeated:
            raise ConfigError(f"results hold the same prompt more than once: {repeated}")
        wanted = set(hashes) | {r.baseline_hash for r in results if r.baseline_hash is not None}
        with self.session() as session:
            study = require_study(session, study_name, self.url, lock=True)
            query = select(PromptModel.content_hash, PromptModel.id).where(
                PromptModel.content_hash.in_(sorted(wanted))
            )
            ids = {content: prompt_id for content, prompt_id in session.execute(query)}
            missing = sorted(h[:12] for h in wanted if h not in ids)
            if missing:
                raise StorageError(
                    f"prompt(s) {missing} are not stored in {self.url}; store each prompt with "
                    "add_prompt() before its held-out result"
                )
            session.execute(
                delete(TestResultModel).where(
                    TestResultModel.study_id == study.id, TestResultModel.split == split
                )
            )
            now = utcnow()
            for result, values in zip(results, rows, strict=True):
                baseline = result.baseline_hash
                session.add(
                    TestResultModel(
                        study_id=study.id,
                        prompt_id=ids[result.content_hash],
                        baseline_prompt_id=None if baseline is None else ids[baseline],
                        split=split,
                        created_at=now,
                        **values,
                    )
                )
        return len(rows)

    def held_out_results(self, study_name: str, *, split: str = "test") -> list[HeldOutRecord]:
        """The study's held-out results on *split*: by dev rank (prompts without one
        last), then by held-out score, best first."""
        check_name("split", split, LABEL_LENGTH)
        with self.session(write=False) as session:
            study = require_study(session, study_name, self.url)
            query = (
                select(TestResultModel, PromptModel, _Baseline.content_hash)
                .join(PromptModel, PromptModel.id == TestResultModel.prompt_id)
                .outerjoin(_Baseline, _Baseline.id == TestResultModel.baseline_prompt_id)
                .where(TestResultModel.study_id == study.id, TestResultModel.split == split)
            )
            records = [
                HeldOutRecord(
                    study_name=study.name,
                    split=row.split,
                    content_hash=prompt.content_hash,
                    text=prompt.text,
                    body=dict(prompt.body),
                    metric=row.metric,
                    value=row.value,
                    n_examples=row.n_examples,
                    ci_low=row.ci_low,
                    ci_high=row.ci_high,
                    dev_score=row.dev_score,
                    dev_rank=row.dev_rank,
                    is_seed=bool(row.is_seed),
                    is_baseline=bool(row.is_baseline),
                    baseline_hash=baseline,
                    test_name=row.test_name,
                    p_value=row.p_value,
                    scorer_fingerprint=row.scorer_fingerprint,
                    detail=None if row.detail is None else dict(row.detail),
                    created_at=row.created_at,
                )
                for row, prompt, baseline in session.execute(query)
            ]
        records.sort(key=lambda r: (r.dev_rank is None, r.dev_rank or 0, -r.value, r.content_hash))
        return records

"""Racing: score candidates on growing subsets of dev and stop the weak ones early.

A racing study does not score every candidate on the whole dev set.  It uses
asynchronous successive halving (ASHA, Li et al. 2020), because candidates arrive
one at a time and the study cannot wait for a full cohort before it decides.

**Order.**  The dev examples are put once in a fixed, seeded, label-stratified
order (:func:`racing_order`).  Every candidate is scored along that order, so the
examples of rung *k* are the same for every candidate: rung scores compare like
with like, and the per-example cache answers any example a prompt was scored on
before.

**Rungs.**  With *n* dev examples, ``min_examples`` *r* and growth factor ``eta``,
rung *k* holds the first ``r * eta**k`` examples of the order, for every *k* with
``r * eta**k < n``.  One more rung holds all *n*.  For example, 120 examples with
r = 8 and eta = 3 give the rungs 8, 24, 72 and 120.

**Rung score.**  A candidate's score at a rung is the pair (the task metric on
the rung's examples, the mean probability the prompt gives the gold answer there),
compared in that order.  The second member only breaks ties of the first.  On a
rung of 8 examples, accuracy takes only 9 values, and most candidates tie with
others.  The gold probability is normalised over the label words, from the
``label_logprobs`` the scorer returns.  For generation tasks it is
``exp(gold_logprob)``, and 0 where the scorer gives neither.

**Decision.**  After each rung but the last, the candidate's rung score *s* is
compared with the rung scores of the study's finished trials (complete or pruned)
that reached that rung.  Say there are *m* of them.

* Warm-up: while *m* < ``min_trials``, every candidate goes on.
* Otherwise the candidate goes on if fewer than ``ceil((m + 1) / eta)`` of those
  *m* scores are strictly higher than *s*, that is, if it is within the top
  ``1/eta`` of the rung with itself counted.  **Ties go in the candidate's
  favour**: a candidate tied (on both members) with the last one kept goes on too.

A candidate that does not go on is stopped.  Its trial ends ``"pruned"``, with its
rung score as ``dev_score`` and the rung's size as ``n_examples``.  A survivor of
every rung is scored on the whole dev set and ends ``"complete"``, with a dev score
equal to what full evaluation gives.

**History from the database.**  The rung scores of earlier trials are recomputed
from their rows in the evaluation cache, for the rung's examples.  A trial's rows
are written together with its finished state.  So a resumed study, and every
worker of a study, decide from the same stored history.  A run that resumes after
a crash sees exactly the finished trials that the uninterrupted run saw, and
decides the same way.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from promptsearch.errors import ConfigError
from promptsearch.metrics import aggregate
from promptsearch.study.support import check_same_setting
from promptsearch.task import Example, Task
from promptsearch.validation import check_int

if TYPE_CHECKING:
    from _typeshed import SupportsDunderLT

    from promptsearch.storage import EvaluationRecord, Storage, StudyRecord

__all__ = [
    "Race",
    "RaceOutcome",
    "Racing",
    "check_same_racing",
    "gold_probability",
    "racing_order",
    "survives",
]

_FIELDS = ("min_examples", "eta", "min_trials", "seed")
RungScore = tuple[float, float]  # (the task metric, the mean gold probability)
_Score = TypeVar("_Score", bound="SupportsDunderLT[Any]")


@dataclass(frozen=True)
class Racing:
    """How a study races its candidates; see the module docstring.

    Parameters
    ----------
    min_examples:
        Size of the first rung: how many dev examples every candidate is scored on.
    eta:
        Growth factor of the rungs and inverse of the fraction kept at each rung
        (3: each rung is three times the last, and the top third goes on).
    min_trials:
        Warm-up: no candidate is stopped at a rung until this many finished trials
        have a score there.
    seed:
        Seeds the racing order of the dev examples.
    """

    min_examples: int = 8
    eta: int = 3
    min_trials: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.min_examples, "min_examples", minimum=1, owner="racing")
        check_int(self.eta, "eta", minimum=2, owner="racing")
        check_int(self.min_trials, "min_trials", minimum=0, owner="racing")
        check_int(self.seed, "seed", owner="racing")

    @classmethod
    def coerce(cls, value: Racing | Mapping[str, Any] | bool | None) -> Racing | None:
        """A Racing from a Racing, a mapping of its fields, True (the defaults), or
        None / False (no racing: every candidate is scored on the whole dev set)."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, Racing):
            return value
        if isinstance(value, Mapping):
            unknown = sorted(str(k) for k in set(value) - set(_FIELDS))
            if unknown:
                raise ConfigError(f"racing has unknown key(s) {unknown}; use {', '.join(_FIELDS)}")
            return cls(**value)
        raise ConfigError(
            f"racing must be a Racing, a mapping of its fields, True, False or None; got {value!r}"
        )

    def rungs(self, n_examples: int) -> tuple[int, ...]:
        """Rung sizes for a dev set of *n_examples*, the last one being all of it."""
        self.check_dev(n_examples)
        sizes = []
        size = self.min_examples
        while size < n_examples:
            sizes.append(size)
            size *= self.eta
        return (*sizes, n_examples)

    def check_dev(self, n_examples: int) -> None:
        """Raise :class:`ConfigError` unless the first rung is smaller than the dev set."""
        if self.min_examples >= n_examples:
            raise ConfigError(
                f"racing: min_examples ({self.min_examples}) must be smaller than the dev "
                f"set ({n_examples} examples), or nothing is raced; lower min_examples or "
                "turn racing off"
            )

    def to_dict(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in _FIELDS}


def check_same_racing(stored: StudyRecord | None, racing: Racing | None) -> None:
    """Refuse to resume a stored study with other racing settings (or racing turned on
    or off): its pruned trials and rung history would not mean the same."""
    check_same_setting(stored, "racing", None if racing is None else racing.to_dict())


def racing_order(targets: Sequence[str], seed: int, *, stratify: bool = True) -> list[int]:
    """A fixed permutation of ``range(len(targets))``: the order racing scores dev in.

    With *stratify*, each target's examples are shuffled and the targets are then
    interleaved by their share of the whole: every prefix holds each target within
    one example of its proportion.  Without it (for generation tasks, where targets
    are mostly unique), a plain seeded shuffle.
    """
    rng = random.Random(f"racing-order:{seed}")
    groups: dict[str, list[int]] = {}
    for index, target in enumerate(targets):
        groups.setdefault(target if stratify else "", []).append(index)
    slots: list[tuple[float, str, int]] = []
    for label in sorted(groups):
        members = groups[label]
        rng.shuffle(members)
        offset = rng.random()
        slots.extend(((j + offset) / len(members), label, i) for j, i in enumerate(members))
    slots.sort()
    return [index for _, _, index in slots]


def survives(score: _Score, others: Sequence[_Score], eta: int, min_trials: int) -> bool:
    """Whether a candidate with rung score *score* goes on, given the rung scores
    *others* of the finished trials that reached that rung (see the module docstring).
    Scores are numbers or tuples such as :data:`RungScore`, compared as they are."""
    if len(others) < min_trials:
        return True
    keep = math.ceil((len(others) + 1) / eta)
    better = sum(1 for other in others if score < other)
    return better < keep


def gold_probability(record: EvaluationRecord, target: str) -> float:
    """The probability the prompt gave the gold answer *target* of one example: from
    its label log-probabilities normalised over the labels, else ``exp(gold_logprob)``,
    else 0 (the tie-break of rung scores)."""
    detail = record.detail or {}
    logprobs = detail.get("label_logprobs")
    if isinstance(logprobs, Mapping) and target in logprobs:
        values = {
            label: -math.inf if value is None else float(value) for label, value in logprobs.items()
        }
        top = max(values.values())
        if top == -math.inf:
            return 0.0
        total = sum(math.exp(value - top) for value in values.values())
        return math.exp(values[target] - top) / total
    gold = detail.get("gold_logprob")
    if isinstance(gold, (int, float)) and not isinstance(gold, bool) and math.isfinite(gold):
        return math.exp(min(float(gold), 0.0))
    return 0.0


@dataclass(frozen=True)
class RaceOutcome:
    """What racing one candidate gives: its score, on how many examples, at what cost."""

    score: float
    n_examples: int
    forward_passes: int
    records: list[EvaluationRecord]
    pruned: bool


# scores *examples* (given the records known so far, by example key): returns the
# records of all of them by key, the new ones, and the forward passes spent
Evaluate = Callable[
    [Sequence[Example], Mapping[str, "EvaluationRecord"]],
    tuple[dict[str, "EvaluationRecord"], list["EvaluationRecord"], int],
]


class Race:
    """The racing of one study: its order, rungs and the stored rung history.

    *keys* are the cache keys of ``task.dev``, in dev order.
    """

    def __init__(
        self,
        racing: Racing,
        task: Task,
        keys: Sequence[str],
        storage: Storage,
        study: str,
        scorer_fingerprint: str,
    ) -> None:
        self.racing = racing
        self.task = task
        self.rungs = racing.rungs(len(task.dev))
        order = racing_order(
            [e.target for e in task.dev], racing.seed, stratify=task.kind == "classification"
        )
        self.order = tuple(task.dev[i] for i in order)
        self.order_keys = tuple(keys[i] for i in order)
        self.dev_keys = tuple(keys)
        self.storage = storage
        self.study = study
        self.fingerprint = scorer_fingerprint
        self._memo: dict[tuple[str, int], tuple[RungScore, ...]] = {}

    def run(self, content_hash: str, evaluate: Evaluate) -> RaceOutcome:
        """Race the prompt *content_hash* rung by rung, scoring with *evaluate*."""
        known: dict[str, EvaluationRecord] = {}
        new: list[EvaluationRecord] = []
        spent = 0
        for rung, size in enumerate(self.rungs[:-1]):
            examples = self.order[:size]
            known, fresh, used = evaluate(examples, known)
            new.extend(fresh)
            spent += used
            score = self._rung_score(known, self.order_keys[:size], examples)
            others = self.history(rung, exclude=content_hash)
            if not survives(score, others, self.racing.eta, self.racing.min_trials):
                return RaceOutcome(score[0], size, spent, new, pruned=True)
        known, fresh, used = evaluate(self.task.dev, known)
        new.extend(fresh)
        spent += used
        # in dev order, so that the score equals that of full evaluation to the last bit
        value = self._value(known, self.dev_keys, self.task.dev)
        return RaceOutcome(value, len(self.task.dev), spent, new, pruned=False)

    def history(self, rung: int, exclude: str | None = None) -> list[RungScore]:
        """Rung scores at *rung* of the study's finished trials (all but *exclude*),
        recomputed from the database."""
        size = self.rungs[rung]
        values = []
        for trial in self.storage.trials(self.study, states=["complete", "pruned"]):
            if trial.content_hash == exclude or trial.n_examples < size:
                continue
            scores = self._rung_values(trial.content_hash, trial.n_examples)
            if rung < len(scores):
                values.append(scores[rung])
        return values

    def rung_metrics(self, content_hash: str, n_examples: int) -> dict[int, float]:
        """The task metric of a finished trial at each decision rung it reached, by the
        rung's number of examples (from the cache; for the Optuna mirror's intermediate
        values)."""
        values = self._rung_values(content_hash, n_examples)
        return {size: value[0] for size, value in zip(self.rungs, values, strict=False)}

    def _rung_values(self, content_hash: str, n_examples: int) -> tuple[RungScore, ...]:
        """Scores of a finished trial at the decision rungs it reached, from the cache."""
        memo = (content_hash, n_examples)
        if memo not in self._memo:
            reached = [s for s in self.rungs[:-1] if s <= n_examples]
            keys = self.order_keys[: reached[-1]] if reached else ()
            found = (
                self.storage.cached_evaluations(self.fingerprint, content_hash, "dev", keys)
                if keys
                else {}
            )
            values = []
            for size in reached:
                if any(k not in found for k in self.order_keys[:size]):
                    break  # rows missing (never expected): use the rungs that are whole
                values.append(self._rung_score(found, self.order_keys[:size], self.order[:size]))
            self._memo[memo] = tuple(values)
        return self._memo[memo]

    def _rung_score(
        self,
        records: Mapping[str, EvaluationRecord],
        keys: Sequence[str],
        examples: Sequence[Example],
    ) -> RungScore:
        confidence = [
            gold_probability(records[k], e.target) for k, e in zip(keys, examples, strict=True)
        ]
        return self._value(records, keys, examples), sum(confidence) / len(confidence)

    def _value(
        self,
        records: Mapping[str, EvaluationRecord],
        keys: Sequence[str],
        examples: Sequence[Example],
    ) -> float:
        ordered = [records[k] for k in keys]
        return aggregate(
            self.task.metric,
            [r.score for r in ordered],
            [r.prediction for r in ordered],
            [e.target for e in examples],
        )

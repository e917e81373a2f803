"""Prompt ensembles: several prompts that vote with their label probabilities.

A :class:`PromptEnsemble` of classification prompts predicts, for each example, the
label with the highest mean of the members' normalised label probabilities (each
member's distribution over the task's labels, calibrated when the scorer
calibrates or the member is a ``calibrate=True`` prompt; ties go to the first label).
An ensemble may carry a *prior* per member, its mean label distribution on examples
it was scored on (:func:`label_prior`): each member's probabilities are then divided
by its prior and normalised again before the mean (batch calibration, Zhou et al.
2023), so that a member sure of one label on every example does not outvote the
others.  One prompt with its prior is a *balanced prompt*: the prompt's own vote, its
lean towards a label divided out.
Studies build one from their best prompts (see :mod:`promptsearch.study.selection`),
and it can be the prompt a study hands back: it is scored, ranked, reported by
``final``, exported and evaluated like a prompt.

Because the vote needs only each member's per-example label log-probabilities, an
ensemble of prompts the study already scored costs no forward pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.hashing import content_hash
from promptsearch.metrics import aggregate, example_score
from promptsearch.prompt import Prompt
from promptsearch.study.gold import gold_probabilities, record_distribution
from promptsearch.task import Example, Task

if TYPE_CHECKING:
    from promptsearch.scoring.scorer import ExampleResult, Scorer, ScoreReport

__all__ = [
    "PromptEnsemble",
    "label_prior",
    "records_prior",
    "stored_vote",
    "vote",
    "vote_labels",
    "vote_records",
]

Prior = Mapping[str, float]
"""A member's mean label distribution: label -> probability."""


@dataclass(frozen=True)
class PromptEnsemble:
    """Two or more classification prompts whose label probabilities are averaged;
    with *priors* (one label distribution per member), each member's probabilities
    divided by its prior first.  With priors, one member is enough: a balanced
    prompt."""

    members: tuple[Prompt, ...]
    priors: tuple[Prior, ...] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.members, tuple):
            object.__setattr__(self, "members", tuple(self.members))
        if self.priors is not None:
            object.__setattr__(self, "priors", _checked_priors(self.priors, len(self.members)))
        if len(self.members) < (1 if self.priors is not None else 2):
            raise ConfigError(
                "an ensemble needs at least 2 member prompts, or 1 with its prior (a "
                f"balanced prompt); got {len(self.members)}"
            )
        for member in self.members:
            if not isinstance(member, Prompt):
                raise ConfigError(
                    f"ensemble members must be Prompt objects; got {type(member).__name__}"
                )

    @property
    def content_hash(self) -> str:
        body: dict[str, Any] = {"ensemble": [m.content_hash for m in self.members]}
        if self.priors is not None:
            body["priors"] = [{k: round(v, 9) for k, v in sorted(p.items())} for p in self.priors]
        return content_hash(body)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ensemble": [m.to_dict() for m in self.members]}
        if self.priors is not None:
            body["priors"] = [dict(p) for p in self.priors]
        return body

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptEnsemble:
        members = data.get("ensemble") if isinstance(data, Mapping) else None
        if not isinstance(members, list):
            raise ConfigError(
                "an ensemble must be a mapping {'ensemble': [prompt, ...]}; got "
                f"{type(data).__name__}"
            )
        priors = data.get("priors")
        if priors is not None and not isinstance(priors, list):
            raise ConfigError(
                "an ensemble's 'priors' must be a list of label distributions, one per "
                f"member; got {type(priors).__name__}"
            )
        return cls(
            tuple(Prompt.from_dict(m) for m in members),
            None if priors is None else tuple(priors),
        )

    def describe(self, width: int | None = None) -> str:
        balance = " (balanced)" if self.priors is not None else ""
        if len(self.members) == 1:
            text = f"balanced: {self.members[0].describe()}"
        else:
            text = f"ensemble of {len(self.members)}{balance}: " + " | ".join(
                m.describe() for m in self.members
            )
        if width is not None and len(text) > width:
            text = text[: max(width - 1, 0)] + "…"
        return text

    def resolve(self, task: Task) -> PromptEnsemble:
        if task.kind != "classification":
            raise ConfigError(
                f"prompt ensembles apply to classification tasks; task {task.name!r} is a "
                f"{task.kind} task"
            )
        if self.priors is not None:
            for index, prior in enumerate(self.priors):
                missing = sorted(set(task.labels) - set(prior))
                if missing:
                    raise ConfigError(
                        f"ensemble priors[{index}] has no probability for label(s) {missing} "
                        f"of task {task.name!r}; give one per label, or drop 'priors'"
                    )
        return PromptEnsemble(tuple(m.resolve(task) for m in self.members), self.priors)

    def score(self, scorer: Scorer, examples: Sequence[Example], task: Task) -> ScoreReport:
        """Score every member with *scorer* and combine their votes."""
        from promptsearch.scoring.scorer import ScoreReport

        started = time.perf_counter()
        resolved = self.resolve(task)
        examples = list(examples)
        reports = [scorer.score(member, examples, task) for member in resolved.members]
        results = vote(task, examples, [report.results for report in reports], resolved.priors)
        value = aggregate(
            task.metric,
            [r.score for r in results],
            [r.prediction for r in results],
            [e.target for e in examples],
        )
        return ScoreReport(
            metric=task.metric,
            value=value,
            results=results,
            forward_passes=sum(r.forward_passes for r in reports),
            seconds=time.perf_counter() - started,
            n_truncated=sum(r.truncated for r in results),
            chat=any(r.chat for r in reports),
        )


VOTE_PICKS = {"ensemble": "ensemble", "balanced": "balanced_seed"}
"""The selection record's ``pick_kind`` values that hand back a vote, and the record's
entry that stores it (``key``, ``members``: the members' keys, ``body``)."""


def stored_vote(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The stored ensemble or balanced prompt a selection record hands back, or ``None``
    where it hands back a prompt."""
    entry = VOTE_PICKS.get(record.get("pick_kind", "prompt"))
    return None if entry is None else record[entry]


def _checked_priors(priors: Sequence[Prior], n_members: int) -> tuple[Prior, ...]:
    priors = tuple(priors)
    if len(priors) != n_members:
        raise ConfigError(
            f"an ensemble needs one prior per member: {n_members} members, "
            f"{len(priors)} priors; give one label distribution per member, or none"
        )
    for index, prior in enumerate(priors):
        if not isinstance(prior, Mapping) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
            for v in prior.values()
        ):
            raise ConfigError(
                f"ensemble priors[{index}] must map each label to a positive probability; "
                f"got {prior!r}"
            )
    return priors


def member_distribution(result: ExampleResult, labels: Sequence[str]) -> dict[str, float] | None:
    logprobs = result.calibrated_logprobs or result.label_logprobs
    return None if logprobs is None else gold_probabilities(logprobs, labels)


PRIOR_FLOOR = 1e-6
"""The smallest probability a prior gives a label: a member that never gives a label
any probability would otherwise make the division blow up."""


def label_prior(
    labels: Sequence[str], distributions: Sequence[Mapping[str, float]]
) -> dict[str, float]:
    """A member's prior: its mean label distribution over *distributions* (one per
    example), each label at least :data:`PRIOR_FLOOR`."""
    if not distributions:
        raise ConfigError("a label prior needs the member's label probabilities on some examples")
    return {
        label: max(sum(d.get(label, 0.0) for d in distributions) / len(distributions), PRIOR_FLOOR)
        for label in labels
    }


def records_prior(
    labels: Sequence[str], records: Mapping[str, Any], keys: Sequence[str]
) -> dict[str, float]:
    """:func:`label_prior` of a member's stored records (by example key) on *keys*."""
    distributions = []
    for key in keys:
        distribution = record_distribution(records[key], labels)
        if distribution is None:
            raise ConfigError(
                "a member's stored result has no label probabilities (ensembles need "
                "classification scores)"
            )
        distributions.append(distribution)
    return label_prior(labels, distributions)


def balanced(
    distribution: Mapping[str, float], prior: Prior, labels: Sequence[str]
) -> dict[str, float]:
    """*distribution* divided by *prior*, normalised again."""
    divided = {label: distribution.get(label, 0.0) / prior[label] for label in labels}
    total = sum(divided.values())
    if total <= 0:
        return {label: 1.0 / len(labels) for label in labels}
    return {label: value / total for label, value in divided.items()}


def vote_labels(
    labels: Sequence[str], distributions: Sequence[Mapping[str, float]]
) -> tuple[str, dict[str, float]]:
    """The winning label of the mean of *distributions*, and that mean."""
    mean = {
        label: sum(d.get(label, 0.0) for d in distributions) / len(distributions)
        for label in labels
    }
    winner = labels[0]
    for label in labels[1:]:
        if mean[label] > mean[winner]:
            winner = label
    return winner, mean


def vote_records(
    task: Task,
    examples: Sequence[Example],
    keys: Sequence[str],
    member_records: Sequence[Mapping[str, Any]],
    priors: Sequence[Prior] | None = None,
) -> list[tuple[str, float, float]]:
    """The vote from stored per-example records (cache rows with ``label_logprobs``):
    per example (prediction, metric score, mean probability of the gold label); with
    *priors*, each member's probabilities divided by its prior first."""
    labels = list(task.labels)
    out = []
    for example, key in zip(examples, keys, strict=True):
        distributions = []
        for index, records in enumerate(member_records):
            distribution = record_distribution(records[key], labels)
            if distribution is None:
                raise ConfigError(
                    f"example {example.id!r}: a member's stored result has no label "
                    "probabilities (ensembles need classification scores)"
                )
            if priors is not None:
                distribution = balanced(distribution, priors[index], labels)
            distributions.append(distribution)
        prediction, mean = vote_labels(labels, distributions)
        score = example_score(task.metric, prediction, [example.target])
        out.append((prediction, score, mean.get(example.target, 0.0)))
    return out


def vote(
    task: Task,
    examples: Sequence[Example],
    member_results: Sequence[Sequence[ExampleResult]],
    priors: Sequence[Prior] | None = None,
) -> list[ExampleResult]:
    """One combined :class:`~promptsearch.scoring.scorer.ExampleResult` per example;
    with *priors*, each member's probabilities divided by its prior first."""
    from promptsearch.scoring.scorer import ExampleResult

    labels = list(task.labels)
    out = []
    for index, example in enumerate(examples):
        rows = [results[index] for results in member_results]
        distributions = []
        for member, row in enumerate(rows):
            distribution = member_distribution(row, labels)
            if distribution is None:
                raise ConfigError(
                    f"example {example.id!r}: a member's result has no label probabilities "
                    "(ensembles need classification scores)"
                )
            if priors is not None:
                distribution = balanced(distribution, priors[member], labels)
            distributions.append(distribution)
        prediction, mean = vote_labels(labels, distributions)
        out.append(
            ExampleResult(
                example_id=example.id,
                prediction=prediction,
                correct=prediction == example.target,
                score=example_score(task.metric, prediction, [example.target]),
                label_logprobs={label: math.log(max(p, 1e-300)) for label, p in mean.items()},
                gold_logprob=None,
                truncated=any(row.truncated for row in rows),
            )
        )
    return out

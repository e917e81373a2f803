"""Prompt ensembles: several prompts that vote with their label probabilities.

A :class:`PromptEnsemble` of classification prompts predicts, for each example, the
label with the highest mean of the members' normalised label probabilities (each
member's distribution over the task's labels, calibrated when the scorer
calibrates or the member is a ``calibrate=True`` prompt; ties go to the first label).
Studies build one from their best prompts (see :mod:`promptsearch.study.selection`),
and it can be the prompt a study hands back: it is scored, ranked, reported by
``final``, exported and evaluated like a prompt.

Because the vote needs only each member's per-example label log-probabilities, an
ensemble of prompts the study already scored costs no forward pass.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.hashing import content_hash
from promptsearch.metrics import aggregate, example_score
from promptsearch.prompt import Prompt
from promptsearch.study.selection import gold_probabilities, record_distribution
from promptsearch.task import Example, Task

if TYPE_CHECKING:
    from promptsearch.scoring.scorer import ExampleResult, Scorer, ScoreReport

__all__ = ["PromptEnsemble", "vote", "vote_labels", "vote_records"]


@dataclass(frozen=True)
class PromptEnsemble:
    """Two or more classification prompts whose label probabilities are averaged."""

    members: tuple[Prompt, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.members, tuple):
            object.__setattr__(self, "members", tuple(self.members))
        if len(self.members) < 2:
            raise ConfigError(
                f"an ensemble needs at least 2 member prompts; got {len(self.members)}"
            )
        for member in self.members:
            if not isinstance(member, Prompt):
                raise ConfigError(
                    f"ensemble members must be Prompt objects; got {type(member).__name__}"
                )

    @property
    def content_hash(self) -> str:
        return content_hash({"ensemble": [m.content_hash for m in self.members]})

    def to_dict(self) -> dict[str, Any]:
        return {"ensemble": [m.to_dict() for m in self.members]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptEnsemble:
        members = data.get("ensemble") if isinstance(data, Mapping) else None
        if not isinstance(members, list):
            raise ConfigError(
                "an ensemble must be a mapping {'ensemble': [prompt, ...]}; got "
                f"{type(data).__name__}"
            )
        return cls(tuple(Prompt.from_dict(m) for m in members))

    def describe(self, width: int | None = None) -> str:
        text = f"ensemble of {len(self.members)}: " + " | ".join(m.describe() for m in self.members)
        if width is not None and len(text) > width:
            text = text[: max(width - 1, 0)] + "…"
        return text

    def resolve(self, task: Task) -> PromptEnsemble:
        if task.kind != "classification":
            raise ConfigError(
                f"prompt ensembles apply to classification tasks; task {task.name!r} is a "
                f"{task.kind} task"
            )
        return PromptEnsemble(tuple(m.resolve(task) for m in self.members))

    def score(self, scorer: Scorer, examples: Sequence[Example], task: Task) -> ScoreReport:
        """Score every member with *scorer* and combine their votes."""
        from promptsearch.scoring.scorer import ScoreReport

        started = time.perf_counter()
        resolved = self.resolve(task)
        examples = list(examples)
        reports = [scorer.score(member, examples, task) for member in resolved.members]
        results = vote(task, examples, [report.results for report in reports])
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


def member_distribution(result: ExampleResult, labels: Sequence[str]) -> dict[str, float] | None:
    logprobs = result.calibrated_logprobs or result.label_logprobs
    return None if logprobs is None else gold_probabilities(logprobs, labels)


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
) -> list[tuple[str, float, float]]:
    """The vote from stored per-example records (cache rows with ``label_logprobs``):
    per example (prediction, metric score, mean probability of the gold label)."""
    labels = list(task.labels)
    out = []
    for example, key in zip(examples, keys, strict=True):
        distributions = []
        for records in member_records:
            distribution = record_distribution(records[key], labels)
            if distribution is None:
                raise ConfigError(
                    f"example {example.id!r}: a member's stored result has no label "
                    "probabilities (ensembles need classification scores)"
                )
            distributions.append(distribution)
        prediction, mean = vote_labels(labels, distributions)
        score = example_score(task.metric, prediction, [example.target])
        out.append((prediction, score, mean.get(example.target, 0.0)))
    return out


def vote(
    task: Task, examples: Sequence[Example], member_results: Sequence[Sequence[ExampleResult]]
) -> list[ExampleResult]:
    """One combined :class:`~promptsearch.scoring.scorer.ExampleResult` per example."""
    import math

    from promptsearch.scoring.scorer import ExampleResult

    labels = list(task.labels)
    out = []
    for index, example in enumerate(examples):
        rows = [results[index] for results in member_results]
        distributions = []
        for row in rows:
            distribution = member_distribution(row, labels)
            if distribution is None:
                raise ConfigError(
                    f"example {example.id!r}: a member's result has no label probabilities "
                    "(ensembles need classification scores)"
                )
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

"""What the HTML report shows, read from the storage (see :mod:`promptsearch.report.page`).

Everything here is plain data: the study, its trials, the leaderboard, the Pareto
front of score against prompt length, and the best prompt's confusion matrix (or,
for generation tasks, its correct/incorrect breakdown), rebuilt from the per-example
evaluation cache and the task's gold labels.  Nothing here loads a model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError, PromptSearchError

if TYPE_CHECKING:
    from promptsearch.storage import (
        HeldOutRecord,
        LeaderboardRow,
        LineageEntry,
        Storage,
        StudyRecord,
        StudyTotals,
        TrialRecord,
    )
    from promptsearch.task import Task

__all__ = [
    "Breakdown",
    "Confusion",
    "ReportData",
    "collect",
    "pareto_front",
    "prompt_length",
    "rebuild_task",
]

MAX_ERRORS_SHOWN = 8


@dataclass(frozen=True)
class Confusion:
    """Gold label (rows) against predicted label (columns) on the dev split."""

    labels: tuple[str, ...]  # rows: the task's labels
    columns: tuple[str, ...]  # the labels, then any other prediction seen
    words: Mapping[str, str]  # label -> the best prompt's first label word
    counts: tuple[tuple[int, ...], ...]
    n_cached: int
    n_dev: int


@dataclass(frozen=True)
class Breakdown:
    """How the best prompt did on the dev split of a generation task."""

    n_correct: int
    n_incorrect: int
    mean_score: float
    n_dev: int
    errors: tuple[tuple[str, str, str, float], ...]  # (input, gold, prediction, score)
    metric: str


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows about one study."""

    study: StudyRecord
    totals: StudyTotals
    trials: tuple[TrialRecord, ...]
    ranked: tuple[LeaderboardRow, ...]  # every complete trial, best first
    top: int
    lengths: Mapping[str, int]  # content hash -> prompt length in characters
    searchers: tuple[str, ...]  # in order of first trial
    best_detail: Confusion | Breakdown | None
    best_note: str  # why best_detail is missing (or a caveat about it)
    best_lineage: tuple[LineageEntry, ...] = ()  # the best prompt, then its ancestors
    test_results: tuple[HeldOutRecord, ...] = ()  # filled by `promptsearch final`

    @property
    def leaderboard(self) -> tuple[LeaderboardRow, ...]:
        return self.ranked[: self.top]

    def state_counts(self) -> Counter[str]:
        return Counter(t.state for t in self.trials)


def prompt_length(body: Mapping[str, Any], fallback: str) -> int:
    """Characters of the prompt's fixed text: instruction, demonstrations and template
    (slots as written, no example inputs) -- the ``length`` the study stores."""
    from promptsearch.prompt import Prompt

    try:
        prompt = Prompt.from_dict(body)
    except PromptSearchError:
        return len(fallback)
    return len(prompt.head() + prompt.template)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indexes of the points (length, score) that no other point beats: none is as
    short or shorter and scores as high or higher, with one of the two strictly."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    best = float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def rebuild_task(
    study: StudyRecord, data_dir: str | Path | None, seed: int | None = None
) -> tuple[Task | None, str]:
    """Load the study's built-in task again, with the data the study was run on.

    Returns the task and ``""``, or ``None`` and a sentence saying why it could not
    be rebuilt (the report shows it in place of the confusion matrix).
    """
    from promptsearch.study.rebuild import study_task

    try:
        return study_task(study, data_dir=data_dir, task_seed=seed), ""
    except PromptSearchError as error:
        if "not a built-in task" in str(error):
            return None, (
                f"task {study.task_name!r} is not a built-in task, so its gold labels "
                "cannot be loaded again from the stored spec; pass the Task object to "
                "promptsearch.report.write_report(task=...) to include them"
            )
        return None, f"the task's gold labels could not be loaded again: {error}"


def _best_detail(
    storage: Storage, study: StudyRecord, best: LeaderboardRow, task: Task
) -> tuple[Confusion | Breakdown | None, str]:
    from promptsearch.prompt import Prompt
    from promptsearch.study.loop import example_key

    examples = task.dev
    keys = [example_key(e) for e in examples]
    cached = storage.cached_evaluations(study.scorer_fingerprint, best.content_hash, "dev", keys)
    pairs = [(e, cached[k]) for e, k in zip(examples, keys, strict=True) if k in cached]
    if not pairs:
        return None, (
            f"the evaluation cache holds no dev predictions of the best prompt "
            f"{best.content_hash[:10]} for scorer {study.scorer_fingerprint[:12]}"
        )
    note = ""
    if len(pairs) < len(examples):
        note = f"{len(pairs)} of {len(examples)} dev examples have a cached prediction"
    if task.kind == "generation":
        errors = [
            (" | ".join(e.inputs[f] for f in task.input_fields), e.target, r.prediction, r.score)
            for e, r in pairs
            if not r.correct
        ]
        correct = sum(r.correct for _, r in pairs)
        breakdown = Breakdown(
            n_correct=correct,
            n_incorrect=len(pairs) - correct,
            mean_score=sum(r.score for _, r in pairs) / len(pairs),
            n_dev=len(examples),
            errors=tuple(errors[:MAX_ERRORS_SHOWN]),
            metric=task.metric,
        )
        return breakdown, note
    labels = tuple(task.labels)
    columns = labels + tuple(sorted({r.prediction for _, r in pairs} - set(labels)))
    where = {label: i for i, label in enumerate(columns)}
    counts = [[0] * len(columns) for _ in labels]
    for example, record in pairs:
        counts[labels.index(example.target)][where[record.prediction]] += 1
    try:
        verbalizer = Prompt.from_dict(best.body).resolve(task).verbalizer or {}
    except PromptSearchError:
        verbalizer = task.verbalizer
    words = {label: verbalizer[label][0] for label in labels if verbalizer.get(label)}
    confusion = Confusion(
        labels=labels,
        columns=columns,
        words=words,
        counts=tuple(tuple(row) for row in counts),
        n_cached=len(pairs),
        n_dev=len(examples),
    )
    return confusion, note


def _searcher_order(trials: Iterable[TrialRecord]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t.searcher for t in trials))


def collect(
    storage: Storage,
    study_name: str,
    *,
    top: int = 20,
    data_dir: str | Path | None = None,
    task: Task | None = None,
    task_seed: int | None = None,
) -> ReportData:
    """Read everything the report of *study_name* shows.

    *task* (optional) is the study's task, for studies on tasks that are not built
    in; it must hold the same data as the study (its data hash is checked).
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError(f"top must be a whole number ≥ 1; got {top!r}")
    trials = tuple(storage.trials(study_name))  # raises StorageError naming known studies
    study = storage.get_study(study_name)
    if study is None:  # pragma: no cover - deleted between the two reads
        raise ConfigError(f"study {study_name!r} vanished while the report was read")
    ranked = tuple(storage.leaderboard(study_name))
    lengths = {row.content_hash: prompt_length(row.body, row.text) for row in ranked}
    if task is not None:
        if task.spec()["data_hash"] != study.task_hash:
            raise ConfigError(
                f"task: the given task {task.name!r} holds other data than study "
                f"{study_name!r} was run on (data hash {task.spec()['data_hash'][:12]} vs. "
                f"{study.task_hash[:12]}); pass the study's own task"
            )
        note = ""
    else:
        task, note = rebuild_task(study, data_dir, task_seed)
    detail: Confusion | Breakdown | None = None
    if not ranked:
        note = "no complete trial yet"
    elif task is not None:
        detail, note = _best_detail(storage, study, ranked[0], task)
    return ReportData(
        study=study,
        totals=storage.totals(study_name),
        trials=trials,
        ranked=ranked,
        top=top,
        lengths=lengths,
        searchers=_searcher_order(trials),
        best_detail=detail,
        best_note=note,
        best_lineage=tuple(storage.lineage(ranked[0].content_hash, study_name)) if ranked else (),
        test_results=tuple(storage.held_out_results(study_name, split="test")),
    )

"""Tasks: labelled examples in train/dev/test splits, a target, a metric, seed prompts.

A task is either *classification* (each example has a label; a verbalizer maps every
label to one or more words the model can say) or *generation* (each example has a
free-text output, possibly with accepted alternatives).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from promptsearch.errors import ConfigError, DataError
from promptsearch.example import Example, normalize_verbalizer
from promptsearch.metrics import MetricFunction, check_metric, metric_name
from promptsearch.prompt import Prompt

__all__ = ["SPLITS", "TASK_KINDS", "Example", "Task", "TaskKind", "normalize_verbalizer"]

TaskKind = Literal["classification", "generation"]
TASK_KINDS: tuple[TaskKind, ...] = get_args(TaskKind)
"""Every task kind, in the order of :data:`TaskKind`."""
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Task:
    """A prompt-search task.

    Build one with :meth:`from_records` or the file loaders in
    :mod:`promptsearch.tasks.loaders`; the built-in tasks live in :mod:`promptsearch.tasks`.
    *metric* is a metric name, or a function ``(prediction, answer) -> float``, which is
    registered under its ``__name__`` (:func:`promptsearch.metrics.register_metric`) and
    replaced by that name.
    """

    name: str
    kind: TaskKind
    input_fields: tuple[str, ...]
    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    test: tuple[Example, ...] = ()
    metric: str = "accuracy"
    labels: tuple[str, ...] = ()
    verbalizer: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    seed_prompts: tuple[Prompt, ...] = ()
    description: str = ""
    source: Mapping[str, Any] | None = field(default=None, compare=False)
    """Where the data came from, as JSON (see :mod:`promptsearch.tasks.sources`): a study
    stores it, so that commands reopening the study load the same file or data set
    again.  ``None`` for tasks made in Python, which are passed again when reopened."""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"task name must be a non-empty string; got {self.name!r}")
        if self.kind not in TASK_KINDS:
            raise ConfigError(
                f"task kind must be 'classification' or 'generation'; got {self.kind!r}"
            )
        if not self.input_fields:
            raise ConfigError(f"task {self.name!r}: input_fields is empty; name at least one")
        # a function is registered under its name (what a study stores)
        object.__setattr__(self, "metric", metric_name(self.metric))
        check_metric(self.metric, self.kind)
        for split in ("train", "dev"):
            if not getattr(self, split):
                raise DataError(
                    f"task {self.name!r}: the {split} split is empty; give {split} examples "
                    "or let the task split its records (dev_size=...)"
                )
        if self.kind == "classification":
            if not self.labels:
                raise ConfigError(f"task {self.name!r}: a classification task needs labels")
            verbalizer = normalize_verbalizer(self.verbalizer, f"task {self.name!r} verbalizer")
            missing = [label for label in self.labels if label not in verbalizer]
            if missing:
                raise ConfigError(
                    f"task {self.name!r}: label(s) {missing} are missing from the verbalizer "
                    f"{dict(verbalizer)}; add a word for each label"
                )
            object.__setattr__(self, "verbalizer", verbalizer)
            for split in SPLITS:
                for example in getattr(self, split):
                    if example.target not in self.labels:
                        raise DataError(
                            f"task {self.name!r}, {split} example {example.id!r}: label "
                            f"{example.target!r} is not one of the task's labels "
                            f"{list(self.labels)}"
                        )
        for split in SPLITS:
            for example in getattr(self, split):
                missing_fields = [f for f in self.input_fields if f not in example.inputs]
                if missing_fields:
                    raise DataError(
                        f"task {self.name!r}, {split} example {example.id!r}: input field(s) "
                        f"{missing_fields} missing; the example has {sorted(example.inputs)}"
                    )

    def split(self, name: str) -> tuple[Example, ...]:
        """Examples of split *name* ('train', 'dev' or 'test')."""
        if name not in SPLITS:
            raise ConfigError(f"split must be one of {list(SPLITS)}; got {name!r}")
        examples: tuple[Example, ...] = getattr(self, name)
        if not examples:
            raise DataError(f"task {self.name!r}: the {name} split is empty")
        return examples

    def spec(self) -> dict[str, Any]:
        """A JSON-able description that identifies the task's content (for storage)."""
        from promptsearch.hashing import content_hash

        spec: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "input_fields": list(self.input_fields),
            "metric": self.metric,
            "labels": list(self.labels),
            "verbalizer": {k: list(v) for k, v in self.verbalizer.items()},
            "sizes": {s: len(getattr(self, s)) for s in SPLITS},
            "data_hash": content_hash(
                [
                    [
                        (e.id, dict(e.inputs), e.target, list(e.alternatives))
                        for e in getattr(self, s)
                    ]
                    for s in SPLITS
                ]
            ),
        }
        if self.source is not None:
            spec["source"] = dict(self.source)
        return spec

    @classmethod
    def from_records(
        cls,
        name: str,
        records: Iterable[Mapping[str, Any]] | Mapping[str, Iterable[Mapping[str, Any]]],
        *,
        input_fields: Sequence[str],
        label_field: str | None = None,
        output_field: str | None = None,
        verbalizer: Mapping[Any, str | Sequence[str]] | None = None,
        labels: Sequence[Any] | None = None,
        metric: str | MetricFunction | None = None,
        seed_prompts: Sequence[Any] = (),
        id_field: str | None = None,
        dev_size: float | int = 0.2,
        test_size: float | int = 0.0,
        seed: int = 0,
        description: str = "",
    ) -> Task:
        """Build a task from Python records.

        *records* is either one iterable of dicts (split here with *seed*, *dev_size*
        and *test_size*, as fractions or counts) or a mapping ``{"train": [...],
        "dev": [...], "test": [...]}`` of given splits.  Give exactly one of
        *label_field* (classification, with a *verbalizer*) or *output_field*
        (generation).
        """
        if (label_field is None) == (output_field is None):
            raise ConfigError(
                "give exactly one of label_field= (classification) or output_field= "
                f"(free-text generation); got label_field={label_field!r}, "
                f"output_field={output_field!r}"
            )
        if isinstance(input_fields, str):
            input_fields = [input_fields]
        kind: TaskKind = "classification" if label_field is not None else "generation"
        target_field = label_field if label_field is not None else output_field
        assert target_field is not None  # narrowed above

        def convert(rows: Iterable[Mapping[str, Any]], split: str) -> list[Example]:
            out = []
            for index, row in enumerate(rows):
                if not isinstance(row, Mapping):
                    raise DataError(
                        f"task {name!r}, {split} record {index}: expected a mapping of "
                        f"field to value, got {type(row).__name__}"
                    )
                missing = [f for f in (*input_fields, target_field) if f not in row]
                if missing:
                    raise DataError(
                        f"task {name!r}, {split} record {index}: field(s) {missing} missing; "
                        f"the record has {sorted(row)}"
                    )
                target = row[target_field]
                alternatives: tuple[str, ...] = ()
                if isinstance(target, (list, tuple)):
                    if not target:
                        raise DataError(
                            f"task {name!r}, {split} record {index}: "
                            f"{target_field!r} is an empty list"
                        )
                    alternatives = tuple(str(t) for t in target[1:])
                    target = target[0]
                example_id = str(row[id_field]) if id_field else f"{split}-{index}"
                out.append(
                    Example(
                        id=example_id,
                        inputs={f: str(row[f]) for f in input_fields},
                        target=str(target),
                        alternatives=alternatives,
                    )
                )
            return out

        if isinstance(records, Mapping):
            unknown = [k for k in records if k not in SPLITS]
            if unknown:
                raise ConfigError(
                    f"task {name!r}: unknown split name(s) {unknown}; use {list(SPLITS)}"
                )
            splits = {s: convert(records.get(s, ()), s) for s in SPLITS}
            if not splits["dev"] and splits["train"]:
                splits["train"], splits["dev"], _ = _split(splits["train"], dev_size, 0, seed, name)
        else:
            everything = convert(records, "all")
            splits = dict(
                zip(SPLITS, _split(everything, dev_size, test_size, seed, name), strict=True)
            )

        task_labels: tuple[str, ...] = ()
        verbal: dict[str, tuple[str, ...]] = {}
        if kind == "classification":
            if verbalizer is None:
                raise ConfigError(
                    f"task {name!r}: a classification task needs verbalizer=, mapping each "
                    "label to the word(s) the model should say, e.g. {0: 'bad', 1: 'good'}"
                )
            verbal = normalize_verbalizer(verbalizer, f"task {name!r} verbalizer")
            if labels is not None:
                task_labels = tuple(str(label) for label in labels)
            else:  # the verbalizer's labels, then any others the data has (caught below)
                seen = dict.fromkeys(verbal)
                for split_examples in splits.values():
                    seen.update(dict.fromkeys(e.target for e in split_examples))
                task_labels = tuple(seen)
        return cls(
            name=name,
            kind=kind,
            input_fields=tuple(input_fields),
            train=tuple(splits["train"]),
            dev=tuple(splits["dev"]),
            test=tuple(splits["test"]),
            metric=metric_name(metric)
            if metric is not None
            else ("accuracy" if kind == "classification" else "exact_match"),
            labels=task_labels,
            verbalizer=verbal,
            seed_prompts=tuple(
                p if isinstance(p, Prompt) else Prompt(template=p) for p in seed_prompts
            ),
            description=description,
        )


def _count(size: float | int, total: int, what: str, name: str) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, float)) or size < 0:
        raise ConfigError(
            f"task {name!r}: {what} must be a fraction in [0, 1) or a count; got {size!r}"
        )
    if isinstance(size, float) and size < 1:
        return round(size * total)
    return int(size)


def _split(
    examples: list[Example], dev_size: float | int, test_size: float | int, seed: int, name: str
) -> tuple[list[Example], list[Example], list[Example]]:
    total = len(examples)
    n_dev = _count(dev_size, total, "dev_size", name)
    n_test = _count(test_size, total, "test_size", name)
    if n_dev + n_test >= total:
        raise DataError(
            f"task {name!r}: {total} records cannot give {n_dev} dev and {n_test} test examples "
            "and still leave a train split; give more records or smaller dev_size/test_size"
        )
    order = list(range(total))
    random.Random(seed).shuffle(order)
    shuffled = [examples[i] for i in order]
    test = shuffled[:n_test]
    dev = shuffled[n_test : n_test + n_dev]
    train = shuffled[n_test + n_dev :]
    return train, dev, test

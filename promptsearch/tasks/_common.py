"""Helpers shared by the built-in task families."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from promptsearch.errors import ConfigError, DataError
from promptsearch.task import Example

__all__ = [
    "DATA_HINT",
    "TaskInfo",
    "check_size",
    "data_missing",
    "no_data_dir",
    "stratified_sample",
    "take",
]

DATA_HINT = (
    "point to the data folder with --data-dir DIR or PROMPTSEARCH_DATA=DIR (data_dir=DIR in Python)"
)


@dataclass(frozen=True)
class TaskInfo:
    """One entry of :func:`promptsearch.tasks.list_tasks`.

    ``where`` is the data location (the file or folder read, or the one expected
    when ``available`` is false).
    """

    name: str
    family: str
    description: str
    available: bool
    where: str


def no_data_dir(name: str, needs: str) -> DataError:
    """The error for a task that needs a data folder when none is set."""
    return DataError(
        f"task {name!r} reads {needs} from a data folder, but none is set; {DATA_HINT}"
    )


def data_missing(name: str, expected: Path, data_dir: Path) -> DataError:
    """The error for an expected data file or folder that is not there (or is a folder
    where a file belongs)."""
    if expected.is_dir() and expected.suffix:
        return DataError(
            f"task {name!r}: {expected} is a folder, not a data file; put the "
            f"{expected.name} file there instead"
        )
    if not data_dir.is_dir():
        return DataError(
            f"task {name!r}: the data folder {data_dir} does not exist (expected {expected}); "
            f"{DATA_HINT}"
        )
    return DataError(f"task {name!r}: expected {expected}, which does not exist; {DATA_HINT}")


def check_size(value: int | None, option: str) -> int | None:
    """Validate a size option: None or a positive int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{option} must be a positive whole number or None; got {value!r}")
    return value


def take(examples: Sequence[Example], limit: int | None, seed: int) -> list[Example]:
    """At most *limit* examples, a seeded random subset kept in file order."""
    if limit is None or limit >= len(examples):
        return list(examples)
    chosen = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in chosen]


def stratified_sample(examples: Sequence[Example], limit: int | None, seed: int) -> list[Example]:
    """At most *limit* examples keeping the label proportions, in file order.

    Each label gets its share by largest remainder; within a label the examples are
    a seeded random subset.
    """
    if limit is None or limit >= len(examples):
        return list(examples)
    by_label: dict[str, list[int]] = {}
    for index, example in enumerate(examples):
        by_label.setdefault(example.target, []).append(index)
    total = len(examples)
    shares = {label: len(idx) * limit / total for label, idx in by_label.items()}
    counts = {label: int(share) for label, share in shares.items()}
    leftover = limit - sum(counts.values())
    for label in sorted(shares, key=lambda lb: (counts[lb] - shares[lb], lb))[:leftover]:
        counts[label] += 1
    rng = random.Random(seed)
    chosen: list[int] = []
    for label in sorted(by_label):
        chosen.extend(rng.sample(by_label[label], counts[label]))
    return [examples[i] for i in sorted(chosen)]

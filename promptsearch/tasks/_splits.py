"""Which records are which split, for :mod:`promptsearch.tasks.sources`: a ``split``
field, file names, a data set's split names (all through a split map), and the
seeded draw of the splits the data lacks."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from promptsearch.errors import ConfigError, DataError
from promptsearch.task import SPLITS
from promptsearch.tasks.loaders import COMPRESSIONS, FORMATS, dataset_splits, read_records

__all__ = [
    "DRAWN_SHARE",
    "SPLIT_FIELD",
    "by_split_field",
    "data_suffix",
    "draw_missing",
    "map_dataset_splits",
    "named_splits",
    "stem",
]

logger = logging.getLogger(__name__)

SPLIT_FIELD: Final = "split"
"""The field of a single data file that names each record's split."""
DRAWN_SHARE: Final = 0.2
"""The share of train's records a missing dev (and a missing test) split gets."""


def data_suffix(name: str) -> str | None:
    """The format extension of a file name (``.jsonl`` of ``a.jsonl.gz``), or None."""
    lowered = name.lower()
    for compression in COMPRESSIONS:
        if lowered.endswith(compression):
            lowered = lowered[: -len(compression)]
    return next((ext for ext in FORMATS if lowered.endswith(ext)), None)


def stem(path: Path) -> str:
    """The file's name without its format extension and compression."""
    suffix = data_suffix(path.name) or ""
    name = path.name
    for compression in COMPRESSIONS:
        if name.lower().endswith(compression):
            name = name[: -len(compression)]
    return name[: len(name) - len(suffix)] if suffix else path.stem


def _target(split: str, split_map: Mapping[str, str]) -> str | None:
    return split_map.get(split, split_map.get(split.lower()))


def by_split_field(
    records: list[dict[str, Any]], split_map: Mapping[str, str], where: str
) -> dict[str, list[dict[str, Any]]]:
    splits: dict[str, list[dict[str, Any]]] = {}
    for index, record in enumerate(records):
        value = record.get(SPLIT_FIELD)
        target = _target(str(value), split_map) if value is not None else None
        if target is None:
            raise DataError(
                f"{where}, record {index + 1}: split {value!r} is not one of "
                f"{sorted(split_map)}; fix the record or map it with --split-map "
                f"{value}=train|dev|test"
            )
        splits.setdefault(target, []).append(record)
    return splits


def named_splits(
    paths: Sequence[Path], split_map: Mapping[str, str], where: str, *, strict: bool
) -> dict[str, list[dict[str, Any]]]:
    splits: dict[str, list[dict[str, Any]]] = {}
    origin: dict[str, Path] = {}
    for path in paths:
        name = stem(path)
        target = _target(name, split_map)
        if target is None:
            if strict:
                raise ConfigError(
                    f"{path}: cannot tell which split the file is; name it train, dev or test "
                    f"(e.g. train.jsonl), or map its name with --split-map {name}=train"
                )
            logger.info("%s: %r is not a split name; the file is left out", where, path.name)
            continue
        if target in origin:
            raise ConfigError(
                f"{where}: both {origin[target].name} and {path.name} are the {target} split; "
                "keep one, or map the other elsewhere with --split-map"
            )
        origin[target] = path
        splits[target] = read_records(path)
    if "train" not in splits:
        raise ConfigError(
            f"{where}: no train split among {[p.name for p in paths]}; name a file "
            "train.jsonl (or .csv, .tsv, .json), or map its name with --split-map NAME=train"
        )
    return splits


def map_dataset_splits(
    raw: Any, split_map: Mapping[str, str], where: str
) -> dict[str, list[dict[str, Any]]]:
    if not isinstance(raw, Mapping):
        return dataset_splits(raw)
    renamed: dict[str, Any] = {}
    for name, part in raw.items():
        target = _target(str(name), split_map)
        if target is None:
            logger.info("%s: split %r is left out (not in the split map)", where, name)
            continue
        if target in renamed:
            raise ConfigError(
                f"{where}: more than one split maps to {target!r} ({sorted(map(str, raw))}); "
                "map one of them elsewhere with --split-map"
            )
        renamed[target] = part
    if "train" not in renamed:
        raise ConfigError(
            f"{where}: the data set's splits {sorted(map(str, raw))} hold no train split; "
            "map one with --split-map NAME=train"
        )
    return dataset_splits(renamed)


def draw_missing(
    splits: Mapping[str, list[dict[str, Any]]],
    seed: int,
    where: str,
    *,
    dev_size: int | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every split, the missing ones drawn from train (:data:`DRAWN_SHARE` each, seeded).

    *dev_size* records go to a drawn dev split instead; a drawn test split is the one
    drawn without it (the same records), so studies of one data set with different dev
    sizes are scored on the same test examples.  Data with a dev split of its own
    refuses *dev_size*.
    """
    if dev_size is not None and splits.get("dev"):
        raise ConfigError(
            f"dev_size: {where} has a dev split of its own ({len(splits['dev'])} records); "
            "drop --dev-size (dev_size=), or move records between the data's splits"
        )
    train = list(splits["train"])
    missing = [s for s in ("dev", "test") if not splits.get(s)]
    if not missing:
        return {s: list(splits[s]) for s in SPLITS}
    count = round(DRAWN_SHARE * len(train))
    n_dev = count if dev_size is None else dev_size
    n_drawn = (n_dev if "dev" in missing else 0) + (count if "test" in missing else 0)
    if count < 1 or n_dev < 1 or len(train) - n_drawn < 1:
        wanted = "" if dev_size is None else f" ({dev_size} dev records asked for)"
        raise DataError(
            f"{where}: train has {len(train)} record(s), too few to draw "
            f"{' and '.join(missing)} from{wanted}; give more records or "
            f"{'/'.join(missing)} data" + ("" if dev_size is None else ", or a smaller --dev-size")
        )
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    # positions as without dev_size: dev first, then test; a larger dev continues after both
    drawn: dict[str, list[int]] = {}
    for split in missing:
        drawn[split], order = order[:count], order[count:]
    if "dev" in missing and n_dev != count:
        extra = n_dev - count
        if extra < 0:
            order = drawn["dev"][n_dev:] + order
            drawn["dev"] = drawn["dev"][:n_dev]
        else:
            drawn["dev"], order = drawn["dev"] + order[:extra], order[extra:]
    kept = sorted(order)
    return {
        "train": [train[i] for i in kept],
        "dev": [train[i] for i in drawn["dev"]] if "dev" in drawn else list(splits["dev"]),
        "test": [train[i] for i in drawn["test"]] if "test" in drawn else list(splits["test"]),
    }

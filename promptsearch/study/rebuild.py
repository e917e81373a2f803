"""Rebuilding a stored study's task, model, scorer and searchers, for work after the
search (``final``) and for workers that join it: :func:`rebuild_study`.

A study records its task by name and data hash (and, for a task from a data file or
data set, its source: paths, field options, split map, seed) and its model by name
and fingerprint.  A task with a source is read again from it, and refused when its
data hash changed; a built-in task loaded with other split sizes (``--dev-size``) is
loaded again with them and checked the same way; any other built-in task is rebuilt
by loading the task of that name and keeping the task seed whose data matches the
stored hash; the model by loading the stored name and checking its fingerprint.
When that cannot work (a task or model made in Python, another dtype ...), the error
says which option to pass.  A worker also rebuilds the study's searchers from their
stored names and parameters (:func:`searchers_from_config`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from promptsearch.errors import ConfigError, DataError, ModelError, PromptSearchError
from promptsearch.prompt import Prompt
from promptsearch.searchers import get_searcher_class
from promptsearch.searchers.base import LEADERBOARD_SIZE, ScoredPrompt, Searcher
from promptsearch.task import Task

if TYPE_CHECKING:
    from promptsearch.models.base import LanguageModel
    from promptsearch.scoring.scorer import Scorer
    from promptsearch.storage import Storage, StudyRecord
    from promptsearch.study.support import ScorerLike

__all__ = [
    "KSHOT_SEEDS",
    "Rebuilt",
    "rebuild_study",
    "searchers_from_config",
    "source_task",
    "study_leaderboard",
    "study_model",
    "study_scorer",
    "study_task",
    "task_seed_candidates",
]

KSHOT_SEEDS: Final = (13, 21, 42, 87, 100)
"""The published k-shot split seeds (LM-BFF, RLPrompt), tried in this order."""

_SEED_SUFFIX: Final = re.compile(r"-seed(\d+)$")


def task_seed_candidates(study_name: str, task_seed: int | None) -> list[int]:
    """Task seeds to try for a study: the given one only, else the one its name ends
    with (``...-seed42``, as ``promptsearch run --task-seed 13,42`` names studies),
    then the k-shot seeds."""
    if task_seed is not None:
        if isinstance(task_seed, bool) or not isinstance(task_seed, int):
            raise ConfigError(f"task_seed must be a whole number or None; got {task_seed!r}")
        return [task_seed]
    found = _SEED_SUFFIX.search(study_name)
    named = [int(found.group(1))] if found else []
    return list(dict.fromkeys([*named, *KSHOT_SEEDS]))


def study_task(
    record: StudyRecord,
    *,
    name: str | None = None,
    data_dir: str | Path | None = None,
    task_seed: int | None = None,
) -> Task:
    """The study's task: read again from the source it stored (a data file or data set,
    :mod:`promptsearch.tasks.sources`), else the built-in task (*name*, default the
    study's) whose data is the study's."""
    from promptsearch.tasks import builtin_source_task, is_builtin_source, load_task

    source = record.task_spec.get("source")
    if is_builtin_source(source) and name in (None, record.task_name):
        return _matching(record, builtin_source_task(source, data_dir), "its split sizes")
    if source is not None and name in (None, record.task_name):
        return source_task(record, source)
    task_name = name or record.task_name
    seeds = task_seed_candidates(record.name, task_seed)
    problems: list[str] = []
    for seed in seeds:
        try:
            task = load_task(task_name, data_dir=data_dir, seed=seed)
        except ConfigError as error:
            if "unknown task" in str(error):
                raise ConfigError(
                    f"study {record.name!r} was run on task {task_name!r}, which is not a "
                    "built-in task, so it cannot be rebuilt from its name; pass the Task "
                    "object (promptsearch.api.final(..., task=TASK))"
                ) from None
            if task_seed is not None:
                raise
            problems.append(f"seed {seed}: {error}")  # e.g. a k-shot seed with no folder
            continue
        except DataError as error:
            problems.append(f"seed {seed}: {error}")
            continue
        if task.spec()["data_hash"] == record.task_hash:
            return task
        problems.append(f"seed {seed}: other data")
    tried = ", ".join(str(s) for s in seeds)
    detail = (
        f" ({problems[0]})" if problems and all("other data" not in p for p in problems) else ""
    )
    raise DataError(
        f"study {record.name!r}: no task seed of {task_name!r} (tried {tried}) gives the data "
        f"the study was run on{detail}; pass --task-seed (and --data-dir) as given to "
        "`promptsearch run`, or the Task object in Python"
    )


def _matching(record: StudyRecord, task: Task, how: str) -> Task:
    """*task*, read again as the study stored it (*how*), if its data is the study's."""
    found = task.spec()["data_hash"]
    if found != record.task_hash:
        raise DataError(
            f"study {record.name!r}: task {record.task_name!r} loaded with {how} gives other "
            f"data than the study was run on (data hash {found[:12]} now vs. "
            f"{record.task_hash[:12]} stored); pass --data-dir as given to `promptsearch run`, "
            "or the Task object in Python"
        )
    return task


def source_task(record: StudyRecord, source: Any) -> Task:
    """The task of a study's stored source, read again; its data must be the study's."""
    from promptsearch.tasks.sources import TaskSource

    described = TaskSource.from_dict(source)
    try:
        task = described.load()
    except PromptSearchError as error:
        raise type(error)(
            f"study {record.name!r}: its task {record.task_name!r} cannot be read again from "
            f"{described.describe()}: {error}"
        ) from None
    found = task.spec()["data_hash"]
    if found != record.task_hash:
        raise DataError(
            f"study {record.name!r}: the data of its task {record.task_name!r} "
            f"({described.describe()}) changed since the study ran (data hash {found[:12]} "
            f"now vs. {record.task_hash[:12]} stored); put the original data back, or run a "
            "new study on the new data"
        )
    return task


def study_model(
    record: StudyRecord,
    *,
    model: LanguageModel | str | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> LanguageModel:
    """The study's model: *model* if given (a loaded model, a name or path), else the
    model name the study recorded; its fingerprint must match the study's."""
    from promptsearch.models.base import LanguageModel
    from promptsearch.models.loading import load_model

    if isinstance(model, LanguageModel):
        loaded = model
    else:
        if model is not None and not isinstance(model, str):
            raise ConfigError(
                f"model must be a model name/path, a LanguageModel, or None for the study's "
                f"model; got {type(model).__name__}"
            )
        name = model or record.model_name
        try:
            loaded = load_model(name, device=device, dtype=dtype)
        except PromptSearchError as error:
            if model is not None:
                raise
            raise ModelError(
                f"study {record.name!r} was scored with model {name!r}, which cannot be loaded "
                f"again by that name ({error}); pass --model with its hub id or local path "
                "(model= in Python, which also takes a loaded model)"
            ) from None
    if loaded.fingerprint != record.model_fingerprint:
        raise ModelError(
            f"model {loaded.name!r} as loaded now (dtype {loaded.dtype}) differs from the one "
            f"study {record.name!r} was scored with (fingerprint {loaded.fingerprint[:12]} vs. "
            f"{record.model_fingerprint[:12]}); pass the same --model and --dtype as the run"
        )
    return loaded


def study_scorer(
    record: StudyRecord, model: LanguageModel, *, batch_size: int | str = 16
) -> Scorer:
    """A scorer over *model* with the settings the study recorded (its calibration, the
    chat turns its prompts were rendered in); the caller checks the fingerprint against
    the study's."""
    from promptsearch.scoring.chat import study_chat_format
    from promptsearch.scoring.scorer import Scorer

    options: dict[str, Any] = {}
    calibration = record.config.get("calibration")
    if calibration is not None:
        if not isinstance(calibration, dict) or calibration.get("method") != "contextual":
            raise ConfigError(
                f"study {record.name!r} records a calibration this promptsearch does not know "
                f"({calibration!r}); use the promptsearch version that ran it"
            )
        options["calibrate"] = True
        inputs = calibration.get("content_free_inputs")
        if inputs is not None:
            options["content_free_inputs"] = list(inputs)
    chat = study_chat_format(record.config, owner=f"study {record.name!r}")
    if chat is not None:
        options["chat_template"] = chat
    return Scorer(model, batch_size=batch_size, **options)


@dataclass(frozen=True)
class Rebuilt:
    """A stored study's task and scorer (over its model), as :func:`rebuild_study` made them."""

    task: Task
    scorer: ScorerLike

    @property
    def model(self) -> Any:
        """The scorer's model."""
        return self.scorer.model


def rebuild_study(
    record: StudyRecord,
    *,
    task: Task | str | None = None,
    model: LanguageModel | str | None = None,
    scorer: ScorerLike | None = None,
    data_dir: str | Path | None = None,
    task_seed: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    batch_size: int | str = 16,
) -> Rebuilt:
    """The task and scorer of the stored study *record*, for ``final`` and workers.

    *task*: a Task as is, or a built-in task name (default the study's), loaded with
    the task seed whose data is the study's (:func:`study_task`).  *scorer*, if
    given, is used as is; else one with the study's settings (:func:`study_scorer`)
    over *model* (default the study's, :func:`study_model`).
    """
    if isinstance(task, Task):
        task_obj = task
    elif task is None or isinstance(task, str):
        task_obj = study_task(record, name=task, data_dir=data_dir, task_seed=task_seed)
    else:
        raise ConfigError(f"task must be a Task, a built-in task name or None; got {task!r}")
    if scorer is not None and model is not None:
        raise ConfigError("give scorer= or model=, not both (the scorer brings its model)")
    if scorer is None:
        language_model = study_model(record, model=model, device=device, dtype=dtype)
        scorer = study_scorer(record, language_model, batch_size=batch_size)
    return Rebuilt(task_obj, scorer)


def _revive(value: Any) -> Any:
    """Searcher parameters as stored (JSON) → Python values: prompts come back as Prompts."""
    if isinstance(value, list):
        return [_revive(v) for v in value]
    if isinstance(value, Mapping) and "template" in value:
        try:
            return Prompt.from_dict(value)
        except ConfigError:
            return dict(value)
    return value


def searchers_from_config(record: StudyRecord) -> list[Searcher]:
    """New searchers built from the names and parameters the study recorded."""
    entries = record.config.get("searchers")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(
            f"study {record.name!r} records no searchers; pass searchers= to run_worker()"
        )
    searchers: list[Searcher] = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"study {record.name!r} records a malformed searcher: {entry!r}")
        name = entry["name"]
        params = entry.get("params") or {}
        cls = get_searcher_class(name)
        try:
            searchers.append(cls(**{str(k): _revive(v) for k, v in params.items()}))
        except (ConfigError, TypeError) as error:
            raise ConfigError(
                f"study {record.name!r}: searcher {name!r} cannot be rebuilt from its stored "
                f"parameters {params!r} ({error}); pass searchers= to run_worker()"
            ) from None
    return searchers


def study_leaderboard(storage: Storage, study: str) -> tuple[ScoredPrompt, ...]:
    """The study's best complete trials from the database, by every worker (prompts and
    dev scores only), for searchers that learn from the others' best."""
    return tuple(
        ScoredPrompt(Prompt.from_dict(row.body), row.content_hash, row.dev_score, row.searcher)
        for row in storage.leaderboard(study, top=LEADERBOARD_SIZE)
    )

"""The Python API: :func:`search` a task for better prompts, :func:`evaluate` one prompt."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.prompt import Prompt
from promptsearch.task import Task

if TYPE_CHECKING:
    from promptsearch.model import LanguageModel
    from promptsearch.scorer import ScoreReport
    from promptsearch.searchers.base import Searcher
    from promptsearch.storage import Storage
    from promptsearch.study import Budget, StudyResult

__all__ = ["default_study_name", "evaluate", "search"]

DEFAULT_SEARCHERS = ("manual", "random-edit")


def _model(
    model: LanguageModel | str | None, device: str | None, dtype: str | None
) -> LanguageModel:
    from promptsearch.model import LanguageModel, load_model

    if isinstance(model, LanguageModel):
        return model
    if model is not None and not isinstance(model, str):
        raise ConfigError(
            f"model must be a model name/path, a LanguageModel, or None for the embedded "
            f"default; got {type(model).__name__}"
        )
    return load_model(model, device=device, dtype=dtype)


def _task(task: Task | str, data_dir: str | None, task_seed: int) -> Task:
    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        from promptsearch.tasks import load_task

        return load_task(task, data_dir=data_dir, seed=task_seed)
    raise ConfigError(f"task must be a Task or a built-in task name; got {type(task).__name__}")


def _storage(storage: Storage | str | None) -> Storage:
    from promptsearch.storage import Storage, open_storage

    if isinstance(storage, Storage):
        return storage
    return open_storage(storage)


def default_study_name(task_name: str, model_name: str) -> str:
    """``<task>-<model>``: rerunning the same task on the same model resumes that study."""
    short = model_name.rstrip("/").split("/")[-1]
    return f"{task_name}-{short}"


def search(
    task: Task | str,
    *,
    model: LanguageModel | str | None = None,
    searchers: Sequence[Searcher | str] = DEFAULT_SEARCHERS,
    budget: Budget | int | Mapping[str, Any] = 30,
    storage: Storage | str | None = None,
    study: str | None = None,
    seed: int = 0,
    batch_size: int = 16,
    candidates_per_round: int = 4,
    data_dir: str | None = None,
    task_seed: int = 13,
    device: str | None = None,
    dtype: str | None = None,
    progress: bool = True,
) -> StudyResult:
    """Search prompts for *task* and return the study's result.

    *task* is a :class:`Task` or a built-in task name; *model* a hub id, local
    path, loaded model, or ``None`` for the embedded SmolLM2-135M-Instruct;
    *storage* a database URL or path (default ``promptsearch.db`` here).  Running
    again with the same *study* name resumes it.
    """
    from promptsearch.scorer import Scorer
    from promptsearch.study import Study

    task_obj = _task(task, data_dir, task_seed)
    language_model = _model(model, device, dtype)
    store = _storage(storage)
    name = study or default_study_name(task_obj.name, language_model.name)
    scorer = Scorer(language_model, batch_size=batch_size)
    return Study(
        name,
        task_obj,
        scorer,
        searchers,
        budget,
        store,
        seed=seed,
        candidates_per_round=candidates_per_round,
        progress=progress,
    ).run()


def evaluate(
    task: Task | str,
    prompt: Prompt | str,
    *,
    model: LanguageModel | str | None = None,
    split: str = "dev",
    limit: int | None = None,
    batch_size: int = 16,
    data_dir: str | None = None,
    task_seed: int = 13,
    device: str | None = None,
    dtype: str | None = None,
) -> ScoreReport:
    """Score one prompt on a split of *task* (no database involved)."""
    from promptsearch.scorer import Scorer
    from promptsearch.validation import check_int

    task_obj = _task(task, data_dir, task_seed)
    prompt_obj = prompt if isinstance(prompt, Prompt) else Prompt(template=prompt)
    examples = task_obj.split(split)
    if limit is not None:
        examples = examples[: check_int(limit, "limit", minimum=1)]
    scorer = Scorer(_model(model, device, dtype), batch_size=batch_size)
    return scorer.score(prompt_obj, examples, task_obj)

"""The Python API: :func:`search` a task for better prompts, :func:`evaluate` one prompt,
:func:`final` scores a study's best prompts once on the test split."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError, PromptSearchError
from promptsearch.prompt import Prompt
from promptsearch.scoring.chat import check_chat_template
from promptsearch.task import Task

if TYPE_CHECKING:
    from promptsearch.evaluation.reports import FinalReport
    from promptsearch.models.base import LanguageModel
    from promptsearch.scoring.scorer import ScoreReport
    from promptsearch.searchers.base import Searcher
    from promptsearch.storage import Storage
    from promptsearch.study.ensemble import PromptEnsemble
    from promptsearch.study.loop import Budget, ScorerLike, StudyResult
    from promptsearch.study.racing import Racing
    from promptsearch.study.selection import Selection

__all__ = ["default_study_name", "evaluate", "final", "search"]

logger = logging.getLogger(__name__)

DEFAULT_SEARCHERS = ("manual", "label-words", "optuna")
"""What ``promptsearch run`` searches with when no ``--searcher`` is given: the seed
prompts, label words found on train, and Optuna's search over template, instruction,
label words, separator and demonstrations that reuses what the others found (see
docs/benchmarks.md, the quality benchmark)."""

DEFAULT_BUDGET = 48
"""Prompt evaluations of a run with no budget given."""

AUTO_RACING_MIN_SEARCH = 64
"""With ``racing="auto"``, racing is on when the search part of dev has at least this
many examples (with fewer, its first rung of 8 examples says too little)."""


def _model(
    model: LanguageModel | str | None, device: str | None, dtype: str | None
) -> LanguageModel:
    from promptsearch.models.base import LanguageModel
    from promptsearch.models.loading import load_model

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
        from promptsearch.tasks.sources import is_source, load_source

        if is_source(task):  # a data file, folder or hf: data set, fields guessed
            return load_source(task, seed=task_seed)
        return load_task(task, data_dir=data_dir, seed=task_seed)
    raise ConfigError(
        f"task must be a Task, a built-in task name, a data file or hf:NAME; got "
        f"{type(task).__name__}"
    )


def _storage(storage: Storage | str | None) -> Storage:
    from promptsearch.storage import Storage, open_storage

    if isinstance(storage, Storage):
        return storage
    return open_storage(storage)


def _check_calibrate(calibrate: object, task: Task) -> None:
    """Fail before any model loads: calibrate must be a bool, and only for classification."""
    if not isinstance(calibrate, bool):
        raise ConfigError(f"calibrate must be True or False; got {calibrate!r}")
    if calibrate and task.kind != "classification":
        raise ConfigError(
            f"calibrate=True applies to classification tasks only; task {task.name!r} is a "
            f"{task.kind} task; leave calibrate off for it"
        )


def default_study_name(task_name: str, model_name: str) -> str:
    """``<task>-<model>``: rerunning the same task on the same model resumes that study.
    A remote model (``openai:`` spec) is ``remote-<its model name>``."""
    from promptsearch.models.remote import REMOTE_PREFIX, short_name

    if model_name.startswith(REMOTE_PREFIX):
        return f"{task_name}-{short_name(model_name)}"
    short = model_name.rstrip("/").split("/")[-1]
    return f"{task_name}-{short}"


def search(
    task: Task | str,
    *,
    model: LanguageModel | str | None = None,
    searchers: Sequence[Searcher | str] = DEFAULT_SEARCHERS,
    budget: Budget | int | Mapping[str, Any] = DEFAULT_BUDGET,
    storage: Storage | str | None = None,
    study: str | None = None,
    seed: int = 0,
    batch_size: int | str = 16,
    candidates_per_round: int = 4,
    data_dir: str | None = None,
    task_seed: int = 13,
    device: str | None = None,
    dtype: str | None = None,
    progress: bool = True,
    calibrate: bool = False,
    racing: Racing | Mapping[str, Any] | bool | str | None = None,
    selection: Selection | Mapping[str, Any] | bool | None = True,
    create_only: bool = False,
    optuna_storage: str | None = None,
    optuna_study: str | None = None,
    run_config: Mapping[str, Any] | None = None,
    chat_template: str | bool = "off",
) -> StudyResult:
    """Search prompts for *task* and return the study's result.

    *create_only*: store the study (task, model, scorer, searchers, budget) and
    return at once, without searching; workers then join it
    (:func:`promptsearch.study.worker.run_worker`, ``promptsearch worker``).

    *task* is a :class:`Task` or a built-in task name; *model* a hub id, local
    path, loaded model, or ``None`` for the embedded SmolLM2-135M-Instruct;
    *storage* a database URL or path (default ``promptsearch.db`` here).  Running
    again with the same *study* name resumes it.  A task loaded with another dev size
    (``load_task(..., dev_size=N)``, ``load_source(..., dev_size=N)``) gets a default
    study name ending in ``-devN``.  *calibrate* turns on contextual
    calibration of classification scores (see :mod:`promptsearch.scoring.calibration`); the
    default study name then ends in ``-calibrated``.  *chat_template* (``"off"``,
    ``"on"`` or ``"auto"``: on where the model has a chat template) scores every
    prompt as a user turn of the model's chat template, the answer opening the
    assistant's turn (see :mod:`promptsearch.scoring.chat`); the default study name
    then ends in ``-chat``.  *racing* (a
    :class:`~promptsearch.study.racing.Racing`, a mapping of its fields, or True for the
    defaults) scores candidates on growing subsets of dev and stops the weak ones
    early; the default study name then ends in ``-racing``.  ``racing="auto"`` races
    with the defaults when the search part of dev has at least
    :data:`AUTO_RACING_MIN_SEARCH` examples, and keeps the study name.  *selection* (a
    :class:`~promptsearch.study.selection.Selection`, a mapping of its fields, True for the
    defaults, False for off) holds back part of dev to confirm the pick, which then
    replaces the best seed prompt only with evidence (see :mod:`promptsearch.study.selection`);
    with the default True it is off, with a logged warning, when dev is too small to split,
    and a warning says so, as the search starts, when the held-back part is too small
    to confirm small gains (fewer than
    :data:`~promptsearch.study.selection.SMALL_CONFIRMATION` examples).
    *optuna_storage* (an Optuna storage URL such as ``sqlite:///optuna.db``, or
    ``journal:PATH``) copies every trial of every searcher into the Optuna study
    *optuna_study* (default: the study's name) there, for optuna-dashboard and Optuna's
    plots (see :mod:`promptsearch.study.optuna_mirror`); it is opened before any model
    loads.
    *run_config* (JSON) is stored with the study as ``config["run"]``: ``promptsearch
    run`` keeps its options there, so that ``promptsearch run --study NAME`` resumes it.

    *task* may also be a data file, a folder of split files, ``hf:NAME[:CONFIG]`` or
    ``hf-disk:PATH``, with its fields guessed (:func:`promptsearch.tasks.sources.load_source`
    takes them explicitly); the study stores where the data came from, so that
    :func:`final`, workers and reports read it again.
    """
    from promptsearch.scoring.scorer import Scorer
    from promptsearch.searchers import make_searchers
    from promptsearch.searchers.base import check_local_model
    from promptsearch.study.loop import Study
    from promptsearch.study.racing import Racing

    if study is not None and (not isinstance(study, str) or not study.strip()):
        raise ConfigError(
            f"study must be a non-empty name, or None for the default <task>-<model>; got {study!r}"
        )
    if optuna_storage is not None:  # a bad one fails before the task or the model loads
        optuna_storage = _check_optuna(optuna_storage, storage)
    task_obj = _task(task, data_dir, task_seed)
    _check_calibrate(calibrate, task_obj)
    check_chat_template(chat_template)
    # built and checked against the task kind before any model loads
    searcher_objs = make_searchers(searchers, task_obj)
    for searcher_obj in searcher_objs:  # a remote model cannot serve gradients
        check_local_model(searcher_obj, model)
    chosen = choose_selection(selection, task_obj)  # fails before any model loads
    n_search = len(task_obj.dev) - (0 if chosen is None else chosen.confirm_size(len(task_obj.dev)))
    auto = racing == "auto"
    if auto:
        racing = n_search >= AUTO_RACING_MIN_SEARCH
    elif isinstance(racing, str):
        raise ConfigError(
            f"racing must be a Racing, a mapping, True, False or 'auto'; got {racing!r}"
        )
    race = Racing.coerce(racing)
    if race is not None:
        race.check_dev(n_search)
    language_model = _model(model, device, dtype)
    scorer = Scorer(
        language_model, batch_size=batch_size, calibrate=calibrate, chat_template=chat_template
    )  # before the storage opens: a model without a chat template changes nothing
    store = _storage(storage)
    name = study or default_study_name(task_obj.name, language_model.name)
    dev_size = (task_obj.source or {}).get("dev_size")
    if dev_size is not None and not study:
        name += f"-dev{dev_size}"
    if calibrate and not study:
        name += "-calibrated"
    if scorer.chat is not None and not study:
        name += "-chat"
    if race is not None and not study and not auto:
        name += "-racing"
    study_obj = Study(
        name,
        task_obj,
        scorer,
        searcher_objs,
        budget,
        store,
        seed=seed,
        candidates_per_round=candidates_per_round,
        progress=progress,
        racing=race,
        selection=chosen,
        optuna_storage=optuna_storage,
        optuna_study=optuna_study,
        run_config=run_config,
    )
    return study_obj.create() if create_only else study_obj.run()


def _check_optuna(url: str, storage: Storage | str | None) -> str:
    from promptsearch.storage import Storage, parse_url
    from promptsearch.study.optuna_mirror import check_optuna_storage

    if isinstance(storage, Storage):
        ours: str | None = storage.url
    else:
        try:
            ours = parse_url(storage).render_as_string(hide_password=True)
        except PromptSearchError:  # the storage's own error comes when it opens
            ours = None
    return check_optuna_storage(url, ours)


def choose_selection(
    selection: Selection | Mapping[str, Any] | bool | None, task: Task
) -> Selection | None:
    """The selection settings for *task*: ``True`` means the defaults where dev is large
    enough to split (else off, with a warning); explicit settings must fit."""
    from promptsearch.study.selection import Selection

    chosen = Selection.coerce(selection)
    if chosen is None:
        return None
    if selection is True and not chosen.fits(len(task.dev)):
        logger.warning(
            "task %r: dev has %d examples, too few to hold back a confirmation part; the "
            "pick is the top of the leaderboard, without a check on held-back data",
            task.name,
            len(task.dev),
        )
        return None
    chosen.check_dev(len(task.dev))
    return chosen


def evaluate(
    task: Task | str,
    prompt: Prompt | PromptEnsemble | str,
    *,
    model: LanguageModel | str | None = None,
    split: str = "dev",
    limit: int | None = None,
    batch_size: int | str = 16,
    data_dir: str | None = None,
    task_seed: int = 13,
    device: str | None = None,
    dtype: str | None = None,
    calibrate: bool = False,
    chat_template: str | bool = "off",
) -> ScoreReport:
    """Score one prompt, or a :class:`~promptsearch.study.ensemble.PromptEnsemble` (such as
    ``result.best.prompt`` of a study that picked one), on a split of *task* (no
    database involved).

    *calibrate*: contextual calibration of a classification task's scores.
    *chat_template*: ``"on"`` scores the prompt as a user turn of the model's chat
    template, ``"auto"`` where the model has one (see :mod:`promptsearch.scoring.chat`).
    """
    from promptsearch.scoring.scorer import Scorer
    from promptsearch.study.ensemble import PromptEnsemble
    from promptsearch.validation import check_int

    task_obj = _task(task, data_dir, task_seed)
    _check_calibrate(calibrate, task_obj)
    check_chat_template(chat_template)
    prompt_obj = prompt if isinstance(prompt, Prompt | PromptEnsemble) else Prompt(template=prompt)
    prompt_obj.resolve(task_obj)  # unknown fields or labels fail here, before a model loads
    examples = task_obj.split(split)
    if limit is not None:
        examples = examples[: check_int(limit, "limit", minimum=1)]
    scorer = Scorer(
        _model(model, device, dtype),
        batch_size=batch_size,
        calibrate=calibrate,
        chat_template=chat_template,
    )
    if isinstance(prompt_obj, PromptEnsemble):
        return prompt_obj.score(scorer, examples, task_obj)
    return scorer.score(prompt_obj, examples, task_obj)


def final(
    study: str,
    *,
    storage: Storage | str | None = None,
    top: int = 5,
    task: Task | str | None = None,
    model: LanguageModel | str | None = None,
    scorer: ScorerLike | None = None,
    data_dir: str | None = None,
    task_seed: int | None = None,
    batch_size: int | str = 16,
    device: str | None = None,
    dtype: str | None = None,
    test_limit: int | None = None,
    seed: int = 0,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    paired_test: str = "auto",
    progress: bool = False,
) -> FinalReport:
    """Score study *study*'s *top* prompts by dev and its task's seed prompts once on
    the test split; store and return the scores with bootstrap intervals and paired
    tests against the best seed prompt by dev.

    *task* defaults to the study's built-in task, rebuilt from its name (the task
    seed whose data matches the study's; or *task_seed*); *model* to the model name
    the study recorded; *scorer*, if given, replaces *model*.  A rerun is answered
    from the evaluation cache.  See :mod:`promptsearch.evaluation.heldout`.
    """
    from promptsearch.evaluation.heldout import evaluate_held_out
    from promptsearch.study.rebuild import rebuild_study

    store = _storage(storage)
    record = store.get_study(study) if isinstance(study, str) else None
    if record is None:
        from promptsearch.errors import StorageError

        raise StorageError(f"no study named {study!r} in {store.url}")
    rebuilt = rebuild_study(
        record,
        task=task,
        model=model,
        scorer=scorer,
        data_dir=data_dir,
        task_seed=task_seed,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
    )
    return evaluate_held_out(
        store,
        study,
        rebuilt.task,
        rebuilt.scorer,
        top=top,
        test_limit=test_limit,
        seed=seed,
        n_resamples=n_resamples,
        confidence=confidence,
        paired_test=paired_test,
        progress=progress,
    )

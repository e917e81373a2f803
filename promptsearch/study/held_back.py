"""What a study holds back from its searchers as it opens: the split of dev into the
searched and the held-back part and of train into what the searchers see and what is
hidden, the warning where so few are held back that only large gains can be confirmed,
and the refusal to resume a study with another split.

The final pick that reads the held-back examples is :mod:`promptsearch.study.final_pick`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from promptsearch.errors import StudyConflictError
from promptsearch.study.selection import (
    LEGACY_SPLIT,
    SMALL_CONFIRMATION,
    SPLIT_FIELDS,
    Selection,
    split_dev,
    split_train,
)
from promptsearch.study.support import check_same_setting
from promptsearch.task import Example, Task

if TYPE_CHECKING:
    from promptsearch.storage import StudyRecord
    from promptsearch.study.loop import Study

__all__ = ["announce_confirmation", "check_same_selection", "search_and_confirm"]

logger = logging.getLogger(__name__)


def search_and_confirm(
    task: Task, selection: Selection | None
) -> tuple[Task, tuple[Example, ...], tuple[Example, ...]]:
    """The task the search runs on (dev = its search part, train = the train examples
    the searchers see), the held-back dev examples and the held-back train examples."""
    if selection is None:
        return task, (), ()
    stratify = task.kind == "classification"
    search, confirm = split_dev(task.dev, selection, stratify=stratify)
    seen, held = split_train(task.train, selection, stratify=stratify)
    return dataclasses.replace(task, dev=search, train=seen), confirm, held


def announce_confirmation(study: Study) -> None:
    """Warn, as the search starts, when the held-back examples (of dev, and of train
    hidden from the searchers) are too few to confirm small gains (fewer than
    :data:`~promptsearch.study.selection.SMALL_CONFIRMATION`).  Called once the study
    has opened, so that a run refused on opening prints its one-line error alone."""
    n_confirm = len(study.confirm_examples)
    n_held = len(study.held_train)
    if study.selection is None or n_confirm + n_held >= SMALL_CONFIRMATION:
        return
    logger.warning(
        "task %r: %d of its %d dev examples%s are held back to confirm the pick; so few "
        "confirm only large gains (a smaller one keeps your best seed prompt); a larger "
        "dev split (--dev-size N, dev_size=N), where the task has the data, tells smaller "
        "ones",
        study.task.name,
        n_confirm,
        len(study.task.dev),
        f" and {n_held} of its {len(study.task.train)} train examples" if n_held else "",
    )


def check_same_selection(stored: StudyRecord | None, selection: Selection | None) -> None:
    """Refuse to resume a study with selection turned on or off, or with another split
    of dev or train (``confirm_fraction``, ``seed``, ``train_holdout``): its trials were
    scored on another part of dev, or its searchers saw other train examples.  The
    settings of the final pick alone (``top_k``, ``alpha``, ``ensemble_size``,
    ``procedure``, ``confirm_train``, ``order``, ``tests``, ``ensemble_members``,
    ``choose_by``, ``ensemble_balance``, ``balanced_seed``) may change: a resumed run
    makes the pick again.  ``train_holdout``
    is compared as the share the study used (``"auto"`` made a number, see
    :meth:`~promptsearch.study.selection.Selection.for_dev`)."""
    if stored is None:
        return
    before = stored.config.get("selection")
    if isinstance(before, Mapping) and selection is not None:
        given = selection.to_dict()
        if all(before.get(name, LEGACY_SPLIT.get(name)) == given[name] for name in SPLIT_FIELDS):
            return
        if before.get("train_holdout", 0.0) != given["train_holdout"]:
            raise StudyConflictError(
                f"study {stored.name!r} already exists with selection.train_holdout "
                f"{before.get('train_holdout', 0.0)} (its searchers saw the other train "
                f"examples); given {given['train_holdout']}; resume it with "
                f"--train-holdout {before.get('train_holdout', 0.0)}, or pick another "
                "--study name"
            )
    check_same_setting(stored, "selection", None if selection is None else selection.to_dict())

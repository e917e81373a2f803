"""What ``promptsearch export`` writes for a stored study.

By default the study's pick (see :mod:`promptsearch.study.selection`: a prompt or an
ensemble), or rank 1 when the study made none; ``rank`` takes a leaderboard row
instead, and ``member`` one prompt of a picked ensemble.  :func:`export_study` writes
it in one of :data:`~promptsearch.export.formats.FORMATS`, with the facts that say
where it came from (its hash, scores, searcher, task, metric, model, study) and the
task's label words for a prompt that has none of its own.  A study scored with its
model's chat template (``--chat-template``) exports its prompts as that model read
them: ``text`` with the turn markers, ``messages`` as one user turn and the
assistant's opening words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError, StorageError
from promptsearch.export.formats import FORMATS, export_prompt
from promptsearch.prompt import Prompt
from promptsearch.scoring.chat import ChatFormat, study_chat_format
from promptsearch.study.ensemble import PromptEnsemble
from promptsearch.study.results import StudyResult

if TYPE_CHECKING:
    from promptsearch.storage import Storage, StudyRecord

__all__ = ["ChosenPrompt", "choose_prompt", "export_chosen", "export_study"]


@dataclass(frozen=True)
class ChosenPrompt:
    """The prompt (or ensemble) a study exports, what is known about it, the task's
    label words (``None`` for a task without labels) and the chat format the study
    scored prompts in (``None``: plain text)."""

    prompt: Prompt | PromptEnsemble
    facts: dict[str, Any]
    verbalizer: dict[str, list[str]] | None
    chat: ChatFormat | None = None


def _check_position(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"--{name} must be a whole number ≥ 1; got {value}")


def _task_words(study: StudyRecord) -> dict[str, list[str]] | None:
    spec = study.task_spec
    if spec.get("kind", "classification") != "classification":
        return None
    words = spec.get("verbalizer")
    return {str(k): list(v) for k, v in words.items()} if words else None


def _picked(storage: Storage, study: StudyRecord) -> tuple[Prompt | PromptEnsemble, dict[str, Any]]:
    best = StudyResult(study.name, storage).best
    if best is None:
        raise StorageError(f"study {study.name!r} has nothing to export yet")
    return best.prompt, {
        "content_hash": best.content_hash,
        "dev_score": best.score,
        "confirm_score": best.confirm_score,
        "replaced_seed": best.replaced_seed,
        "n_examples": best.n_examples,
        "searcher": best.searcher,
    }


def _ranked(storage: Storage, study: StudyRecord, rank: int) -> tuple[Prompt, dict[str, Any]]:
    rows = storage.leaderboard(study.name, top=rank)
    if len(rows) < rank:
        raise StorageError(
            f"study {study.name!r} has {len(rows)} complete trial(s); no rank {rank} to export"
        )
    row = rows[rank - 1]
    return Prompt.from_dict(row.body), {
        "content_hash": row.content_hash,
        "dev_score": row.dev_score,
        "n_examples": row.n_examples,
        "searcher": row.searcher,
    }


def _member(
    storage: Storage,
    study: StudyRecord,
    ensemble: Prompt | PromptEnsemble,
    facts: dict[str, Any],
    member: int,
) -> tuple[Prompt, dict[str, Any]]:
    if not isinstance(ensemble, PromptEnsemble):
        raise ConfigError(
            f"--member picks one prompt of an ensemble, and study {study.name!r} exports a "
            "single prompt; leave --member out"
        )
    count = len(ensemble.members)
    if member > count:
        raise ConfigError(
            f"--member {member}: the ensemble study {study.name!r} picked has {count} members; "
            f"give 1 to {count}"
        )
    prompt = ensemble.members[member - 1]
    trial = storage.get_trial(study.name, prompt.content_hash)
    return prompt, {
        "content_hash": prompt.content_hash,
        "member": member,
        "ensemble_hash": facts["content_hash"],
        "ensemble_confirm_score": facts.get("confirm_score"),
        "dev_score": None if trial is None else trial.dev_score,
        "n_examples": None if trial is None else trial.n_examples,
        "searcher": None if trial is None else trial.searcher,
    }


def choose_prompt(
    storage: Storage, study_name: str, *, rank: int | None = None, member: int | None = None
) -> ChosenPrompt:
    """What the study exports: its pick (or rank 1 without one), leaderboard row
    *rank*, or member *member* (from 1) of the ensemble it picked."""
    _check_position("rank", rank)
    _check_position("member", member)
    if rank is not None and member is not None:
        raise ConfigError(
            "--member picks one prompt of the study's picked ensemble, and --rank a "
            "leaderboard row (never an ensemble); give one of them"
        )
    storage.leaderboard(study_name, top=1)  # a missing study: the one-line error with names
    study = storage.get_study(study_name)
    if study is None:  # removed since the line above
        raise StorageError(f"study {study_name!r} does not exist")
    prompt: Prompt | PromptEnsemble
    if rank is None and study.selection:
        prompt, facts = _picked(storage, study)
    else:
        prompt, facts = _ranked(storage, study, rank or 1)
    if member is not None:
        prompt, facts = _member(storage, study, prompt, facts, member)
    facts.update(
        {
            "task": study.task_name,
            "metric": study.task_spec.get("metric"),
            "model": study.model_name,
            "study": study.name,
        }
    )
    chat = study_chat_format(study.config, owner=f"study {study.name!r}")
    facts["chat_template"] = chat is not None
    return ChosenPrompt(prompt, facts, _task_words(study), chat)


def export_chosen(chosen: ChosenPrompt, format: str = "json") -> str:
    """The text of the export file for *chosen* in *format* (see
    :func:`~promptsearch.export.formats.export_prompt`); an ensemble only as ``json``."""
    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}; got {format!r}")
    if format != "json" and isinstance(chosen.prompt, PromptEnsemble):
        count = len(chosen.prompt.members)
        raise ConfigError(
            f"--format {format} holds one prompt, and study {chosen.facts.get('study')!r} "
            f"picked an ensemble of {count}: add --member N (1 to {count}) to export one of "
            "them, --rank N for a leaderboard row, or --format json for the whole ensemble"
        )
    return export_prompt(
        chosen.prompt, format, about=chosen.facts, verbalizer=chosen.verbalizer, chat=chosen.chat
    )


def export_study(
    storage: Storage,
    study_name: str,
    format: str = "json",
    *,
    rank: int | None = None,
    member: int | None = None,
) -> str:
    """The text of the export file: :func:`choose_prompt` in *format* (see
    :func:`export_chosen`)."""
    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}; got {format!r}")
    return export_chosen(choose_prompt(storage, study_name, rank=rank, member=member), format)

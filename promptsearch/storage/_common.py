"""Helpers shared by the repository modules: argument checks, study look-up,
dialect-specific INSERTs, and ORM-row → record conversion."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from promptsearch.errors import ConfigError, StorageError
from promptsearch.storage.orm import Base, PromptModel, StudyModel
from promptsearch.storage.records import StudyRecord

__all__ = [
    "CHUNK",
    "check_choice",
    "check_count",
    "check_finite",
    "check_hash",
    "check_json",
    "check_name",
    "chunked",
    "dialect_insert",
    "existing_studies",
    "require_study",
    "resolve_prompt",
    "study_record",
    "unique",
]

CHUNK: Final = 500  # rows or keys per statement (SQLite allows 32766 parameters)
MIN_PREFIX: Final = 6
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")
_HEX_PREFIX: Final = re.compile(rf"^[0-9a-f]{{{MIN_PREFIX},64}}$")
_T = TypeVar("_T")


def check_name(field: str, value: object, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise ConfigError(
            f"{field} must be a non-empty string of at most {max_length} characters; got {value!r}"
        )
    return value


def check_hash(field: str, value: object) -> str:
    if not isinstance(value, str) or not _HEX64.match(value):
        raise ConfigError(
            f"{field} must be a SHA-256 hex digest (64 lowercase hex characters, as made by "
            f"promptsearch.hashing.content_hash); got {value!r}"
        )
    return value


def check_finite(field: str, value: object, *, allow_infinite: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{field} must be a number; got {value!r}")
    number = float(value)
    if math.isnan(number) or (not allow_infinite and math.isinf(number)):
        kind = "a number (not NaN)" if allow_infinite else "a finite number"
        raise ConfigError(f"{field} must be {kind}; got {value!r}")
    return number


def check_count(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{field} must be a whole number ≥ 0; got {value!r}")
    return value


def check_choice(field: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"{field} must be one of {list(choices)}; got {value!r}")
    return str(value)


def check_json(field: str, value: object) -> dict[str, Any]:
    """*value* as a dict that both back ends store as JSON (no NaN or infinity)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{field} must be a mapping (a JSON object); got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{field} must hold only JSON values (str, int, float, bool, None, lists and "
            f"dicts with string keys; no NaN or infinity): {exc}"
        ) from None
    return dict(value)


def chunked(items: Sequence[_T], size: int = CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def dialect_insert(session: Session, model: type[Base]) -> Any:
    """``INSERT`` for *model* with the dialect's ``ON CONFLICT`` support."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(model)
    if name == "sqlite":
        return sqlite.insert(model)
    raise StorageError(f"database kind {name!r} is not supported; use SQLite or PostgreSQL")


def require_study(session: Session, name: str, url: str, *, lock: bool = False) -> StudyModel:
    """The study called *name*, or a StorageError listing the studies that exist.

    ``lock=True`` takes a row lock (PostgreSQL ``FOR UPDATE``) so that writers of the
    same study queue; SQLite's write transactions are serialised anyway.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"study name must be a non-empty string; got {name!r}")
    query = select(StudyModel).where(StudyModel.name == name)
    if lock:
        query = query.with_for_update()
    study = session.scalars(query).one_or_none()
    if study is not None:
        return study
    raise StorageError(f"no study named {name!r} in {url}; {existing_studies(session)}")


def existing_studies(session: Session, limit: int = 10) -> str:
    names = list(session.scalars(select(StudyModel.name).order_by(StudyModel.id).limit(limit + 1)))
    if not names:
        return "the database holds no studies yet (start one with `promptsearch search`)"
    shown = ", ".join(repr(n) for n in names[:limit])
    more = ", ..." if len(names) > limit else ""
    return f"existing studies: {shown}{more}"


def resolve_prompt(session: Session, hash_or_prefix: str, url: str) -> PromptModel:
    """The prompt whose content hash is, or starts with, *hash_or_prefix* (≥ 6 hex)."""
    prefix = hash_or_prefix.strip().lower() if isinstance(hash_or_prefix, str) else ""
    if not _HEX_PREFIX.match(prefix):
        raise ConfigError(
            f"prompt hash must be {MIN_PREFIX} to 64 hex characters (a prefix of the content "
            f"hash shown by `promptsearch leaderboard`); got {hash_or_prefix!r}"
        )
    # A range instead of LIKE, so that both back ends use the unique index.
    upper = prefix + "g"  # above every hex digit
    matches = list(
        session.scalars(
            select(PromptModel)
            .where(PromptModel.content_hash >= prefix, PromptModel.content_hash < upper)
            .order_by(PromptModel.content_hash)
            .limit(6)
        )
    )
    if not matches:
        raise StorageError(f"no prompt with a hash starting {prefix!r} in {url}")
    if len(matches) > 1:
        listed = ", ".join(m.content_hash[:16] for m in matches[:5])
        more = ", ..." if len(matches) > 5 else ""
        raise ConfigError(
            f"prompt hash prefix {prefix!r} is ambiguous in {url}: it matches {listed}{more}; "
            "give more characters"
        )
    return matches[0]


def study_record(study: StudyModel) -> StudyRecord:
    return StudyRecord(
        id=study.id,
        name=study.name,
        task_name=study.task_name,
        task_hash=study.task_hash,
        task_spec=dict(study.task_spec),
        model_name=study.model_name,
        model_fingerprint=study.model_fingerprint,
        scorer_fingerprint=study.scorer_fingerprint,
        config=dict(study.config),
        seed=study.seed,
        versions=dict(study.versions),
        status=study.status,
        created_at=study.created_at,
        updated_at=study.updated_at,
        finished_at=study.finished_at,
        selection=None if study.selection is None else dict(study.selection),
    )


def unique(items: Iterable[_T]) -> list[_T]:
    """*items* without repeats, first occurrence kept."""
    return list(dict.fromkeys(items))

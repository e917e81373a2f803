"""Fixtures and helpers shared by the storage test modules."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from promptsearch.hashing import content_hash
from promptsearch.storage import (
    EvaluationRecord,
    Storage,
    StudyRecord,
)

T = TypeVar("T")


def h(value: object) -> str:
    return content_hash(value)


TASK_HASH = h("task data")
OTHER_HASH = h("other task data")


def make_study(storage: Storage, name: str = "study", **changes: Any) -> StudyRecord:
    values: dict[str, Any] = {
        "task_name": "sst2",
        "task_hash": TASK_HASH,
        "task_spec": {"name": "sst2", "data_hash": TASK_HASH},
        "model_name": "gpt2",
        "model_fingerprint": "gpt2@abc",
        "scorer_fingerprint": "loglik-v1",
        "config": {"searchers": ["manual"], "budget": 10},
        "seed": 0,
        "versions": {"promptsearch": "0.1.0"},
    }
    values.update(changes)
    return storage.create_or_resume_study(name, **values)


def add(storage: Storage, name: str) -> str:
    """Store a prompt called *name*; return its hash."""
    digest = h({"prompt": name})
    storage.add_prompt({"template": f"{name} {{answer}}"}, digest, f"prompt {name}", len(name))
    return digest


def run_trial(
    storage: Storage,
    study: str,
    name: str,
    score: float | None,
    *,
    parent: str | None = None,
    searcher: str = "manual",
    n_examples: int = 10,
    state: str = "complete",
) -> str:
    digest = add(storage, name)
    trial = storage.start_trial(
        study, digest, searcher=searcher, operation="op-" + name, parent_hash=parent, worker="w1"
    )
    assert trial is not None
    storage.finish_trial(
        trial.id,
        state=state,
        dev_score=score,
        n_examples=n_examples,
        forward_passes=2 * n_examples,
        seconds=0.5,
    )
    return digest


def count(storage: Storage, table: str) -> int:
    with storage.session(write=False) as session:
        return int(session.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def in_threads(n: int, work: Callable[[int], T]) -> list[T]:
    """Run work(0..n-1) in *n* threads started together; re-raise the first error."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


# -- schema -----------------------------------------------------------------------------


def evaluation_records(keys: list[str], score: float = 1.0) -> list[EvaluationRecord]:
    return [
        EvaluationRecord(
            example_key=key,
            prediction="great",
            correct=score > 0.5,
            score=score,
            detail={"logprobs": {"great": -0.1, "terrible": -2.3}} if i % 2 else None,
        )
        for i, key in enumerate(keys)
    ]

"""The trial database: the repository API, on SQLite and PostgreSQL.

PostgreSQL runs when $PROMPTSEARCH_TEST_POSTGRES_URL is set.

Start a throwaway PostgreSQL server for these tests with::

    eval "$(bash .ci/postgres.sh)"
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC
from typing import Any

import pytest
import sqlalchemy as sa
from storage_support import (
    OTHER_HASH,
    TASK_HASH,
    add,
    count,
    evaluation_records,
    h,
    make_study,
    run_trial,
)

from promptsearch.errors import ConfigError, StorageError, StudyConflictError
from promptsearch.storage import (
    EvaluationRecord,
    Storage,
)
from promptsearch.storage.orm import PromptModel, StudyModel


def test_create_get_and_resume_study(storage: Storage) -> None:
    created = make_study(storage)
    assert created.status == "running" and created.finished_at is None
    assert created.created_at.tzinfo is UTC and created.updated_at.tzinfo is UTC
    assert storage.get_study("study") == created
    assert storage.get_study("nope") is None

    storage.set_study_status("study", "stopped")
    stopped = storage.get_study("study")
    assert stopped is not None and stopped.status == "stopped" and stopped.finished_at is not None

    resumed = make_study(storage, config={"budget": 20}, seed=7, versions={"promptsearch": "0.2"})
    assert resumed.id == created.id
    assert resumed.status == "running" and resumed.finished_at is None
    assert (resumed.config, resumed.seed, resumed.versions) == (
        {"budget": 20},
        7,
        {"promptsearch": "0.2"},
    )
    assert resumed.updated_at >= created.updated_at
    assert count(storage, "studies") == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task_hash": OTHER_HASH, "task_name": "sst5"}, r"task: stored 'sst2' .* given 'sst5'"),
        ({"model_fingerprint": "gpt2@def"}, r"model: stored 'gpt2' \(fingerprint gpt2@abc\)"),
        ({"scorer_fingerprint": "loglik-v2"}, r"scorer: stored 'loglik-v1' vs. given 'loglik-v2'"),
    ],
)
def test_conflicting_study(storage: Storage, changes: dict[str, Any], message: str) -> None:
    make_study(storage)
    with pytest.raises(StudyConflictError, match=message) as caught:
        make_study(storage, **changes)
    assert "rerun with the same task and model to resume it, or pick another --study" in str(
        caught.value
    )
    assert storage.get_study("study") is not None


def test_list_studies_and_status(storage: Storage) -> None:
    assert storage.list_studies() == []
    make_study(storage, "a")
    make_study(storage, "b", task_name="other", task_hash=OTHER_HASH)
    run_trial(storage, "a", "p1", 0.5)
    run_trial(storage, "a", "p2", 0.75)
    run_trial(storage, "a", "p3", None, state="failed")
    storage.set_study_status("b", "finished")
    a, b = storage.list_studies()
    assert (a.name, a.task_name, a.model_name, a.n_trials, a.best_dev_score, a.status) == (
        "a",
        "sst2",
        "gpt2",
        3,
        0.75,
        "running",
    )
    assert (b.name, b.task_name, b.n_trials, b.best_dev_score, b.status) == (
        "b",
        "other",
        0,
        None,
        "finished",
    )
    with pytest.raises(ConfigError, match=r"status must be one of \['running'"):
        storage.set_study_status("a", "done")


def test_unknown_study_lists_existing_ones(storage: Storage) -> None:
    with pytest.raises(StorageError, match=r"no study named 'x'.*holds no studies yet"):
        storage.trials("x")
    for i in range(12):
        make_study(storage, f"s{i:02d}")
    calls: list[Callable[[], object]] = [
        lambda: storage.trials("x"),
        lambda: storage.leaderboard("x"),
        lambda: storage.totals("x"),
        lambda: storage.set_study_status("x", "finished"),
        lambda: storage.get_trial("x", TASK_HASH),
        lambda: storage.start_trial(
            "x", TASK_HASH, searcher="s", operation="o", parent_hash=None, worker="w"
        ),
        lambda: storage.lineage(TASK_HASH, "x"),
        lambda: storage.save_searcher_state("x", "rl", b""),
        lambda: storage.load_searcher_state("x", "rl"),
        lambda: storage.log_metric("x", "rl", 0, "loss", 1.0),
        lambda: storage.metrics("x"),
    ]
    for call in calls:
        with pytest.raises(StorageError, match=r"existing studies: 's00', 's01', .*'s09', \.\.\.$"):
            call()


# -- prompts ----------------------------------------------------------------------------


def test_prompt_is_stored_once_across_studies(storage: Storage) -> None:
    make_study(storage, "a")
    make_study(storage, "b", model_fingerprint="other-model")
    first = run_trial(storage, "a", "shared", 0.5)
    again = run_trial(storage, "b", "shared", 0.6)
    assert first == again
    assert count(storage, "prompts") == 1
    assert count(storage, "trials") == 2
    trial_a, trial_b = storage.get_trial("a", first), storage.get_trial("b", first)
    assert trial_a is not None and trial_b is not None
    assert (trial_a.operation, trial_a.number, trial_b.number) == ("op-shared", 0, 0)


def test_add_and_get_prompt(storage: Storage) -> None:
    digest = h({"prompt": "x"})
    body = {"template": "Review: {text}\nSentiment: {answer}", "instruction": ""}
    pid = storage.add_prompt(body, digest, "Review: … Sentiment:", 31)
    assert storage.add_prompt({"ignored": True}, digest, "other text", 1) == pid  # idempotent
    record = storage.get_prompt(digest)
    assert (record.id, record.content_hash, record.body, record.text, record.length) == (
        pid,
        digest,
        body,
        "Review: … Sentiment:",
        31,
    )
    assert storage.get_prompt(digest[:6].upper()) == record
    assert record.created_at.tzinfo is not None
    with pytest.raises(ConfigError, match=r"content_hash must be a SHA-256 hex digest"):
        storage.add_prompt(body, "abc", "t", 1)
    with pytest.raises(ConfigError, match=r"length must be a whole number"):
        storage.add_prompt(body, h("y"), "t", -1)
    with pytest.raises(ConfigError, match=r"body must hold only JSON values .*set"):
        storage.add_prompt({"labels": {"a", "b"}}, h("y"), "t", 1)
    assert count(storage, "prompts") == 1


def test_get_prompt_prefix_errors(storage: Storage) -> None:
    # Two hashes sharing a 7-character prefix.
    a, b = "abcdef1" + "0" * 57, "abcdef1" + "1" * 57
    storage.add_prompt({}, a, "a", 1)
    storage.add_prompt({}, b, "b", 1)
    with pytest.raises(ConfigError, match=r"6 to 64 hex characters"):
        storage.get_prompt("abcde")
    with pytest.raises(ConfigError, match=r"6 to 64 hex characters"):
        storage.get_prompt("xyzxyzxyz")
    with pytest.raises(ConfigError, match=r"'abcdef1' is ambiguous.*give more characters"):
        storage.get_prompt("abcdef1")
    with pytest.raises(StorageError, match=r"no prompt with a hash starting '123456'"):
        storage.get_prompt("123456")
    assert storage.get_prompt("abcdef11").content_hash == b


# -- trials -----------------------------------------------------------------------------


def test_trial_lifecycle(storage: Storage) -> None:
    make_study(storage)
    p1, p2 = add(storage, "one"), add(storage, "two")
    t1 = storage.start_trial(
        "study", p1, searcher="manual", operation="seed", parent_hash=None, worker="w"
    )
    t2 = storage.start_trial(
        "study", p2, searcher="swap", operation="swap", parent_hash=p1, worker="w"
    )
    assert t1 is not None and t2 is not None
    assert (t1.number, t2.number, t1.state, t2.parent_hash) == (0, 1, "running", p1)
    assert (
        storage.start_trial("study", p1, searcher="x", operation="y", parent_hash=None, worker="v")
        is None
    )
    storage.heartbeat(t1.id)
    beating = storage.get_trial("study", p1)
    assert beating is not None and beating.heartbeat_at > t1.heartbeat_at
    with pytest.raises(StorageError, match=r"no trial with id 999"):
        storage.heartbeat(999)
    done = storage.finish_trial(
        t1.id, state="complete", dev_score=0.8, n_examples=50, forward_passes=100, seconds=2.5
    )
    assert (done.state, done.dev_score, done.n_examples, done.forward_passes, done.seconds) == (
        "complete",
        0.8,
        50,
        100,
        2.5,
    )
    assert done.finished_at is not None and done.finished_at >= done.created_at
    storage.finish_trial(
        t2.id,
        state="failed",
        dev_score=None,
        n_examples=3,
        forward_passes=6,
        seconds=0.1,
        error="CUDA out of memory",
    )
    assert storage.get_trial("study", p1) == done
    failed = storage.get_trial("study", p2)
    assert failed is not None and failed.error == "CUDA out of memory"
    assert [t.number for t in storage.trials("study")] == [0, 1]
    assert [t.number for t in storage.trials("study", states=["failed"])] == [1]
    assert storage.get_trial("study", add(storage, "three")) is None
    assert storage.totals("study") == type(storage.totals("study"))(
        n_trials=2, n_complete=1, forward_passes=106, seconds=2.6
    )


def test_trial_errors(storage: Storage) -> None:
    make_study(storage)
    p1 = add(storage, "one")
    start = storage.start_trial
    with pytest.raises(StorageError, match=r"content_hash .* is not a stored prompt.*add_prompt"):
        start("study", h("unknown"), searcher="s", operation="o", parent_hash=None, worker="w")
    with pytest.raises(StorageError, match=r"parent_hash .* is not a stored prompt"):
        start("study", p1, searcher="s", operation="o", parent_hash=h("unknown"), worker="w")
    with pytest.raises(ConfigError, match=r"searcher must be a non-empty string"):
        start("study", p1, searcher="", operation="o", parent_hash=None, worker="w")
    trial = start("study", p1, searcher="s", operation="o", parent_hash=None, worker="w")
    assert trial is not None
    finish = storage.finish_trial
    with pytest.raises(ConfigError, match=r"dev_score must be given for a complete trial"):
        finish(
            trial.id, state="complete", dev_score=None, n_examples=1, forward_passes=1, seconds=1
        )
    with pytest.raises(ConfigError, match=r"dev_score must be a finite number; got nan"):
        finish(
            trial.id,
            state="complete",
            dev_score=math.nan,
            n_examples=1,
            forward_passes=1,
            seconds=1,
        )
    with pytest.raises(
        ConfigError, match=r"state must be one of \['complete', 'pruned', 'failed'\]"
    ):
        finish(trial.id, state="running", dev_score=None, n_examples=1, forward_passes=1, seconds=1)
    with pytest.raises(StorageError, match=r"no trial with id 999"):
        finish(999, state="failed", dev_score=None, n_examples=0, forward_passes=0, seconds=0)
    finish(trial.id, state="pruned", dev_score=0.1, n_examples=4, forward_passes=4, seconds=1)
    rescored = finish(
        trial.id, state="complete", dev_score=0.2, n_examples=9, forward_passes=9, seconds=2
    )
    assert (rescored.state, rescored.dev_score, rescored.n_examples) == ("complete", 0.2, 9)
    with pytest.raises(StorageError, match=r"already complete; complete and failed trials are"):
        finish(trial.id, state="failed", dev_score=None, n_examples=1, forward_passes=1, seconds=1)
    with pytest.raises(ConfigError, match=r"states\[\] must be one of"):
        storage.trials("study", states=["done"])


def test_constraints_are_enforced_by_the_database(storage: Storage) -> None:
    make_study(storage)
    p1 = add(storage, "one")
    first = storage.start_trial(
        "study", p1, searcher="s", operation="o", parent_hash=None, worker="w"
    )
    assert first is not None
    columns = (
        "study_id, prompt_id, number, searcher, operation, state, n_examples, "
        "forward_passes, seconds, worker, heartbeat_at, created_at"
    )
    with pytest.raises(StorageError, match=r"(?i)unique"), storage.session() as session:
        session.execute(
            sa.text(
                f"INSERT INTO trials ({columns}) SELECT study_id, prompt_id, 5, searcher, "
                "operation, state, n_examples, forward_passes, seconds, worker, heartbeat_at, "
                "created_at FROM trials"
            )
        )
    assert count(storage, "trials") == 1
    with pytest.raises(StorageError, match=r"(?i)check"), storage.session() as session:
        session.execute(sa.text("UPDATE trials SET state = 'complete', dev_score = NULL"))
    with pytest.raises(StorageError, match=r"(?i)check"), storage.session() as session:
        session.execute(sa.text("UPDATE trials SET state = 'done'"))
    with pytest.raises(StorageError, match=r"(?i)foreign key"), storage.session() as session:
        session.execute(sa.text("UPDATE trials SET prompt_id = 999"))
    trial = storage.get_trial("study", p1)
    assert trial is not None and trial.state == "running"


def test_leaderboard_order_and_filters(storage: Storage) -> None:
    make_study(storage)
    a = run_trial(storage, "study", "a", 0.7, n_examples=50)
    b = run_trial(storage, "study", "b", 0.9, n_examples=20, parent=a, searcher="edit")
    c = run_trial(storage, "study", "c", 0.7, n_examples=80)  # ties a on score, more examples
    d = run_trial(storage, "study", "d", 0.7, n_examples=50)  # ties a entirely, later number
    run_trial(storage, "study", "e", 0.99, state="pruned")
    run_trial(storage, "study", "f", None, state="failed")
    board = storage.leaderboard("study")
    assert [row.content_hash for row in board] == [b, c, a, d]
    assert [row.rank for row in board] == [1, 2, 3, 4]
    top = board[0]
    assert (top.dev_score, top.n_examples, top.searcher, top.operation, top.parent_hash) == (
        0.9,
        20,
        "edit",
        "op-b",
        a,
    )
    assert (top.text, top.body, top.forward_passes, top.number) == (
        "prompt b",
        {"template": "b {answer}"},
        40,
        1,
    )
    assert [row.content_hash for row in storage.leaderboard("study", top=2)] == [b, c]
    assert [row.content_hash for row in storage.leaderboard("study", searcher="edit")] == [b]
    with pytest.raises(ConfigError, match=r"top must be a whole number"):
        storage.leaderboard("study", top=0)


def test_lineage(storage: Storage) -> None:
    make_study(storage, "s1")
    make_study(storage, "s2", model_fingerprint="m2")
    root = run_trial(storage, "s1", "root", 0.5)
    child = run_trial(storage, "s1", "child", 0.6, parent=root, searcher="edit")
    grandchild = run_trial(storage, "s1", "grandchild", 0.7, parent=child, searcher="edit")
    chain = storage.lineage(grandchild, "s1")
    assert [e.content_hash for e in chain] == [grandchild, child, root]
    assert [e.depth for e in chain] == [0, 1, 2]
    assert [e.operation for e in chain] == ["op-grandchild", "op-child", "op-root"]
    assert chain[1].dev_score == 0.6 and chain[1].study_name == "s1"
    assert storage.lineage(grandchild[:10]) == chain  # any study; a prefix is enough

    # In s2, root was reached from grandchild: following any study's first trial of
    # each prompt gives grandchild → child → root, and s2 alone gives root → grandchild.
    storage.start_trial(
        "s2", root, searcher="x", operation="back", parent_hash=grandchild, worker="w"
    )
    s2 = storage.lineage(root, "s2")
    assert [(e.content_hash, e.operation) for e in s2] == [(root, "back"), (grandchild, None)]
    # A cycle across studies stops before repeating a prompt.
    storage.start_trial("s2", child, searcher="x", operation="c", parent_hash=root, worker="w")
    storage.start_trial(
        "s2", grandchild, searcher="x", operation="g", parent_hash=child, worker="w"
    )
    cycle = storage.lineage(root, "s2")
    assert [e.content_hash for e in cycle] == [root, grandchild, child]
    lonely = add(storage, "lonely")
    assert [(e.content_hash, e.searcher) for e in storage.lineage(lonely)] == [(lonely, None)]


# -- evaluation cache, searcher states, metrics -----------------------------------------


def test_evaluation_cache(storage: Storage) -> None:
    prompt = h("p")
    keys = [h(i) for i in range(1203)]  # more than two IN chunks
    assert storage.cached_evaluations("scorer", prompt, "dev", keys) == {}
    storage.add_evaluations("scorer", prompt, "dev", evaluation_records(keys[:700]))
    # Insert-or-ignore: overlapping keys keep their first result, new keys are added.
    storage.add_evaluations("scorer", prompt, "dev", evaluation_records(keys[600:], score=0.0))
    found = storage.cached_evaluations("scorer", prompt, "dev", [*keys, "missing"])
    assert len(found) == len(keys) == count(storage, "evaluations")
    assert found[keys[0]] == evaluation_records(keys[:1])[0]
    assert found[keys[1]].detail == {"logprobs": {"great": -0.1, "terrible": -2.3}}
    assert found[keys[650]].score == 1.0 and found[keys[650]].correct is True
    assert found[keys[800]].score == 0.0 and found[keys[800]].correct is False
    # The cache is keyed by scorer, prompt and split.
    assert storage.cached_evaluations("other-scorer", prompt, "dev", keys) == {}
    assert storage.cached_evaluations("scorer", h("q"), "dev", keys) == {}
    assert storage.cached_evaluations("scorer", prompt, "test", keys) == {}
    storage.add_evaluations("scorer", prompt, "dev", [])
    with pytest.raises(ConfigError, match=r"records\[0\].score must be a finite number"):
        storage.add_evaluations("scorer", prompt, "dev", evaluation_records(["k"], score=math.nan))
    infinite = EvaluationRecord("k", "p", False, 0.0, detail={"logprob": -math.inf})
    with pytest.raises(ConfigError, match=r"records\[0\].detail must hold only JSON values"):
        storage.add_evaluations("scorer", prompt, "dev", [infinite])
    with pytest.raises(ConfigError, match=r"prompt_hash must be a SHA-256 hex digest"):
        storage.cached_evaluations("scorer", "short", "dev", keys)
    with pytest.raises(ConfigError, match=r"example_keys must be a sequence of keys"):
        storage.cached_evaluations("scorer", prompt, "dev", "abc")


def test_searcher_state_and_metrics(storage: Storage) -> None:
    make_study(storage)
    assert storage.load_searcher_state("study", "rl") is None
    storage.save_searcher_state("study", "rl", b"\x00first")
    storage.save_searcher_state("study", "rl", b"\x00second")
    storage.save_searcher_state("study", "other", b"x")
    assert storage.load_searcher_state("study", "rl") == b"\x00second"
    assert count(storage, "searcher_states") == 2

    assert storage.metrics("study") == []
    storage.log_metric("study", "rl", 1, "reward", 0.5)
    storage.log_metric("study", "rl", 0, "reward", 0.25)
    storage.log_metric("study", "rl", 0, "loss", math.inf)
    storage.log_metric("study", "other", 0, "loss", 2.0)
    assert [(m.searcher, m.key, m.step, m.value) for m in storage.metrics("study")] == [
        ("other", "loss", 0, 2.0),
        ("rl", "loss", 0, math.inf),
        ("rl", "reward", 0, 0.25),
        ("rl", "reward", 1, 0.5),
    ]
    assert [m.key for m in storage.metrics("study", "other")] == ["loss"]
    with pytest.raises(ConfigError, match=r"value must be a number \(not NaN\)"):
        storage.log_metric("study", "rl", 2, "loss", math.nan)


# -- transactions -----------------------------------------------------------------------


def test_rollback_leaves_no_partial_writes(storage: Storage) -> None:
    with pytest.raises(RuntimeError, match=r"boom"), storage.session() as session:
        session.add(
            StudyModel(
                name="half",
                task_name="t",
                task_hash=TASK_HASH,
                task_spec={},
                model_name="m",
                model_fingerprint="m",
                scorer_fingerprint="s",
                config={},
                seed=0,
                versions={},
                status="running",
            )
        )
        session.flush()
        raise RuntimeError("boom")
    assert storage.get_study("half") is None
    # A database error halfway through also undoes the earlier statements.
    row = {"body": {}, "text": "t", "length": 1}
    with pytest.raises(StorageError, match=r"(?i)unique"), storage.session() as session:
        session.add(PromptModel(content_hash=h(1), **row))
        session.flush()
        session.add(PromptModel(content_hash=h(2), **row))
        session.add(PromptModel(content_hash=h(2), **row))
        session.flush()
    assert count(storage, "prompts") == 0

"""Claiming trials (storage/claims.py) on SQLite and PostgreSQL: one claim per
prompt, the budget as a hard cap under concurrency, heartbeats, and reclaiming the
trials of workers that stopped beating.

PostgreSQL runs when $PROMPTSEARCH_TEST_POSTGRES_URL is set
(``eval "$(bash .ci/postgres.sh)"``).  Each thread opens its own Storage, as a
separate worker process would.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from storage_support import add, in_threads, make_study

from promptsearch.errors import ClaimLostError, ConfigError, StorageError
from promptsearch.storage import Claim, Storage, open_storage


def claim(
    storage: Storage,
    digest: str,
    worker: str,
    *,
    max_trials: int | None = None,
    max_forward_passes: int | None = None,
) -> Claim:
    return storage.claim_trial(
        "study",
        digest,
        searcher="manual",
        operation="seed",
        parent_hash=None,
        worker=worker,
        max_trials=max_trials,
        max_forward_passes=max_forward_passes,
    )


def finish(storage: Storage, trial_id: int, passes: int = 10, **options: str) -> None:
    storage.finish_trial(
        trial_id,
        state="complete",
        dev_score=0.5,
        n_examples=4,
        forward_passes=passes,
        seconds=0.1,
        claimed_by=options.get("claimed_by"),
    )


def test_claim_answers_claimed_taken_and_budget(storage: Storage) -> None:
    make_study(storage)
    one, two, three = add(storage, "one"), add(storage, "two"), add(storage, "three")
    first = claim(storage, one, "w1", max_trials=2)
    assert first.status == "claimed" and first.trial is not None
    assert (first.trial.number, first.trial.state, first.trial.worker) == (0, "running", "w1")
    again = claim(storage, one, "w2", max_trials=2)
    assert again.status == "taken" and again.trial == first.trial
    assert claim(storage, two, "w2", max_trials=2).status == "claimed"
    assert claim(storage, three, "w3", max_trials=2) == Claim("budget", None)
    # a prompt the study has is "taken" even when the budget is spent: its result is free
    assert claim(storage, one, "w3", max_trials=2).status == "taken"
    counts = storage.claim_counts("study")
    assert (counts.trials, counts.running, counts.forward_passes) == (2, 2, 0)
    with pytest.raises(ConfigError, match="max_trials"):
        claim(storage, three, "w3", max_trials=-1)
    with pytest.raises(StorageError, match="no study named 'nope'"):
        storage.claim_trial("nope", one, searcher="m", operation="o", parent_hash=None, worker="w")


def test_forward_pass_budget_counts_finished_trials(storage: Storage) -> None:
    make_study(storage)
    a, b, c = add(storage, "a"), add(storage, "b"), add(storage, "c")
    first = claim(storage, a, "w", max_forward_passes=15)
    assert first.trial is not None
    # running trials have spent nothing yet
    assert claim(storage, b, "w", max_forward_passes=15).status == "claimed"
    finish(storage, first.trial.id, passes=15)
    assert claim(storage, c, "w", max_forward_passes=15).status == "budget"
    assert storage.claim_counts("study").forward_passes == 15


def test_racing_claims_of_one_prompt_give_it_to_one_worker(storage_url: str) -> None:
    with open_storage(storage_url) as storage:
        make_study(storage)
        digest = add(storage, "contested")

    def work(i: int) -> Claim:
        with open_storage(storage_url) as own:
            return claim(own, digest, f"w{i}")

    claims = in_threads(8, work)
    statuses = Counter(c.status for c in claims)
    assert statuses == {"claimed": 1, "taken": 7}
    winner = next(c.trial for c in claims if c.status == "claimed")
    assert winner is not None
    assert {c.trial.id for c in claims if c.trial is not None} == {winner.id}
    with open_storage(storage_url) as storage:
        assert [t.worker for t in storage.trials("study")] == [winner.worker]


def test_budget_is_a_hard_cap_under_concurrency(storage_url: str) -> None:
    budget, workers, each = 10, 6, 4  # 24 distinct prompts race for 10 places
    with open_storage(storage_url) as storage:
        make_study(storage)
        prompts = [[add(storage, f"p{w}-{k}") for k in range(each)] for w in range(workers)]

    def work(w: int) -> list[str]:
        with open_storage(storage_url) as own:
            return [claim(own, digest, f"w{w}", max_trials=budget).status for digest in prompts[w]]

    statuses = Counter(s for answers in in_threads(workers, work) for s in answers)
    assert statuses == {"claimed": budget, "budget": workers * each - budget}
    with open_storage(storage_url) as storage:
        trials = storage.trials("study")
    assert len(trials) == budget
    assert sorted(t.number for t in trials) == list(range(budget))


def test_heartbeat_keeps_a_trial_and_a_stale_one_is_reclaimed_once(storage_url: str) -> None:
    with open_storage(storage_url) as storage:
        make_study(storage)
        digest = add(storage, "slow")
        mine = claim(storage, digest, "dead").trial
        assert mine is not None
        assert storage.beat(mine.id, "dead") is True
        assert storage.beat(mine.id, "someone-else") is False
        # fresh heartbeat: nobody may take it
        assert storage.reclaim_trial("study", "w0", stale_after=30) is None
        time.sleep(0.6)

    # Every thread opens its database first and then all reclaim at once: opening takes
    # long on a loaded machine, and a reclaim more than stale_after after the first one
    # would rightly take the (unbeaten) trial again.
    opened = threading.Barrier(6)

    def work(i: int) -> int | None:
        with open_storage(storage_url) as own:
            opened.wait()
            taken = own.reclaim_trial("study", f"w{i}", stale_after=0.5)
            return None if taken is None else taken.id

    winners = [t for t in in_threads(6, work) if t is not None]
    assert winners == [mine.id]
    with open_storage(storage_url) as storage:
        trial = storage.get_trial("study", digest)
        assert trial is not None and trial.state == "running" and trial.worker.startswith("w")
        assert trial.number == mine.number and trial.heartbeat_at > mine.heartbeat_at
        # the old owner learns it lost the trial, and cannot store a result over the new one
        assert storage.beat(mine.id, "dead") is False
        with pytest.raises(ClaimLostError, match="no longer claimed by worker 'dead'"):
            finish(storage, mine.id, claimed_by="dead")
        finish(storage, mine.id, claimed_by=trial.worker)
        done = storage.get_trial("study", digest)
        assert done is not None and done.state == "complete"
        assert storage.reclaim_trial("study", "w9", stale_after=0.01) is None


def test_beating_trial_is_not_reclaimed(storage: Storage) -> None:
    make_study(storage)
    trial = claim(storage, add(storage, "alive"), "w1").trial
    assert trial is not None
    for _ in range(5):
        time.sleep(0.15)
        assert storage.beat(trial.id, "w1")
        assert storage.reclaim_trial("study", "w2", stale_after=0.4) is None


def test_release_and_own_trials_are_reclaimed_at_once(storage: Storage) -> None:
    make_study(storage)
    a = claim(storage, add(storage, "a"), "w1").trial
    b = claim(storage, add(storage, "b"), "w2").trial
    assert a is not None and b is not None
    # w2 started again under the same name: its old trial is its own to take over
    own = storage.reclaim_trial("study", "w2", stale_after=3600)
    assert own is not None and own.id == b.id
    assert storage.reclaim_trial("study", "w3", stale_after=3600) is None
    assert storage.release_trial(a.id, "w1") is True
    assert storage.release_trial(a.id, "w1-not") is False
    taken = storage.reclaim_trial("study", "w3", stale_after=3600, trial_id=a.id)
    assert taken is not None and (taken.id, taken.worker) == (a.id, "w3")
    with pytest.raises(ConfigError, match="stale_after"):
        storage.reclaim_trial("study", "w3", stale_after=0)

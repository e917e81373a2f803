"""What the worker tests share (test_workers.py, threads with a fake scorer, and
test_worker_processes.py, real ``promptsearch worker`` processes): the study's name,
the number of workers, and the counts every scenario checks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa

from promptsearch.storage import open_storage
from promptsearch.study.worker import WorkerReport

WORKERS = 4
STUDY = "shared"


def check_counts(
    url: str, reports: Sequence[WorkerReport], scored: Sequence[str], budget: int, n_dev: int
) -> dict[str, int]:
    """The checks every scenario shares; returns the totals (printed with -s)."""
    with open_storage(url) as storage:
        trials = storage.trials(STUDY)
        with storage.session(write=False) as session:
            rows = session.execute(
                sa.text(
                    "SELECT prompt_hash, example_key, count(*) FROM evaluations "
                    "GROUP BY prompt_hash, example_key"
                )
            ).all()
        status = storage.get_study(STUDY)
    claimed = sum(r.claimed for r in reports)
    reclaimed = sum(r.reclaimed for r in reports)
    evaluated = sum(r.evaluated for r in reports)
    skipped = sum(r.skipped for r in reports)
    # the study's budget holds for all workers together, and every trial is finished
    assert len(trials) == budget
    assert sorted(t.number for t in trials) == list(range(budget))
    assert {t.state for t in trials} == {"complete"}
    assert claimed == budget
    assert evaluated == budget  # each trial finished once, by the worker holding it then
    # each trial is stored once, by the worker that holds it
    by_worker = Counter(t.worker for t in trials)
    for report in reports:
        assert by_worker[report.worker] == report.evaluated, report
    # one cache row per (prompt, example), for the trials' prompts only
    assert all(n == 1 for _, _, n in rows)
    assert {h for h, _, _ in rows} == {t.content_hash for t in trials}
    assert len(rows) == budget * n_dev
    # what the scorer was asked: each trial's prompt, once, plus one re-score per reclaim
    assert Counter(scored).total() == budget + reclaimed
    assert set(scored) == {t.content_hash for t in trials}
    assert status is not None and status.status == "finished"
    totals = {
        "claimed": claimed,
        "reclaimed": reclaimed,
        "evaluated": evaluated,
        "skipped (duplicates)": skipped,
        "scoring calls": len(scored),
        "trials": len(trials),
    }
    print(f"\n{url.split('://')[0]}: {totals}")
    for report in reports:
        print("  " + report.summary())
    return totals

"""Racing benchmark: does racing find the same top prompt for a fraction of the work?

    OMP_NUM_THREADS=1 python benchmarks/racing.py [--candidates 108] [--dev-size 96] \\
        [--min-examples 8] [--eta 3] [--min-trials 5] [--out DIR] [--resume]

One fixed list of candidate prompts is made up front: the task's seed prompts,
then random word-level edits of them (the ``random-edit`` searcher's edits, two
per candidate, seeded).  The ``manual`` searcher proposes that list in the same
order in two studies, on the embedded model and ``rotten-tomatoes`` with a dev
set of ``--dev-size``:

* **full**: every candidate is scored on the whole dev set;
* **racing**: asynchronous successive halving (:mod:`promptsearch.study.racing`).

Each study gets a fresh SQLite file, so no cache is shared and the forward passes
(read from each database's totals) are what each arm really ran.  Prints the
number of candidates, the forward passes of each arm and their ratio, the top
prompt of each arm and whether they are the same, the top-5 overlap, and how far
the full arm's top prompt got in the racing arm.

``--resume`` keeps the databases of an earlier run in ``--out``: the studies are
replayed for free and the totals stay those of the first run.  Use it to try
other racing settings against the same full arm.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

from promptsearch import Prompt, load_model, load_task
from promptsearch.scoring.scorer import Scorer
from promptsearch.searchers.base import SearchContext, TrainView, TrialResult
from promptsearch.searchers.manual import ManualSearcher
from promptsearch.searchers.random_edit import RandomEditSearcher
from promptsearch.storage import LeaderboardRow, Storage, open_storage
from promptsearch.study.loop import Study
from promptsearch.study.racing import Racing
from promptsearch.task import Task

SHORT = 70


def candidate_prompts(task: Task, n: int, seed: int) -> list[Prompt]:
    """The seed prompts, then seeded random edits of them, *n* distinct prompts in all."""
    searcher = RandomEditSearcher(top_k=len(task.seed_prompts), edits_per_candidate=2)
    searcher.setup(SearchContext(task=TrainView.from_task(task), rng=random.Random(seed)))
    seeds = searcher.propose(len(task.seed_prompts))
    # every seed observed with the same score: each edit starts from a seed prompt
    searcher.observe(
        [
            TrialResult(c.prompt, c.prompt.content_hash, 0.0, "complete", 0, "random-edit", "seed")
            for c in seeds
        ]
    )
    prompts = [c.prompt for c in seeds]
    while len(prompts) < n:
        batch = searcher.propose(min(16, n - len(prompts)))
        if not batch:
            break
        prompts.extend(c.prompt for c in batch)
    return prompts[:n]


def run_arm(
    storage: Storage,
    name: str,
    task: Task,
    scorer: Scorer,
    prompts: list[Prompt],
    racing: Racing | None,
) -> float:
    started = time.monotonic()
    Study(
        name,
        task,
        scorer,
        [ManualSearcher(prompts, include_seed_prompts=False)],
        len(prompts),
        storage,
        candidates_per_round=8,
        progress=False,
        racing=racing,
    ).run()
    return time.monotonic() - started


def clip(text: str) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= SHORT else text[: SHORT - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=108)
    parser.add_argument("--dev-size", type=int, default=96)
    parser.add_argument("--task-seed", type=int, default=13)
    parser.add_argument("--seed", type=int, default=0, help="seed of the candidate edits")
    parser.add_argument("--min-examples", type=int, default=8)
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--min-trials", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default=None, help="folder of the databases (default: temporary)")
    parser.add_argument("--resume", action="store_true", help="keep databases already in --out")
    args = parser.parse_args(argv)

    racing = Racing(min_examples=args.min_examples, eta=args.eta, min_trials=args.min_trials)
    task = load_task("rotten-tomatoes", seed=args.task_seed, dev_size=args.dev_size)
    prompts = candidate_prompts(task, args.candidates, args.seed)
    if len({p.content_hash for p in prompts}) != len(prompts):
        raise SystemExit("candidate prompts are not distinct")
    out = Path(args.out or tempfile.mkdtemp(prefix="racing-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    model = load_model()
    scorer = Scorer(model, batch_size=args.batch_size)
    import torch

    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} with {torch.get_num_threads()} thread(s), "
        f"Python {platform.python_version()}"
    )
    print(
        f"task rotten-tomatoes (task seed {args.task_seed}), dev {len(task.dev)} examples, "
        f"model {model.name}; {len(prompts)} candidates; racing rungs "
        f"{racing.rungs(len(task.dev))}, eta {racing.eta}, min_trials {racing.min_trials}"
    )
    arms: dict[str, tuple[Racing | None, Path]] = {
        "full": (None, out / "full.db"),
        "racing": (
            racing,
            out / f"racing-m{racing.min_examples}-e{racing.eta}-t{racing.min_trials}.db",
        ),
    }
    boards: dict[str, list[LeaderboardRow]] = {}
    passes: dict[str, int] = {}
    for arm, (race, path) in arms.items():
        if path.exists() and not args.resume:
            path.unlink()
        with open_storage(str(path)) as storage:
            seconds = run_arm(storage, arm, task, scorer, prompts, race)
            passes[arm] = storage.totals(arm).forward_passes
            boards[arm] = storage.leaderboard(arm, include_pruned=True)
            trials = storage.trials(arm)
            pruned = sorted(t.n_examples for t in trials if t.state == "pruned")
            stops = {n: pruned.count(n) for n in sorted(set(pruned))}
            complete = sum(t.state == "complete" for t in trials)
            print(
                f"{arm}: {len(trials)} trials, {complete} complete, pruned at n={stops}, "
                f"{passes[arm]} forward passes, {seconds / 60:.1f} min this run ({path})",
                flush=True,
            )
    full, raced = boards["full"], boards["racing"]
    ratio = passes["racing"] / passes["full"]
    same = full[0].content_hash == raced[0].content_hash
    top5 = {r.content_hash for r in full[:5]} & {r.content_hash for r in raced[:5]}
    ties = [r for r in full if r.dev_score == full[0].dev_score]
    where = next(r for r in raced if r.content_hash == full[0].content_hash)
    print()
    print("| | full evaluation | racing |")
    print("|---|---|---|")
    print(f"| candidates | {len(prompts)} | {len(prompts)} |")
    print(f"| forward passes | {passes['full']} | {passes['racing']} ({ratio:.1%} of full) |")
    print(
        f"| top prompt | `{clip(full[0].text)}` ({full[0].dev_score:.3f}) | "
        f"`{clip(raced[0].text)}` ({raced[0].dev_score:.3f}) |"
    )
    print(f"| same top prompt | {'yes' if same else 'no'} | |")
    print(f"| top-5 overlap | {len(top5)}/5 | |")
    print()
    print(
        f"full arm: {len(ties)} prompt(s) share the top dev score {full[0].dev_score:.4f}; its "
        f"top prompt is, under racing, {where.state} with n={where.n_examples} "
        f"(rank {where.rank}, dev {where.dev_score:.4f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

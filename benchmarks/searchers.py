"""Searcher benchmark: does a searcher find prompts that beat the manual ones on test?

    python benchmarks/searchers.py --searchers mining,paraphrase --tasks sst2,agnews \\
        --seeds 13,42,100 --budget 20 --data-dir ../shared/data [--trex P17,P36] \\
        [--test-limit 1000] [--trex-dev-limit 50] [--storage bench.db]

For each task x seed x searcher, a study with searchers ``["manual", <searcher>]``
spends ``--budget`` prompt evaluations on the task's dev split (the k-shot dev
split for k-shot tasks, so the search sees train and dev only).  Then the best
manual (seed) prompt and the best prompt overall, both by dev score, are scored on
held-out test examples (a seeded random sample of ``--test-limit`` if the split is
larger) with the same scorer.  Prints one Markdown row per run as it finishes,
then mean +- std over seeds per task x searcher.

Searchers are looked up by name in the registry, so a spec with parameters works
too: ``--searchers "paraphrase:top_k=2,num_samples=2,mining"``.  Each study goes
to a fresh SQLite file in a temporary folder unless ``--storage`` is given (then a
rerun resumes the studies already there).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from promptsearch import Prompt, load_model, load_task
from promptsearch.hashing import content_hash
from promptsearch.scoring.scorer import Scorer
from promptsearch.searchers import make_searcher
from promptsearch.storage import LeaderboardRow, open_storage
from promptsearch.study.budget import Budget
from promptsearch.study.loop import Study
from promptsearch.task import Example, Task

SHORT = 60
TEST_SCORES: dict[tuple[str, str, str], float] = {}
"""Test scores by (prompt hash, test sample hash, scorer fingerprint), for this process."""


@dataclass
class Run:
    task: str
    seed: int
    searcher: str
    manual: LeaderboardRow
    manual_test: float
    best: LeaderboardRow
    best_test: float
    own: LeaderboardRow | None  # the searcher's own best prompt by dev (None: none complete)
    evaluations: int
    forward_passes: int
    minutes: float  # the search (the study)
    test_minutes: float  # scoring the two prompts on test

    @property
    def delta(self) -> float:
        return self.best_test - self.manual_test


def machine() -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}; {os.cpu_count()} cores; torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; {gpu}; Python {platform.python_version()}"
    )


def split_specs(text: str) -> list[str]:
    """``"a:x=1,y=2,b"`` -> ``["a:x=1,y=2", "b"]``: a ``key=value`` piece belongs to the
    spec before it."""
    specs: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        if "=" in piece and ":" not in piece and specs:
            specs[-1] += "," + piece
        else:
            specs.append(piece)
    return specs


def short(row: LeaderboardRow) -> str:
    text = Prompt.from_dict(row.body).describe()
    text = text if len(text) <= SHORT else text[: SHORT - 1] + "…"
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def test_sample(task: Task, limit: int, sample_seed: int) -> list[Example]:
    examples = list(task.split("test"))
    if 0 < limit < len(examples):
        examples = random.Random(sample_seed).sample(examples, limit)
    return examples


def load(name: str, args: argparse.Namespace, seed: int) -> Task:
    dev_size = args.trex_dev_limit if name.startswith("trex:") else None
    return load_task(name, data_dir=args.data_dir, seed=seed, dev_size=dev_size)


def run_one(
    task: Task, seed: int, spec: str, scorer: Scorer, args: argparse.Namespace, folder: Path
) -> Run:
    searcher = make_searcher(spec)
    # the whole spec, so two configurations of one searcher get studies of their own
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in spec)
    study_name = f"bench-{task.name}-{seed}-{slug}-b{args.budget}"
    if args.minutes:
        study_name += f"-m{args.minutes:g}"
    url = args.storage or f"sqlite:///{folder / (study_name.replace(':', '_') + '.db')}"
    storage = open_storage(url)
    started = time.monotonic()
    Study(
        study_name,
        task,
        scorer,
        ["manual", searcher],
        Budget(evaluations=args.budget, seconds=args.minutes * 60 if args.minutes else None),
        storage,
        seed=seed,
        candidates_per_round=args.candidates_per_round,
        progress=False,
    ).run()
    minutes = (time.monotonic() - started) / 60
    rows = storage.leaderboard(study_name)
    seeds = {p.resolve(task).content_hash for p in task.seed_prompts}
    manual = next(r for r in rows if r.content_hash in seeds)
    best = rows[0]
    own_rows = storage.leaderboard(study_name, top=1, searcher=searcher.name)
    started = time.monotonic()
    examples = test_sample(task, args.test_limit, args.sample_seed)
    sample = content_hash([[e.inputs, e.target] for e in examples])
    scores: dict[str, float] = {}
    for row in (manual, best):
        # a prompt scored on the same test sample before (the manual prompts recur across
        # seeds and searchers) is not scored again: same prompt, examples and scorer
        memo_key = (row.content_hash, sample, scorer.fingerprint)
        if memo_key not in TEST_SCORES:
            prompt = Prompt.from_dict(row.body)
            TEST_SCORES[memo_key] = scorer.score(prompt, examples, task).value
        scores[row.content_hash] = TEST_SCORES[memo_key]
    totals = storage.totals(study_name)
    return Run(
        task=task.name,
        seed=seed,
        searcher=spec,
        manual=manual,
        manual_test=scores[manual.content_hash],
        best=best,
        best_test=scores[best.content_hash],
        own=own_rows[0] if own_rows else None,
        evaluations=totals.n_trials,
        forward_passes=totals.forward_passes,
        minutes=minutes,
        test_minutes=(time.monotonic() - started) / 60,
    )


def row_text(run: Run) -> str:
    by = "seed" if run.best.content_hash == run.manual.content_hash else run.best.operation
    return (
        f"| {run.task} | {run.seed} | {run.searcher} | {short(run.manual)} | "
        f"{run.manual.dev_score:.3f} | {run.manual_test:.3f} | {short(run.best)} | {by} | "
        f"{run.best.dev_score:.3f} | {run.best_test:.3f} | {run.delta:+.3f} | "
        f"{run.evaluations} | {run.forward_passes} | {run.minutes:.1f} | "
        f"{run.test_minutes:.1f} |"
    )


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def summary(runs: list[Run]) -> None:
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.task, run.searcher)].append(run)
    print("\n| task | searcher | seeds | manual test | found test | Δ test | search min/run |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (task, searcher), group in groups.items():
        print(
            f"| {task} | {searcher} | {len(group)} | "
            f"{mean_std([r.manual_test for r in group])} | "
            f"{mean_std([r.best_test for r in group])} | {mean_std([r.delta for r in group])} | "
            f"{statistics.mean(r.minutes for r in group):.1f} |"
        )


def own_best(runs: list[Run]) -> None:
    """The searcher's own best prompt per run, in full (it may lose to a manual prompt)."""
    print("\n| task | seed | searcher | its best prompt by dev | dev |")
    print("|---|---:|---|---|---:|")
    for run in runs:
        if run.own is None:
            print(f"| {run.task} | {run.seed} | {run.searcher} | (no complete trial) | |")
            continue
        text = Prompt.from_dict(run.own.body).describe().replace("|", "\\|").replace("`", "'")
        print(f"| {run.task} | {run.seed} | {run.searcher} | `{text}` | {run.own.dev_score:.3f} |")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searchers", default="mining,paraphrase")
    parser.add_argument("--tasks", default="sst2,agnews", help="comma-separated task names")
    parser.add_argument("--trex", default="", help="T-REx relations, e.g. P17,P36")
    parser.add_argument("--seeds", default="13,42,100", help="k-shot split / sampling seeds")
    parser.add_argument("--budget", type=int, default=20, help="prompt evaluations per study")
    parser.add_argument(
        "--minutes", type=float, default=0, help="also stop a study after this many (wall) minutes"
    )
    parser.add_argument("--candidates-per-round", type=int, default=4)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--test-limit", type=int, default=1000, help="0: the whole test split")
    parser.add_argument("--trex-dev-limit", type=int, default=None, help="T-REx dev size")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the test sample")
    parser.add_argument("--storage", default=None, help="database URL/path (default: temp)")
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--batch-size", type=int, default=16)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    tasks += [f"trex:{r.strip()}" for r in args.trex.split(",") if r.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    specs = split_specs(args.searchers)
    for spec in specs:
        make_searcher(spec)  # fail now on an unknown searcher or bad parameter
    model = load_model(args.model)
    scorer = Scorer(model, batch_size=args.batch_size)
    print(f"machine: {machine()}")
    limit = f" or {args.minutes:g} minutes" if args.minutes else ""
    print(
        f"model {model.name} ({model.dtype}, {model.device}); budget {args.budget} "
        f"evaluations{limit}; test: random {args.test_limit or 'all'} (sample seed "
        f"{args.sample_seed})\n"
    )
    print(
        "| task | seed | searcher | best manual prompt | dev | test | best found prompt | by | "
        "dev | test | Δ test | evals | fwd passes | search min | test min |"
    )
    print("|---|---:|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    sys.stdout.flush()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="promptsearch-bench-") as tmp:
        for name in tasks:
            for seed in seeds:
                task = load(name, args, seed)
                for spec in specs:
                    run = run_one(task, seed, spec, scorer, args, Path(tmp))
                    runs.append(run)
                    print(row_text(run))
                    sys.stdout.flush()
    summary(runs)
    own_best(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

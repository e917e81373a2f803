"""Search-quality benchmark: does the default run hand back a prompt that beats the
user's best seed prompt on test data it never saw?

    python benchmarks/quality.py --data-dir ../shared/data \\
        [--tasks sst2,mr,agnews,rotten-tomatoes] [--seeds 13,42,100] \\
        [--arms default,weak] [--dev-sizes task,600] [--label-instructions off,on] \\
        [--searcher label-words:near_labels=30] [--confirm-train 200,0] \\
        [--order ensemble-first,ensemble-last,most-examples,ahead-first] \\
        [--choose-by all-dev,held-back] [--train-holdout auto,0,0.5] \\
        [--budget N] [--test-limit 500] [--storage-dir DIR] \\
        [--selection-procedure sequence|fallback|holm] [--selection-tests sign+gold|sign] \\
        [--selection-ensemble top|own-parts|own-ahead|own-no-trailing] \\
        [--selection-ensemble-balance off|on] [--selection-balanced-seed off|on]

For each task x seed x arm, one study runs exactly what ``promptsearch run --task T``
runs (the default searchers, budget, selection and racing of
:func:`promptsearch.api.search`) on a fresh SQLite file.  Arm ``default`` starts from
the task's seed prompts; arm ``weak`` from one poor seed prompt only
(``{text} It was {answer}.`` with the words terrible/great for two labels, the
task's own words otherwise).  ``--dev-sizes`` runs each study once per dev size
(``task``: the task's own; N: ``--dev-size N``, a dev split of N examples over the same
test split).  ``--label-instructions off,on`` runs each study once as shipped and once
with the ``optuna`` searcher's ``label_instructions=true`` (two instructions written
from the task's label words join its pool).  ``--searcher SPEC`` (repeatable) runs a
default searcher with parameters in place of the shipped one of that name, e.g.
``--searcher label-words:near_labels=30``.  ``--confirm-train 200,0`` makes each study's
pick once per value of ``Selection.confirm_train``, ``--order``
once per testing order of ``Selection.order``, and ``--choose-by`` once per
``Selection.choose_by`` (each combination is a *pick rule*, printed as
``200/ensemble-first``, with ``/held-back`` where it is not the library's choice: the
first runs the search, the others make the pick again on the same stored search, so
they differ in the pick alone).  Then, on a
seeded sample of ``--test-limit`` test examples (the same for every run of a task), it
scores:

* the baseline: the best seed prompt of the task chosen by the whole dev split
  (what a user would pick without promptsearch; in the weak arm, the task's
  seed prompts too, so both arms are measured against the same baseline);
* the pick: what the study hands back (a prompt or an ensemble);
* the top 10 of the leaderboard by dev, to show how far selection left the pick
  from the best test score among them and the pick (the selection gap, ≥ 0; the
  pick is often a seed prompt outside the top 10).

It prints one Markdown row per run as it finishes, with the paired test of pick
against baseline on test (exact McNemar), minutes of search and forward passes,
then the mean over seeds per task and arm.  Winners are picked by dev only; test
is looked at only here, to report.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from promptsearch import Prompt, load_model, load_task
from promptsearch.api import DEFAULT_SEARCHERS, search
from promptsearch.errors import ConfigError
from promptsearch.evaluation.stats import mcnemar
from promptsearch.scoring.scorer import Scorer, ScoreReport
from promptsearch.study.ensemble import PromptEnsemble
from promptsearch.study.selection import (
    CHOOSE_BY,
    ENSEMBLE_MEMBERS,
    ORDERS,
    PROCEDURES,
    TESTS,
    Selection,
)
from promptsearch.task import Example, Task


@dataclass
class Run:
    task: str
    seed: int
    arm: str
    dev: int
    label_instructions: bool
    holdout: float
    rule: str
    baseline: str
    baseline_test: float
    pick: str
    pick_test: float
    replaced: bool
    p_value: float
    top10_best: float
    minutes: float
    forward_passes: int
    evaluations: int

    @property
    def delta(self) -> float:
        return self.pick_test - self.baseline_test

    @property
    def gap(self) -> float:
        """The selection gap: how far the pick is below the best of the top prompts by dev."""
        return self.top10_best - self.pick_test


def parse_switch(text: str, option: str) -> list[bool]:
    """``on,off`` -> ``[True, False]``."""
    values = {"on": True, "off": False}
    out: list[bool] = []
    for part in (p.strip() for p in text.split(",")):
        if part not in values:
            raise SystemExit(f"{option}: expected a comma list of on and off; got {part!r}")
        out.append(values[part])
    return out


def parse_dev_sizes(text: str) -> list[int | None]:
    """``task,600`` -> ``[None, 600]`` (None: the task's own dev split)."""
    sizes: list[int | None] = []
    for part in (p.strip() for p in text.split(",")):
        if part == "task":
            sizes.append(None)
        elif part.isdigit() and int(part) > 0:
            sizes.append(int(part))
        else:
            raise SystemExit(f"--dev-sizes: {part!r} is neither 'task' nor a positive count")
    return sizes


def weak_prompt(task: Task) -> Prompt:
    field = task.input_fields[0]
    if len(task.labels) == 2:
        words = dict(zip(task.labels, ("terrible", "great"), strict=True))
        return Prompt(f"{{{field}}} It was {{answer}}.", verbalizer=words)
    return Prompt(f"{{{field}}} It was {{answer}}.")


def test_sample(task: Task, limit: int) -> list[Example]:
    examples = list(task.split("test"))
    if 0 < limit < len(examples):
        examples = random.Random(0).sample(examples, limit)
    return examples


def score(
    scorer: Scorer,
    prompt: Prompt | PromptEnsemble,
    examples: list[Example],
    task: Task,
    memo: dict[tuple[str, int], ScoreReport],
) -> ScoreReport:
    # the same prompt on the same examples (studies of one task share its test sample)
    key = (prompt.content_hash, hash(tuple((e.id, e.target) for e in examples)))
    if key not in memo:
        memo[key] = (
            prompt.score(scorer, examples, task)
            if isinstance(prompt, PromptEnsemble)
            else scorer.score(prompt, examples, task)
        )
    return memo[key]


PICK_OPTIONS = (  # option, the Selection field it sets, its prefix in the rule's name
    ("selection_procedure", "procedure", ""),
    ("selection_tests", "tests", ""),
    ("selection_ensemble", "ensemble_members", "ensemble-"),
    ("selection_ensemble_balance", "ensemble_balance", "balance-"),
    ("selection_balanced_seed", "balanced_seed", "balanced-seed-"),
)
ON_OFF = ("ensemble_balance", "balanced_seed")


def pick_options(args: argparse.Namespace) -> list[tuple[str, Any, str]]:
    """The pick settings given on the command line (the library's default otherwise):
    (Selection field, value, its part of the rule's name)."""
    given = []
    for option, field, prefix in PICK_OPTIONS:
        text = getattr(args, option)
        if text:
            value = text == "on" if field in ON_OFF else text
            given.append((field, value, f"/{prefix}{text}"))
    return given


def run_one(
    name: str,
    seed: int,
    arm: str,
    dev_size: int | None,
    label_instructions: bool,
    given_holdout: float | str,
    rule: tuple[int, str, str],
    args: argparse.Namespace,
    model: object,
    folder: Path,
    memo: dict[tuple[str, int], ScoreReport],
) -> Run:
    task = load_task(name, data_dir=args.data_dir, seed=seed, dev_size=dev_size)
    # "auto" made the share it stands for on this dev split: runs name the share they used
    holdout = float(Selection(train_holdout=given_holdout).for_dev(len(task.dev)).train_holdout)
    label = f"{name}-{seed}-{arm}" + ("" if dev_size is None else f"-dev{dev_size}")
    label += "-label-instructions" if label_instructions else ""
    label += f"-holdout{holdout:g}" if holdout else ""
    given = pick_options(args)
    searchers = list(DEFAULT_SEARCHERS)
    if label_instructions:
        searchers = ["optuna:label_instructions=true" if s == "optuna" else s for s in searchers]
    for spec in args.searcher:  # --searcher SPEC: in place of the default of that name
        searchers = [spec if s.split(":")[0] == spec.split(":")[0] else s for s in searchers]
        label += "-" + re.sub(r"[^A-Za-z0-9]+", "-", spec).strip("-")
    scorer = Scorer(model, batch_size=args.batch_size)  # type: ignore[arg-type]
    # the baseline: the best seed prompt by the whole dev split
    seeds = [p.resolve(task) for p in task.seed_prompts]
    dev_scores = [score(scorer, p, list(task.dev), task, memo).value for p in seeds]
    baseline = seeds[max(range(len(seeds)), key=lambda i: dev_scores[i])]
    searched = task if arm == "default" else replace(task, seed_prompts=(weak_prompt(task),))
    started = time.monotonic()
    result = search(
        searched,
        model=model,  # type: ignore[arg-type]
        searchers=searchers,
        storage=f"sqlite:///{folder / f'{label}.db'}",
        study=f"quality-{label}",
        seed=seed,
        progress=False,
        racing="auto",
        # the default settings, or only the pick's changed (they fit k-shot dev)
        selection={
            "confirm_train": rule[0],
            "order": rule[1],
            "choose_by": rule[2],
            "train_holdout": holdout,
            **{field: value for field, value, _ in given},
        },
        **({"budget": args.budget} if args.budget else {}),
    )
    minutes = (time.monotonic() - started) / 60
    best = result.best
    if best is None:
        raise SystemExit(f"{name} seed {seed} {arm}: the study found nothing")
    examples = test_sample(task, args.test_limit)
    base = score(scorer, baseline, examples, task, memo)
    picked = score(scorer, best.prompt, examples, task, memo)
    rows = result.leaderboard(top=args.top_test) if args.top_test else []
    top = [Prompt.from_dict(row.body) for row in rows]
    top10 = max((score(scorer, p, examples, task, memo).value for p in top), default=-1.0)
    test = mcnemar([r.correct for r in picked.results], [r.correct for r in base.results])
    totals = result.storage.totals(result.name)
    return Run(
        task=name,
        seed=seed,
        arm=arm,
        dev=len(task.dev),
        label_instructions=label_instructions,
        holdout=holdout,
        rule=f"{rule[0]}/{rule[1]}"
        + (f"/{rule[2]}" if rule[2] != Selection().choose_by else "")
        + "".join(label for _, _, label in given),
        baseline=baseline.describe(width=50),
        baseline_test=base.value,
        pick=best.prompt.describe(width=50),
        pick_test=picked.value,
        replaced=bool(best.replaced_seed),
        p_value=test.p_value,
        top10_best=max(top10, picked.value) if args.top_test else float("nan"),
        minutes=minutes,
        forward_passes=totals.forward_passes,
        evaluations=totals.n_trials,
    )


def figure(value: float) -> str:
    """A score to three places, or a dash where it was not measured (``--top-test 0``)."""
    return "—" if math.isnan(value) else f"{value:.3f}"


def cell(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("`", "'").replace("\n", "\\n") + "`"


def print_row(run: Run) -> None:
    print(
        f"| {run.task} | {run.seed} | {run.arm} | {run.dev} | "
        f"{'on' if run.label_instructions else 'off'} | {run.holdout:g} | {run.rule} | "
        f"{cell(run.baseline)} | "
        f"{run.baseline_test:.3f} | {cell(run.pick)} | {run.pick_test:.3f} | "
        f"{run.delta:+.3f} | {run.p_value:.3g} | {'yes' if run.replaced else 'no'} | "
        f"{figure(run.top10_best)} | {figure(run.gap)} | "
        f"{run.minutes:.1f} | "
        f"{run.evaluations} | {run.forward_passes} |",
        flush=True,
    )


def summary(runs: list[Run]) -> None:
    print(
        "\n| task | arm | dev | label instr. | train holdout | pick rule | seeds | "
        "baseline test | pick test | mean Δ | selection gap |"
    )
    print("|---|---|---:|---|---:|---:|---|---:|---:|---:|---:|")

    def key_of(r: Run) -> tuple[str, str, int, bool, float, str]:
        return (r.task, r.arm, r.dev, r.label_instructions, r.holdout, r.rule)

    for key in sorted({key_of(r) for r in runs}):
        task, arm, dev, instructions, holdout, rule = key
        group = [r for r in runs if key_of(r) == key]
        seeds = ",".join(str(r.seed) for r in group)
        mean = statistics.mean
        print(
            f"| {task} | {arm} | {dev} | {'on' if instructions else 'off'} | {holdout:g} | "
            f"{rule} | {seeds} | "
            f"{mean(r.baseline_test for r in group):.3f} | "
            f"{mean(r.pick_test for r in group):.3f} | {mean(r.delta for r in group):+.3f} | "
            f"{figure(mean(r.gap for r in group))} |"
        )
    for holdout, rule in sorted({(r.holdout, r.rule) for r in runs}):
        for arm in ("default", "weak"):
            group = [
                r
                for r in runs
                if r.arm == arm
                and not r.label_instructions
                and (r.holdout, r.rule) == (holdout, rule)
            ]
            if group:
                print(
                    f"mean Δ test over {len(group)} {arm} runs, train holdout {holdout:g}, "
                    f"pick rule {rule}: "
                    f"{statistics.mean(r.delta for r in group):+.3f}; mean gap "
                    f"{figure(statistics.mean(r.gap for r in group))}"
                )
    print(f"longest study {max(r.minutes for r in runs):.1f} min")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,mr,agnews,rotten-tomatoes")
    parser.add_argument("--seeds", default="13,42,100")
    parser.add_argument("--arms", default="default,weak")
    parser.add_argument(
        "--dev-sizes",
        default="task",
        help="comma list: 'task' (the task's own dev split) or a dev split size N",
    )
    parser.add_argument(
        "--label-instructions",
        default="off",
        help="comma list of off (as shipped) and on (optuna:label_instructions=true)",
    )
    parser.add_argument(
        "--searcher",
        action="append",
        default=[],
        metavar="SPEC",
        help="a default searcher with parameters, in place of the shipped one of that "
        "name (repeatable), e.g. --searcher label-words:near_labels=30",
    )
    parser.add_argument(
        "--confirm-train",
        default=str(Selection().confirm_train),
        help="comma list of Selection.confirm_train values: the first runs the search, the "
        "others make the pick again on it (e.g. 200,0: as shipped, and without train "
        "examples in the pick's tests)",
    )
    parser.add_argument(
        "--order",
        default=Selection().order,
        help=f"comma list of Selection.order values ({', '.join(ORDERS)}): each makes "
        "the pick again on the same search",
    )
    parser.add_argument(
        "--choose-by",
        default=Selection().choose_by,
        help=f"comma list of Selection.choose_by values ({', '.join(CHOOSE_BY)}): each "
        "makes the pick again on the same search",
    )
    parser.add_argument(
        "--train-holdout",
        default=str(Selection().train_holdout),
        help="comma list of Selection.train_holdout values ('auto' or a share of train "
        "hidden from the searchers); each runs its own search, named by the share it used",
    )
    parser.add_argument("--budget", type=int, default=None, help="default: the CLI's default")
    parser.add_argument("--test-limit", type=int, default=500)
    parser.add_argument(
        "--top-test",
        type=int,
        default=10,
        help="how many of the best prompts by dev to score on test for the selection gap "
        "(0: none; for a rerun that only makes the pick again on stored studies)",
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--storage-dir",
        default=None,
        help="keep the studies' SQLite files; a rerun resumes them (nothing is scored "
        "again on dev) and makes the pick anew",
    )
    parser.add_argument(
        "--selection-procedure",
        choices=PROCEDURES,
        default=None,
        help="the final pick's correction (default: the library's); with --storage-dir, a "
        "rerun with the other one makes the pick again on the same searches",
    )
    parser.add_argument(
        "--selection-tests",
        choices=TESTS,
        default=None,
        help="the paired tests of the final pick (default: the library's); with "
        "--storage-dir, a rerun with the other makes the pick again on the same searches",
    )
    parser.add_argument(
        "--selection-ensemble",
        choices=ENSEMBLE_MEMBERS,
        default=None,
        help="the ensemble challenger's members (default: the library's); with "
        "--storage-dir, a rerun with another makes the pick again on the same searches",
    )
    parser.add_argument(
        "--selection-ensemble-balance",
        choices=("off", "on"),
        default=None,
        help="divide each ensemble member's probabilities by its mean label distribution "
        "on the search part (default: the library's); with --storage-dir, a rerun with "
        "the other makes the pick again on the same searches",
    )
    parser.add_argument(
        "--selection-balanced-seed",
        choices=("off", "on"),
        default=None,
        help="test first the best seed prompt balanced (default: the library's); with "
        "--storage-dir, a rerun with the other makes the pick again on the same searches",
    )
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    for spec in args.searcher:
        if spec.split(":")[0] not in DEFAULT_SEARCHERS:
            parser.error(
                f"--searcher: {spec!r} names none of the default searchers "
                f"{', '.join(DEFAULT_SEARCHERS)}; it replaces one of them"
            )
    confirm_trains = [int(v) for v in args.confirm_train.split(",") if v.strip().isdigit()]
    if len(confirm_trains) != len(args.confirm_train.split(",")):
        parser.error(
            f"--confirm-train: expected a comma list of counts ≥ 0; got {args.confirm_train!r}"
        )
    orders = args.order.split(",")
    if not set(orders) <= set(ORDERS):
        parser.error(f"--order: expected a comma list of {', '.join(ORDERS)}")
    choices = args.choose_by.split(",")
    if not set(choices) <= set(CHOOSE_BY):
        parser.error(f"--choose-by: expected a comma list of {', '.join(CHOOSE_BY)}")
    rules = [
        (count, order, choice) for count in confirm_trains for order in orders for choice in choices
    ]
    try:
        holdouts: list[float | str] = [
            v if v == "auto" else float(v) for v in args.train_holdout.split(",")
        ]
        for value in holdouts:
            Selection(train_holdout=value)
    except (ValueError, ConfigError) as error:
        parser.error(
            f"--train-holdout: expected a comma list of 'auto' or shares in [0, 1); {error}"
        )
    arms = args.arms.split(",")
    unknown = sorted(set(arms) - {"default", "weak"})
    if unknown:
        parser.error(f"--arms: unknown arm(s) {unknown}; choose from default, weak")
    print(
        f"machine: {platform.machine()}, {platform.processor() or '?'}, {os.cpu_count()} "
        f"cores, python {platform.python_version()}, threads {args.threads or 'all'}",
        file=sys.stderr,
    )
    if args.searcher:
        print(f"searchers replaced: {', '.join(args.searcher)}", file=sys.stderr)
    model = load_model(args.model)
    folder = Path(args.storage_dir or tempfile.mkdtemp(prefix="quality-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(
        "| task | seed | arm | dev | label instr. | train holdout | pick rule | "
        "baseline (best seed by dev) "
        "| test | pick | "
        f"test | Δ | p | replaced seed | best of top {args.top_test} + pick | gap | search min | "
        "evals | "
        "fwd passes |"
    )
    print(
        "|---|---:|---|---:|---|---:|---:|---|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"
    )
    dev_sizes = parse_dev_sizes(args.dev_sizes)
    switches = parse_switch(args.label_instructions, "--label-instructions")
    runs = []
    for name in args.tasks.split(","):
        memo: dict[tuple[str, int], ScoreReport] = {}
        for seed in (int(s) for s in args.seeds.split(",")):
            for arm in arms:
                for dev_size in dev_sizes:
                    for switch in switches:
                        for holdout in holdouts:
                            for rule in rules:
                                run = run_one(
                                    name,
                                    seed,
                                    arm,
                                    dev_size,
                                    switch,
                                    holdout,
                                    rule,
                                    args,
                                    model,
                                    folder,
                                    memo,
                                )
                                print_row(run)
                                runs.append(run)
    summary(runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``promptsearch run``: run (or resume) a prompt search and print its leaderboard;
with ``--task-seed 13,42,100``, one study per k-shot seed.

The parser is built at every start, so the search, the storage and the model load
only in :func:`cmd_run`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import Any

from promptsearch.cli._arguments import (
    Commands,
    add_calibrate,
    add_model,
    add_storage,
    add_task,
)
from promptsearch.cli._tables import clip, held_back, print_table
from promptsearch.cli.values import check_run_values
from promptsearch.errors import ConfigError

__all__ = ["add_parser", "cmd_run", "print_pick", "run_task_seeds"]


def add_parser(commands: Commands) -> None:
    """Add the ``run`` command to the CLI's subcommands."""
    run = commands.add_parser(
        "run", help="run (or resume) a prompt search and print its leaderboard"
    )
    add_task(run, several_seeds=True)
    add_model(run)
    add_calibrate(run)
    run.add_argument(
        "--searcher",
        action="append",
        dest="searchers",
        metavar="SPEC",
        help="searcher name, optionally with parameters: 'random-edit:top_k=2'; "
        "repeat for several (default: manual, label-words and optuna)",
    )
    run.add_argument(
        "--budget",
        type=int,
        default=None,
        help="number of prompt evaluations (default 48 unless another limit is given)",
    )
    run.add_argument("--forward-passes", type=int, default=None, help="limit on forward passes")
    run.add_argument("--seconds", type=float, default=None, help="limit on wall-clock seconds")
    run.add_argument(
        "--study",
        default=None,
        help="study name (default: <task>-<model>); an existing study is resumed",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of the searchers (default 0)")
    run.add_argument(
        "--candidates-per-round",
        type=int,
        default=4,
        help="candidates each searcher proposes per round (default 4)",
    )
    run.add_argument(
        "--racing",
        action="store_true",
        help="score candidates on growing subsets of dev and stop the weak ones early "
        "(asynchronous successive halving); the default study name ends in -racing",
    )
    run.add_argument(
        "--racing-min-examples",
        type=int,
        default=None,
        help="dev examples of the first racing rung (default 8); implies --racing",
    )
    run.add_argument(
        "--racing-eta",
        type=int,
        default=None,
        help="racing growth factor: each rung is ETA times the last and the top 1/ETA go "
        "on (default 3); implies --racing",
    )
    run.add_argument(
        "--no-selection",
        action="store_true",
        help="hand back the top of the leaderboard instead of a pick confirmed on held-back "
        "dev examples (see docs/selection.md)",
    )
    run.add_argument(
        "--confirm-fraction",
        type=float,
        default=None,
        help="share of dev held back to confirm the pick (default 0.5)",
    )
    run.add_argument(
        "--selection-alpha",
        type=float,
        default=None,
        help="level of the paired tests a challenger must pass to replace the best seed "
        "prompt (default 0.1, Holm-corrected)",
    )
    run.add_argument("--top", type=int, default=10, help="leaderboard rows to print at the end")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--create-only",
        action="store_true",
        help="create the study (task, model, searchers, budget) and exit without searching; "
        "then start `promptsearch worker --study NAME` processes on it",
    )
    add_storage(run)
    run.set_defaults(handler=cmd_run)


def _budget(args: argparse.Namespace) -> Any:
    from promptsearch.study.loop import Budget

    evaluations = args.budget
    if evaluations is None and args.forward_passes is None and args.seconds is None:
        from promptsearch.api import DEFAULT_BUDGET

        evaluations = DEFAULT_BUDGET
    return Budget(evaluations=evaluations, forward_passes=args.forward_passes, seconds=args.seconds)


def _racing(args: argparse.Namespace) -> Any:
    """The Racing of `run`'s options, or "auto" (racing where dev is large enough, see
    :func:`promptsearch.api.search`) when none is given; either size option implies
    --racing."""
    if not (args.racing or args.racing_min_examples is not None or args.racing_eta is not None):
        return "auto"
    from promptsearch.study.racing import Racing

    given = {"min_examples": args.racing_min_examples, "eta": args.racing_eta}
    return Racing(**{k: v for k, v in given.items() if v is not None})


def _selection(args: argparse.Namespace) -> Any:
    """The selection of `run`'s options: True (the defaults where dev allows), False, or
    the settings given."""
    given = {"confirm_fraction": args.confirm_fraction, "alpha": args.selection_alpha}
    chosen = {k: v for k, v in given.items() if v is not None}
    if args.no_selection:
        if chosen:
            raise ConfigError(
                "--no-selection turns selection off; drop --confirm-fraction and "
                "--selection-alpha, or drop --no-selection"
            )
        return False
    if not chosen:
        return True
    from promptsearch.study.selection import Selection

    return Selection(**chosen)


def print_pick(result: Any, out: Any = None) -> None:
    """What the study hands back, and whether it beat the best seed prompt with evidence."""
    out = out or sys.stdout
    record = result.selection
    if not record:
        return
    rows = {row["key"]: row for row in record["candidates"]}
    pick, seed = rows[record["pick"]], rows[record["incumbent"]]
    n_confirm = record["n_confirm"]
    print(
        f"pick: {clip(pick['text'], 90)}  (dev {pick['search_score']:.3f}, held-back "
        f"{pick['confirm_score']:.3f} on {n_confirm})",
        file=out,
    )
    if record["replaced_incumbent"]:
        print(
            f"  beats the best seed prompt on the {n_confirm} held-back dev examples "
            f"({seed['confirm_score']:.3f}; paired {pick.get('test', 'sign')} test "
            f"p={pick['p_value']:.3g}, "
            f"Holm {pick['adjusted_p']:.3g})",
            file=out,
        )
    else:
        print(
            f"  no candidate beat the best seed prompt with evidence on the {n_confirm} "
            "held-back dev examples: keeping the seed prompt",
            file=out,
        )


def cmd_run(args: argparse.Namespace) -> int:
    if isinstance(args.task_seed, list):  # `--task-seed 13,42,100`: one study per seed
        if len(args.task_seed) > 1:
            return run_task_seeds(args, cmd_run)
        args.task_seed = args.task_seed[0]
    from promptsearch.api import DEFAULT_SEARCHERS, search
    from promptsearch.searchers import make_searcher

    check_run_values(args)  # validate cheap arguments before loading anything heavy
    budget = _budget(args)
    racing = _racing(args)
    selection = _selection(args)
    searchers = [make_searcher(spec) for spec in (args.searchers or DEFAULT_SEARCHERS)]
    result = search(
        args.task,
        model=args.model,
        searchers=searchers,
        budget=budget,
        storage=args.storage,
        study=args.study,
        seed=args.seed,
        batch_size=args.batch_size,
        candidates_per_round=args.candidates_per_round,
        data_dir=args.data_dir,
        task_seed=args.task_seed,
        device=args.device,
        dtype=args.dtype,
        progress=not args.quiet,
        calibrate=args.calibrate,
        racing=racing,
        selection=selection,
        create_only=args.create_only,
    )
    if args.create_only:
        print(
            f"study {result.name!r} is stored in {result.storage.url}; start workers on it with: "
            f"promptsearch worker --study {shlex.quote(result.name)} --storage URL"
        )
        return 0
    totals = result.storage.totals(result.name)
    n_pruned = len(result.storage.trials(result.name, states=["pruned"]))
    print(
        f"study {result.name!r}: {totals.n_complete} prompts scored"
        + (f" ({n_pruned} more pruned by racing)" if n_pruned else "")
        + f", {totals.forward_passes} forward passes, {totals.seconds:.1f} s of scoring"
    )
    print_table(
        result.leaderboard(top=args.top, include_pruned=True), held=held_back(result.selection)
    )
    print_pick(result)
    if result.stopped:
        print(
            f"stopped; run the same command again to resume study {result.name!r}", file=sys.stderr
        )
        return 130
    return 0


def run_task_seeds(args: argparse.Namespace, run_one: Callable[[argparse.Namespace], int]) -> int:
    """``run`` with several ``--task-seed`` values: the model loads once, then one study
    per seed, named ``<study or default name>-seed<N>``, runs through *run_one*."""
    from promptsearch.api import default_study_name
    from promptsearch.models.loading import load_model

    seeds: list[int] = list(args.task_seed)
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    base = args.study or default_study_name(args.task, model.name)
    if not args.study and getattr(args, "calibrate", False):
        base += "-calibrated"  # what the default name of a calibrated study ends with
    for seed in seeds:
        one = argparse.Namespace(**vars(args))
        one.task_seed = seed
        one.study = f"{base}-seed{seed}"
        one.model = model
        print(f"== task seed {seed}: study {one.study!r}", file=sys.stderr)
        status = run_one(one)
        if status != 0:
            return status
    names = ",".join(str(s) for s in seeds)
    print(
        f"ran {len(seeds)} studies (task seeds {names}); score them on test with "
        f"`promptsearch final --study '{base}-seed*'`",
        file=sys.stderr,
    )
    return 0

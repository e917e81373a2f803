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
    add_chat_template,
    add_model,
    add_storage,
    add_task,
)
from promptsearch.cli._optuna import add_optuna_storage
from promptsearch.cli._selection import add_selection, selection_of
from promptsearch.cli._tables import clip, held_back, print_table
from promptsearch.cli._task import check_task_fields, cli_task, task_name
from promptsearch.cli.run_config import (
    GIVEN,
    apply_options,
    read_config,
    stored_options,
    stored_run_options,
    track_given,
)
from promptsearch.cli.values import check_run_values
from promptsearch.errors import ConfigError

__all__ = ["add_parser", "cmd_run", "print_pick", "run_task_seeds"]


def add_parser(commands: Commands) -> None:
    """Add the ``run`` command to the CLI's subcommands."""
    run = commands.add_parser(
        "run", help="run (or resume) a prompt search and print its leaderboard"
    )
    add_arguments(run)
    track_given(run)  # a --config file fills the options not given
    run.set_defaults(handler=cmd_run)


def run_options_parser() -> argparse.ArgumentParser:
    """A parser with ``run``'s options alone: what a ``--config`` file's keys are."""
    parser = argparse.ArgumentParser(prog="promptsearch run", add_help=False)
    add_arguments(parser)
    return parser


def add_arguments(run: argparse.ArgumentParser) -> None:
    """Every option of ``run`` (the keys of a ``--config`` file too)."""
    run.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="a study spec file (TOML) whose keys are these options without the dashes, "
        "e.g. task, model, searchers, budget, storage; options given here win (see "
        "docs/cli.md)",
    )
    add_task(run, several_seeds=True, required=False)
    add_model(run)
    add_calibrate(run)
    add_chat_template(run)
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
    add_selection(run)
    run.add_argument("--top", type=int, default=10, help="leaderboard rows to print at the end")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--create-only",
        action="store_true",
        help="create the study (task, model, searchers, budget) and exit without searching; "
        "then start `promptsearch worker --study NAME` processes on it",
    )
    add_storage(run)
    add_optuna_storage(run)


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


def print_pick(result: Any, out: Any = None) -> None:
    """What the study hands back, and whether it beat the best seed prompt with evidence."""
    from promptsearch.study.selection import SMALL_CONFIRMATION

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
            f"  beats the best seed prompt on {_tested_on(pick, n_confirm)} "
            f"({_versus(pick, seed)}; paired {pick.get('test', 'sign')} test "
            f"p={pick['p_value']:.3g}, "
            f"{record['settings'].get('procedure', 'holm')}-adjusted {pick['adjusted_p']:.3g})",
            file=out,
        )
    else:
        print(
            "  no candidate beat the best seed prompt with evidence on the examples held "
            "back from the search: keeping the seed prompt",
            file=out,
        )
        closest = _closest_challenger(record["candidates"])
        if closest is not None:
            print(
                f"  closest: {clip(closest['text'], 60)}  (on {_tested_on(closest, n_confirm)} "
                f"{_versus(closest, seed)}: right on "
                f"{closest['wins']} where the seed was wrong, wrong on {closest['losses']} "
                f"where it was right; adjusted p={closest['adjusted_p']:.3g}, needs "
                f"<= {record['settings'].get('alpha', 0.1):g})",
                file=out,
            )
        if n_confirm < SMALL_CONFIRMATION:
            print(
                f"  {n_confirm} held-back examples confirm only large gains: a larger dev "
                "split (--dev-size N), where the task has the data, can tell smaller ones",
                file=out,
            )


def _tested_on(row: dict[str, Any], n_confirm: int) -> str:
    """The examples a challenger was tested on, in words."""
    n_train = int(row.get("n_train", 0))
    extra = f" and {n_train} train examples" if n_train else ""
    return f"the {n_confirm} held-back dev examples{extra}"


def _versus(row: dict[str, Any], seed: dict[str, Any]) -> str:
    """A challenger's score against the seed prompt's on the examples it was tested on."""
    mine = row.get("tested_score", row["confirm_score"])
    theirs = row.get("incumbent_tested_score", seed["confirm_score"])
    return f"{mine:.3f} against {theirs:.3f}"


def _closest_challenger(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The challenger nearest to passing: the smallest adjusted p-value, first in the
    testing order among equals; ``None`` for a record without the test figures."""
    tested = [
        row
        for row in rows
        if row.get("role") == "challenger"
        and all(key in row for key in ("adjusted_p", "wins", "losses", "text"))
    ]
    if not tested:
        return None
    return min(tested, key=lambda row: (row["adjusted_p"], row.get("order", 0)))


def _fill_options(args: argparse.Namespace) -> None:
    """Options from ``--config FILE``, or, for ``run --study NAME`` with no task, the
    options study NAME stored; those given on the command line win.  Notes which
    options were chosen in ``args.run_options`` (stored with the study)."""
    if getattr(args, "run_options", None) is not None:
        return  # filled already (one study of several task seeds)
    given = set(getattr(args, GIVEN, None) or ())
    values: dict[str, Any] = {}
    if args.config is not None:
        values = read_config(args.config, run_options_parser())
    elif args.task is None and args.study:
        from promptsearch.cli._storages import open_cli_storage

        record = open_cli_storage(args.storage).get_study(args.study)
        stored = None if record is None else stored_run_options(record.config)
        if stored is None:
            what = "does not exist" if record is None else "stores no run options"
            raise ConfigError(
                f"study {args.study!r} {what}, so --task is needed (a built-in task name, a "
                "data file, hf:NAME), or --config FILE"
            )
        values = {k: v for k, v in stored.items() if k != "study"}
    apply_options(args, values)
    args.run_options = stored_options(args, run_options_parser(), given | set(values))


def cmd_run(args: argparse.Namespace) -> int:
    _fill_options(args)
    if isinstance(args.task_seed, list):  # `--task-seed 13,42,100`: one study per seed
        if len(args.task_seed) > 1:
            return run_task_seeds(args, cmd_run)
        args.task_seed = args.task_seed[0]
    from promptsearch.api import DEFAULT_SEARCHERS, search
    from promptsearch.searchers import make_searcher

    check_task_fields(args)
    check_run_values(args)  # validate cheap arguments before loading anything heavy
    budget = _budget(args)
    racing = _racing(args)
    selection = selection_of(args)
    searchers = [make_searcher(spec) for spec in (args.searchers or DEFAULT_SEARCHERS)]
    task = cli_task(args, args.task_seed)
    from promptsearch.cli._storages import open_cli_storage

    result = search(
        task,
        model=args.model,
        searchers=searchers,
        budget=budget,
        storage=open_cli_storage(args.storage),  # closed when the command ends
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
        optuna_storage=args.optuna_storage,
        optuna_study=args.optuna_study,
        run_config={"options": args.run_options, "config_file": _config_file(args)},
        chat_template=args.chat_template,
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


def _config_file(args: argparse.Namespace) -> str | None:
    from pathlib import Path

    return None if args.config is None else str(Path(args.config).expanduser().resolve())


def run_task_seeds(args: argparse.Namespace, run_one: Callable[[argparse.Namespace], int]) -> int:
    """``run`` with several ``--task-seed`` values: the model loads once, then one study
    per seed, named ``<study or default name>-seed<N>``, runs through *run_one*."""
    from promptsearch.api import default_study_name
    from promptsearch.models.loading import load_model
    from promptsearch.scoring.chat import resolve_chat_template

    seeds: list[int] = list(args.task_seed)
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    check_task_fields(args)
    base = args.study or default_study_name(task_name(args), model.name)
    if not args.study and getattr(args, "dev_size", None) is not None:
        base += f"-dev{args.dev_size}"  # as search() names a study of another dev size
    if not args.study and getattr(args, "calibrate", False):
        base += "-calibrated"  # what the default name of a calibrated study ends with
    chat = getattr(args, "chat_template", "off")
    if not args.study and resolve_chat_template(model, chat) is not None:
        base += "-chat"  # likewise for prompts scored as chat turns
    for seed in seeds:
        one = argparse.Namespace(**vars(args))
        one.task_seed = seed
        one.study = f"{base}-seed{seed}"
        one.model = model
        one.run_options = {**(getattr(args, "run_options", None) or {}), "task_seed": [seed]}
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

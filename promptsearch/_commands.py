"""Handlers of the command-line commands (see :mod:`promptsearch.cli`)."""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from promptsearch._cli_values import (
    check_at_least_one,
    check_run_values,
    check_verbalizer_labels,
    parse_verbalizer,
)
from promptsearch._commands_final import cmd_final, held_out_cells, held_out_columns, run_task_seeds
from promptsearch._commands_report import cmd_report
from promptsearch._commands_serve import cmd_serve
from promptsearch._commands_worker import cmd_worker
from promptsearch.errors import ConfigError, StorageError
from promptsearch.validation import printable

__all__ = [
    "close_storages",
    "cmd_db",
    "cmd_evaluate",
    "cmd_export",
    "cmd_final",
    "cmd_leaderboard",
    "cmd_report",
    "cmd_run",
    "cmd_searchers",
    "cmd_serve",
    "cmd_show",
    "cmd_studies",
    "cmd_tasks",
    "cmd_worker",
    "parse_verbalizer",
    "unescape",
]


def unescape(text: str) -> str:
    r"""Turn the two-character sequences \n, \t and \\ typed on a command line into characters."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


_OPENED: list[Any] = []


def _open(url: str | None) -> Any:
    from promptsearch.storage import open_storage

    storage = open_storage(url)
    _OPENED.append(storage)
    return storage


def close_storages() -> None:
    """Close the databases the commands opened (an SQLite file then has no ``-wal`` and
    ``-shm`` files left beside it, even when the command failed)."""
    while _OPENED:
        _OPENED.pop().close()


def _clip(text: str, width: int) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def held_back(selection: dict[str, Any] | None) -> dict[str, tuple[float, bool]]:
    """From a stored selection record: (held-back dev score, is the pick) by prompt hash."""
    if not selection:
        return {}
    return {
        row["key"]: (float(row["confirm_score"]), row["key"] == selection["pick"])
        for row in selection["candidates"]
    }


def _print_table(rows: Sequence[Any], out: Any = None, tests: Any = None, held: Any = None) -> None:
    """The leaderboard; with *tests* (stored held-out results by prompt hash), also the
    test score, its interval and the p-value against the best seed prompt; with *held*
    (see :func:`held_back`), the score on the held-back dev examples and the pick."""
    out = out or sys.stdout
    if not rows:
        print("(no complete trials yet)", file=out)
        return
    head = held_out_cells(None, tests) if tests else ""
    held_head = f"{'held':>6}  " if held else ""
    print(
        f"{'rank':>4}  {'dev':>6}  {held_head}{head}{'n':>5}  {'searcher':<12}  {'hash':<10}  "
        "prompt",
        file=out,
    )
    for row in rows:
        cells = held_out_cells(row.content_hash, tests) if tests else ""
        if held:
            score, picked = held.get(row.content_hash, (None, False))
            mark = "*" if picked else " "
            cells = (f"{score:>5.3f}{mark}  " if score is not None else f"{'-':>6}  ") + cells
        n = f"{row.n_examples}{'p' if row.state == 'pruned' else ''}"
        print(
            f"{row.rank:>4}  {row.dev_score:>6.3f}  {cells}{n:>5}  "
            f"{_clip(row.searcher, 12):<12}  {row.content_hash[:10]:<10}  {_clip(row.text, 90)}",
            file=out,
        )
    if any(row.state == "pruned" for row in rows):
        print("p: pruned by racing; its dev score rests on its first n dev examples", file=out)
    if held:
        print("held: score on the held-back dev examples no searcher saw (* the pick)", file=out)


def _row_dict(row: Any) -> dict[str, Any]:
    data = asdict(row)
    data.pop("body", None)
    return data


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
        f"pick: {_clip(pick['text'], 90)}  (dev {pick['search_score']:.3f}, held-back "
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
    _print_table(
        result.leaderboard(top=args.top, include_pruned=True), held=held_back(result.selection)
    )
    print_pick(result)
    if result.stopped:
        print(
            f"stopped; run the same command again to resume study {result.name!r}", file=sys.stderr
        )
        return 130
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from promptsearch.api import evaluate
    from promptsearch.prompt import Prompt
    from promptsearch.tasks import load_task

    verbalizer = parse_verbalizer(args.verbalizer) if args.verbalizer is not None else None
    check_at_least_one(args.limit, "--limit")
    check_at_least_one(args.batch_size, "--batch-size")
    task = load_task(args.task, data_dir=args.data_dir, seed=args.task_seed)
    if verbalizer is not None and task.kind != "generation":
        check_verbalizer_labels(verbalizer, task.name, task.labels)
    prompt = Prompt(
        template=unescape(args.prompt),
        instruction=unescape(args.instruction),
        verbalizer=verbalizer,
    )
    report = evaluate(
        task,
        prompt,
        model=args.model,
        split=args.split,
        limit=args.limit,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        task_seed=args.task_seed,
        device=args.device,
        dtype=args.dtype,
        calibrate=args.calibrate,
    )
    summary = {
        "task": args.task,
        "split": args.split,
        "metric": report.metric,
        "value": report.value,
        "n_examples": len(report.results),
        "n_truncated": report.n_truncated,
        "forward_passes": report.forward_passes,
        "seconds": round(report.seconds, 3),
        "calibrated": args.calibrate,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        calibrated = ", calibrated" if args.calibrate else ""
        print(
            f"{args.task} {args.split}: {report.metric} = {report.value:.4f} "
            f"on {len(report.results)} examples{calibrated} ({report.n_truncated} truncated, "
            f"{report.forward_passes} forward passes, {report.seconds:.1f} s)"
        )
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    check_at_least_one(args.top, "--top")
    storage = _open(args.storage)
    rows = storage.leaderboard(
        args.study, top=args.top, searcher=args.searcher, include_pruned=True
    )
    tests = {r.content_hash: r for r in storage.held_out_results(args.study)}
    study = storage.get_study(args.study)
    held = held_back(None if study is None else study.selection)

    def columns(key: str) -> dict[str, Any]:
        score, picked = held.get(key, (None, False))
        return {"held_back_score": score, "picked": picked} | held_out_columns(key, tests)

    if args.format == "json":
        dicts = [_row_dict(r) | columns(r.content_hash) for r in rows]
        print(json.dumps(dicts, indent=2, default=str))
    elif args.format == "csv":
        dicts = [_row_dict(r) | columns(r.content_hash) for r in rows]
        writer = csv.DictWriter(sys.stdout, fieldnames=list(dicts[0]) if dicts else ["rank"])
        writer.writeheader()
        writer.writerows(dicts)
    else:
        _print_table(rows, tests=tests, held=held)
    return 0


def _show_study(storage: Any, name: str) -> None:
    study = storage.get_study(name)
    totals = storage.totals(name)
    print(f"study      {study.name}  ({study.status})")
    print(f"task       {study.task_name}  [{study.task_hash[:12]}]")
    print(f"model      {study.model_name}  [{study.model_fingerprint[:12]}]")
    print(f"seed       {study.seed}")
    print(f"config     {json.dumps(study.config)}")
    print(
        f"trials     {totals.n_trials} ({totals.n_complete} complete), "
        f"{totals.forward_passes} forward passes, {totals.seconds:.1f} s"
    )
    print(f"created    {study.created_at}   updated {study.updated_at}")
    print()
    _print_table(storage.leaderboard(name, top=10, include_pruned=True))


def _show_prompt(storage: Any, key: str, study: str | None) -> None:
    record = storage.get_prompt(key)
    print(f"prompt {record.content_hash}")
    print(json.dumps(record.body, indent=2, ensure_ascii=False))
    if study is not None:
        trial = storage.get_trial(study, record.content_hash)
        if trial is None:
            print(f"\nno trial of this prompt in study {study!r}")
        else:
            print(
                f"\nin study {study!r}: trial #{trial.number}, {trial.state}, dev "
                f"{trial.dev_score}, on {trial.n_examples} examples, by {trial.searcher} "
                f"({trial.operation})" + (f", error: {trial.error}" if trial.error else "")
            )
    chain = storage.lineage(record.content_hash, study)
    if chain:
        print("\nlineage (nearest parent first):")
        for step in chain:
            print(f"  {_clip(str(step), 140)}")


def cmd_show(args: argparse.Namespace) -> int:
    storage = _open(args.storage)
    if storage.get_study(args.what) is not None:
        _show_study(storage, args.what)
    else:
        _show_prompt(storage, args.what, args.study)
    return 0


def _picked_document(storage: Any, study: Any) -> dict[str, Any]:
    from promptsearch.study.results import StudyResult

    best = StudyResult(study.name, storage).best
    if best is None:
        raise StorageError(f"study {study.name!r} has nothing to export yet")
    return {
        "prompt": best.prompt.to_dict(),
        "content_hash": best.content_hash,
        "dev_score": best.score,
        "confirm_score": best.confirm_score,
        "replaced_seed": best.replaced_seed,
        "n_examples": best.n_examples,
        "searcher": best.searcher,
    }


def cmd_export(args: argparse.Namespace) -> int:
    if args.rank is not None and (isinstance(args.rank, bool) or args.rank < 1):
        raise ConfigError(f"--rank must be a whole number ≥ 1; got {args.rank}")
    if args.output:
        from promptsearch._output import check_output_path

        check_output_path(args.output, force=args.force)  # before any database work
    storage = _open(args.storage)
    storage.leaderboard(args.study, top=1)  # a missing study: the one-line error with names
    study = storage.get_study(args.study)
    if args.rank is None and study.selection:
        document = _picked_document(storage, study)
    else:
        rank = args.rank or 1
        rows = storage.leaderboard(args.study, top=rank)
        if len(rows) < rank:
            raise StorageError(
                f"study {args.study!r} has {len(rows)} complete trial(s); no rank {rank} to export"
            )
        row = rows[rank - 1]
        document = {
            "prompt": row.body,
            "content_hash": row.content_hash,
            "dev_score": row.dev_score,
            "n_examples": row.n_examples,
            "searcher": row.searcher,
        }
    document.update(
        {
            "task": study.task_name,
            "metric": study.task_spec.get("metric"),
            "model": study.model_name,
            "study": study.name,
        }
    )
    text = json.dumps(document, indent=2, ensure_ascii=False)
    if args.output:
        from promptsearch._output import write_output

        write_output(args.output, text + "\n", force=args.force)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0


def cmd_studies(args: argparse.Namespace) -> int:
    storage = _open(args.storage)
    summaries = storage.list_studies()
    if not summaries:
        print("(no studies)")
    for s in summaries:
        best = "-" if s.best_dev_score is None else f"{s.best_dev_score:.3f}"
        print(
            f"{printable(s.name):<40} {s.status:<9} trials {s.n_trials:>4}  best {best:>6}  "
            f"task {printable(s.task_name)}  model {printable(s.model_name)}"
        )
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from promptsearch.tasks import list_tasks

    for info in list_tasks(args.data_dir):
        mark = "" if info.available else "  (data not found)"
        print(f"{info.name:<34} {info.description}{mark}")
    return 0


def cmd_searchers(args: argparse.Namespace) -> int:
    from promptsearch.searchers import available_searchers, get_searcher_class

    for name in available_searchers():
        cls = get_searcher_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:<14} {doc}  params: {', '.join(cls.param_names())}")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from promptsearch.storage import upgrade

    revision = upgrade(args.storage)
    print(f"database is at schema revision {revision}")
    return 0

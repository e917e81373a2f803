"""Handler of ``promptsearch final``, the test-score columns of ``leaderboard``, and
``run --task-seed 13,42,100`` (one study per k-shot seed).

Kept out of :mod:`promptsearch._commands` (and light to import: the parser is built
at every start) so that numpy, the storage and the model load only when needed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from promptsearch.evaluation.reports import FinalReport, SeedSummary
    from promptsearch.storage import HeldOutRecord, Storage

__all__ = [
    "add_final_parser",
    "cmd_final",
    "expand_studies",
    "held_out_cells",
    "held_out_columns",
    "run_task_seeds",
    "task_seed_list",
]

_GLOB = frozenset("*?[")


# -- the parser -------------------------------------------------------------------------


def task_seed_list(text: str) -> list[int]:
    """``"13,42,100"`` → ``[13, 42, 100]`` (the type of ``run --task-seed``)."""
    seeds: list[int] = []
    for piece in text.split(","):
        try:
            seed = int(piece.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{piece.strip()!r} is not a whole number; write one seed or a comma list "
                "such as 13,42,100"
            ) from None
        if seed not in seeds:
            seeds.append(seed)
    return seeds


def add_final_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``final`` command to the CLI's subcommands (the caller adds --storage)."""
    final = commands.add_parser(
        "final",
        help="score a study's best prompts and the seed prompts once on the test split",
    )
    final.add_argument(
        "--study",
        action="append",
        required=True,
        help="study name or glob pattern ('sst2-*-seed*'); repeat for several; with several "
        "studies the mean ± std over them is printed too",
    )
    final.add_argument(
        "--top", type=int, default=5, help="how many of the best prompts by dev (default 5)"
    )
    final.add_argument(
        "--model",
        default=None,
        help="hub id or local path of the model (default: the model name the study recorded)",
    )
    final.add_argument(
        "--data-dir", default=None, help="folder of the data sets (default: $PROMPTSEARCH_DATA)"
    )
    final.add_argument(
        "--task-seed",
        type=int,
        default=None,
        help="the --task-seed of the run (default: found from the study's data hash)",
    )
    final.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: automatic)")
    final.add_argument(
        "--dtype", default=None, help="float32, bfloat16, float16 (default: automatic)"
    )
    final.add_argument("--batch-size", type=int, default=16, help="examples per forward batch")
    final.add_argument(
        "--test-limit",
        type=int,
        default=None,
        help="score a seeded random sample of N test examples (default: the whole split)",
    )
    final.add_argument(
        "--seed", type=int, default=0, help="seed of the test sample and the bootstrap"
    )
    final.add_argument(
        "--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)"
    )
    final.add_argument(
        "--confidence", type=float, default=0.95, help="interval coverage (default 0.95)"
    )
    final.add_argument(
        "--paired-test",
        choices=["auto", "mcnemar", "mcnemar-chi2", "paired-bootstrap"],
        default="auto",
        help="test against the best seed prompt (auto: exact McNemar for right/wrong "
        "metrics, else paired bootstrap)",
    )
    final.add_argument("--format", choices=["table", "json"], default="table")
    final.add_argument("--quiet", action="store_true", help="no progress lines")
    return final


# -- final ------------------------------------------------------------------------------


def expand_studies(storage: Storage, patterns: Sequence[str]) -> list[str]:
    """Study names from names and glob patterns, in the order given, without repeats."""
    known = [s.name for s in storage.list_studies()]
    names: list[str] = []
    for pattern in patterns:
        if _GLOB & set(pattern):
            matched = [n for n in known if fnmatch.fnmatchcase(n, pattern)]
            if not matched:
                raise StorageError(f"no study in {storage.url} matches {pattern!r}")
        elif pattern in known:
            matched = [pattern]
        else:
            shown = ", ".join(repr(n) for n in known[:10]) or "none"
            raise StorageError(
                f"no study named {pattern!r} in {storage.url}; existing studies: {shown}"
            )
        names.extend(n for n in matched if n not in names)
    return names


def cmd_final(args: argparse.Namespace) -> int:
    from promptsearch.api import final
    from promptsearch.evaluation.reports import summarize_studies
    from promptsearch.storage import open_storage
    from promptsearch.study.rebuild import study_model

    if args.top < 1:
        raise ConfigError(f"--top must be at least 1; got {args.top}")
    storage = open_storage(args.storage)
    names = expand_studies(storage, args.study)
    models: dict[str, Any] = {}  # one load per model name, shared by the studies
    reports = []
    for name in names:
        record = storage.get_study(name)
        if record is None:  # pragma: no cover - expand_studies found it
            raise StorageError(f"study {name!r} vanished from {storage.url}")
        key = args.model or record.model_name
        if key not in models:
            models[key] = study_model(
                record, model=args.model, device=args.device, dtype=args.dtype
            )
        report = final(
            name,
            storage=storage,
            top=args.top,
            model=models[key],
            data_dir=args.data_dir,
            task_seed=args.task_seed,
            batch_size=args.batch_size,
            test_limit=args.test_limit,
            seed=args.seed,
            n_resamples=args.resamples,
            confidence=args.confidence,
            paired_test=args.paired_test,
            progress=not args.quiet,
        )
        reports.append(report)
        if args.format == "table":
            print_report(report)
    summary = summarize_studies(reports) if len(reports) > 1 else None
    if args.format == "json":
        document: dict[str, Any] = {"studies": [report_dict(r) for r in reports]}
        if summary is not None:
            document["summary"] = summary_dict(summary)
        print(json.dumps(document, indent=2, ensure_ascii=False))
    elif summary is not None:
        print_summary(summary)
    return 0


def _clip(text: str, width: int) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def _number(value: float | None, width: int = 6, signed: bool = False) -> str:
    if value is None:
        return f"{'-':>{width}}"
    return f"{value:>+{width}.3f}" if signed else f"{value:>{width}.3f}"


def print_report(report: FinalReport, out: Any = None) -> None:
    """The held-out table of one study."""
    out = out or sys.stdout
    sample = (
        f"a sample of {report.n_examples} of {report.n_available}"
        if report.n_examples < report.n_available
        else f"all {report.n_examples}"
    )
    level = f"{report.confidence:.0%}"
    print(
        f"study {report.study!r}: task {report.task}, {report.metric} on {sample} test "
        f"examples; {level} bootstrap CI ({report.n_resamples} resamples, seed {report.seed})",
        file=out,
    )
    if report.baseline_hash is None:
        print("no seed prompt to compare with", file=out)
    else:
        test = report.paired_test or "none"
        print(
            f"baseline: the best seed prompt by dev ({report.baseline_hash[:10]}); "
            f"paired test: {test}; {report.forward_passes} forward passes spent now",
            file=out,
        )
    print(
        f"{'role':<14}  {'dev':>6}  {'test':>6}  {level + ' CI':<16}  {'Δ test':>7}  "
        f"{'p':>6}  {'hash':<10}  prompt",
        file=out,
    )
    for row in report.rows:
        comparison = row.comparison
        interval = f"[{row.test.low:.3f}, {row.test.high:.3f}]"
        print(
            f"{_clip(row.role, 14):<14}  {_number(row.dev_score)}  {_number(row.test.estimate)}  "
            f"{interval:<16}  {_number(None if comparison is None else comparison.delta, 7, True)}"
            f"  {_number(None if comparison is None else comparison.p_value)}  "
            f"{row.content_hash[:10]:<10}  {_clip(row.prompt.describe(), 70)}",
            file=out,
        )
    pick = report.pick
    if pick is not None:
        comparison = pick.comparison
        versus = (
            "it is the baseline"
            if comparison is None
            else f"Δ test {comparison.delta:+.3f} against the baseline, p={comparison.p_value:.3g}"
        )
        print(
            f"pick ({pick.kind}{', replaced the best seed prompt' if pick.replaced_seed else ''}"
            f"): test {pick.test.estimate:.3f} [{pick.test.low:.3f}, {pick.test.high:.3f}], "
            f"{versus}; dev {pick.dev_score:.3f}, held-back dev {pick.confirm_score:.3f} "
            "(the estimate the search never tuned to)",
            file=out,
        )
        print(f"  {_clip(pick.text, 110)}", file=out)
    print(file=out)


def print_summary(summary: SeedSummary, out: Any = None) -> None:
    """Mean ± std over the studies."""
    out = out or sys.stdout
    print(f"over {len(summary.studies)} studies ({summary.metric} on test, mean ± std):", file=out)
    lines = (
        ("best seed prompt (by dev)", summary.best_seed),
        ("top-1 prompt (by dev)", summary.top1),
        ("top-1 − best seed", summary.delta),
    )
    for label, value in lines:
        print(f"  {label:<26} {'-' if value is None else value}", file=out)


def report_dict(report: FinalReport) -> dict[str, Any]:
    rows = []
    for row in report.rows:
        comparison = row.comparison
        rows.append(
            {
                "role": row.role,
                "content_hash": row.content_hash,
                "prompt": row.prompt.to_dict(),
                "text": row.prompt.describe(),
                "dev_rank": row.dev_rank,
                "dev_score": row.dev_score,
                "test_score": row.test.estimate,
                "test_ci_low": row.test.low,
                "test_ci_high": row.test.high,
                "delta": None if comparison is None else comparison.delta,
                "p_value": None if comparison is None else comparison.p_value,
                "test_name": None if comparison is None else comparison.test,
            }
        )
    return {
        "study": report.study,
        "task": report.task,
        "metric": report.metric,
        "split": report.split,
        "n_examples": report.n_examples,
        "n_available": report.n_available,
        "baseline_hash": report.baseline_hash,
        "paired_test": report.paired_test,
        "confidence": report.confidence,
        "n_resamples": report.n_resamples,
        "seed": report.seed,
        "forward_passes": report.forward_passes,
        "rows": rows,
        "pick": None if report.pick is None else report.pick.to_dict(),
    }


def summary_dict(summary: SeedSummary) -> dict[str, Any]:
    def pair(value: Any) -> dict[str, Any] | None:
        return None if value is None else {"mean": value.mean, "std": value.std, "n": value.n}

    return {
        "studies": list(summary.studies),
        "metric": summary.metric,
        "best_seed_test": pair(summary.best_seed),
        "top1_test": pair(summary.top1),
        "delta": pair(summary.delta),
    }


# -- leaderboard columns ----------------------------------------------------------------


def held_out_columns(content_hash: str, tests: Mapping[str, HeldOutRecord]) -> dict[str, Any]:
    """Held-out fields for a leaderboard row in JSON/CSV: none when the study has no
    stored test results, else every field (``None`` for a prompt without one)."""
    if not tests:
        return {}
    record = tests.get(content_hash)
    return {
        "test_score": None if record is None else record.value,
        "test_ci_low": None if record is None else record.ci_low,
        "test_ci_high": None if record is None else record.ci_high,
        "test_p_value": None if record is None else record.p_value,
        "test_name": None if record is None else record.test_name,
        "test_n": None if record is None else record.n_examples,
    }


def held_out_cells(content_hash: str | None, tests: Mapping[str, HeldOutRecord]) -> str:
    """The test, CI and p columns of a leaderboard table line (the header with
    ``content_hash=None``)."""
    if content_hash is None:
        return f"{'test':>6}  {'95% CI':<16}  {'p':>6}  "
    record = tests.get(content_hash)
    if record is None:
        return f"{'-':>6}  {'':<16}  {'-':>6}  "
    interval = (
        ""
        if record.ci_low is None or record.ci_high is None
        else f"[{record.ci_low:.3f}, {record.ci_high:.3f}]"
    )
    p_value = "base" if record.is_baseline else _number(record.p_value).strip()
    return f"{record.value:>6.3f}  {interval:<16}  {p_value:>6}  "


# -- run: one study per task seed ---------------------------------------------------------


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

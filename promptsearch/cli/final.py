"""``promptsearch final``: score a study's best prompts and its seed prompts once on
the test split, with intervals and paired tests (see :mod:`promptsearch.evaluation`).

The parser is built at every start, so numpy, the storage and the model load only
in :func:`cmd_final`.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from promptsearch.cli._arguments import Commands, add_batch_size, add_storage
from promptsearch.cli._storages import open_cli_storage
from promptsearch.cli._tables import clip, number
from promptsearch.cli.values import check_batch_size
from promptsearch.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from promptsearch.evaluation.reports import FinalReport, SeedSummary
    from promptsearch.storage import Storage

__all__ = [
    "add_parser",
    "cmd_final",
    "expand_studies",
    "print_report",
    "print_summary",
    "report_dict",
    "summary_dict",
]

_GLOB = frozenset("*?[")


# -- the parser -------------------------------------------------------------------------


def add_parser(commands: Commands) -> None:
    """Add the ``final`` command to the CLI's subcommands."""
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
    add_batch_size(final)
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
    add_storage(final)
    final.set_defaults(handler=cmd_final)


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
    from promptsearch.study.rebuild import study_model

    if args.top < 1:
        raise ConfigError(f"--top must be at least 1; got {args.top}")
    check_batch_size(args.batch_size)
    storage = open_cli_storage(args.storage)
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
            f"{clip(row.role, 14):<14}  {number(row.dev_score)}  {number(row.test.estimate)}  "
            f"{interval:<16}  {number(None if comparison is None else comparison.delta, 7, True)}"
            f"  {number(None if comparison is None else comparison.p_value)}  "
            f"{row.content_hash[:10]:<10}  {clip(row.prompt.describe(), 70)}",
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
        print(f"  {clip(pick.text, 110)}", file=out)
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

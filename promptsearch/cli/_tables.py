"""The leaderboard as a table (``run``, ``leaderboard``, ``show``) and its held-out
columns (the test scores ``final`` stored)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promptsearch.storage import HeldOutRecord

__all__ = [
    "clip",
    "held_back",
    "held_out_cells",
    "held_out_columns",
    "number",
    "print_table",
    "row_dict",
]


def clip(text: str, width: int) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def number(value: float | None, width: int = 6, signed: bool = False) -> str:
    if value is None:
        return f"{'-':>{width}}"
    return f"{value:>+{width}.3f}" if signed else f"{value:>{width}.3f}"


def held_back(selection: dict[str, Any] | None) -> dict[str, tuple[float, bool]]:
    """From a stored selection record: (held-back dev score, is the pick) by prompt hash."""
    if not selection:
        return {}
    return {
        row["key"]: (float(row["confirm_score"]), row["key"] == selection["pick"])
        for row in selection["candidates"]
    }


def print_table(rows: Sequence[Any], out: Any = None, tests: Any = None, held: Any = None) -> None:
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
            f"{clip(row.searcher, 12):<12}  {row.content_hash[:10]:<10}  {clip(row.text, 90)}",
            file=out,
        )
    if any(row.state == "pruned" for row in rows):
        print("p: pruned by racing; its dev score rests on its first n dev examples", file=out)
    if held:
        print("held: score on the held-back dev examples no searcher saw (* the pick)", file=out)


def row_dict(row: Any) -> dict[str, Any]:
    data = asdict(row)
    data.pop("body", None)
    return data


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
    p_value = "base" if record.is_baseline else number(record.p_value).strip()
    return f"{record.value:>6.3f}  {interval:<16}  {p_value:>6}  "

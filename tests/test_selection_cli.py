"""The pick on held-back dev examples through the command line, on the embedded model:
`run` prints it, `leaderboard` marks it, `export` writes it and `final` scores it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import cli


def test_bad_selection_options_get_one_line_and_status_2(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'bad.db'}"
    cases = [
        (["--no-selection", "--confirm-fraction", "0.3"], "--no-selection turns selection off"),
        (["--confirm-fraction", "2"], "selection.confirm_fraction must be a number between 0"),
        (["--selection-alpha", "0"], "selection.alpha must be a number between 0 and 1"),
        (["--confirm-train", "-1"], "selection.confirm_train must be a whole number ≥ 0"),
        (["--no-selection", "--confirm-train", "10"], "--no-selection turns selection off"),
        (["--train-holdout", "1.5"], "selection.train_holdout must be 'auto' or a number"),
        (["--no-selection", "--train-holdout", "0.5"], "--no-selection turns selection off"),
        (["--no-selection", "--selection-procedure", "holm"], "--no-selection turns selection"),
        (["--no-selection", "--selection-tests", "sign"], "--no-selection turns selection"),
        (["--no-selection", "--selection-ensemble", "top"], "--no-selection turns selection"),
        (["--no-selection", "--selection-choose-by", "held-back"], "--no-selection turns"),
        (["--no-selection", "--selection-ensemble-balance", "on"], "--no-selection turns"),
        (["--no-selection", "--selection-balanced-seed", "on"], "--no-selection turns"),
    ]
    for options, message in cases:
        run = cli("run", "--task", "rotten-tomatoes", "--storage", storage, *options)
        assert run.returncode == 2, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0]
    wrong = cli("run", "--task", "rotten-tomatoes", "--storage", storage,
                "--selection-procedure", "bonferroni")  # fmt: skip
    assert wrong.returncode == 2
    assert "argument --selection-procedure: invalid choice: 'bonferroni'" in wrong.stderr
    wrong = cli("run", "--task", "rotten-tomatoes", "--storage", storage,
                "--selection-tests", "gold")  # fmt: skip
    assert wrong.returncode == 2
    assert "argument --selection-tests: invalid choice: 'gold'" in wrong.stderr
    wrong = cli("run", "--task", "rotten-tomatoes", "--storage", storage,
                "--selection-ensemble", "best")  # fmt: skip
    assert wrong.returncode == 2
    assert "argument --selection-ensemble: invalid choice: 'best'" in wrong.stderr
    wrong = cli("run", "--task", "rotten-tomatoes", "--storage", storage,
                "--train-holdout", "half")  # fmt: skip
    assert wrong.returncode == 2
    assert "argument --train-holdout: expected 'auto' or a number from 0 to 1" in wrong.stderr
    wrong = cli("run", "--task", "rotten-tomatoes", "--storage", storage,
                "--selection-order", "middle")  # fmt: skip
    assert wrong.returncode == 2
    assert "argument --selection-order: invalid choice: 'middle'" in wrong.stderr
    wrong = cli("run", "--task", "rotten-tomatoes", "--storage", storage,
                "--selection-choose-by", "search")  # fmt: skip
    assert wrong.returncode == 2
    assert "argument --selection-choose-by: invalid choice: 'search'" in wrong.stderr
    assert not (tmp_path / "bad.db").exists()


def test_pick_options_reach_the_selection() -> None:
    from promptsearch.cli import build_parser
    from promptsearch.cli._selection import selection_of as _selection
    from promptsearch.study.selection import CHOOSE_BY, ENSEMBLE_MEMBERS, ORDERS, Selection

    parser = build_parser()
    args = parser.parse_args(["run", "--task", "sst2"])
    assert _selection(args) is True  # the defaults
    args = parser.parse_args(
        ["run", "--task", "sst2", "--selection-ensemble", "own-parts", "--selection-tests", "sign"]
    )
    assert _selection(args) == Selection(ensemble_members="own-parts", tests="sign")
    for order in ORDERS:
        args = parser.parse_args(["run", "--task", "sst2", "--selection-order", order])
        assert _selection(args) == Selection(order=order)
    for choice in CHOOSE_BY:
        args = parser.parse_args(["run", "--task", "sst2", "--selection-choose-by", choice])
        assert _selection(args) == Selection(choose_by=choice)
    for holdout, value in (("auto", "auto"), ("0.25", 0.25)):
        args = parser.parse_args(["run", "--task", "sst2", "--train-holdout", holdout])
        assert _selection(args) == Selection(train_holdout=value)
    for members in ENSEMBLE_MEMBERS:
        args = parser.parse_args(["run", "--task", "sst2", "--selection-ensemble", members])
        assert _selection(args) == Selection(ensemble_members=members)
    for flag, value in (("on", True), ("off", False)):
        args = parser.parse_args(["run", "--task", "sst2", "--selection-ensemble-balance", flag])
        assert _selection(args) == Selection(ensemble_balance=value)
        args = parser.parse_args(["run", "--task", "sst2", "--selection-balanced-seed", flag])
        assert _selection(args) == Selection(balanced_seed=value)


@pytest.mark.slow
def test_run_leaderboard_export_and_final_show_the_pick(tmp_path: Path, shared_data: Path) -> None:
    pytest.importorskip("torch")
    storage = f"sqlite:///{tmp_path / 'pick.db'}"
    run = cli(
        "run", "--task", "sst2", "--data-dir", str(shared_data), "--budget", "4", "--quiet",
        "--storage", storage, "--study", "pick", "--searcher", "manual",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "held" in run.stdout and "pick:" in run.stdout
    assert "held-back" in run.stdout

    board = json.loads(
        cli("leaderboard", "--study", "pick", "--storage", storage, "--format", "json").stdout
    )
    assert {row["n_examples"] for row in board} == {16}  # the search part of 32
    picked = [row for row in board if row["picked"]]
    assert len(picked) <= 1
    assert all(row["held_back_score"] is not None for row in picked)

    exported = json.loads(cli("export", "--study", "pick", "--storage", storage).stdout)
    assert exported["confirm_score"] is not None and exported["replaced_seed"] is not None
    if picked:
        assert exported["content_hash"] == picked[0]["content_hash"]

    final = cli(
        "final",
        "--study",
        "pick",
        "--storage",
        storage,
        "--test-limit",
        "40",
        "--top",
        "2",
        "--data-dir",
        str(shared_data),
    )
    assert final.returncode == 0, final.stderr
    assert "pick (" in final.stdout and "held-back dev" in final.stdout


def _record(n_confirm: int, replaced: bool) -> dict[str, object]:
    """A selection record as select_final stores it: the incumbent and two challengers."""
    seed = {"key": "s", "role": "incumbent", "text": "Review: {sentence}", "search_score": 0.75,
            "confirm_score": 0.5}  # fmt: skip
    first = {"key": "e", "role": "challenger", "order": 1, "text": "ensemble of 3",
             "search_score": 0.875, "confirm_score": 0.688, "wins": 5, "losses": 2,
             "p_value": 0.227, "adjusted_p": 0.453, "supported": False}  # fmt: skip
    second = {"key": "p", "role": "challenger", "order": 2, "text": "It was {answer}.",
              "search_score": 0.812, "confirm_score": 0.812, "wins": 7, "losses": 2,
              "p_value": 0.09, "adjusted_p": 0.453, "supported": replaced}  # fmt: skip
    return {
        "n_confirm": n_confirm,
        "settings": {"alpha": 0.1, "procedure": "sequence"},
        "candidates": [seed, first, second],
        "incumbent": "s",
        "pick": "p" if replaced else "s",
        "replaced_incumbent": replaced,
    }


def test_a_kept_seed_names_the_closest_challenger_and_a_small_confirmation_part() -> None:
    import io
    from types import SimpleNamespace

    from promptsearch.cli.run import print_pick

    out = io.StringIO()
    print_pick(SimpleNamespace(selection=_record(16, replaced=False)), out)
    lines = out.getvalue().splitlines()
    assert "keeping the seed prompt" in lines[1]
    # the ensemble stopped the sequence: first in the testing order among equal p-values
    assert lines[2].startswith(
        "  closest: ensemble of 3  (on the 16 held-back dev examples 0.688 against 0.500"
    )
    assert "right on 5 where the seed was wrong, wrong on 2" in lines[2]
    assert "adjusted p=0.453, needs <= 0.1" in lines[2]
    assert "16 held-back examples confirm only large gains" in lines[3]

    out = io.StringIO()
    print_pick(SimpleNamespace(selection=_record(100, replaced=False)), out)
    assert "closest:" in out.getvalue() and "confirm only large gains" not in out.getvalue()

    out = io.StringIO()
    print_pick(SimpleNamespace(selection=_record(16, replaced=True)), out)
    text = out.getvalue()
    assert "beats the best seed prompt" in text and "closest:" not in text

    # a pick tested on train examples too says so, with the scores on all of them
    record = _record(16, replaced=True)
    pick = record["candidates"][2]  # type: ignore[index]
    pick.update(n_train=29, tested_score=0.8, incumbent_tested_score=0.55)
    out = io.StringIO()
    print_pick(SimpleNamespace(selection=record), out)
    assert (
        "beats the best seed prompt on the 16 held-back dev examples and 29 train examples "
        "(0.800 against 0.550;" in out.getvalue()
    )

"""The command line: fast checks in-process, real runs in a subprocess (slow)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from promptsearch.cli import main
from promptsearch.cli.values import parse_verbalizer, unescape
from promptsearch.errors import ConfigError


def cli(
    *args: str, cwd: Path | None = None, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promptsearch.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def test_help_and_import_do_not_load_torch() -> None:
    code = (
        "import sys, promptsearch, promptsearch.cli\n"
        "from promptsearch.cli import build_parser\n"
        "build_parser().format_help()\n"
        "names = ('torch', 'transformers', 'sqlalchemy', 'sklearn')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    result = cli("--help")
    assert result.returncode == 0 and "leaderboard" in result.stdout


def test_unescape_and_verbalizer_parsing() -> None:
    assert (
        unescape(r"Review: {sentence}\nSentiment: {answer}")
        == "Review: {sentence}\nSentiment: {answer}"
    )
    assert unescape(r"a\\nb") == "a\\nb"
    assert parse_verbalizer("0=bad|awful, 1=good") == {"0": ["bad", "awful"], "1": ["good"]}
    with pytest.raises(ConfigError, match="label=word"):
        parse_verbalizer("0:bad")


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--task", "sst-2-typo", "--budget", "2"], "unknown task"),
        (["run", "--task", "rotten-tomatoes", "--searcher", "nope"], "unknown searcher 'nope'"),
        (["run", "--task", "rotten-tomatoes", "--budget", "0"], "budget: evaluations must be >= 1"),
        (["leaderboard", "--study", "x", "--storage", "mysql://u@localhost/db"], "mysql"),
        (["leaderboard", "--study", "missing"], "missing"),
    ],
)
def test_bad_input_gives_one_clear_line(
    args: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("promptsearch: error:") and message in err
    assert err.count("\n") == 1, err


def test_studies_and_searchers_listing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["studies"]) == 0
    assert "(no studies)" in capsys.readouterr().out
    assert main(["searchers"]) == 0
    out = capsys.readouterr().out
    assert "manual" in out and "random-edit" in out
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert "tasks: classification  params:" in rows["label-words"]
    assert "tasks: classification/generation  params:" in rows["manual"]


@pytest.mark.slow
def test_real_run_leaderboard_show_export(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    storage = f"sqlite:///{tmp_path / 'cli.db'}"
    run = cli(
        "run",
        "--task",
        "rotten-tomatoes",
        "--budget",
        "3",
        "--quiet",
        "--storage",
        storage,
        "--study",
        "cli-test",
        "--searcher",
        "manual",
        "--searcher",
        "random-edit",
        "--no-selection",  # the pick on held-back dev: tests/test_selection_cli.py
    )
    assert run.returncode == 0, run.stderr
    assert "3 prompts scored" in run.stdout and "rank" in run.stdout

    board = cli("leaderboard", "--study", "cli-test", "--storage", storage, "--format", "json")
    rows = json.loads(board.stdout)
    assert len(rows) == 3 and rows[0]["rank"] == 1
    assert rows[0]["dev_score"] >= rows[-1]["dev_score"]
    as_csv = cli("leaderboard", "--study", "cli-test", "--storage", storage, "--format", "csv")
    assert len(list(csv.DictReader(io.StringIO(as_csv.stdout)))) == 3

    shown = cli("show", rows[0]["content_hash"][:10], "--study", "cli-test", "--storage", storage)
    assert shown.returncode == 0 and "trial #" in shown.stdout and "lineage" in shown.stdout
    study = cli("show", "cli-test", "--storage", storage)
    assert "rotten-tomatoes" in study.stdout

    exported = cli("export", "--study", "cli-test", "--storage", storage)
    document = json.loads(exported.stdout)
    assert document["content_hash"] == rows[0]["content_hash"]
    assert "{answer}" in document["prompt"]["template"]

    # the same study with another task is refused, and the data is still there
    clash = cli(
        "run",
        "--task",
        "rotten-tomatoes",
        "--task-seed",
        "5",
        "--budget",
        "3",
        "--quiet",
        "--storage",
        storage,
        "--study",
        "cli-test",
    )
    assert clash.returncode == 2 and "--study" in clash.stderr
    again = cli("leaderboard", "--study", "cli-test", "--storage", storage, "--format", "json")
    assert json.loads(again.stdout) == rows


@pytest.mark.slow
def test_real_evaluate(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    result = cli(
        "evaluate",
        "--task",
        "rotten-tomatoes",
        "--prompt",
        r"Review: {sentence}\nSentiment: {answer}",
        "--verbalizer",
        "0=negative,1=positive",
        "--limit",
        "16",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["n_examples"] == 16 and 0.0 <= summary["value"] <= 1.0
    bad = cli("evaluate", "--task", "rotten-tomatoes", "--prompt", "{text} {answer}")
    assert bad.returncode == 2 and "unknown field" in bad.stderr

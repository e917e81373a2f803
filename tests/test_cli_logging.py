"""The command line's one log handler: library records reach standard error as the
lines the commands printed before (``warning: ...``; INFO bare), ``--verbose`` adds
debug records, and ``main`` leaves no handler behind; ``--batch-size auto``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from test_kill import save_tiny_model, write_kshot_data

from promptsearch.cli import build_parser, main
from promptsearch.cli import tasks as tasks_command

PACKAGE_LOGGER = logging.getLogger("promptsearch")


def test_verbose_shows_debug_records_and_only_then(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["searchers"]) == 0
    assert "debug:" not in capsys.readouterr().err
    for args in (["-v", "searchers"], ["searchers", "--verbose"]):
        assert main(args) == 0
        err = capsys.readouterr().err
        assert err.startswith("debug: promptsearch.cli._main: promptsearch "), err


def test_the_flag_defaults_to_off_before_and_after_the_subcommand() -> None:
    parser = build_parser()
    assert parser.parse_args(["tasks"]).verbose is False
    assert parser.parse_args(["-v", "tasks"]).verbose is True
    assert parser.parse_args(["db", "upgrade", "-v"]).verbose is True


def test_main_leaves_no_handler_and_the_level_as_it_was(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    handlers, level = list(PACKAGE_LOGGER.handlers), PACKAGE_LOGGER.level
    assert main(["-v", "searchers"]) == 0
    assert main(["leaderboard", "--study", "missing"]) == 2  # a failing command too
    with pytest.raises(SystemExit):
        main(["no-such-command"])
    capsys.readouterr()
    assert PACKAGE_LOGGER.handlers == handlers
    assert PACKAGE_LOGGER.level == level


def test_records_are_formatted_as_the_old_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def logs(args: object) -> int:
        log = logging.getLogger("promptsearch.somewhere")
        log.debug("hidden without --verbose")
        log.info("a progress line")
        log.warning("seed prompt %d left out", 3)
        log.error("a request failed")
        return 0

    monkeypatch.setattr(tasks_command, "cmd_tasks", logs)
    assert main(["tasks"]) == 0
    assert capsys.readouterr().err == (
        "a progress line\nwarning: seed prompt 3 left out\nerror: a request failed\n"
    )


def test_a_library_warning_during_run_reaches_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dev split of 6 is too small to hold back a confirmation part: the API warns
    (``promptsearch.api``) and the run goes on without the check; ``--batch-size auto``
    scores as a fixed size does."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = save_tiny_model(tmp_path / "model")
    data = write_kshot_data(tmp_path / "data")
    dev = data / "kshot" / "SST-2" / "16-13" / "dev.tsv"
    dev.write_text("".join(dev.read_text().splitlines(keepends=True)[:7]))  # header + 6
    args = ["run", "--task", "sst2", "--data-dir", str(data), "--model", str(model)]
    args += ["--searcher", "manual", "--budget", "2", "--quiet"]
    args += ["--storage", str(tmp_path / "runs.db")]
    assert main([*args, "--batch-size", "auto", "--study", "auto"]) == 0
    out, err = capsys.readouterr()
    warning = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warning == [
        "warning: task 'sst2': dev has 6 examples, too few to hold back a confirmation "
        "part; the pick is the top of the leaderboard, without a check on held-back data"
    ], err
    assert main([*args, "--batch-size", "4", "--study", "fixed"]) == 0
    fixed = capsys.readouterr().out

    def scores(text: str) -> list[str]:
        return [line.split()[1] for line in text.splitlines() if line[:4].strip().isdigit()]

    assert scores(out) and scores(out) == scores(fixed)


@pytest.mark.parametrize("value", ["abc", "1.5", "Auto-matic", ""])
def test_a_batch_size_neither_a_number_nor_auto_is_one_line(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--task", "sst2", "--batch-size", value]) == 2
    assert capsys.readouterr().err == (
        "promptsearch: error: --batch-size must be a whole number of at least 1 or "
        f"'auto'; got {value!r}\n"
    )


def test_batch_size_auto_is_accepted_by_every_command_that_scores() -> None:
    parser = build_parser()
    for args in (
        ["run", "--task", "x"],
        ["evaluate", "--task", "x", "--prompt", "p {answer}"],
        ["final", "--study", "s"],
        ["worker", "--study", "s"],
    ):
        assert parser.parse_args([*args, "--batch-size", "AUTO"]).batch_size == "auto"
        assert parser.parse_args([*args, "--batch-size", "8"]).batch_size == 8

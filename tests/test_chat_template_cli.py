"""Chat templates through the command line: `--chat-template` parsed, `evaluate` and `run`
on a saved tiny chat model, and a resumed study refused with the other setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_cli_support import untouched

from promptsearch.cli import build_parser, main
from promptsearch.storage import open_storage
from promptsearch.testing import tiny_chat_lm, tiny_model


def test_cli_parses_chat_template() -> None:
    parser = build_parser()
    assert parser.parse_args(["run", "--task", "sst2"]).chat_template == "off"
    args = parser.parse_args(["run", "--task", "sst2", "--chat-template", "auto"])
    assert args.chat_template == "auto"
    args = parser.parse_args(
        ["evaluate", "--task", "sst2", "--prompt", "x", "--chat-template", "on"]
    )
    assert args.chat_template == "on"
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["run", "--task", "sst2", "--chat-template", "yes"])
    assert info.value.code == 2


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folders = {}
    for name, lm in (("chat", tiny_chat_lm()), ("plain", tiny_model("causal"))):
        folder = tmp_path_factory.mktemp(name)
        lm.model.save_pretrained(folder)
        lm.tokenizer.save_pretrained(folder)
        folders[name] = folder
    return folders


def test_cli_evaluate_and_run(
    tmp_path: Path,
    shared_data: Path,
    model_dirs: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    common = [
        "evaluate",
        "--task",
        "sst2",
        "--data-dir",
        str(shared_data),
        "--device",
        "cpu",
        "--prompt",
        r"Review: {sentence}\nSentiment: {answer}",
        "--limit",
        "4",
        "--json",
    ]
    assert main([*common, "--model", str(model_dirs["chat"]), "--chat-template", "on"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["chat_template"] == "on" and summary["n_examples"] == 4
    assert main([*common, "--model", str(model_dirs["plain"]), "--chat-template", "on"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--chat-template on" in err[0] and "no chat template" in err[0]

    url = str(tmp_path / "runs.db")
    run = [
        "run",
        "--task",
        "sst2",
        "--data-dir",
        str(shared_data),
        "--device",
        "cpu",
        "--storage",
        url,
        "--searcher",
        "manual",
        "--budget",
        "2",
        "--quiet",
        "--model",
        str(model_dirs["chat"]),
    ]
    assert main([*run, "--chat-template", "auto", "--task-seed", "13,21"]) == 0
    names = [s.name for s in open_storage(url).list_studies()]
    short = model_dirs["chat"].name
    assert names == [f"sst2-{short}-chat-seed{seed}" for seed in (13, 21)]
    capsys.readouterr()
    # refused before anything is written (the storage opens to read the study: its
    # -wal/-shm files may come and go; the bytes and rows stay)
    with untouched(Path(url), siblings=False):
        assert main([*run, "--study", names[0], "--task-seed", "13"]) == 2  # plain this time
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "rerun with --chat-template on" in err[0]
        plain = [*run[:-1], str(model_dirs["plain"]), "--chat-template", "on"]
        assert main([*plain, "--task-seed", "13"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--chat-template on" in err[0]

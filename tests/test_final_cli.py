"""`promptsearch final` on the command line, `run --task-seed` lists, the leaderboard's
test columns, and the 0002 migration of the held-out results (SQLite and PostgreSQL).
The command-line studies run the tiny GPT-2, saved as a local model folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from promptsearch.cli import main
from promptsearch.errors import StorageError
from promptsearch.hashing import content_hash
from promptsearch.models.base import LanguageModel
from promptsearch.storage import open_storage
from promptsearch.storage.schema import alembic_config

# -- the migration -------------------------------------------------------------------------------


def test_a_0001_database_is_refused_then_upgraded_with_its_data(storage_url: str) -> None:
    engine = sa.create_engine(storage_url)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0001")
        digest = content_hash("old prompt")
        with engine.begin() as connection:
            run = connection.execute
            stamp = "2025-01-01 00:00:00"
            run(
                sa.text(
                    "INSERT INTO studies (id, name, task_name, task_hash, task_spec, model_name, "
                    "model_fingerprint, scorer_fingerprint, config, seed, versions, status, "
                    "created_at, updated_at) VALUES (1, 'old', 'sst2', :h, '{}', 'm', 'f', 'f', "
                    "'{}', 0, '{}', 'finished', :t, :t)"
                ),
                {"h": content_hash("data"), "t": stamp},
            )
            run(
                sa.text(
                    "INSERT INTO prompts (id, content_hash, body, text, length, created_at) "
                    "VALUES (1, :h, '{\"template\": \"{x} {answer}\"}', 'old', 5, :t)"
                ),
                {"h": digest, "t": stamp},
            )
            for value in (0.5, 0.75):  # a duplicate: the newest row is kept
                run(
                    sa.text(
                        "INSERT INTO test_results (study_id, prompt_id, split, metric, value, "
                        "ci_low, ci_high, n_examples, created_at) "
                        "VALUES (1, 1, 'test', 'accuracy', :v, 0.25, 0.9, 40, :t)"
                    ),
                    {"v": value, "t": stamp},
                )
    finally:
        engine.dispose()
    with pytest.raises(StorageError, match=r"revision 0001, older .*promptsearch db upgrade"):
        open_storage(storage_url)
    assert main(["db", "upgrade", "--storage", storage_url]) == 0
    with open_storage(storage_url) as upgraded:
        assert [s.name for s in upgraded.list_studies()] == ["old"]
        (record,) = upgraded.held_out_results("old")
        assert (record.content_hash, record.value, record.ci_low, record.n_examples) == (
            digest,
            0.75,
            0.25,
            40,
        )
        assert not record.is_seed and not record.is_baseline and record.p_value is None


# -- the command line ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GPT-2 saved as a local model folder, so the CLI can load it by path."""
    pytest.importorskip("torch")
    from promptsearch.testing import tiny_gpt2_lm

    folder = tmp_path_factory.mktemp("models") / "tiny-gpt2"
    tiny = tiny_gpt2_lm(seed=2)
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def rotten_tomatoes(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptsearch.errors import DataError
    from promptsearch.tasks import load_task
    from promptsearch.tasks import rotten_tomatoes as module

    monkeypatch.setattr(module, "DEFAULT_DEV", 32)  # k-shot size: these tests are about final

    try:
        load_task("rotten-tomatoes")
    except DataError as error:
        pytest.skip(f"rotten-tomatoes data unavailable: {error}")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


def test_cli_run_several_task_seeds_then_final_and_leaderboard(
    tmp_path: Path,
    model_dir: Path,
    rotten_tomatoes: None,
    offline: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    common = ["--storage", url, "--quiet"]
    run = ["run", "--task", "rotten-tomatoes", "--task-seed", "13,42", "--study", "rt"]
    status = main(
        [*run, "--model", str(model_dir), "--searcher", "manual", "--budget", "3", *common]
    )
    assert status == 0
    assert [s.name for s in open_storage(url).list_studies()] == ["rt-seed13", "rt-seed42"]
    capsys.readouterr()

    final = ["final", "--study", "rt-seed*", "--top", "2", "--test-limit", "30", *common]
    assert main(final) == 0
    out = capsys.readouterr().out
    assert "study 'rt-seed13'" in out and "study 'rt-seed42'" in out
    assert "a sample of 30 of 500 test examples" in out and "baseline" in out
    assert "over 2 studies" in out and "best seed prompt (by dev)" in out

    assert main([*final, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [s["study"] for s in document["studies"]] == ["rt-seed13", "rt-seed42"]
    assert all(s["forward_passes"] == 0 for s in document["studies"])  # cached
    assert document["summary"]["best_seed_test"]["n"] == 2
    rows = document["studies"][0]["rows"]
    assert sum(r["role"].endswith("baseline") for r in rows) == 1

    assert main(["leaderboard", "--study", "rt-seed13", "--storage", url, "--format", "json"]) == 0
    board = json.loads(capsys.readouterr().out)
    scored = [r for r in board if r["test_score"] is not None]
    assert len(scored) == 3  # the 3 seed prompts the budget reached (2 top + 1 other seed)
    assert all(0.0 <= r["test_ci_low"] <= r["test_score"] <= r["test_ci_high"] for r in scored)
    assert main(["leaderboard", "--study", "rt-seed13", "--storage", url]) == 0
    table = capsys.readouterr().out
    assert "95% CI" in table and "base" in table

    assert main(["final", "--study", "rt-seed13", "--task-seed", "21", *common]) == 2
    assert "pass --task-seed" in capsys.readouterr().err


def test_cli_final_says_which_option_to_pass_for_an_unloadable_model(
    tmp_path: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with open_storage(url) as storage:
        storage.create_or_resume_study(
            "mem",
            task_name="rotten-tomatoes",
            task_hash=content_hash("data"),
            task_spec={},
            model_name="tiny-gpt2-in-memory",
            model_fingerprint="f" * 64,
            scorer_fingerprint="s" * 64,
            config={},
            seed=0,
            versions={},
        )
    assert main(["final", "--study", "mem", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "cannot be loaded again" in err and "pass --model" in err
    assert main(["final", "--study", "missing*", "--storage", url]) == 2
    assert "no study in" in capsys.readouterr().err


def test_run_task_seed_list_names_one_study_per_seed(model_dir: Path) -> None:
    from promptsearch.cli import build_parser
    from promptsearch.cli.run import run_task_seeds

    parser = build_parser()
    args = parser.parse_args(
        ["run", "--task", "rotten-tomatoes", "--task-seed", "13, 42,13", "--model", str(model_dir)]
    )
    assert args.task_seed == [13, 42]
    calls: list[Any] = []

    def record(one: Any) -> int:
        calls.append(one)
        return 0

    assert run_task_seeds(args, record) == 0
    base = "rotten-tomatoes-tiny-gpt2"
    assert [c.study for c in calls] == [f"{base}-seed13", f"{base}-seed42"]
    assert [c.task_seed for c in calls] == [13, 42]
    assert calls[0].model is calls[1].model and isinstance(calls[0].model, LanguageModel)
    assert parser.parse_args(["run", "--task", "x"]).task_seed == [13]
    assert parser.parse_args(["evaluate", "--task", "x", "--prompt", "p"]).task_seed == 13
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--task", "x", "--task-seed", "13,abc"])


def test_cli_run_with_a_larger_dev_split_then_final_show_and_resume(
    tmp_path: Path,
    model_dir: Path,
    rotten_tomatoes: None,
    offline: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    common = ["--storage", url, "--quiet"]
    run = ["run", "--task", "rotten-tomatoes", "--dev-size", "40", "--model", str(model_dir)]
    assert main([*run, "--searcher", "manual", "--budget", "2", *common]) == 0
    captured = capsys.readouterr()
    name = "rotten-tomatoes-tiny-gpt2-dev40"  # not the study of the default dev split
    assert [s.name for s in open_storage(url).list_studies()] == [name]
    assert f"study '{name}': 2 prompts scored" in captured.out
    assert (
        "20 of its 40 dev examples and 16 of its 32 train examples are held back to confirm "
        "the pick" in captured.err
    )
    assert "evidence on the 20 held-back dev and 16 held-back train examples" in captured.err
    assert "on 20)" in captured.out  # the pick's held-back score rests on 20 examples

    assert main(["final", "--study", name, "--test-limit", "20", *common]) == 0
    assert f"study '{name}'" in capsys.readouterr().out  # rebuilt with its dev size
    assert main(["show", name, "--storage", url]) == 0
    assert "built-in task rotten-tomatoes (seed 13, dev_size 40)" in capsys.readouterr().out

    # resuming by name alone reloads the task with the stored --dev-size
    assert main(["run", "--study", name, "--budget", "3", *common]) == 0
    assert f"study '{name}': 3 prompts scored" in capsys.readouterr().out


def test_cli_evaluate_with_a_larger_dev_split_keeps_the_prompt_label_words(
    model_dir: Path, rotten_tomatoes: None, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["evaluate", "--task", "rotten-tomatoes", "--dev-size", "40", "--model", str(model_dir)]
    prompt = ["--prompt", "{sentence} It was {answer}."]
    assert main([*base, *prompt, "--verbalizer", "0=bad,1=good", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_examples"] == 40
    # --verbalizer is still the prompt's label words, checked against the task's labels
    assert main([*base, *prompt, "--verbalizer", "0=bad,7=good"]) == 2
    assert "'7'" in capsys.readouterr().err

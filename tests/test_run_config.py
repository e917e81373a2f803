"""Tasks of your own on the command line, end to end with a real (tiny) model and a real
SQLite file: ``run --task FILE`` with field options, then ``final``, ``report``,
``worker`` and ``export`` reading the stored source again (and refusing changed data);
``run --config study.toml`` (tables, command-line flags winning, a rerun resuming, the
options stored with the study, ``run --study NAME`` resuming from them); a data set
saved with ``datasets``; bad input as one line, exit status 2, the database untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_cli_support import cli_error, untouched
from test_task_sources import datasets_module, reviews, saved_dataset, write_csv

from promptsearch.cli import main
from promptsearch.cli.run import run_options_parser
from promptsearch.cli.run_config import read_config
from promptsearch.storage import open_storage


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


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def trials(db: Path, study: str) -> int:
    with open_storage(str(db)) as storage:
        return len(storage.trials(study))


def test_run_on_a_file_then_final_report_worker_export(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"review": r["text"], "stars": r["label"], "id": i} for i, r in enumerate(reviews(30))]
    data = write_csv(tmp_path / "reviews.csv", rows)
    db = tmp_path / "runs.db"
    common = ["--storage", str(db), "--model", str(model_dir), "--quiet", "--no-selection"]
    task = ["--task", str(data), "--input-field", "review", "--label-field", "stars"]
    task += ["--verbalizer", "positive=good,negative=bad", "--metric", "macro_f1"]
    task += ["--seed-prompt", r"Review: {review}\nIt was {answer}"]
    run = ["run", *task, "--searcher", "manual", "--budget", "2", *common]
    assert main(run) == 0
    assert "study 'reviews-tiny-gpt2': 1 prompts scored" in capsys.readouterr().out
    with open_storage(str(db)) as storage:
        record = storage.get_study("reviews-tiny-gpt2")
    assert record is not None
    source = record.task_spec["source"]
    assert source["location"] == str(data.resolve()) and source["input_fields"] == ["review"]
    assert source["verbalizer"] == {"positive": ["good"], "negative": ["bad"]}
    assert record.task_spec["metric"] == "macro_f1"
    assert record.config["run"]["options"]["label_field"] == "stars"
    assert main(["show", "reviews-tiny-gpt2", "--storage", str(db)]) == 0
    shown = capsys.readouterr().out
    assert f"source     {data.resolve()} (input review; target stars; seed 13)" in shown

    final = ["final", "--study", "reviews-tiny-gpt2", "--storage", str(db), "--format", "json"]
    assert main(final) == 0
    (report,) = json.loads(capsys.readouterr().out)["studies"]
    assert report["metric"] == "macro_f1" and report["n_examples"] == 6
    page = tmp_path / "report.html"
    report_args = ["report", "--study", "reviews-tiny-gpt2", "--storage", str(db)]
    assert main([*report_args, "--output", str(page)]) == 0
    assert "Confusion" in page.read_text(encoding="utf-8")
    assert main(["export", "--study", "reviews-tiny-gpt2", "--storage", str(db)]) == 0
    assert "Review: {review}" in capsys.readouterr().out

    # the rerun with a larger budget resumes the same study; a worker joins it
    assert main(["run", *task, "--searcher", "manual", "--budget", "3", *common]) == 0
    worker = ["worker", "--study", "reviews-tiny-gpt2", "--storage", str(db), "--quiet"]
    assert main(worker) == 0
    capsys.readouterr()

    # the data changes: every command that reads it again refuses, in one line
    write_csv(data, rows[:-1])
    with untouched(db):
        for args in (final, worker, run):
            err = cli_error(args, capsys)
            assert "the data of its task 'reviews'" in err or "different task" in err
            assert "changed since the study ran" in err or "--study" in err


def test_config_file_tables_overrides_resume_and_stored_options(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "spec"
    folder.mkdir()
    write_csv(folder / "reviews.csv", reviews(25))
    spec = folder / "study.toml"
    spec.write_text(
        f"""
storage = "runs.db"
quiet = true
budget = 2
no_selection = true

[task]
path = "reviews.csv"
seed = 42
verbalizer = {{ positive = "good", negative = ["bad", "dull"] }}
seed_prompt = [\"\"\"Review: {{text}}
Verdict: {{answer}}\"\"\"]

[model]
name = {json.dumps(str(model_dir))}

[searchers.manual]
[searchers.random-edit]
top_k = 2
""",
        encoding="utf-8",
    )
    db = folder / "runs.db"  # relative paths start at the file's folder
    assert main(["run", "--config", str(spec)]) == 0
    assert "study 'reviews-tiny-gpt2': 2 prompts scored" in capsys.readouterr().out
    assert main(["run", "--config", str(spec), "--budget", "4"]) == 0  # the flag wins
    assert trials(db, "reviews-tiny-gpt2") == 4
    with open_storage(str(db)) as storage:
        record = storage.get_study("reviews-tiny-gpt2")
    assert record is not None and record.task_spec["source"]["seed"] == 42
    assert record.task_spec["source"]["seed_prompts"] == ["Review: {text}\nVerdict: {answer}"]
    stored = record.config["run"]
    assert stored["config_file"] == str(spec.resolve())
    assert stored["options"]["searchers"] == ["manual", "random-edit:top_k=2"]
    assert stored["options"]["budget"] == 4 and stored["options"]["task_seed"] == [42]
    capsys.readouterr()

    # `run --study NAME` resumes from the stored options (a new budget given here)
    resume = ["run", "--study", "reviews-tiny-gpt2", "--storage", str(db), "--budget", "5"]
    assert main(resume) == 0
    assert trials(db, "reviews-tiny-gpt2") == 5
    capsys.readouterr()

    # bad files: one line, status 2, the database as it was
    bad = {
        "budgett = 3\n": "unknown key 'budgett'; did you mean 'budget'? known keys: batch_size, ",
        'budget = "ten"\n': "budget = 'ten': invalid literal for int()",
        "quiet = 3\n": "quiet is a switch; write quiet = true or quiet = false",
        "[task]\npath = 'reviews.csv'\ncolour = 1\n": "unknown key 'task.colour'",
        'task = "reviews.csv"\ninput_field = "txt"\n': "field 'txt' (--input-field) is not in "
        "the data; it has fields ['text', 'label']",
        "budget = [": "not valid TOML",
    }
    for text, message in bad.items():
        (folder / "bad.toml").write_text(text, encoding="utf-8")
        with untouched(db):
            err = cli_error(["run", "--config", str(folder / "bad.toml"), *resume[1:5]], capsys)
        assert message in err, err
    err = cli_error(["run", "--study", "nothing-here", "--storage", str(db)], capsys)
    assert "study 'nothing-here' does not exist, so --task is needed" in err


def test_every_option_of_run_is_a_config_key(tmp_path: Path) -> None:
    parser = run_options_parser()
    dests = {a.dest for a in parser._actions if a.option_strings and a.dest != "config"}
    spec = tmp_path / "all.toml"
    spec.write_text("nope = 1\n", encoding="utf-8")
    with pytest.raises(Exception, match="known keys") as caught:
        read_config(str(spec), parser)
    listed = set(str(caught.value).split("known keys: ")[1].split(", "))
    assert listed == dests
    spec.write_text('task-seed = [13, 42]\nbatch_size = "auto"\nracing = true\n', encoding="utf-8")
    assert read_config(str(spec), parser) == {
        "task_seed": [13, 42],
        "batch_size": "auto",
        "racing": True,
    }


def test_built_in_tasks_take_no_field_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = cli_error(["run", "--task", "rotten-tomatoes", "--input-field", "text"], capsys)
    assert "--input-field: for a task from a data file or data set" in err
    err = cli_error(["run", "--task", "rotten-tomatoes", "--split-map", "a=b"], capsys)
    assert "--split-map: 'a=b' is not NAME=train|dev|test" in err


def test_run_on_a_saved_dataset(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    datasets_module()
    folder = saved_dataset(tmp_path)
    db = tmp_path / "runs.db"
    args = ["run", "--task", f"hf-disk:{folder}", "--storage", str(db), "--model", str(model_dir)]
    assert main([*args, "--searcher", "manual", "--budget", "1", "--quiet"]) == 0
    assert "study 'saved-reviews-tiny-gpt2'" in capsys.readouterr().out
    final = [
        "final",
        "--study",
        "saved-reviews-tiny-gpt2",
        "--storage",
        str(db),
        "--format",
        "json",
    ]
    assert main(final) == 0
    assert json.loads(capsys.readouterr().out)["studies"][0]["n_examples"] == 4
    err = cli_error(["run", "--task", "hf:promptsearch-tests/absent", "--storage", str(db)], capsys)
    assert "cannot load the data set" in err and "HF_DATASETS_OFFLINE/HF_HUB_OFFLINE" in err


def test_the_documented_spec_file_reads(tmp_path: Path) -> None:
    import re

    docs = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    block = re.search(r"```toml\n(.*?)```", docs.read_text(encoding="utf-8"), re.S)
    assert block is not None
    spec = tmp_path / "study.toml"
    spec.write_text(block.group(1), encoding="utf-8")
    values = read_config(str(spec), run_options_parser())
    assert values["task"] == str(tmp_path / "data" / "reviews.csv")
    assert values["storage"] == str((tmp_path / "studies.db").resolve())
    assert values["verbalizer"] == "1=bad,5=good|great" and values["task_seed"] == [42]
    assert values["budget"] == 60 and values["seconds"] == 3600.0
    assert values["searchers"] == ["manual", "random-edit:top_k=2"]


def test_evaluate_a_prompt_on_a_file_task(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_csv(tmp_path / "reviews.csv", reviews(20))
    args = ["evaluate", "--task", str(data), "--model", str(model_dir), "--split", "test"]
    prompt = ["--prompt", r"{text}\nIt was {answer}", "--verbalizer", "positive=good,negative=bad"]
    assert main([*args, *prompt, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "reviews" and summary["n_examples"] == 4
    err = cli_error([*args, "--prompt", "{review} {answer}"], capsys)
    assert "unknown field" in err

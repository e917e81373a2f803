"""Command-line values that must be refused, at once and in one line.

Searcher specs (a wrong type, a key given twice, an unclosed bracket; JSON values
with commas accepted), verbalizers (one word for two labels, a label twice, labels
the task lacks or misses), sizes and limits checked before any search (``--top 0``,
``--seconds inf``, a ``--dev-size`` the task lacks the data for), study names (empty,
control characters), a folder where a data file belongs.  Each fails with exactly
one ``promptsearch: error:`` line, status 2, before a model loads (``--model`` names
a folder that does not exist), and leaves the database byte for byte as it was.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from bad_cli_support import FakeScorer, exact_error, kshot_dir, make_db, small_task, untouched

import promptsearch
from promptsearch.cli import main
from promptsearch.errors import ConfigError
from promptsearch.searchers import make_searcher, parse_searcher_spec
from promptsearch.storage import open_storage
from promptsearch.study import Study
from promptsearch.study.budget import Budget


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "runs.db")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return kshot_dir(tmp_path / "data")


def run(data: Path, db: Path, *more: str) -> list[str]:
    base = ["run", "--task", "sst2", "--data-dir", str(data), "--storage", str(db)]
    return [*base, "--model", str(data.parent / "no-model-needed"), *more]


# -- searcher specs ---------------------------------------------------------------------------

UNCLOSED = 'manual:prompts=["A {sentence} {answer}"'
BAD_SPECS = [
    (
        "manual:prompts=42",
        """searcher 'manual' parameter 'prompts': expected a JSON list such as ["a", "b"]; """
        "got '42'",
    ),
    (
        "manual:prompts=[1, 2]",
        "searcher 'manual' parameter 'prompts': expected a JSON list of strings; got '[1, 2]'",
    ),
    (
        "random-edit:top_k=2,top_k=3",
        "searcher spec 'random-edit:top_k=2,top_k=3': parameter 'top_k' is given twice; "
        "give it once",
    ),
    (
        UNCLOSED,
        f"searcher spec {UNCLOSED!r}: a bracket (missing ']') is not closed; close it, e.g. "
        """'manual:prompts=["A {sentence} {answer}", "B {sentence} {answer}"]'""",
    ),
    (
        "random-edit:top_k=2.5",
        "searcher 'random-edit' parameter 'top_k': expected a whole number; got '2.5'",
    ),
    (
        "mining:diversity=inf",
        "searcher 'mining' parameter 'diversity': expected a finite number; got 'inf'",
    ),
    (
        "manual:include_seed_prompts=maybe",
        "searcher 'manual' parameter 'include_seed_prompts': expected true/false; got 'maybe'",
    ),
]


@pytest.mark.parametrize("spec, message", BAD_SPECS, ids=[s for s, _ in BAD_SPECS])
def test_bad_searcher_specs(
    spec: str, message: str, data: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with untouched(db):
        exact_error(run(data, db, "--searcher", spec), capsys, message)


def test_json_values_may_hold_commas() -> None:
    spec = 'manual:prompts=["A, {sentence} {answer}", "B {sentence} {answer}"],' + (
        "include_seed_prompts=false"
    )
    assert parse_searcher_spec(spec) == (
        "manual",
        {
            "prompts": ["A, {sentence} {answer}", "B {sentence} {answer}"],
            "include_seed_prompts": False,
        },
    )
    searcher = make_searcher(spec)
    assert searcher.get_params() == {
        "prompts": ("A, {sentence} {answer}", "B {sentence} {answer}"),
        "include_seed_prompts": False,
    }
    assert parse_searcher_spec('autoprompt:template="{sentence}, so {answer}",top_k=3') == (
        "autoprompt",
        {"template": "{sentence}, so {answer}", "top_k": 3},
    )


@pytest.mark.parametrize(
    "spec, params",
    [
        (
            "label-words:candidates=good+bad,top_per_class=3",
            {"candidates": "good+bad", "top_per_class": 3},
        ),
        ("optuna:mirror_storage=sqlite:///optuna.db", {"mirror_storage": "sqlite:///optuna.db"}),
        ("optuna:chat_format=false", {"chat_format": False}),
        ("autoprompt:template={sentence} [T] {answer}.", {"template": "{sentence} [T] {answer}."}),
        ("autoprompt:num_triggers=2,label_words=no", {"num_triggers": 2, "label_words": False}),
        ('ape:stop=["\\n"],temperature=0.5', {"stop": ["\n"], "temperature": 0.5}),
    ],
)
def test_plain_spec_values_read_as_before(spec: str, params: dict[str, object]) -> None:
    assert parse_searcher_spec(spec)[1] == params


# -- verbalizers ------------------------------------------------------------------------------

EXAMPLE = "write e.g. '0=negative,1=positive'"
BAD_VERBALIZERS = [
    (
        "0=good,1=good",
        f"--verbalizer: the word 'good' stands for labels '0' and '1'; give each label its own "
        f"word(s), {EXAMPLE}",
    ),
    (
        "0=bad|good,1=good",
        f"--verbalizer: the word 'good' stands for labels '0' and '1'; give each label its own "
        f"word(s), {EXAMPLE}",
    ),
    (
        "0=bad,0=awful,1=good",
        f"--verbalizer: label '0' is given twice; give each label once, {EXAMPLE}",
    ),
    (
        "0=bad,1=good,2=meh",
        "--verbalizer: task 'sst2' has no label(s) ['2']; its labels are ['0', '1']",
    ),
    (
        "negative=bad,positive=good",
        "--verbalizer: task 'sst2' has no label(s) ['negative', 'positive']; "
        "its labels are ['0', '1']",
    ),
    (
        "1=good",
        "--verbalizer: no word for label(s) ['0']; give one for each of the task's "
        "labels ['0', '1']",
    ),
    ("0=|,1=good", f"--verbalizer: '0=|' is not label=word; {EXAMPLE}"),
    ("", f"--verbalizer: '' is not label=word; {EXAMPLE}"),
]


@pytest.mark.parametrize(
    "text, message", BAD_VERBALIZERS, ids=[t or "empty" for t, _ in BAD_VERBALIZERS]
)
def test_bad_verbalizers(
    text: str, message: str, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["evaluate", "--task", "sst2", "--data-dir", str(data), "--model", "/no/such/model"]
    exact_error([*args, "--prompt", "{sentence} {answer}", "--verbalizer", text], capsys, message)


# -- sizes, limits and names, checked before anything loads ------------------------------------

BAD_RUN_VALUES = [
    (["--top", "0"], "--top must be at least 1; got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1; got 0"),
    (["--candidates-per-round", "-1"], "--candidates-per-round must be at least 1; got -1"),
    (["--dev-size", "0"], "--dev-size must be at least 1; got 0"),
    (
        ["--seconds", "inf"],
        "--seconds must be a finite number; got inf; leave --seconds out for no time limit",
    ),
    (
        ["--seconds", "nan"],
        "--seconds must be a finite number; got nan; leave --seconds out for no time limit",
    ),
    (
        ["--selection-alpha=-inf"],
        "--selection-alpha must be a finite number; got -inf; give a level such as 0.1",
    ),
    (
        ["--study", ""],
        "--study '' is empty; give a study name, or leave --study out for the "
        "default <task>-<model>",
    ),
    (
        ["--study", "  "],
        "--study '  ' is empty; give a study name, or leave --study out for the "
        "default <task>-<model>",
    ),
    (
        ["--study", "red\x1b[31m"],
        "--study 'red\\x1b[31m' holds control character(s) ['\\x1b']; "
        "use printable characters only",
    ),
    (
        ["--study", "two\nlines"],
        "--study 'two\\nlines' holds control character(s) ['\\n']; use printable characters only",
    ),
]


@pytest.mark.parametrize(
    "more, message", BAD_RUN_VALUES, ids=[" ".join(m) for m, _ in BAD_RUN_VALUES]
)
def test_bad_run_values_fail_before_the_search(
    more: list[str], message: str, data: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with untouched(db):
        exact_error(run(data, db, *more), capsys, message)


def test_a_dev_size_beyond_a_kshot_split_names_the_bound(
    data: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dev = data / "kshot" / "SST-2" / "16-13" / "dev.tsv"
    n_dev = len(dev.read_text(encoding="utf-8").splitlines()) - 1  # a header line
    message = (
        f"task 'sst2': dev_size={n_dev + 1}, but the 16-shot split 16-13 has {n_dev} dev "
        f"examples; choose dev_size <= {n_dev}"
    )
    with untouched(db):
        exact_error(run(data, db, "--dev-size", str(n_dev + 1)), capsys, message)


def test_leaderboard_top_zero(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with untouched(db):
        exact_error(
            ["leaderboard", "--study", "kept", "--top", "0", "--storage", str(db)],
            capsys,
            "--top must be at least 1; got 0",
        )


def test_a_folder_where_a_data_file_belongs(
    data: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dev = data / "kshot" / "SST-2" / "16-13" / "dev.tsv"
    dev.unlink()
    dev.mkdir()
    with untouched(db):
        exact_error(
            run(data, db),
            capsys,
            f"task 'sst2': {dev} is a folder, not a data file; put the dev.tsv file there instead",
        )


def test_library_refuses_empty_and_control_character_study_names(db: Path) -> None:
    with pytest.raises(ConfigError, match=r"study must be a non-empty name.*got ''"):
        promptsearch.search(small_task(), model="/no/such/model", study="", storage=str(db))
    with untouched(db), open_storage(str(db)) as storage:
        study = Study("bell\a", small_task(), FakeScorer(), ["manual"], 2, storage, progress=False)
        with pytest.raises(ConfigError, match=r"control character\(s\) \['\\x07'\]"):
            study.run()


def test_studies_prints_stored_names_escaped(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name stored by an older version (or by hand) cannot recolour the terminal."""
    legacy = tmp_path / "legacy.db"
    shutil.copy(db, legacy)
    connection = sqlite3.connect(legacy)
    with connection:
        connection.execute("UPDATE studies SET name = ?", ("evil\x1b[2J\x1b[31m",))
    connection.close()
    with untouched(legacy):
        assert main(["studies", "--storage", str(legacy)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert out.startswith("evil\\x1b[2J\\x1b[31m ")


def test_create_only_prints_a_quoted_worker_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_kill import save_tiny_model, write_kshot_data

    model = save_tiny_model(tmp_path / "model")
    data = write_kshot_data(tmp_path / "kdata")
    name = "x; touch pwned"
    args = ["run", "--task", "sst2", "--data-dir", str(data), "--model", str(model)]
    storage = str(tmp_path / "new.db")
    more = ["--searcher", "manual", "--budget", "2", "--no-selection", "--quiet"]
    assert main([*args, *more, "--create-only", "--study", name, "--storage", storage]) == 0
    out = capsys.readouterr().out
    assert "promptsearch worker --study 'x; touch pwned' --storage URL" in out


def test_an_infinite_budget_of_seconds_is_refused_in_python_too() -> None:
    with pytest.raises(ConfigError, match=r"^budget: seconds must be a finite number; got inf"):
        Budget(seconds=float("inf"))

"""Bad inputs get one clear error and leave the database as it was.

Malformed and mis-encoded data files, empty splits, inputs far beyond the model's
context, hostile template strings, and databases this version must not touch (a
newer schema, another application's, not a database at all).  Every error is a
:class:`~promptsearch.errors.PromptSearchError` whose message names the file or
field and the fix; the command line prints it as one ``promptsearch: error:`` line
and exits with status 2.

The command line's own bad inputs follow the same pattern in their own modules:
output files and pipes (``test_bad_cli_output.py``), option values, searcher specs
and verbalizers (``test_bad_cli_values.py``), and the storage's messages and
read-only SQLite files (``test_storage_messages.py``).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import promptsearch
from promptsearch import Prompt, Task
from promptsearch.cli import main
from promptsearch.errors import (
    DataError,
    PromptSearchError,
    StorageError,
    TemplateError,
)
from promptsearch.searchers.manual import ManualSearcher
from promptsearch.storage import open_storage
from promptsearch.study.loop import Study, example_key
from promptsearch.task import Example
from promptsearch.tasks.loaders import read_records, task_from_files
from promptsearch.template import Template
from promptsearch.testing.fakes import FakeModel as Model
from promptsearch.testing.fakes import FakeReport as Report
from promptsearch.testing.fakes import FakeResult as Result

POSITIVE = ["a great movie", "the film was good", "i loved it", "a good story", "great acting"]
NEGATIVE = ["a terrible movie", "the film was bad", "i hated it", "a bad story", "awful acting"]


def tsv(rows: Sequence[tuple[str, int]]) -> str:
    return "sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows)


def kshot_dir(root: Path, **overrides: bytes) -> Path:
    """A small sst2 in the k-shot layout; *overrides* replace train/dev/test bytes."""
    folder = root / "kshot" / "SST-2" / "16-13"
    folder.mkdir(parents=True)
    rows = [(t, 1) for t in POSITIVE] + [(t, 0) for t in NEGATIVE]
    files = {
        "train": tsv(rows).encode(),
        "dev": tsv(rows[::2]).encode(),
        "test": tsv(rows[1::2]).encode(),
    }
    files.update(overrides)
    for split, content in files.items():
        target = folder.parent if split == "test" else folder
        (target / f"{split}.tsv").write_bytes(content)
    return root


# -- a database with rows in it, and how to tell it was not touched -------------------------


@dataclass
class FakeScorer:
    model: Model = field(default_factory=Model)

    @property
    def fingerprint(self) -> str:
        return "s" * 64

    def score(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> Report:
        results = []
        for example in examples:
            digest = hashlib.sha256((prompt.content_hash + example.id).encode()).digest()
            correct = digest[0] % 2 == 0
            results.append(Result(example.id, example.target, correct, float(correct)))
        return Report(results, len(examples))


def small_task() -> Task:
    return Task.from_records(
        "bad-inputs",
        [{"text": t, "label": 1} for t in POSITIVE] + [{"text": t, "label": 0} for t in NEGATIVE],
        input_fields=["text"],
        label_field="label",
        verbalizer={0: "negative", 1: "positive"},
        seed_prompts=["Review: {text}\nSentiment: {answer}", "{text} It was {answer}."],
        dev_size=4,
    )


@pytest.fixture
def populated_db(tmp_path: Path) -> Path:
    """An SQLite file holding a finished study (closed, so the file is all there is)."""
    path = tmp_path / "runs.db"
    with open_storage(str(path)) as storage:
        Study(
            "kept",
            small_task(),
            FakeScorer(),
            ["manual", "random-edit"],
            6,
            storage,
            progress=False,
        ).run()
    return path


@dataclass(frozen=True)
class Fingerprint:
    digest: str
    rows: dict[str, int]
    files: tuple[str, ...]


def fingerprint(path: Path) -> Fingerprint:
    """The file's bytes, its row counts (read without writing anything) and its siblings."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    rows: dict[str, int] = {}
    connection = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        names = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        for (name,) in names.fetchall():
            rows[name] = connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
    except sqlite3.DatabaseError:
        rows = {}
    finally:
        connection.close()
    siblings = tuple(sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name)))
    return Fingerprint(digest, rows, siblings)


def cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command line in-process; it must fail with one clear line (status 2)."""
    status = main(args)
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("promptsearch: error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# -- malformed and mis-encoded files ---------------------------------------------------------

ROWS = "sentence,label\na great movie,1\na terrible movie,0\n"
BAD_FILES = [
    ("wrong-columns.csv", b"sentence,label\ngreat,1,extra\n", r"line 2: 3 field\(s\).*fix the row"),
    ("no-header.csv", b"a great movie,1\nbad,0\n", r"line 1: missing header.*add a header line"),
    ("stray-quote.csv", b'sentence,label\n"great,1\nbad,0\n', r"line 3: 1 field\(s\).*quote"),
    ("broken.jsonl", b'{"sentence": "x", "label": 1}\n{"sentence": \n', r"line 2: invalid JSON"),
    ("list-line.jsonl", b'{"sentence": "x"}\n[1, 2]\n', r"line 2: expected a JSON object"),
    ("trailing-comma.json", b'[{"sentence": "x"},]', r"line 1, column \d+: invalid JSON"),
    ("scalar.json", b"42", r"must be a list of objects"),
    ("latin1.csv", "sentence,label\ncaf\u00e9,1\n".encode("latin-1"), r"not UTF-8 .*Latin-1"),
    ("cp1252.tsv", "sentence\tlabel\n\u201cquoted\u201d\t1\n".encode("cp1252"), r"not UTF-8"),
    ("utf16-bom.csv", ROWS.encode("utf-16"), r"UTF-16 or UTF-32 .*re-encode it as UTF-8"),
    ("utf16-nobom.csv", ROWS.encode("utf-16-le"), r"NUL byte.*UTF-16 .*re-encode"),
    ("utf16-bom.jsonl", '{"a": "x"}\n'.encode("utf-16"), r"UTF-16"),
    ("utf32.json", '[{"a": "x"}]'.encode("utf-32"), r"UTF-16 or UTF-32"),
    ("binary.jsonl", bytes(range(256)), r"not UTF-8|NUL byte"),
    ("empty.csv", b"", r"the file is empty"),
    ("blank.jsonl", b"\n\n  \n", r"the file is empty"),
    ("header-only.tsv", b"sentence\tlabel\n", r"has a header but no data rows"),
    ("empty-list.json", b"[]", r"is empty; add at least one record"),
]


@pytest.mark.parametrize("name, content, message", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_file_names_the_file_the_place_and_the_fix(
    name: str, content: bytes, message: str, tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as caught:
        read_records(path)
    assert str(caught.value).startswith(str(path))
    # the same through a task built from files
    good = tmp_path / "good.csv"
    good.write_text(ROWS)
    with pytest.raises(DataError, match=message):
        task_from_files("t", train=good, dev=path, input_fields="sentence", label_field="label")


@pytest.mark.parametrize(
    "split, content, message",
    [
        ("train", "sentence\tlabel\ncaf\u00e9\t1\n".encode("latin-1"), r"train\.tsv: not UTF-8"),
        ("dev", tsv([("x", 1)]).encode("utf-16"), r"dev\.tsv: the file is UTF-16"),
        ("dev", b"sentence\tlabel\n", r"dev\.tsv: has a header but no data rows"),
        ("test", b"", r"test\.tsv: the file is empty"),
        ("train", b"sentence\tlabel\nfine\t7\n", r"train\.tsv, record 1: label '7'"),
        ("dev", b"text\tstars\nfine\t1\n", r"dev\.tsv: expected columns 'sentence'"),
    ],
)
def test_cli_run_with_bad_data_fails_cleanly_and_leaves_the_database(
    split: str,
    content: bytes,
    message: str,
    tmp_path: Path,
    populated_db: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = kshot_dir(tmp_path / "data", **{split: content})
    before = fingerprint(populated_db)
    args = ["run", "--task", "sst2", "--data-dir", str(data), "--storage", str(populated_db)]
    err = cli_error([*args, "--model", str(tmp_path / "no-model-needed")], capsys)
    assert re.search(message, err), err
    assert fingerprint(populated_db) == before


# -- empty splits ------------------------------------------------------------------------------


def records(n: int) -> list[dict[str, Any]]:
    return [{"text": f"review {i}", "label": i % 2} for i in range(n)]


@pytest.mark.parametrize(
    "splits, options, message",
    [
        ({"train": records(6), "dev": []}, {"dev_size": 0}, r"the dev split is empty"),
        ({"train": [], "dev": records(4)}, {}, r"the train split is empty"),
        ({"dev": records(4)}, {}, r"the train split is empty"),
        (records(3), {"dev_size": 3}, r"3 records cannot give 3 dev .* smaller dev_size"),
        ([], {}, r"0 records cannot give"),
    ],
)
def test_empty_splits_are_refused_with_the_fix(
    splits: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(DataError, match=message):
        Task.from_records(
            "empty",
            splits,
            input_fields=["text"],
            label_field="label",
            verbalizer={0: "bad", 1: "good"},
            **options,
        )


def test_evaluating_an_empty_test_split_fails_before_any_model_loads() -> None:
    task = small_task()
    assert task.test == ()
    with pytest.raises(DataError, match=r"the test split is empty"):
        promptsearch.evaluate(task, "Review: {text}\nSentiment: {answer}", split="test", model="x")


# -- inputs far beyond the context window ---------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> Any:
    pytest.importorskip("torch")
    from promptsearch.testing import tiny_causal_lm

    return tiny_causal_lm(seed=2)


def long_task() -> Task:
    huge = " ".join(["the movie was great and the acting was good"] * 2000)  # ~20k tokens
    dev = [{"text": huge, "label": 1}] + [{"text": t, "label": 0} for t in NEGATIVE[:3]]
    return Task.from_records(
        "long-inputs",
        {"train": records(6), "dev": dev},
        input_fields=["text"],
        label_field="label",
        verbalizer={0: "negative", 1: "positive"},
    )


def test_an_input_far_beyond_the_context_is_cut_and_counted(tiny: Any) -> None:
    assert tiny.max_length == 256
    report = promptsearch.evaluate(long_task(), "Review: {text}\nSentiment: {answer}", model=tiny)
    assert report.n_truncated == 1
    assert [r.truncated for r in report.results] == [True, False, False, False]
    assert 0.0 <= report.value <= 1.0


def test_a_prompt_that_cannot_fit_fails_its_trial_and_the_search_goes_on(
    tiny: Any, tmp_path: Path
) -> None:
    from promptsearch.scoring.scorer import Scorer

    fits = Prompt("Review: {text}\nSentiment: {answer}")
    too_long = Prompt("{text} It was {answer}.", instruction="Read this. " * 400)
    after = Prompt("Text: {text}\nLabel: {answer}")
    task = long_task()
    with open_storage(str(tmp_path / "long.db")) as storage:
        Study(
            "long",
            task,
            Scorer(tiny, batch_size=2),
            [ManualSearcher([fits, too_long, after], include_seed_prompts=False)],
            3,
            storage,
            progress=False,
        ).run()
        trials = {t.content_hash: t for t in storage.trials("long")}
        failed = trials[too_long.resolve(task).content_hash]
        assert failed.state == "failed"
        assert "DataError" in (failed.error or "")
        assert "context of model 'tiny-causal-2'" in (failed.error or "")
        assert "shorten the instruction" in (failed.error or "")
        assert len(failed.error or "") < 600  # the huge instruction is not pasted whole
        complete = [t for t in trials.values() if t.state == "complete"]
        assert len(complete) == 2
        keys = [example_key(e) for e in task.dev]
        cached = storage.cached_evaluations(
            Scorer(tiny).fingerprint, complete[0].content_hash, "dev", keys
        )
        flags = [bool((cached[k].detail or {}).get("truncated")) for k in keys]
        assert flags == [True, False, False, False]


# -- hostile template strings ----------------------------------------------------------------

HOSTILE = [
    ("{sentence!r} {answer}", r"slot \{sentence!r\} .* not allowed.*plain identifier"),
    ("{sentence:>10} {answer}", r"slot \{sentence:>10\} .* not allowed"),
    ("{sentence:{answer}}", r"not allowed|single '\}'"),
    ("{0} {answer}", r"slot \{0\} .* not allowed"),
    ("{} {answer}", r"slot \{\} .* not allowed"),
    ("{ sentence } {answer}", r"slot \{ sentence \} .* not allowed"),
    ("{sentence.__class__} {answer}", r"slot \{sentence.__class__\} .* not allowed"),
    ("{sentence[0]} {answer}", r"slot \{sentence\[0\]\} .* not allowed"),
    ("{sentence {answer}", r"not allowed|never closed"),
    ("Review: {sentence", r"'\{' at position 8 is never closed; write '\{\{'"),
    ("Review: sentence} {answer}", r"single '\}' at position 16; write '\}\}'"),
    ("{sentence} {answer} {answer}", r"has 2 \{answer\} slots; it needs exactly one"),
    ("{sentence} It was good.", r"has 0 \{answer\} slots"),
    ("{{answer}} {sentence}", r"has 0 \{answer\} slots"),
    ("{answer!s}", r"slot \{answer!s\} .* not allowed"),
    ("%(sentence)s {answer}", None),  # printf-style text is just text
    ("{{sentence}} {answer}", None),  # escaped braces are literal text
]


@pytest.mark.parametrize("template, message", HOSTILE, ids=[t for t, _ in HOSTILE])
def test_hostile_templates(template: str, message: str | None) -> None:
    if message is None:
        parsed = Template(template)
        assert parsed.fields == ()
        return
    with pytest.raises(TemplateError, match=message) as caught:
        Prompt(template)
    assert isinstance(caught.value, PromptSearchError)
    assert repr(template) in str(caught.value)  # the message quotes the template


@pytest.mark.parametrize("name", ["__class__", "__init__", "format", "self", "answer_"])
def test_identifier_slots_are_only_looked_up_as_fields(name: str) -> None:
    prompt = Prompt(f"{{{name}}} {{answer}}")
    assert prompt.fields == (name,)
    with pytest.raises(TemplateError, match=rf"unknown field\(s\) \['{name}'\]"):
        prompt.resolve(small_task())
    # a value is looked up by name in the example, never as an attribute
    rendered = prompt.render({name: "{0.__class__} {answer!r}"})
    assert rendered.prefix == "{0.__class__} {answer!r} "


def test_values_with_braces_and_format_specs_are_inserted_verbatim() -> None:
    nasty = "{answer} {0} {text!r} {{x}} %s %(text)s {text:>99}"
    prompt = Prompt("Review: {text}\nSentiment: {answer}", instruction="Use {braces} as-is {0}")
    rendered = prompt.render({"text": nasty})
    assert rendered.prefix == f"Use {{braces}} as-is {{0}}\n\nReview: {nasty}\nSentiment: "
    assert rendered.suffix == ""


def test_cli_rejects_hostile_templates_before_loading_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = kshot_dir(tmp_path / "data")
    base = ["evaluate", "--task", "sst2", "--data-dir", str(data), "--model", "/no/such/model"]
    err = cli_error([*base, "--prompt", "{sentence!r} {answer}"], capsys)
    assert "not allowed" in err
    err = cli_error([*base, "--prompt", "{__class__} {answer}"], capsys)
    assert "unknown field(s) ['__class__']" in err and "['sentence']" in err
    err = cli_error([*base, "--prompt", "{sentence} {answer}", "--verbalizer", "0=bad"], capsys)
    assert "no word for label(s) ['1']" in err


# -- databases this version must not touch ---------------------------------------------------


def set_revision(path: Path, revision: str) -> None:
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    finally:
        connection.close()


def test_a_database_from_a_newer_version_is_refused_and_left_intact(
    populated_db: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    set_revision(populated_db, "9999")
    before = fingerprint(populated_db)
    assert before.rows["trials"] == 6
    with pytest.raises(
        StorageError, match=r"newer promptsearch \(schema revision 9999.*pip install -U"
    ):
        open_storage(str(populated_db))
    storage = str(populated_db)
    for args in (
        ["studies", "--storage", storage],
        ["leaderboard", "--study", "kept", "--storage", storage],
        ["show", "kept", "--storage", storage],
        ["export", "--study", "kept", "--storage", storage],
        ["db", "upgrade", "--storage", storage],
    ):
        err = cli_error(args, capsys)
        assert "newer promptsearch" in err and "9999" in err
    assert fingerprint(populated_db) == before


def test_a_search_into_a_newer_database_fails_before_writing(tiny: Any, populated_db: Path) -> None:
    set_revision(populated_db, "0999")
    before = fingerprint(populated_db)
    with pytest.raises(StorageError, match="newer promptsearch"):
        promptsearch.search(small_task(), model=tiny, storage=str(populated_db), budget=2)
    assert fingerprint(populated_db) == before


@pytest.mark.parametrize(
    "make, message",
    [
        ("foreign-revision", r"belongs to another application .*'ae1027a6acf'"),
        ("foreign-tables", r"is not empty \(tables customers, orders\) but holds no promptsearch"),
        ("garbage", r"file is not a database; the file is not an SQLite database"),
        ("text", r"file is not a database"),
    ],
)
def test_databases_that_are_not_ours_are_refused_and_left_intact(
    make: str, message: str, tmp_path: Path, populated_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{make}.db"
    if make == "foreign-revision":
        path.write_bytes(populated_db.read_bytes())
        set_revision(path, "ae1027a6acf")
    elif make == "foreign-tables":
        connection = sqlite3.connect(path)
        connection.executescript(
            "CREATE TABLE customers (id INTEGER); CREATE TABLE orders (id INTEGER);"
            "INSERT INTO customers VALUES (1);"
        )
        connection.close()
    elif make == "garbage":
        path.write_bytes(bytes((i * 37 + 11) % 256 for i in range(8192)))
    else:
        path.write_text("name,score\nalice,3\n" * 200)
    before = fingerprint(path)
    with pytest.raises(StorageError, match=message):
        open_storage(str(path))
    err = cli_error(["db", "upgrade", "--storage", str(path)], capsys)
    assert "point --storage at" in err
    assert fingerprint(path) == before

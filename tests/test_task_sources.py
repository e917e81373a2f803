"""Tasks of your own named by one string (promptsearch.tasks.sources): a data file with or
without a split column, a folder and a comma list of split files, a real
``datasets`` data set saved to disk (``hf-disk:PATH`` and ``hf:PATH``), the hub offline;
field guessing and the one-line errors; the stored source reloading the same data;
metric functions registered by name."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from promptsearch.errors import ConfigError, DataError
from promptsearch.metrics import METRICS, example_score, register_metric
from promptsearch.task import Task
from promptsearch.tasks.sources import (
    DRAWN_SHARE,
    is_source,
    load_source,
    source_name,
    task_from_source,
)

WORDS = {"positive": ["good", "great", "fine", "nice"], "negative": ["bad", "dull", "poor", "weak"]}


def reviews(n: int = 20) -> list[dict[str, str]]:
    labels = ["positive", "negative"]
    return [
        {"text": f"a {WORDS[labels[i % 2]][i % 4]} film {i}", "label": labels[i % 2]}
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    fields = list(rows[0])
    lines = [",".join(fields)] + [",".join(str(r[f]) for f in fields) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def datasets_module() -> Any:
    """The datasets library: skipped where it is absent, except where the test run
    requires it ($PROMPTSEARCH_TEST_REQUIRE_DATASETS, set by CI)."""
    if os.environ.get("PROMPTSEARCH_TEST_REQUIRE_DATASETS"):
        import datasets

        return datasets
    return pytest.importorskip("datasets", reason="the optional 'datasets' library is absent")


# -- files ---------------------------------------------------------------------------------


def test_single_file_without_split_column_draws_dev_and_test(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "reviews.csv", reviews(20))
    task = load_source(str(path), seed=7)
    drawn = round(DRAWN_SHARE * 20)
    assert (len(task.train), len(task.dev), len(task.test)) == (20 - 2 * drawn, drawn, drawn)
    assert task.name == "reviews" and task.kind == "classification"
    assert task.input_fields == ("text",) and task.metric == "accuracy"
    assert dict(task.verbalizer) == {"positive": ("positive",), "negative": ("negative",)}
    assert [p.template for p in task.seed_prompts] == ["Text: {text}\nAnswer: {answer}"]
    texts = {s: {e.inputs["text"] for e in getattr(task, s)} for s in ("train", "dev", "test")}
    assert not texts["train"] & texts["dev"] and not texts["dev"] & texts["test"]
    other = load_source(str(path), seed=8)  # the seed draws other splits
    assert {e.inputs["text"] for e in other.dev} != texts["dev"]
    again = load_source(str(path), seed=7)
    assert again.spec()["data_hash"] == task.spec()["data_hash"]


def test_dev_size_draws_another_dev_and_the_same_test(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "reviews.csv", reviews(40))
    default = load_source(str(path), seed=3)
    texts = {
        size: load_source(str(path), seed=3, dev_size=size) for size in (4, len(default.dev), 20)
    }
    for size, task in texts.items():
        assert len(task.dev) == size and len(task.train) == 40 - size - len(default.test)
        assert [e.inputs for e in task.test] == [e.inputs for e in default.test]
    assert texts[len(default.dev)].spec()["data_hash"] == default.spec()["data_hash"]
    small, large = ({e.inputs["text"] for e in texts[n].dev} for n in (4, 20))
    assert small <= {e.inputs["text"] for e in default.dev} <= large  # nested draws
    assert default.source is not None
    assert "dev_size" not in default.source  # a source stored before dev_size stays equal
    stored = json.loads(json.dumps(texts[20].spec()["source"]))
    assert stored["dev_size"] == 20
    assert task_from_source(stored).spec()["data_hash"] == texts[20].spec()["data_hash"]
    with pytest.raises(DataError, match=r"too few to draw dev and test from \(40 dev records"):
        load_source(str(path), dev_size=40)
    with pytest.raises(ConfigError, match="dev_size must be a positive whole number"):
        load_source(str(path), dev_size=0)


def test_dev_size_is_refused_where_the_data_has_a_dev_split(tmp_path: Path) -> None:
    rows = [dict(r, split=["train", "dev"][i % 2]) for i, r in enumerate(reviews(12))]
    path = write_jsonl(tmp_path / "split.jsonl", rows)
    with pytest.raises(ConfigError, match=r"dev_size: .* has a dev split of its own \(6 records\)"):
        load_source(str(path), dev_size=3)


def test_split_column_and_split_map(tmp_path: Path) -> None:
    rows = [
        dict(r, split=["train", "train", "validation", "holdout"][i % 4])
        for i, r in enumerate(reviews(16))
    ]
    path = write_jsonl(tmp_path / "all.jsonl", rows)
    with pytest.raises(DataError, match=r"split 'holdout' is not one of .*--split-map holdout="):
        load_source(str(path))
    task = load_source(str(path), split_map={"holdout": "test"})
    assert (len(task.train), len(task.dev), len(task.test)) == (8, 4, 4)
    assert "split" not in task.input_fields


def test_folder_and_comma_list_name_their_splits(tmp_path: Path) -> None:
    folder = tmp_path / "arith"
    folder.mkdir()
    rows = [{"question": f"{i}+{i}", "answer": str(2 * i)} for i in range(12)]
    write_jsonl(folder / "train.jsonl", rows[:8])
    write_jsonl(folder / "validation.jsonl", rows[8:10])
    write_csv(folder / "test.csv", rows[10:])
    (folder / "README.md").write_text("not data\n", encoding="utf-8")
    task = load_source(str(folder))
    assert task.name == "arith" and task.kind == "generation" and task.metric == "exact_match"
    assert (len(task.train), len(task.dev), len(task.test)) == (8, 2, 2)
    listed = ",".join(str(folder / n) for n in ("train.jsonl", "validation.jsonl", "test.csv"))
    assert load_source(listed).spec()["data_hash"] == task.spec()["data_hash"]
    odd = write_jsonl(folder / "extra.jsonl", rows[:2])
    with pytest.raises(ConfigError, match=r"extra.jsonl: cannot tell which split .*extra=train"):
        load_source(f"{folder / 'train.jsonl'},{odd}")


def test_fields_not_in_the_file_are_one_line_naming_the_fields(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "reviews.csv", reviews(10))
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"input_fields": "txt"},
            "field 'txt' (--input-field) is not in the data; it has fields ['text', 'label']",
        ),
        ({"label_field": "lab"}, "field 'lab' (--label-field)"),
        ({"output_field": "out", "input_fields": "text"}, "field 'out' (--output-field)"),
        ({"label_field": "label", "output_field": "text"}, "not both"),
    ]
    for options, message in cases:
        with pytest.raises(ConfigError) as caught:
            load_source(str(path), **options)
        assert message in str(caught.value) and "\n" not in str(caught.value)
    two_inputs = write_csv(tmp_path / "pairs.csv", [dict(r, extra="x") for r in reviews(10)])
    with pytest.raises(ConfigError, match=r"which field\(s\) the prompt shows with --input-field"):
        load_source(str(two_inputs))
    numbers = write_csv(
        tmp_path / "numbers.csv", [{"text": f"t{i}", "label": i % 2} for i in range(10)]
    )
    with pytest.raises(ConfigError, match=r"--verbalizer 0=WORD1,1=WORD2"):
        load_source(str(numbers))
    task = load_source(str(numbers), verbalizer={0: "bad", 1: "good"})
    assert set(task.labels) == {"0", "1"}
    with pytest.raises(ConfigError, match=r"unknown field"):
        load_source(str(path), seed_prompts=["{review} {answer}"])
    with pytest.raises(DataError, match=r"file not found"):
        load_source(str(tmp_path / "missing.csv"))


def test_what_counts_as_a_source(tmp_path: Path) -> None:
    assert not is_source("sst2") and not is_source("rotten-tomatoes")
    assert not is_source("ii:antonyms") and not is_source("trex:P17")
    assert is_source("data.csv") and is_source("a/b") and is_source("hf:imdb")
    assert is_source("hf-disk:/x") and is_source("train.jsonl,dev.jsonl")
    assert source_name("hf:glue:sst2") == "glue-sst2" and source_name("hf:stanfordnlp/imdb") == (
        "imdb"
    )
    assert source_name("data/reviews.jsonl.gz") == "reviews"


def test_stored_source_reloads_the_same_task_and_sees_changes(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "reviews.jsonl", reviews(15))
    task = load_source(str(path), metric="macro_f1", seed_prompts=["{text} => {answer}"])
    spec = task.spec()
    stored = json.loads(json.dumps(spec["source"]))  # what a study keeps: JSON only
    assert stored["location"] == str(path.resolve()) and stored["metric"] == "macro_f1"
    again = task_from_source(stored)
    assert again.spec()["data_hash"] == spec["data_hash"] and again.metric == "macro_f1"
    write_jsonl(path, reviews(16))
    assert task_from_source(stored).spec()["data_hash"] != spec["data_hash"]
    with pytest.raises(ConfigError, match="not one this promptsearch reads"):
        task_from_source({"format": 99})


# -- datasets ------------------------------------------------------------------------------


def saved_dataset(tmp_path: Path) -> Path:
    datasets = datasets_module()
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    rows = reviews(24)
    columns: dict[str, list[Any]] = {
        "sentence": [r["text"] for r in rows],
        "label": [int(r["label"] == "positive") for r in rows],
    }
    train = datasets.Dataset.from_dict({k: v[:18] for k, v in columns.items()}, features=features)
    validation = datasets.Dataset.from_dict(
        {k: v[18:] for k, v in columns.items()}, features=features
    )
    unsupervised = datasets.Dataset.from_dict({"sentence": ["no label"], "label": [0]})
    folder = tmp_path / "saved-reviews"
    datasets.DatasetDict(
        {"train": train, "validation": validation, "unsupervised": unsupervised}
    ).save_to_disk(str(folder))
    return folder


def test_a_real_dataset_saved_to_disk(tmp_path: Path) -> None:
    folder = saved_dataset(tmp_path)
    task = load_source(f"hf-disk:{folder}", seed=3)
    assert task.name == "saved-reviews" and task.input_fields == ("sentence",)
    assert dict(task.verbalizer) == {"0": ("neg",), "1": ("pos",)}  # the ClassLabel's names
    assert len(task.dev) == 6 and len(task.test) == round(DRAWN_SHARE * 18)
    assert len(task.train) == 18 - len(task.test)  # 'unsupervised' is left out
    same = load_source(f"hf:{folder}", seed=3)  # hf: of a folder that exists is the same
    assert same.spec()["data_hash"] == task.spec()["data_hash"]
    assert task_from_source(task.spec()["source"]).spec()["data_hash"] == task.spec()["data_hash"]
    mapped = load_source(f"hf-disk:{folder}", split_map={"unsupervised": "test"}, seed=3)
    assert len(mapped.test) == 1 and len(mapped.train) == 18
    with pytest.raises(DataError, match="not a data set saved with save_to_disk"):
        load_source(f"hf-disk:{tmp_path}")


def test_hub_data_set_offline_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets_module()
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as caught:
        load_source("hf:promptsearch-tests/no-such-dataset:default")
    message = str(caught.value)
    assert message.startswith("hf:promptsearch-tests/no-such-dataset:default: cannot load")
    assert "HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set" in message and "\n" not in message


def test_without_datasets_the_message_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # importing it now fails
    with pytest.raises(ConfigError, match=r"pip install 'promptsearch\[datasets\]'"):
        load_source(f"hf-disk:{tmp_path}")


# -- metric functions ------------------------------------------------------------------------


def first_word_match(prediction: str, answer: str) -> float:
    words = prediction.split()
    return float(bool(words) and words[0].lower() == answer.lower())


def test_a_metric_function_is_registered_and_stored_by_name(tmp_path: Path) -> None:
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(10)]
    task = Task.from_records(
        "qa", rows, input_fields=["question"], output_field="answer", metric=first_word_match
    )
    assert task.metric == "first_word_match" and task.spec()["metric"] == "first_word_match"
    assert METRICS["first_word_match"] == ("classification", "generation")
    assert example_score("first_word_match", "A3 and more", ["a3"]) == 1.0
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    from_file = load_source(str(path), metric=first_word_match)
    assert task_from_source(from_file.spec()["source"]).metric == "first_word_match"
    with pytest.raises(ConfigError, match="taken by another function"):
        register_metric("first_word_match", lambda p, a: 0.0)
    with pytest.raises(ConfigError, match="taken by a built-in metric"):
        register_metric("accuracy", first_word_match)
    with pytest.raises(ConfigError, match="a lambda has no name"):
        Task.from_records(
            "qa", rows, input_fields=["question"], output_field="answer", metric=lambda p, a: 1.0
        )
    stored = dict(from_file.spec()["source"], metric="never_registered")
    with pytest.raises(ConfigError, match="register a function of that name first"):
        task_from_source(stored)


def test_a_hub_revision_is_parsed_passed_on_and_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = datasets_module()
    asked: list[tuple[str, str | None, str | None]] = []
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    rows = reviews(24)
    columns = {
        "sentence": [r["text"] for r in rows],
        "label": [int(r["label"] == "positive") for r in rows],
    }

    def load_dataset(name: str, config: str | None = None, *, revision: str | None = None) -> Any:
        # a stand-in for the hub: the real datasets objects, without the network
        asked.append((name, config, revision))
        return datasets.DatasetDict(
            {"train": datasets.Dataset.from_dict(columns, features=features)}
        )

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    task = load_source("hf:someone/reviews:default@v1.0", seed=3)
    assert asked == [("someone/reviews", "default", "v1.0")]
    assert task.name == "reviews-default" and source_name("hf:glue:sst2@abc123") == "glue-sst2"
    stored = json.loads(json.dumps(task.spec()["source"]))
    assert stored["revision"] == "v1.0" and "at revision v1.0" in task.description
    assert task_from_source(stored).spec()["data_hash"] == task.spec()["data_hash"]
    assert asked[-1] == ("someone/reviews", "default", "v1.0")  # reloaded at the same revision
    plain = load_source("hf:someone/reviews", seed=3)
    assert asked[-1] == ("someone/reviews", None, None) and "revision" not in plain.spec()["source"]
    for bad in ("hf:reviews@", "hf:@v1", "hf:reviews@a/b", "hf:reviews@v1:cfg"):
        with pytest.raises(ConfigError, match="write the revision last") as caught:
            load_source(bad)
        assert "\n" not in str(caught.value)


def test_an_unknown_revision_offline_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets_module()
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as caught:
        load_source("hf:promptsearch-tests/no-such-dataset@v2")
    message = str(caught.value)
    assert message.startswith("hf:promptsearch-tests/no-such-dataset@v2: cannot load")
    assert "\n" not in message

"""Tests for promptsearch.tasks.loaders: formats, compression, bad input, tasks from
files/datasets."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptsearch.errors import ConfigError, DataError
from promptsearch.task import Task
from promptsearch.tasks.loaders import (
    FORMATS,
    dataset_splits,
    read_records,
    task_from_dataset,
    task_from_files,
)

ROWS = [
    {"sentence": "a fine, warm film", "label": "1"},
    {"sentence": 'he said "no"', "label": "0"},
    {"sentence": "line one\nline two", "label": "1"},
]


def _csv_text(rows: list[dict[str, str]], delimiter: str) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), delimiter=delimiter)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _jsonl_text(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


WRITERS: dict[str, Callable[[list[dict[str, str]]], str]] = {
    ".csv": lambda rows: _csv_text(rows, ","),
    ".tsv": lambda rows: _csv_text(rows, "\t"),
    ".jsonl": _jsonl_text,
    ".ndjson": _jsonl_text,
    ".json": lambda rows: json.dumps(rows),
}

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "": lambda data: data,
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
}


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
@pytest.mark.parametrize("extension", FORMATS)
def test_every_format_and_compression(tmp_path: Path, extension: str, compression: str) -> None:
    path = tmp_path / f"data{extension}{compression}"
    path.write_bytes(COMPRESSORS[compression](WRITERS[extension](ROWS).encode("utf-8")))
    assert read_records(path) == ROWS


def test_json_examples_mapping_and_data_list(tmp_path: Path) -> None:
    mapping = tmp_path / "ape.json"
    mapping.write_text(
        json.dumps(
            {
                "metadata": {"num_examples": 2},
                "examples": {
                    "1": {"input": "a", "output": "b"},
                    "2": {"input": "c", "output": "d"},
                },
            }
        ),
        encoding="utf-8",
    )
    assert read_records(mapping) == [{"input": "a", "output": "b"}, {"input": "c", "output": "d"}]
    listed = tmp_path / "listed.json"
    listed.write_text(json.dumps({"examples": [{"x": 1}]}), encoding="utf-8")
    assert read_records(listed) == [{"x": 1}]
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"data": [{"x": 1}, {"x": 2}]}), encoding="utf-8")
    assert read_records(data) == [{"x": 1}, {"x": 2}]


def test_bom_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "win.tsv"
    path.write_bytes(b"\xef\xbb\xbfsentence\tlabel\r\nfine\t1\r\n\r\nbad\t0\r\n")
    assert read_records(path) == [
        {"sentence": "fine", "label": "1"},
        {"sentence": "bad", "label": "0"},
    ]
    jsonl = tmp_path / "blank.jsonl"
    jsonl.write_text('{"a": 1}\n\n   \n{"a": 2}\r\n', encoding="utf-8")
    assert read_records(jsonl) == [{"a": 1}, {"a": 2}]


def test_jsonl_keeps_unicode_line_separators_inside_strings(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    row = {"text": "one\u2028two\x85three"}
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_records(path) == [row]


def test_headerless_columns(tmp_path: Path) -> None:
    path = tmp_path / "lmbff.csv"
    path.write_text('1,"great, really"\n0,awful\n', encoding="utf-8")
    assert read_records(path, columns=("label", "sentence")) == [
        {"label": "1", "sentence": "great, really"},
        {"label": "0", "sentence": "awful"},
    ]
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text('{"a": 1}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="columns= applies only"):
        read_records(jsonl, columns=("a",))


# -- bad input ---------------------------------------------------------------------------


def _error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        read_records(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_missing_file_and_folder(tmp_path: Path) -> None:
    assert "file not found" in _error(tmp_path / "nope.csv")
    folder = tmp_path / "dir.jsonl"
    folder.mkdir()
    assert "is a folder" in _error(folder)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file"
)
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    path.chmod(0)
    try:
        assert "cannot be read" in _error(path)
    finally:
        path.chmod(0o600)


def test_unknown_extension_lists_allowed(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_text("x", encoding="utf-8")
    message = _error(path)
    assert "unknown file type" in message
    for extension in FORMATS:
        assert extension in message
    gz = tmp_path / "data.txt.gz"
    gz.write_bytes(gzip.compress(b"x"))
    assert "unknown file type" in _error(gz)


def test_wrong_column_count_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("sentence\tlabel\ngood\t1\nstray\ttab\t0\n", encoding="utf-8")
    message = _error(path)
    assert "line 3" in message and "3 field(s)" in message and "2 columns" in message
    short = tmp_path / "short.csv"
    short.write_text("sentence,label\nonly one field\n", encoding="utf-8")
    assert "line 2" in _error(short)


def test_malformed_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": 2,}\n{"a": 3}\n', encoding="utf-8")
    message = _error(path)
    assert "line 2" in message and "invalid JSON" in message
    not_object = tmp_path / "list.jsonl"
    not_object.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    assert "line 2" in _error(not_object)


def test_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[{"a": 1},\n {"a": }]', encoding="utf-8")
    assert "line 2" in _error(path)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"rows": []}), encoding="utf-8")
    assert "'examples' or 'data'" in _error(wrong)
    scalar = tmp_path / "scalar.json"
    scalar.write_text("3", encoding="utf-8")
    assert "list of objects" in _error(scalar)
    items = tmp_path / "items.json"
    items.write_text(json.dumps([{"a": 1}, "two"]), encoding="utf-8")
    assert "record '1'" in _error(items)
    empty = tmp_path / "empty_list.json"
    empty.write_text("[]", encoding="utf-8")
    assert "empty" in _error(empty)


def test_latin1_file_reports_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("sentence,label\ncaf\u00e9 au lait,1\n".encode("latin-1"))
    message = _error(path)
    offset = len(b"sentence,label\ncaf")
    assert f"byte offset {offset}" in message
    assert "line 2" in message and "UTF-8" in message and "0xe9" in message
    compressed = tmp_path / "latin1.jsonl.gz"
    compressed.write_bytes(gzip.compress('{"a": "\u00e9"}\n'.encode("latin-1")))
    assert "decompressed" in _error(compressed)


@pytest.mark.parametrize("extension", FORMATS)
def test_empty_file(tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"empty{extension}"
    path.write_text("  \n", encoding="utf-8")
    assert "empty" in _error(path)


def test_header_only_and_missing_header(tmp_path: Path) -> None:
    only = tmp_path / "only.csv"
    only.write_text("sentence,label\n", encoding="utf-8")
    assert "no data rows" in _error(only)
    headerless = tmp_path / "headerless.tsv"
    headerless.write_text("great movie\t1\nawful\t0\n", encoding="utf-8")
    message = _error(headerless)
    assert "missing header" in message and "line 1" in message
    duplicate = tmp_path / "dup.csv"
    duplicate.write_text("text,text\na,b\n", encoding="utf-8")
    assert "duplicate names" in _error(duplicate)
    blank = tmp_path / "blank.csv"
    blank.write_text("text,\na,b\n", encoding="utf-8")
    assert "missing header" in _error(blank)


def test_corrupt_compression(tmp_path: Path) -> None:
    gz = tmp_path / "bad.csv.gz"
    gz.write_bytes(b"not gzip at all")
    assert "gzip" in _error(gz)
    bz = tmp_path / "bad.jsonl.bz2"
    bz.write_bytes(b"not bzip2 either")
    assert "bzip2" in _error(bz)


def test_unterminated_quote(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text('sentence,label\n"open quote,1\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"quote\.csv"):
        read_records(path)


CELL = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
    max_size=20,
)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(st.tuples(CELL.filter(lambda s: s.strip() != ""), CELL), min_size=1, max_size=5),
    extension=st.sampled_from([".csv", ".tsv", ".jsonl", ".json"]),
)
def test_roundtrip_any_text(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str]], extension: str
) -> None:
    records = [{"text": a, "label": b} for a, b in rows]
    path = tmp_path_factory.mktemp("rt") / f"data{extension}"
    path.write_bytes(WRITERS[extension](records).encode("utf-8"))
    assert read_records(path) == records


# -- tasks from files ----------------------------------------------------------------------


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(WRITERS[path.suffix](rows), encoding="utf-8")
    return path


def test_task_from_files_classification(tmp_path: Path) -> None:
    rows = [{"sentence": f"text {i}", "label": str(i % 2)} for i in range(10)]
    train = _write(tmp_path / "train.csv", rows)
    dev = _write(tmp_path / "dev.tsv", rows[:4])
    test = _write(tmp_path / "test.jsonl", rows[:6])
    task = task_from_files(
        "mini",
        train=train,
        dev=dev,
        test=test,
        input_fields="sentence",
        label_field="label",
        verbalizer={0: "bad", 1: "good"},
    )
    assert (len(task.train), len(task.dev), len(task.test)) == (10, 4, 6)
    assert task.kind == "classification" and task.labels == ("0", "1")
    assert task.verbalizer == {"0": ("bad",), "1": ("good",)}


def test_task_from_files_splits_dev_with_seed(tmp_path: Path) -> None:
    rows = [{"q": f"q{i}", "a": f"a{i}"} for i in range(20)]
    train = _write(tmp_path / "train.jsonl", rows)

    def load(seed: int) -> Task:
        return task_from_files(
            "gen", train=train, input_fields=["q"], output_field="a", dev_size=5, seed=seed
        )

    one, two, other = load(1), load(1), load(2)
    assert (len(one.train), len(one.dev), len(one.test)) == (15, 5, 0)
    assert one.dev == two.dev and one.dev != other.dev
    assert one.metric == "exact_match"


def test_task_from_files_word_labels_need_no_verbalizer(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": ["negative", "positive"][i % 2]} for i in range(6)]
    train = _write(tmp_path / "train.csv", rows)
    task = task_from_files(
        "words", train=train, input_fields="text", label_field="label", dev_size=2
    )
    assert task.verbalizer == {"negative": ("negative",), "positive": ("positive",)}
    numeric = _write(tmp_path / "numeric.csv", [{"text": "t", "label": "1"}] * 4)
    with pytest.raises(ConfigError, match="verbalizer"):
        task_from_files("nums", train=numeric, input_fields="text", label_field="label", dev_size=1)


def test_task_from_files_missing_field_names_the_file(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.csv", [{"text": "t", "label": "1"}] * 3)
    with pytest.raises(DataError, match=r"train\.csv, record 1: field\(s\) \['sentence'\]"):
        task_from_files(
            "x", train=train, input_fields="sentence", label_field="label", verbalizer={"1": "yes"}
        )


# -- tasks from datasets --------------------------------------------------------------------


class FakeClassLabel:
    def __init__(self, names: list[str]) -> None:
        self.names = names


class FakeDataset:
    """Behaves like a datasets.Dataset for iteration and features."""

    def __init__(self, rows: list[dict[str, Any]], features: dict[str, Any] | None = None) -> None:
        self.rows = rows
        self.features = features or {}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)


@pytest.fixture
def fake_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", types.ModuleType("datasets"))


def test_task_from_dataset_without_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ConfigError, match="pip install datasets"):
        task_from_dataset("x", [{"a": "b"}], input_fields="a", output_field="a")


@pytest.mark.usefixtures("fake_datasets")
def test_task_from_dataset_dict_with_class_labels() -> None:
    features = {"label": FakeClassLabel(["neg", "pos"])}
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(8)]
    splits = {
        "train": FakeDataset(rows, features),
        "validation": FakeDataset(rows[:4], features),
        "test": FakeDataset(rows[:2], features),
        "unsupervised": FakeDataset([{"text": "u"}]),
    }
    task = task_from_dataset("hf", splits, input_fields="text", label_field="label")
    assert (len(task.train), len(task.dev), len(task.test)) == (8, 4, 2)
    assert task.verbalizer == {"0": ("neg",), "1": ("pos",)}
    assert task.train[1].target == "1"


@pytest.mark.usefixtures("fake_datasets")
def test_task_from_single_dataset_splits_dev() -> None:
    rows = [{"q": f"q{i}", "a": f"a{i}"} for i in range(10)]
    task = task_from_dataset(
        "hf", FakeDataset(rows), input_fields="q", output_field="a", dev_size=0.3, seed=3
    )
    assert (len(task.train), len(task.dev)) == (7, 3)
    with pytest.raises(DataError, match="dataset split 'train', record 1"):
        task_from_dataset("hf", FakeDataset(rows), input_fields="missing", output_field="a")


def test_dataset_splits_errors() -> None:
    with pytest.raises(ConfigError, match="no 'train'"):
        dataset_splits({"test": FakeDataset([{"a": 1}])})
    with pytest.raises(ConfigError, match="more than one split"):
        dataset_splits({"train": [], "validation": [], "dev": []})
    with pytest.raises(DataError, match="row 1"):
        dataset_splits({"train": [{"a": 1}, 5]})
    with pytest.raises(ConfigError, match=r"datasets\.Dataset"):
        dataset_splits(42)

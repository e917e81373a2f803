"""Generic loaders: records from CSV/TSV/JSON/JSONL files, tasks from files or datasets.

:func:`read_records` reads ``.csv``, ``.tsv``, ``.jsonl``/``.ndjson`` and ``.json``
files, optionally compressed (``.gz``, ``.bz2``), into a list of dicts.  Every problem
is a :class:`~promptsearch.errors.DataError` naming the file, the line or record, and
the fix.

:func:`task_from_files` and :func:`task_from_dataset` wrap
:meth:`Task.from_records <promptsearch.task.Task.from_records>` for split files and
for Hugging Face ``datasets`` objects (imported lazily; the library is optional).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib
import io
import json
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from promptsearch.errors import ConfigError, DataError
from promptsearch.metrics import MetricFunction
from promptsearch.task import Task

__all__ = [
    "COMPRESSIONS",
    "FORMATS",
    "dataset_splits",
    "read_records",
    "task_from_dataset",
    "task_from_files",
]

FORMATS = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")
"""File extensions :func:`read_records` understands."""

COMPRESSIONS = (".gz", ".bz2")
"""Compression suffixes that may follow a format extension (``data.jsonl.gz``)."""

_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # also the start of UTF-32 little-endian's
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

# Hugging Face split names -> task split names
_DATASET_SPLITS = {
    "train": "train",
    "validation": "dev",
    "valid": "dev",
    "dev": "dev",
    "test": "test",
}


def _format_of(path: Path) -> tuple[str, str | None]:
    name = path.name.lower()
    compression = next((c for c in COMPRESSIONS if name.endswith(c)), None)
    if compression:
        name = name[: -len(compression)]
    for ext in FORMATS:
        if name.endswith(ext):
            return ext, compression
    allowed = ", ".join(FORMATS)
    raise DataError(
        f"{path}: unknown file type; use one of {allowed} (optionally followed by "
        f"{' or '.join(COMPRESSIONS)}), e.g. train.jsonl or train.csv.gz"
    )


def _read_bytes(path: Path, compression: str | None) -> bytes:
    if not path.exists():
        raise DataError(
            f"{path}: file not found; check the path (relative paths start at {Path.cwd()})"
        )
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file; give the path of a data file inside it")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(
            f"{path}: cannot be read ({error.strerror or error}); check its permissions"
        ) from None
    if compression == ".gz":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(
                f"{path}: not a valid gzip file ({error}); recompress it with gzip "
                "or drop the .gz suffix"
            ) from None
    if compression == ".bz2":
        try:
            return bz2.decompress(raw)
        except (OSError, EOFError, ValueError) as error:
            raise DataError(
                f"{path}: not a valid bzip2 file ({error}); recompress it with bzip2 "
                "or drop the .bz2 suffix"
            ) from None
    return raw


def _decode(path: Path, raw: bytes, compression: str | None) -> str:
    unpacked = " (decompressed)" if compression else ""
    if raw.startswith(_UTF16_BOMS):
        raise DataError(
            f"{path}{unpacked}: the file is UTF-16 or UTF-32 (it starts with a byte-order mark), "
            "not UTF-8; re-encode it as UTF-8, e.g. 'iconv -f utf-16 -t utf-8 IN > OUT'"
        )
    skip = len(_BOM) if raw.startswith(_BOM) else 0
    try:
        text = raw[skip:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start + skip
        line = raw.count(b"\n", 0, offset) + 1
        hint = (
            "'iconv -f utf-16le -t utf-8 IN > OUT' if it is UTF-16 (it holds NUL bytes)"
            if b"\x00" in raw[:4096]
            else "'iconv -f latin1 -t utf-8 IN > OUT' if it is Latin-1"
        )
        where = "of the decompressed content " if compression else ""
        raise DataError(
            f"{path}: not UTF-8 at byte offset {offset} {where}(line {line}, byte "
            f"0x{raw[offset]:02x}); re-encode the file as UTF-8, e.g. {hint}"
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise DataError(
            f"{path}{unpacked}: line {line} holds a NUL byte, which text data never does: the "
            "file looks like UTF-16 without a byte-order mark, or binary; re-encode it as "
            "UTF-8 text, e.g. 'iconv -f utf-16le -t utf-8 IN > OUT'"
        )
    return text


def _looks_numeric(cell: str) -> bool:
    return _NUMBER.match(cell.strip()) is not None


def _read_delimited(
    path: Path, text: str, delimiter: str, columns: Sequence[str] | None
) -> list[dict[str, Any]]:
    example = "sentence\\tlabel" if delimiter == "\t" else "sentence,label"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = [str(c) for c in columns] if columns is not None else None
    records: list[dict[str, Any]] = []
    try:
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue  # blank line
            if header is None:
                names = [cell.strip() for cell in row]
                bad = [n for n in names if not n or _looks_numeric(n)]
                duplicates = sorted({n for n in names if names.count(n) > 1})
                if bad or duplicates:
                    problem = "empty or numeric names" if bad else f"duplicate names {duplicates}"
                    raise DataError(
                        f"{path}, line {reader.line_num}: missing header: the first row "
                        f"{row[:4]!r} has {problem}; add a header line naming the columns, "
                        f"e.g. '{example}'"
                    )
                header = names
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path}, line {reader.line_num}: {len(row)} field(s), but there are "
                    f"{len(header)} columns {header}; fix the row (quote fields that contain the "
                    f"delimiter {delimiter!r} or a line break)"
                )
            records.append(dict(zip(header, row, strict=True)))
    except csv.Error as error:
        raise DataError(
            f"{path}, line {reader.line_num}: malformed row ({error}); check its quoting"
        ) from None
    if not records:
        raise DataError(
            f"{path}: has a header but no data rows; add at least one row below the header"
        )
    return records


def _read_jsonl(path: Path, text: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    # split on '\n' only: JSON strings may legally contain U+2028 and friends
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"{path}, line {number}: invalid JSON ({error.msg} at column {error.colno}); "
                "each line of a JSON-lines file must hold one complete JSON object"
            ) from None
        if not isinstance(value, dict):
            raise DataError(
                f"{path}, line {number}: expected a JSON object {{...}}, got "
                f"{type(value).__name__}; each line must hold one object of field values"
            )
        records.append(value)
    if not records:
        raise DataError(f"{path}: contains no JSON objects; add one object per line")
    return records


def _read_json(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}, line {error.lineno}, column {error.colno}: invalid JSON ({error.msg}); "
            "fix the JSON syntax there"
        ) from None
    container = "the top-level list"
    if isinstance(value, dict):
        if "examples" in value:
            value, container = value["examples"], "'examples'"
        elif "data" in value:
            value, container = value["data"], "'data'"
        else:
            raise DataError(
                f"{path}: expected a list of objects, or an object with an 'examples' or "
                f"'data' entry; got an object with keys {sorted(value)[:8]}"
            )
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        raise DataError(
            f"{path}: {container} must be a list of objects or a mapping of id to object; "
            f"got {type(value).__name__}"
        )
    records: list[dict[str, Any]] = []
    for key, item in items:
        if not isinstance(item, dict):
            raise DataError(
                f"{path}: record {key!r} in {container} is {type(item).__name__}, not an "
                "object; every record must be a JSON object of field values"
            )
        records.append(item)
    if not records:
        raise DataError(f"{path}: {container} is empty; add at least one record")
    return records


def read_records(path: str | Path, *, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Read the records of a data file as a list of dicts.

    Formats, chosen by extension: ``.csv`` and ``.tsv`` (a header row names the
    columns; values are strings), ``.jsonl``/``.ndjson`` (one JSON object per line),
    ``.json`` (a list of objects, or ``{"examples": {id: object}}`` /
    ``{"examples": [...]}`` / ``{"data": [...]}``).  Any of them may be compressed:
    ``.gz`` or ``.bz2`` after the extension.  Files must be UTF-8 (a BOM is allowed).

    *columns* names the columns of a CSV/TSV file that has no header row; the first
    row is then data.  Otherwise a first row with empty, duplicate or numeric names
    is reported as a missing header.  Blank lines are skipped.
    """
    path = Path(path)
    extension, compression = _format_of(path)
    if columns is not None and extension not in (".csv", ".tsv"):
        raise ConfigError(f"columns= applies only to .csv/.tsv files; {path} is {extension}")
    raw = _read_bytes(path, compression)
    text = _decode(path, raw, compression)
    if not text.strip():
        raise DataError(f"{path}: the file is empty; it needs records ({extension} format)")
    if extension == ".csv":
        return _read_delimited(path, text, ",", columns)
    if extension == ".tsv":
        return _read_delimited(path, text, "\t", columns)
    if extension in (".jsonl", ".ndjson"):
        return _read_jsonl(path, text)
    return _read_json(path, text)


# -- tasks ------------------------------------------------------------------------------


def _check_fields(records: Sequence[Mapping[str, Any]], fields: Sequence[str], where: str) -> None:
    for index, record in enumerate(records):
        missing = [f for f in fields if f not in record]
        if missing:
            raise DataError(
                f"{where}, record {index + 1}: field(s) {missing} missing; it has "
                f"{sorted(record)}; fix the data or name existing fields in "
                "input_fields=/label_field=/output_field="
            )


def _identity_verbalizer(
    splits: Mapping[str, Sequence[Mapping[str, Any]]], label_field: str
) -> dict[str, str] | None:
    """``{label: label}`` when every label is a non-numeric word; else None."""
    seen: dict[str, None] = {}
    for records in splits.values():
        for record in records:
            value = record.get(label_field)
            if not isinstance(value, str) or not value.strip() or _looks_numeric(value):
                return None
            seen.setdefault(value, None)
    return {label: label for label in seen} or None


def task_from_files(
    name: str,
    *,
    train: str | Path,
    dev: str | Path | None = None,
    test: str | Path | None = None,
    input_fields: Sequence[str] | str,
    label_field: str | None = None,
    output_field: str | None = None,
    verbalizer: Mapping[Any, str | Sequence[str]] | None = None,
    labels: Sequence[Any] | None = None,
    metric: str | MetricFunction | None = None,
    seed_prompts: Sequence[Any] = (),
    dev_size: float | int = 0.2,
    seed: int = 0,
    description: str = "",
) -> Task:
    """Build a task from split files (any format :func:`read_records` reads).

    Without *dev*, a dev split of *dev_size* (a fraction or a count) is drawn from
    *train* with *seed*.  For classification without a *verbalizer*, labels that are
    words (not numbers) stand for themselves: ``{"positive": "positive", ...}``.
    """
    fields = [input_fields] if isinstance(input_fields, str) else list(input_fields)
    target = label_field if label_field is not None else output_field
    needed = fields + ([target] if target is not None else [])
    splits: dict[str, list[dict[str, Any]]] = {}
    for split, path in (("train", train), ("dev", dev), ("test", test)):
        if path is None:
            continue
        records = read_records(path)
        _check_fields(records, needed, str(path))
        splits[split] = records
    if label_field is not None and verbalizer is None:
        verbalizer = _identity_verbalizer(splits, label_field)
    return Task.from_records(
        name,
        splits,
        input_fields=fields,
        label_field=label_field,
        output_field=output_field,
        verbalizer=verbalizer,
        labels=labels,
        metric=metric,
        seed_prompts=seed_prompts,
        dev_size=dev_size,
        seed=seed,
        description=description,
    )


def _rows(dataset: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(dataset, (str, bytes)) or not isinstance(dataset, Iterable):
        raise ConfigError(
            f"{where} must be a datasets.Dataset (or an iterable of row dicts); "
            f"got {type(dataset).__name__}"
        )
    rows = []
    for index, row in enumerate(dataset):
        if not isinstance(row, Mapping):
            raise DataError(
                f"{where}, row {index}: expected a mapping of column to value, "
                f"got {type(row).__name__}"
            )
        rows.append(dict(row))
    return rows


def dataset_splits(dataset_or_dict: Any) -> dict[str, list[dict[str, Any]]]:
    """Rows per task split of a ``Dataset`` (all train) or ``DatasetDict``.

    Split names map ``train`` -> train, ``validation``/``valid``/``dev`` -> dev,
    ``test`` -> test; other splits (e.g. ``unsupervised``) are left out.  Works on
    any object that behaves like them (a mapping of split name to iterables of row
    dicts, or one such iterable).
    """
    if isinstance(dataset_or_dict, Mapping):
        splits: dict[str, list[dict[str, Any]]] = {}
        for split_name, dataset in dataset_or_dict.items():
            target = _DATASET_SPLITS.get(str(split_name).lower())
            if target is None:
                continue
            if target in splits:
                raise ConfigError(
                    f"dataset splits: more than one split maps to {target!r} "
                    f"({sorted(dataset_or_dict)}); pass a DatasetDict with only one of them"
                )
            splits[target] = _rows(dataset, f"dataset split {split_name!r}")
        if "train" not in splits:
            raise ConfigError(
                f"dataset has splits {sorted(map(str, dataset_or_dict))} but no 'train'; "
                "pass a DatasetDict with a train split (or one Dataset)"
            )
        return splits
    return {"train": _rows(dataset_or_dict, "dataset")}


def _class_label_verbalizer(dataset_or_dict: Any, label_field: str) -> dict[str, str] | None:
    """``{"0": name0, ...}`` from a ``ClassLabel`` feature's names, if there is one."""
    if isinstance(dataset_or_dict, Mapping):
        candidates = list(dataset_or_dict.values())
    else:
        candidates = [dataset_or_dict]
    for dataset in candidates:
        features = getattr(dataset, "features", None)
        feature = features.get(label_field) if isinstance(features, Mapping) else None
        names = getattr(feature, "names", None)
        if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
            return {str(index): label_name for index, label_name in enumerate(names)}
    return None


def _require_datasets() -> None:
    try:
        importlib.import_module("datasets")
    except ImportError:
        raise ConfigError(
            "task_from_dataset needs the Hugging Face 'datasets' library, which is not "
            "installed; install it with: pip install datasets"
        ) from None


def task_from_dataset(
    name: str,
    dataset_or_dict: Any,
    *,
    input_fields: Sequence[str] | str,
    label_field: str | None = None,
    output_field: str | None = None,
    verbalizer: Mapping[Any, str | Sequence[str]] | None = None,
    labels: Sequence[Any] | None = None,
    metric: str | MetricFunction | None = None,
    seed_prompts: Sequence[Any] = (),
    dev_size: float | int = 0.2,
    seed: int = 0,
    description: str = "",
) -> Task:
    """Build a task from a ``datasets.Dataset`` or ``DatasetDict``.

    Needs the optional ``datasets`` library.  Splits map as in
    :func:`dataset_splits`; without a validation split, *dev_size* of train is used
    as dev.  For a ``ClassLabel`` label column and no *verbalizer*, the class names
    become the label words (``{"0": "neg", "1": "pos"}``); labels that are words
    stand for themselves.
    """
    _require_datasets()
    fields = [input_fields] if isinstance(input_fields, str) else list(input_fields)
    splits = dataset_splits(dataset_or_dict)
    target = label_field if label_field is not None else output_field
    for split, records in splits.items():
        _check_fields(records, fields + ([target] if target else []), f"dataset split {split!r}")
    if label_field is not None and verbalizer is None:
        verbalizer = _class_label_verbalizer(dataset_or_dict, label_field) or (
            _identity_verbalizer(splits, label_field)
        )
    return Task.from_records(
        name,
        splits,
        input_fields=fields,
        label_field=label_field,
        output_field=output_field,
        verbalizer=verbalizer,
        labels=labels,
        metric=metric,
        seed_prompts=seed_prompts,
        dev_size=dev_size,
        seed=seed,
        description=description,
    )

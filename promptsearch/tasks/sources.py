"""Tasks of your own: data files and Hugging Face data sets named by one string, and
the JSON *source* a study stores to load them again.

What :func:`load_source` takes (the ``--task`` of ``promptsearch run``):

* a data file (``.csv``, ``.tsv``, ``.jsonl``, ``.json``, maybe ``.gz``/``.bz2``).  A
  ``split`` field (column) says each record's split; without one, every record is
  train.
* a folder: its data files, each the split its name says (``train.jsonl``,
  ``dev.csv``, ``validation.tsv``, ``test.json`` ...); other data files are left out.
* files separated by commas (``train.jsonl,dev.jsonl,test.jsonl``), each the split its
  name says.
* ``hf:NAME`` or ``hf:NAME:CONFIG``, each maybe with ``@REVISION`` (a branch, tag or
  commit of the hub repository: ``hf:glue:sst2@bcdcba7``): :func:`datasets.load_dataset`
  (the hub, or its cache when offline); ``hf-disk:PATH``, or ``hf:PATH`` of a folder
  that exists: a data set saved with ``save_to_disk`` (:func:`datasets.load_from_disk`).

Split names map to the task's splits by :data:`DEFAULT_SPLIT_MAP` and the *split_map*
given (``{"holdout": "test"}``).  A split the data lacks is drawn from train with the
seed: dev and test take :data:`DRAWN_SHARE` of train's records each, or dev takes
*dev_size* records (``--dev-size``), with the test split drawn as without it.

A :class:`TaskSource` holds all that as resolved values (fields, labels, split map,
seed); :meth:`TaskSource.to_dict` is what :attr:`Task.source` and so a stored study
keep: paths and names, never code or data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from promptsearch.errors import ConfigError, DataError
from promptsearch.example import normalize_verbalizer
from promptsearch.metrics import MetricFunction, metric_name
from promptsearch.task import SPLITS, Task
from promptsearch.tasks._common import check_size
from promptsearch.tasks._splits import (
    DRAWN_SHARE,
    SPLIT_FIELD,
    by_split_field,
    data_suffix,
    draw_missing,
    map_dataset_splits,
    named_splits,
    stem,
)
from promptsearch.tasks.loaders import read_records

__all__ = [
    "DEFAULT_SPLIT_MAP",
    "DRAWN_SHARE",
    "HF_DISK_PREFIX",
    "HF_PREFIX",
    "SPLIT_FIELD",
    "TaskSource",
    "is_source",
    "load_source",
    "source_name",
    "task_from_source",
]

HF_PREFIX: Final = "hf:"
HF_DISK_PREFIX: Final = "hf-disk:"
DEFAULT_SPLIT_MAP: Final[Mapping[str, str]] = {
    "train": "train",
    "dev": "dev",
    "validation": "dev",
    "valid": "dev",
    "val": "dev",
    "test": "test",
}
"""Split names of files, ``split`` values and data sets -> the task's splits."""
_TARGET_GUESSES: Final = ("output", "answer", "target")
_NOT_INPUTS: Final = frozenset({SPLIT_FIELD, "id", "idx", "label", *_TARGET_GUESSES})
_KINDS: Final = ("file", "folder", "files", "hf", "hf-disk")
_FORMAT_VERSION: Final = 1


def is_source(text: str) -> bool:
    """Whether *text* names a file, folder or data set rather than a built-in task."""
    from promptsearch.tasks import instruction_induction, kshot, rotten_tomatoes, trex

    if text.startswith((HF_PREFIX, HF_DISK_PREFIX)):
        return True
    if text in kshot.SPECS or text == rotten_tomatoes.NAME:
        return False
    if text.startswith((instruction_induction.PREFIX, trex.PREFIX)) and "/" not in text:
        return False
    pieces = [p.strip() for p in text.split(",")]
    if any(data_suffix(p) for p in pieces):
        return True
    return os.sep in text or "/" in text or Path(text).expanduser().exists()


def source_name(text: str) -> str:
    """The task name *text* gives, without reading anything: the file's name without its
    extension, the folder's name, or the data set's last name part (and config)."""
    if text.startswith(HF_DISK_PREFIX):
        return Path(text[len(HF_DISK_PREFIX) :]).expanduser().name or "dataset"
    if text.startswith(HF_PREFIX):
        name, _, config = _without_revision(text[len(HF_PREFIX) :])[0].partition(":")
        base = name.rstrip("/").split("/")[-1] or "dataset"
        return f"{base}-{config}" if config else base
    pieces = [Path(p.strip()).expanduser() for p in text.split(",") if p.strip()]
    if len(pieces) == 1:
        path = pieces[0]
        return (path.resolve().name if path.is_dir() else stem(path)) or "task"
    parents = {p.resolve().parent.name for p in pieces}
    return parents.pop() if len(parents) == 1 and "" not in parents else stem(pieces[0])


@dataclass(frozen=True)
class TaskSource:
    """Where a task's data is and how to read it; :meth:`load` makes the Task."""

    kind: str  # one of "file", "folder", "files", "hf", "hf-disk"
    location: str  # absolute path(s) joined by ",", or the data set name
    name: str
    config: str | None = None  # the data set configuration of "hf"
    revision: str | None = None  # the hub revision of "hf" (None: the default branch)
    input_fields: tuple[str, ...] = ()
    label_field: str | None = None
    output_field: str | None = None
    verbalizer: Mapping[str, tuple[str, ...]] | None = None
    split_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SPLIT_MAP))
    metric: str | None = None
    seed_prompts: tuple[str, ...] = ()
    seed: int = 13
    dev_size: int | None = None  # records of a drawn dev split (None: DRAWN_SHARE of train)

    def to_dict(self) -> dict[str, Any]:
        """JSON of the source, as a study stores it."""
        return {
            "format": _FORMAT_VERSION,
            "kind": self.kind,
            "location": self.location,
            "name": self.name,
            "config": self.config,
            "input_fields": list(self.input_fields),
            "label_field": self.label_field,
            "output_field": self.output_field,
            "verbalizer": None
            if self.verbalizer is None
            else {k: list(v) for k, v in self.verbalizer.items()},
            "split_map": dict(self.split_map),
            "metric": self.metric,
            "seed_prompts": list(self.seed_prompts),
            "seed": self.seed,
            # only when given, so a source stored before revisions existed stays equal
            **({"revision": self.revision} if self.revision is not None else {}),
            **({"dev_size": self.dev_size} if self.dev_size is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSource:
        """The source a study stored; anything else is a ConfigError."""
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT_VERSION:
            raise ConfigError(
                f"the stored task source {data!r} is not one this promptsearch reads; use the "
                "version that ran the study"
            )
        if data.get("kind") not in _KINDS:
            raise ConfigError(f"the stored task source has an unknown kind {data.get('kind')!r}")
        try:
            return cls(
                kind=str(data["kind"]),
                location=str(data["location"]),
                name=str(data["name"]),
                config=data.get("config"),
                revision=data.get("revision"),
                input_fields=tuple(str(f) for f in data["input_fields"]),
                label_field=data.get("label_field"),
                output_field=data.get("output_field"),
                verbalizer=None
                if data.get("verbalizer") is None
                else {str(k): tuple(v) for k, v in data["verbalizer"].items()},
                split_map={str(k): str(v) for k, v in data["split_map"].items()},
                metric=data.get("metric"),
                seed_prompts=tuple(str(p) for p in data.get("seed_prompts") or ()),
                seed=int(data.get("seed", 13)),
                dev_size=None if data.get("dev_size") is None else int(data["dev_size"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ConfigError(f"the stored task source is malformed ({error!r})") from None

    def describe(self) -> str:
        """The source in words, for messages."""
        if self.kind == "hf":
            at = f" at revision {self.revision}" if self.revision else ""
            return f"data set {self.location!r}" + (f" ({self.config})" if self.config else "") + at
        if self.kind == "hf-disk":
            return f"saved data set {self.location}"
        return self.location

    def load(self) -> Task:
        """Read the data and build the task (its :attr:`Task.source` is this source)."""
        from promptsearch.tasks import _hf

        if self.kind in ("hf", "hf-disk"):
            raw, dataset = _hf.read(self.kind, self.location, self.config, self.revision)
            splits = map_dataset_splits(raw, self.split_map, self.describe())
        else:
            dataset = None
            splits = self._file_splits()
        resolved = self._resolve(splits, dataset)
        return resolved._build(splits)

    # -- reading -----------------------------------------------------------------------

    def _file_splits(self) -> dict[str, list[dict[str, Any]]]:
        if self.kind == "file":
            records = read_records(self.location)
            if not any(SPLIT_FIELD in r for r in records):
                return {"train": records}
            return by_split_field(records, self.split_map, self.location)
        if self.kind == "folder":
            folder = Path(self.location)
            if not folder.is_dir():
                raise DataError(f"{folder}: folder not found; check the path of --task")
            files = sorted(p for p in folder.iterdir() if p.is_file() and data_suffix(p.name))
            return named_splits(files, self.split_map, str(folder), strict=False)
        paths = [Path(p) for p in self.location.split(",")]
        return named_splits(paths, self.split_map, self.location, strict=True)

    # -- fields ------------------------------------------------------------------------

    def _resolve(self, splits: Mapping[str, list[dict[str, Any]]], dataset: Any) -> TaskSource:
        """The source with its fields, target and verbalizer named (guessed where not
        given: a 'label' field is the label, 'output'/'answer'/'target' the output, the one
        field left the input), checked against the data."""
        where = self.describe()
        fields = list(dict.fromkeys(k for records in splits.values() for k in records[0]))
        shown = f"it has fields {fields}"
        label, output = self.label_field, self.output_field
        if label is not None and output is not None:
            raise ConfigError(
                f"{where}: give a label field (classification) or an output field (generation), "
                f"not both; got label field {label!r} and output field {output!r}"
            )
        if label is None and output is None:
            if "label" in fields:
                label = "label"
            else:
                output = next((f for f in _TARGET_GUESSES if f in fields), None)
            if label is None and output is None:
                raise ConfigError(
                    f"{where}: no 'label' or 'output' field; {shown}; name the target with "
                    "--label-field (classification) or --output-field (generation)"
                )
        target = label if label is not None else output
        option = "--label-field" if label is not None else "--output-field"
        _require_field(target or "", fields, where, option)
        inputs = list(self.input_fields)
        if not inputs:
            inputs = [f for f in fields if f != target and f not in _NOT_INPUTS]
            if len(inputs) != 1:
                raise ConfigError(
                    f"{where}: say which field(s) the prompt shows with --input-field; {shown}"
                )
        for name in inputs:
            _require_field(name, fields, where, "--input-field")
            if not name.isidentifier():
                raise ConfigError(
                    f"{where}: input field {name!r} is not a Python identifier, so a template "
                    "cannot name it as {field}; rename the field (letters, digits, _)"
                )
        for split, records in splits.items():
            for index, record in enumerate(records):
                missing = [f for f in (*inputs, target) if f not in record]
                if missing:
                    raise DataError(
                        f"{where}, {split} record {index + 1}: field(s) {missing} missing; it "
                        f"has {sorted(record)}"
                    )
        verbalizer = self.verbalizer
        if label is not None and verbalizer is None:
            verbalizer = _default_verbalizer(splits, label, dataset, where)
        return replace(
            self,
            input_fields=tuple(inputs),
            label_field=label,
            output_field=output,
            verbalizer=verbalizer,
        )

    def _build(self, splits: Mapping[str, list[dict[str, Any]]]) -> Task:
        complete = draw_missing(splits, self.seed, self.describe(), dev_size=self.dev_size)
        seeds = self.seed_prompts or (_default_template(self.input_fields),)
        task = Task.from_records(
            self.name,
            complete,
            input_fields=list(self.input_fields),
            label_field=self.label_field,
            output_field=self.output_field,
            verbalizer=self.verbalizer,
            metric=self.metric,
            seed_prompts=seeds,
            description=f"from {self.describe()}",
        )
        for prompt in task.seed_prompts:
            prompt.resolve(task)  # a seed prompt naming an unknown field fails here
        object.__setattr__(task, "source", self.to_dict())
        return task


def _require_field(name: str, fields: Sequence[str], where: str, option: str) -> None:
    if name not in fields:
        raise ConfigError(
            f"{where}: field {name!r} ({option}) is not in the data; it has fields "
            f"{list(fields)}; name one of them"
        )


def _default_verbalizer(
    splits: Mapping[str, list[dict[str, Any]]], label: str, dataset: Any, where: str
) -> dict[str, tuple[str, ...]]:
    """A ClassLabel's names, else the labels themselves when they are words."""
    from promptsearch.tasks.loaders import _class_label_verbalizer, _identity_verbalizer

    found = (_class_label_verbalizer(dataset, label) if dataset is not None else None) or (
        _identity_verbalizer(splits, label)
    )
    if found is None:
        values = list(dict.fromkeys(str(r[label]) for rs in splits.values() for r in rs))
        example = ",".join(f"{v}=WORD{i + 1}" for i, v in enumerate(values[:3]))
        raise ConfigError(
            f"{where}: the labels {values[:8]} of field {label!r} are not words the model can "
            f"say; give each a word with --verbalizer {example} (verbalizer= in Python)"
        )
    return dict(normalize_verbalizer(found, f"{where} verbalizer"))


def _default_template(inputs: Sequence[str]) -> str:
    lines = [f"{name.replace('_', ' ').capitalize()}: {{{name}}}" for name in inputs]
    return "\n".join([*lines, "Answer: {answer}"])


# -- entry points ------------------------------------------------------------------------


def _without_revision(rest: str) -> tuple[str, str | None]:
    """(the name and config of an ``hf:`` source, its ``@REVISION`` or ``None``)."""
    head, at, revision = rest.rpartition("@")
    if not at:
        return rest, None
    if not head.strip() or not revision.strip() or "/" in revision or ":" in revision:
        raise ConfigError(
            f"hf:{rest!r}: write the revision last, after one '@', as a branch, tag or commit "
            "(hf:NAME@REVISION or hf:NAME:CONFIG@REVISION)"
        )
    return head, revision.strip()


def _locate(text: str) -> tuple[str, str, str | None, str | None]:
    """(kind, location, config, revision) of a --task string."""
    if text.startswith(HF_DISK_PREFIX):
        path = Path(text[len(HF_DISK_PREFIX) :]).expanduser()
        if not path.is_dir():
            raise DataError(
                f"{text}: {path} is not a folder; give the folder Dataset.save_to_disk wrote"
            )
        return "hf-disk", str(path.resolve()), None, None
    if text.startswith(HF_PREFIX):
        rest = text[len(HF_PREFIX) :].strip()
        if not rest:
            raise ConfigError(f"{text!r}: name the data set, e.g. hf:imdb or hf:glue:sst2")
        local = Path(rest).expanduser()
        if local.is_dir():
            return "hf-disk", str(local.resolve()), None, None
        named, revision = _without_revision(rest)
        name, _, config = named.partition(":")
        return "hf", name, config or None, revision
    pieces = [p.strip() for p in text.split(",") if p.strip()]
    if len(pieces) > 1:
        return "files", ",".join(str(Path(p).expanduser().resolve()) for p in pieces), None, None
    path = Path(pieces[0] if pieces else text).expanduser()
    if path.is_dir():
        return "folder", str(path.resolve()), None, None
    return "file", str(path.resolve()), None, None


def load_source(
    text: str,
    *,
    input_fields: Sequence[str] | str = (),
    label_field: str | None = None,
    output_field: str | None = None,
    verbalizer: Mapping[Any, str | Sequence[str]] | None = None,
    split_map: Mapping[str, str] | None = None,
    metric: str | MetricFunction | None = None,
    seed_prompts: Sequence[str] = (),
    seed: int = 13,
    name: str | None = None,
    dev_size: int | None = None,
) -> Task:
    """The task of a data file, folder, file list or data set named by *text* (see the
    module's docstring).  *split_map* entries (``{"holdout": "test"}``) add to and
    override :data:`DEFAULT_SPLIT_MAP`; *seed* draws the missing splits; *dev_size* is
    the number of records of a drawn dev split (data with a dev split of its own refuses
    it)."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"task source must be a path or hf:NAME; got {text!r}")
    chosen = dict(DEFAULT_SPLIT_MAP)
    for key, value in (split_map or {}).items():
        if value not in SPLITS:
            raise ConfigError(
                f"split map: {key!r} maps to {value!r}; map each name to one of {list(SPLITS)}"
            )
        chosen[str(key)] = value
    kind, location, config, revision = _locate(text.strip())
    source = TaskSource(
        kind=kind,
        location=location,
        name=name or source_name(text.strip()),
        config=config,
        revision=revision,
        input_fields=(input_fields,) if isinstance(input_fields, str) else tuple(input_fields),
        label_field=label_field,
        output_field=output_field,
        verbalizer=None
        if verbalizer is None
        else dict(normalize_verbalizer(verbalizer, "verbalizer")),
        split_map=chosen,
        metric=None if metric is None else metric_name(metric),
        seed_prompts=tuple(seed_prompts),
        seed=seed,
        dev_size=check_size(dev_size, "dev_size"),
    )
    return source.load()


def task_from_source(source: Mapping[str, Any]) -> Task:
    """The task a stored source (:meth:`TaskSource.to_dict`) describes, read again."""
    return TaskSource.from_dict(source).load()

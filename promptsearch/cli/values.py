"""Command-line values: their types and the checks that need nothing loaded, so a
bad value fails at once (before a data set, a model or a search), with a line
naming the option and the fix.  Used by the subcommands of :mod:`promptsearch.cli`."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence

from promptsearch.errors import ConfigError
from promptsearch.validation import control_characters

__all__ = [
    "batch_size",
    "check_at_least_one",
    "check_batch_size",
    "check_finite",
    "check_run_values",
    "check_study_option",
    "check_verbalizer_labels",
    "parse_split_map",
    "parse_verbalizer",
    "task_seed_list",
    "train_holdout",
    "unescape",
]

_EXAMPLE = "write e.g. '0=negative,1=positive'"
_AUTO = "auto"


def unescape(text: str) -> str:
    r"""Turn the two-character sequences \n, \t and \\ typed on a command line into characters."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def task_seed_list(text: str) -> list[int]:
    """``"13,42,100"`` → ``[13, 42, 100]`` (the type of ``run --task-seed``)."""
    seeds: list[int] = []
    for piece in text.split(","):
        try:
            seed = int(piece.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{piece.strip()!r} is not a whole number; write one seed or a comma list "
                "such as 13,42,100"
            ) from None
        if seed not in seeds:
            seeds.append(seed)
    return seeds


def batch_size(text: str) -> int | str:
    """The type of ``--batch-size``: a whole number, or ``"auto"`` (any case).  Anything
    else is kept as typed, for :func:`check_batch_size` to refuse in one line."""
    if text.strip().lower() == _AUTO:
        return _AUTO
    try:
        return int(text)
    except ValueError:
        return text


def train_holdout(text: str) -> float | str:
    """The type of ``run --train-holdout``: ``"auto"`` or a number (its range is checked
    by :class:`~promptsearch.study.selection.Selection`, which names the field)."""
    if text == _AUTO:
        return _AUTO
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or a number from 0 to 1, e.g. 0.5; got {text!r}"
        ) from None


def check_batch_size(value: int | str) -> None:
    """``--batch-size``: a whole number of at least 1, or ``auto``."""
    if value == _AUTO:
        return
    if isinstance(value, int):
        check_at_least_one(value, "--batch-size")
        return
    raise ConfigError(f"--batch-size must be a whole number of at least 1 or 'auto'; got {value!r}")


def parse_verbalizer(text: str) -> dict[str, list[str]]:
    """``'0=negative,1=positive'`` (``|`` between several words) → a verbalizer mapping.

    A label given twice, a label without words, or a word that stands for two labels
    is refused."""
    verbalizer: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for item in text.split(","):
        label, sep, words = item.partition("=")
        label = label.strip()
        chosen = [w.strip() for w in words.split("|") if w.strip()]
        if not sep or not label or not chosen:
            raise ConfigError(f"--verbalizer: {item!r} is not label=word; {_EXAMPLE}")
        if label in verbalizer:
            raise ConfigError(
                f"--verbalizer: label {label!r} is given twice; give each label once, {_EXAMPLE}"
            )
        for word in chosen:
            if word in owner and owner[word] != label:
                raise ConfigError(
                    f"--verbalizer: the word {word!r} stands for labels {owner[word]!r} and "
                    f"{label!r}; give each label its own word(s), {_EXAMPLE}"
                )
            owner[word] = label
        verbalizer[label] = list(dict.fromkeys(chosen))
    return verbalizer


def parse_split_map(text: str) -> dict[str, str]:
    """``'validation_matched=dev,holdout=test'`` → ``{"validation_matched": "dev", ...}``."""
    mapping: dict[str, str] = {}
    for item in text.split(","):
        name, sep, split = (part.strip() for part in item.partition("="))
        if not sep or not name or split not in ("train", "dev", "test"):
            raise ConfigError(
                f"--split-map: {item.strip()!r} is not NAME=train|dev|test; write e.g. "
                "'holdout=test,validation_matched=dev'"
            )
        if name in mapping:
            raise ConfigError(f"--split-map: {name!r} is given twice; map each name once")
        mapping[name] = split
    return mapping


def check_verbalizer_labels(
    verbalizer: Mapping[str, Sequence[str]], task_name: str, labels: Sequence[str]
) -> None:
    """Every label of the task has a word and every label given is one of the task's."""
    unknown = [label for label in verbalizer if label not in labels]
    if unknown:
        raise ConfigError(
            f"--verbalizer: task {task_name!r} has no label(s) {unknown}; its labels are "
            f"{list(labels)}"
        )
    missing = [label for label in labels if label not in verbalizer]
    if missing:
        raise ConfigError(
            f"--verbalizer: no word for label(s) {missing}; give one for each of the task's "
            f"labels {list(labels)}"
        )


def check_at_least_one(value: int | None, option: str) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{option} must be at least 1; got {value}")


def check_finite(value: float | None, option: str, fix: str) -> None:
    if value is not None and not math.isfinite(value):
        raise ConfigError(f"{option} must be a finite number; got {value}; {fix}")


def check_study_option(name: str | None) -> None:
    """``--study`` of a new study: not empty, no control characters."""
    if name is None:
        return
    if not name.strip():
        raise ConfigError(
            f"--study {name!r} is empty; give a study name, or leave --study out for the "
            "default <task>-<model>"
        )
    odd = control_characters(name)
    if odd:
        raise ConfigError(
            f"--study {name!r} holds control character(s) {odd}; use printable characters only"
        )


def check_run_values(args: argparse.Namespace) -> None:
    """The values of ``run`` that can be checked before anything loads."""
    check_study_option(args.study)
    check_at_least_one(args.top, "--top")
    check_batch_size(args.batch_size)
    check_at_least_one(args.candidates_per_round, "--candidates-per-round")
    check_finite(args.seconds, "--seconds", "leave --seconds out for no time limit")
    check_finite(args.confirm_fraction, "--confirm-fraction", "give a share such as 0.5")
    check_finite(args.selection_alpha, "--selection-alpha", "give a level such as 0.1")

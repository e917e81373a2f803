"""Searchers and their registry.

Searchers are found by name, through the ``promptsearch.searchers`` entry-point group
(:mod:`promptsearch.searchers._registry`): promptsearch's ``pyproject.toml`` registers
the built-in ones there, and third-party packages add theirs the same way::

    [project.entry-points."promptsearch.searchers"]
    my-method = "my_package.searcher:MyMethodSearcher"

The registry is read from the installed package metadata, so promptsearch must be
installed (``pip install -e .`` for a source tree) for names to resolve.  Each
searcher declares the task kinds it can search (``task_kinds``);
:func:`make_searchers` builds searchers from specs and checks them against a task.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from promptsearch.errors import ConfigError
from promptsearch.searchers._registry import (
    ENTRY_POINT_GROUP,
    SearcherInfo,
    available_searchers,
    describe_searchers,
    get_searcher_class,
)
from promptsearch.searchers._spec import convert_value, split_items
from promptsearch.searchers.base import (
    Candidate,
    MetricLog,
    RemainingBudget,
    ScoredPrompt,
    SearchContext,
    Searcher,
    TrainView,
    TrialResult,
    check_task_kind,
)
from promptsearch.task import Task

__all__ = [
    "ENTRY_POINT_GROUP",
    "Candidate",
    "MetricLog",
    "RemainingBudget",
    "ScoredPrompt",
    "SearchContext",
    "Searcher",
    "SearcherInfo",
    "TrainView",
    "TrialResult",
    "available_searchers",
    "check_task_kind",
    "describe_searchers",
    "get_searcher_class",
    "make_searcher",
    "make_searchers",
    "parse_searcher_spec",
]


def parse_searcher_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name:key=value,key=value"`` into the name and typed parameters.

    Values may be JSON (``manual:prompts=["A {sentence} {answer}"]``); see
    :mod:`promptsearch.searchers._spec`.  Each key may be given once.
    """
    name, _, rest = spec.partition(":")
    name = name.strip()
    cls = get_searcher_class(name)
    params: dict[str, Any] = {}
    if not rest.strip():
        return name, params
    signature = inspect.signature(cls.__init__)
    for item in split_items(spec, rest):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"searcher spec {spec!r}: {item!r} is not key=value; "
                "write e.g. 'random-edit:top_k=3,edits_per_candidate=2'"
            )
        if key not in signature.parameters or key == "self":
            raise ConfigError(
                f"searcher {name!r} has no parameter {key!r}; its parameters are "
                f"{cls.param_names()}"
            )
        if key in params:
            raise ConfigError(
                f"searcher spec {spec!r}: parameter {key!r} is given twice; give it once"
            )
        try:
            params[key] = convert_value(raw.strip(), signature.parameters[key])
        except ConfigError as error:
            raise ConfigError(f"searcher {name!r} parameter {key!r}: {error}") from None
    return name, params


def make_searcher(spec: str | Searcher) -> Searcher:
    """A searcher from a spec string (``"name"`` or ``"name:key=value,..."``) or instance."""
    if isinstance(spec, Searcher):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(
            f"a searcher must be a name like 'random-edit' or a Searcher instance; got {spec!r}"
        )
    name, params = parse_searcher_spec(spec)
    try:
        return get_searcher_class(name)(**params)
    except (TypeError, ValueError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"searcher spec {spec!r}: {error}") from None


def make_searchers(
    specs: Sequence[str | Searcher], task: Task | TrainView | None = None
) -> list[Searcher]:
    """:func:`make_searcher` of each spec; with *task*, also check that each searcher
    searches tasks of its kind (its ``task_kinds``), before anything is loaded."""
    if isinstance(specs, (str, Searcher)) or not isinstance(specs, Sequence):
        raise ConfigError(
            "searchers must be a list of searcher specs or Searcher instances, e.g. "
            f"['manual', 'random-edit']; got {specs!r:.80}"
        )
    searchers = [make_searcher(spec) for spec in specs]
    if task is not None:
        for searcher in searchers:
            check_task_kind(searcher, task)
    return searchers

"""Searchers and their registry.

Searchers are found by name.  The built-in ones are listed here; third-party
packages add theirs through the ``promptsearch.searchers`` entry-point group::

    [project.entry-points."promptsearch.searchers"]
    my-method = "my_package.searcher:MyMethodSearcher"
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from importlib.metadata import entry_points
from typing import Any

from promptsearch.errors import ConfigError
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
)

__all__ = [
    "Candidate",
    "MetricLog",
    "RemainingBudget",
    "ScoredPrompt",
    "SearchContext",
    "Searcher",
    "TrainView",
    "TrialResult",
    "available_searchers",
    "get_searcher_class",
    "make_searcher",
    "parse_searcher_spec",
]

ENTRY_POINT_GROUP = "promptsearch.searchers"

# name -> "module:Class"; imported only when asked for
BUILTIN_SEARCHERS: dict[str, str] = {
    "ape": "promptsearch.searchers.ape:ApeSearcher",
    "autoprompt": "promptsearch.searchers.autoprompt:AutoPromptSearcher",
    "label-words": "promptsearch.searchers.label_words:LabelWordsSearcher",
    "manual": "promptsearch.searchers.manual:ManualSearcher",
    "mining": "promptsearch.searchers.mining:MiningSearcher",
    "optuna": "promptsearch.searchers.optuna_search:OptunaSearcher",
    "paraphrase": "promptsearch.searchers.paraphrase:ParaphraseSearcher",
    "random-edit": "promptsearch.searchers.random_edit:RandomEditSearcher",
    "rl": "promptsearch.searchers.rl:RLSearcher",
}


def _targets() -> dict[str, str]:
    targets = dict(BUILTIN_SEARCHERS)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        targets.setdefault(entry.name, entry.value)
    return targets


def available_searchers() -> list[str]:
    """Names of all registered searchers (built-in and from entry points), sorted."""
    return sorted(_targets())


def get_searcher_class(name: str) -> type[Searcher]:
    """The searcher class registered under *name*."""
    targets = _targets()
    if name not in targets:
        close = difflib.get_close_matches(name, list(targets), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"unknown searcher {name!r}{hint}; known searchers: {', '.join(sorted(targets))}"
        )
    module_name, _, attr = targets[name].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (inspect.isclass(cls) and issubclass(cls, Searcher)):
        raise ConfigError(f"searcher {name!r} points to {targets[name]}, which is not a Searcher")
    return cls


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

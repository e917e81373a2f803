"""The searcher registry: the ``promptsearch.searchers`` entry-point group, the one list
of searchers (re-exported by :mod:`promptsearch.searchers`).

The built-in searchers are entry points of promptsearch itself, declared in its
``pyproject.toml``; other packages add theirs to the same group.  Nothing is kept in a
second list here: a name is a searcher when the installed package metadata says so.

Choices made here:

* promptsearch's own entry points come first: another package's entry point of the
  same name is ignored, with a logged warning.  Between two other packages, the first
  one found wins (also with a warning).
* Without promptsearch's package metadata (a source tree that was never installed, on
  ``sys.path`` by hand) no searcher can be found by name; asking for one raises a
  :class:`~promptsearch.errors.PromptSearchError` that says to install the project
  (``pip install -e .``).  Searcher *instances* work without the registry.  Metadata
  without the group (an install older than the entry points) is refused the same way.
* A class is loaded only when asked for, and must be a
  :class:`~promptsearch.searchers.base.Searcher` subclass whose ``name`` is its
  entry-point name (the study stores searchers by that name and finds them again by it).
"""

from __future__ import annotations

import difflib
import inspect
import logging
from dataclasses import dataclass
from importlib.metadata import EntryPoint, PackageNotFoundError, distribution, entry_points

from promptsearch.errors import ConfigError, PromptSearchError
from promptsearch.searchers.base import Searcher, declared_task_kinds
from promptsearch.task import TaskKind

__all__ = [
    "DISTRIBUTION",
    "ENTRY_POINT_GROUP",
    "SearcherInfo",
    "available_searchers",
    "describe_searchers",
    "get_searcher_class",
]

ENTRY_POINT_GROUP = "promptsearch.searchers"
"""The entry-point group that registers searchers, built-in ones included."""

DISTRIBUTION = "promptsearch"
"""The distribution whose entry points are the built-in searchers."""

_log = logging.getLogger("promptsearch")


@dataclass(frozen=True)
class SearcherInfo:
    """What ``promptsearch searchers`` shows of one registered searcher."""

    name: str
    target: str
    """Where the entry point points: ``module:Class``."""
    package: str
    """The distribution that registers it (``promptsearch`` for the built-in ones)."""
    summary: str = ""
    """The first line of the class docstring."""
    task_kinds: tuple[TaskKind, ...] = ()
    needs_model: bool = False
    params: tuple[str, ...] = ()
    error: str = ""
    """Why the class cannot be used (it cannot be imported, is no Searcher, has another
    name or declares bad ``task_kinds``); the other fields are then empty."""


def _package(entry: EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    return str(dist.name) if dist is not None else "an unknown package"


def _registered() -> dict[str, EntryPoint]:
    """Every registered searcher by name: promptsearch's own first, then the others."""
    try:
        own = distribution(DISTRIBUTION)
    except PackageNotFoundError:
        raise PromptSearchError(
            "promptsearch's package metadata is missing, and its searchers are registered "
            f"there (entry-point group {ENTRY_POINT_GROUP!r}): install the project, e.g. "
            "'pip install -e .' in its source tree, instead of putting the tree on sys.path"
        ) from None
    found = {e.name: e for e in own.entry_points.select(group=ENTRY_POINT_GROUP)}
    if not found:
        raise PromptSearchError(
            f"the installed metadata of promptsearch {own.version} registers no searchers "
            f"(entry-point group {ENTRY_POINT_GROUP!r}); it is older than this source "
            "tree: reinstall the project ('pip install -e .')"
        )
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        package = _package(entry)
        if package.replace("_", "-").lower() == DISTRIBUTION:
            continue
        if entry.name in found:
            if found[entry.name].value != entry.value:
                _log.warning(
                    "searcher %r of package %s (%s) is ignored: %s already registers %r (%s)",
                    entry.name,
                    package,
                    entry.value,
                    _package(found[entry.name]),
                    entry.name,
                    found[entry.name].value,
                )
            continue
        found[entry.name] = entry
    return found


def available_searchers() -> list[str]:
    """Names of all registered searchers (built-in and from other packages), sorted."""
    return sorted(_registered())


def get_searcher_class(name: str) -> type[Searcher]:
    """The searcher class registered under *name*."""
    registered = _registered()
    if name not in registered:
        close = difflib.get_close_matches(name, list(registered), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"unknown searcher {name!r}{hint}; known searchers: {', '.join(sorted(registered))}"
        )
    return _load(name, registered[name])


def _load(name: str, entry: EntryPoint) -> type[Searcher]:
    try:
        cls = entry.load()
    except (ImportError, AttributeError) as error:
        raise ConfigError(
            f"searcher {name!r} ({entry.value}, registered by {_package(entry)}) cannot be "
            f"loaded: {type(error).__name__}: {error}"
        ) from None
    if not (inspect.isclass(cls) and issubclass(cls, Searcher)):
        raise ConfigError(f"searcher {name!r} points to {entry.value}, which is not a Searcher")
    if cls.name != name:
        raise ConfigError(
            f"searcher {name!r} points to {entry.value}, whose name is {cls.name!r}; the "
            "entry-point name and the class's name attribute must be the same"
        )
    return cls


def describe_searchers() -> list[SearcherInfo]:
    """Every registered searcher with its summary, task kinds and parameters, by name
    (for ``promptsearch searchers``; imports every searcher class).  A searcher that
    cannot be used is listed too, with the reason in :attr:`SearcherInfo.error`."""
    infos = []
    for name, entry in sorted(_registered().items()):
        package = _package(entry)
        try:
            cls = _load(name, entry)
            kinds = declared_task_kinds(cls)
        except ConfigError as error:
            infos.append(SearcherInfo(name, entry.value, package, error=str(error)))
            continue
        doc = (cls.__doc__ or "").strip()
        infos.append(
            SearcherInfo(
                name,
                entry.value,
                package,
                summary=doc.splitlines()[0] if doc else "",
                task_kinds=kinds,
                needs_model=cls.needs_model,
                params=tuple(cls.param_names()),
            )
        )
    return infos

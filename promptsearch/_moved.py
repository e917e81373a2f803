"""Old module paths of the flat layout, kept importable for one release.

``import promptsearch.scorer`` still works: a finder on :data:`sys.meta_path` answers
the old name with the module at its new path (the same module object, so
``isinstance`` checks and monkeypatching behave as before) and emits a
:class:`DeprecationWarning` that names the new path.  The moves are listed in
``docs/changelog.md``; private (underscore) modules are not kept.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Final

__all__ = ["MOVED", "MovedModuleFinder", "install"]

MOVED: Final = {
    "promptsearch.budget": "promptsearch.study.budget",
    "promptsearch.calibration": "promptsearch.scoring.calibration",
    "promptsearch.ensemble": "promptsearch.study.ensemble",
    "promptsearch.heldout": "promptsearch.evaluation",
    "promptsearch.loaders": "promptsearch.tasks.loaders",
    "promptsearch.model": "promptsearch.models",
    "promptsearch.racing": "promptsearch.study.racing",
    "promptsearch.results": "promptsearch.study.results",
    "promptsearch.scorer": "promptsearch.scoring.scorer",
    "promptsearch.selection": "promptsearch.study.selection",
    "promptsearch.serve": "promptsearch.generators.server",
    "promptsearch.stats": "promptsearch.evaluation.stats",
    "promptsearch.storage.models": "promptsearch.storage.orm",
    "promptsearch.worker": "promptsearch.study.worker",
}
"""Old module path -> the module now holding its public names."""


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths in :data:`MOVED` and loads them as the new module."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} has moved to {new}; import it from there "
            f"({spec.name} goes away in the next release)",
            DeprecationWarning,
            stacklevel=2,  # past the import system's frames: the importing line
        )
        module = importlib.import_module(new)
        spec.loader_state = module.__spec__  # the import system overwrites __spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        alias_spec = module.__spec__
        if alias_spec is not None and alias_spec.loader is self:
            module.__spec__ = alias_spec.loader_state  # the module's own spec back


def install() -> None:
    """Put the finder on :data:`sys.meta_path` (once)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())

"""The old flat module paths (``promptsearch.scorer``, ...) still import, for one release:
as the very module at the new path, with a DeprecationWarning naming that path."""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Iterator

import pytest

import promptsearch
from promptsearch._moved import MOVED


@pytest.fixture
def fresh_old_paths() -> Iterator[None]:
    """Forget the old names, so each import goes through the finder again."""

    def forget() -> None:
        for old in MOVED:
            sys.modules.pop(old, None)
            parent, _, leaf = old.rpartition(".")
            if parent in sys.modules:
                vars(sys.modules[parent]).pop(leaf, None)

    forget()
    yield
    forget()


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_the_new_module_with_a_warning(old: str, fresh_old_paths: None) -> None:
    new = MOVED[old]
    with pytest.warns(DeprecationWarning) as caught:
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    message = str(caught[0].message)
    assert message.startswith(f"{old} has moved to {new};")
    assert module.__name__ == new
    assert module.__spec__ is not None and module.__spec__.name == new


def test_names_and_monkeypatching_go_through_the_old_path(
    fresh_old_paths: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promptsearch.scoring.scorer as scorer_module
    from promptsearch.models.base import LanguageModel

    with pytest.warns(DeprecationWarning, match="promptsearch.models"):
        from promptsearch.model import LanguageModel as old_language_model
    assert old_language_model is LanguageModel
    with pytest.warns(DeprecationWarning, match="promptsearch.scoring.scorer"):
        import promptsearch.scorer as old_scorer
    monkeypatch.setattr(old_scorer, "Scorer", None)
    assert scorer_module.Scorer is None


def test_the_warning_points_at_the_importing_line(fresh_old_paths: None) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        __import__("promptsearch.stats")  # an import statement, without importlib's frame
    assert caught[0].filename == __file__


def test_other_names_are_still_missing() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("promptsearch.no_such_module")
    with pytest.raises(AttributeError):
        _ = promptsearch.no_such_name

"""The searcher registry (the ``promptsearch.searchers`` entry points, the one list of
searchers) and the task kinds searchers declare."""

from __future__ import annotations

import logging
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest

import promptsearch.searchers as searchers_package
from promptsearch import PromptSearchError, search
from promptsearch.errors import ConfigError
from promptsearch.searchers import (
    ENTRY_POINT_GROUP,
    Searcher,
    available_searchers,
    check_task_kind,
    describe_searchers,
    get_searcher_class,
    make_searcher,
    make_searchers,
    parse_searcher_spec,
)
from promptsearch.searchers.base import declared_task_kinds
from promptsearch.task import TASK_KINDS
from promptsearch.testing.searchers import contract_task

ROOT = Path(__file__).resolve().parents[1]


def _declared_in_pyproject() -> dict[str, str]:
    with open(ROOT / "pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    entries: dict[str, str] = project["entry-points"][ENTRY_POINT_GROUP]
    return entries


def test_the_installed_entry_points_are_the_ones_pyproject_declares() -> None:
    # a stale install (pip install -e . not rerun after adding a searcher) fails here
    installed = {
        e.name: e.value
        for e in distribution("promptsearch").entry_points.select(group=ENTRY_POINT_GROUP)
    }
    assert installed == _declared_in_pyproject()


@pytest.mark.parametrize("name", sorted(_declared_in_pyproject()))
def test_every_built_in_entry_point_is_a_searcher_of_that_name(name: str) -> None:
    cls = get_searcher_class(name)
    assert isinstance(cls, type) and issubclass(cls, Searcher)
    assert cls.name == name
    assert f"{cls.__module__}:{cls.__qualname__}" == _declared_in_pyproject()[name]
    assert "task_kinds" in vars(cls), f"{cls.__name__} declares its task kinds itself"
    assert set(declared_task_kinds(cls)) <= set(TASK_KINDS)


def test_there_is_no_second_list() -> None:
    assert not hasattr(searchers_package, "BUILTIN_SEARCHERS")
    assert set(_declared_in_pyproject()) <= set(available_searchers())


def test_describe_searchers_shows_the_task_kinds() -> None:
    infos = {info.name: info for info in describe_searchers()}
    assert list(infos) == available_searchers()
    assert infos["label-words"].task_kinds == ("classification",)
    assert infos["manual"].task_kinds == ("classification", "generation")
    assert infos["random-edit"].package == "promptsearch"
    assert infos["random-edit"].target == "promptsearch.searchers.random_edit:RandomEditSearcher"
    assert "top_k" in infos["random-edit"].params
    assert infos["rl"].needs_model and not infos["manual"].needs_model
    assert all(info.summary for info in infos.values())


def test_the_spec_functions_still_work() -> None:
    assert parse_searcher_spec("random-edit:top_k=3") == ("random-edit", {"top_k": 3})
    searcher = make_searcher("random-edit:top_k=3")
    assert searcher.name == "random-edit" and searcher.get_params()["top_k"] == 3
    with pytest.raises(ConfigError, match="did you mean random-edit"):
        get_searcher_class("random-edits")


def test_without_package_metadata_names_cannot_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        raise PackageNotFoundError(name)

    monkeypatch.setattr("promptsearch.searchers._registry.distribution", missing)
    with pytest.raises(PromptSearchError, match=r"metadata is missing.*pip install -e \.") as info:
        available_searchers()
    assert "\n" not in str(info.value)
    with pytest.raises(PromptSearchError, match="metadata is missing"):
        make_searcher("manual")
    from promptsearch.searchers.manual import ManualSearcher

    instance = ManualSearcher()
    assert make_searchers([instance], contract_task()) == [instance]  # no registry needed


# -- third-party entry points, from a real dist-info folder on sys.path ------------------------


PLUGIN = '''
from promptsearch.searchers.manual import ManualSearcher


class EchoSearcher(ManualSearcher):
    """Echo: the seed prompts (a test plugin)."""

    name = "echo"
    task_kinds = ("generation",)


class ClashSearcher(ManualSearcher):
    name = "manual"


class MisnamedSearcher(ManualSearcher):
    name = "other-name"


PLUGIN_CONSTANT = 42
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "ps_test_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "ps_test_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ps-test-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "echo = ps_test_plugin:EchoSearcher\n"
        "manual = ps_test_plugin:ClashSearcher\n"
        "misnamed = ps_test_plugin:MisnamedSearcher\n"
        "broken = ps_test_plugin_missing:Nothing\n"
        "not-a-class = ps_test_plugin:PLUGIN_CONSTANT\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("ps_test_plugin", None)


def test_a_third_party_searcher_is_found_by_its_entry_point(
    plugin: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="promptsearch"):
        names = available_searchers()
    assert {"echo", "misnamed", "broken"} <= set(names)
    assert get_searcher_class("echo").__name__ == "EchoSearcher"
    # promptsearch's own searcher keeps its name; the clash is logged
    assert get_searcher_class("manual").__module__ == "promptsearch.searchers.manual"
    assert "searcher 'manual' of package ps-test-plugin" in caplog.text
    infos = {info.name: info for info in describe_searchers()}
    assert infos["echo"].package == "ps-test-plugin" and not infos["echo"].error
    assert infos["echo"].task_kinds == ("generation",)
    assert infos["echo"].summary == "Echo: the seed prompts (a test plugin)."
    # the broken ones are listed with the reason, and the others still are
    assert "ModuleNotFoundError" in infos["broken"].error and infos["broken"].params == ()
    assert "whose name is 'other-name'" in infos["misnamed"].error
    assert infos["random-edit"].task_kinds == ("classification", "generation")


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("misnamed", "whose name is 'other-name'; the entry-point name and the class's name"),
        ("broken", r"cannot be loaded: ModuleNotFoundError"),
        ("not-a-class", "which is not a Searcher"),
    ],
)
def test_a_bad_third_party_entry_point_gets_one_clear_line(
    plugin: Path, name: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        get_searcher_class(name)
    assert "\n" not in str(info.value)
    assert repr(name) in str(info.value)


# -- task kinds ------------------------------------------------------------------------------


def test_a_searcher_on_a_task_of_another_kind_gets_one_error() -> None:
    generation = contract_task("generation")
    with pytest.raises(ConfigError) as info:
        make_searchers(["manual", "label-words"], generation)
    message = str(info.value)
    assert "'label-words'" in message and "generation task" in message
    assert "classification tasks only" in message and "\n" not in message
    built = make_searchers(["manual", "random-edit"], generation)
    assert [s.name for s in built] == ["manual", "random-edit"]
    check_task_kind(get_searcher_class("label-words"), contract_task())  # a class works too


def test_make_searchers_refuses_a_bare_string() -> None:
    with pytest.raises(ConfigError, match="must be a list of searcher specs"):
        make_searchers("manual")  # a str is a Sequence, but not a list of specs


def test_search_refuses_the_task_kind_before_loading_a_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_model(*args: object) -> Any:
        raise AssertionError("the model was loaded before the task kind was checked")

    monkeypatch.setattr("promptsearch.api._model", no_model)
    with pytest.raises(ConfigError, match="searcher 'rl' searches classification tasks only"):
        search(
            contract_task("generation"),
            searchers=["manual", "rl"],
            storage=str(tmp_path / "db.sqlite"),
        )
    assert not (tmp_path / "db.sqlite").exists()


class _NoScorer:
    """A scorer that must never be asked: the study refuses its searchers first."""

    model = None
    fingerprint = "n" * 64

    def score(self, *args: object) -> Any:
        raise AssertionError("scored before the task kind was checked")


def test_a_study_built_directly_refuses_the_task_kind_before_storing(tmp_path: Path) -> None:
    from promptsearch.storage import open_storage
    from promptsearch.study import Study

    storage = open_storage(str(tmp_path / "db.sqlite"))
    try:
        with pytest.raises(ConfigError, match="searcher 'rl' searches classification tasks only"):
            Study("direct", contract_task("generation"), _NoScorer(), ["manual", "rl"], 4, storage)
        assert storage.list_studies() == []
    finally:
        storage.close()


@pytest.mark.parametrize(
    "kinds",
    [(), ("classification", "classification"), ("classify",), "classification", ["generation"]],
)
def test_a_bad_task_kinds_declaration_is_named(kinds: Any) -> None:
    class OddSearcher(Searcher):
        name = "odd"
        task_kinds = kinds

        def propose(self, n: int) -> list[Any]:
            return []

    with pytest.raises(ConfigError, match=r"searcher 'odd' .*declares task_kinds=.*e\.g\."):
        check_task_kind(OddSearcher, contract_task())

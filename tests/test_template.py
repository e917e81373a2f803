from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptsearch.errors import TemplateError
from promptsearch.template import Template


def test_split_and_fields() -> None:
    t = Template("Review: {sentence}\nSentiment: {answer}.")
    assert t.fields == ("sentence",)
    assert t.split({"sentence": "Great fun"}) == ("Review: Great fun\nSentiment: ", ".")


def test_literal_braces_render_as_single_braces() -> None:
    t = Template("{{json}} {x} -> {answer} }}")
    assert t.split({"x": "1"}) == ("{json} 1 -> ", " }")


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("{x} no answer", "0 {answer} slots"),
        ("{answer} {answer}", "2 {answer} slots"),
        ("{x:>10} {answer}", "not allowed"),
        ("{x!r} {answer}", "not allowed"),
        ("{0} {answer}", "not allowed"),
        ("{x.__class__} {answer}", "not allowed"),
        ("{x[0]} {answer}", "not allowed"),
        ("{ {answer}", "not allowed"),
        ("{answer} {x", "never closed"),
        ("} {answer}", "single '}'"),
    ],
)
def test_hostile_templates_get_clear_errors(source: str, fragment: str) -> None:
    with pytest.raises(TemplateError, match="template") as info:
        Template(source)
    assert fragment in str(info.value)


def test_unknown_field_is_named() -> None:
    with pytest.raises(TemplateError, match=r"unknown field\(s\) \['text'\].*\['sentence'\]"):
        Template("{text} {answer}").check_fields(["sentence"])


def test_values_with_braces_are_inserted_verbatim() -> None:
    t = Template("{x} {answer}")
    assert t.split({"x": "{answer} {0:>3}"}) == ("{answer} {0:>3} ", "")


literal = st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=20)
names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(lambda n: n != "answer")


@given(before=literal, name=names, middle=literal, after=literal, value=st.text(max_size=30))
def test_render_is_concatenation(
    before: str, name: str, middle: str, after: str, value: str
) -> None:
    t = Template(before + "{" + name + "}" + middle + "{answer}" + after)
    assert t.split({name: value}) == (before + value + middle, after)
    assert t.render({name: value}, "ANS") == before + value + middle + "ANS" + after


@given(text=literal, name=names)
def test_skeleton_round_trips(text: str, name: str) -> None:
    source = text.replace("x", "{{x}}") + "{" + name + "}{answer}"
    t = Template(source)
    assert Template(t.skeleton()).split({name: "v"}) == t.split({name: "v"})


@given(st.text(max_size=40))
def test_parser_never_crashes_unexpectedly(source: str) -> None:
    with contextlib.suppress(TemplateError):
        Template(source)

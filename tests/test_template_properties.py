"""Property-based tests of the template parser and renderer, and of prompt identity.

The template syntax is a strict subset of :meth:`str.format` (``{identifier}`` slots,
``{{``/``}}`` escapes), so ``str.format`` is the oracle: whatever the parser accepts,
``str.format`` renders the same way; whatever ``str.format`` reads as plain slots,
the parser accepts.  Values are inserted verbatim, however many braces and format
specifiers they hold, and two prompts that render alike share one content hash.
"""

from __future__ import annotations

import re
import string
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from promptsearch.errors import TemplateError
from promptsearch.prompt import Prompt
from promptsearch.template import ANSWER, Literal, Slot, Template

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# any text, braces and format-looking pieces included, with a bias towards them
nasty_text = st.text(
    alphabet=st.one_of(
        st.sampled_from("{}!:rsa0_.[] %()\n\t"),
        st.characters(exclude_categories=["Cs"]),
    ),
    max_size=16,
)
names = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
    st.sampled_from(["__class__", "self", "if", "format", "é", "字段"]),
).filter(lambda name: name != ANSWER)
segments = st.lists(
    st.one_of(st.tuples(st.just("text"), nasty_text), st.tuples(st.just("slot"), names)),
    max_size=7,
)


def escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@st.composite
def templates(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    """A valid template source and the segments it was written from (answer included)."""
    parts = draw(segments)
    parts.insert(draw(st.integers(0, len(parts))), ("slot", ANSWER))
    source = "".join(escape(v) if kind == "text" else "{" + v + "}" for kind, v in parts)
    return source, parts


@PROPERTY
@given(templates())
def test_written_templates_parse_to_what_was_written(case: tuple[str, list[Any]]) -> None:
    source, parts = case
    template = Template(source)
    assert template.skeleton() == source  # the source is already the canonical form
    slots = [v for kind, v in parts if kind == "slot"]
    assert template.fields == tuple(dict.fromkeys(n for n in slots if n != ANSWER))
    # literal runs come back merged and unescaped, slots in order
    expected: list[Literal | Slot] = []
    for kind, value in parts:
        if kind == "slot":
            expected.append(Slot(value))
        elif value:
            if expected and isinstance(expected[-1], Literal):
                expected[-1] = Literal(expected[-1].text + value)
            else:
                expected.append(Literal(value))
    assert list(template.parts) == expected


@PROPERTY
@given(templates(), st.dictionaries(names, nasty_text), nasty_text, nasty_text)
def test_render_agrees_with_str_format_and_inserts_values_verbatim(
    case: tuple[str, list[Any]], given_values: dict[str, str], default: str, answer: str
) -> None:
    source, parts = case
    template = Template(source)
    values = {name: given_values.get(name, default) for name in template.fields}
    rendered = template.render(values, answer)
    assert rendered == source.format(**values, answer=answer)
    # built by hand: literal text, and each value exactly as given (never formatted again)
    by_hand = "".join(
        v if kind == "text" else (answer if v == ANSWER else values[v]) for kind, v in parts
    )
    assert rendered == by_hand
    before, after = template.split(values)
    assert before + answer + after == rendered
    assert template.render(values, answer) == rendered  # rendering has no state


@PROPERTY
@given(st.text(alphabet=st.sampled_from("{}!:rsa0_.[] x"), max_size=24) | nasty_text)
def test_the_parser_agrees_with_str_format_on_any_text(source: str) -> None:
    try:
        template = Template(source)
    except TemplateError as error:
        accepted = False
        message = str(error)
        assert repr(source) in message
        position = re.search(r"at position (\d+)", message)
        if position is not None:
            assert source[int(position.group(1))] in "{}"
    except Exception as error:  # pragma: no cover - the property under test
        raise AssertionError(f"Template({source!r}) raised {error!r}") from error
    else:
        accepted = True
        values = {name: f"<{name}>" for name in template.fields}
        assert template.render(values, "ANS") == source.format(**values, answer="ANS")
    plain = _format_sees_only_plain_slots(source)
    if plain is not None and ":" not in source and "!" not in source:
        assert accepted == (plain.count(ANSWER) == 1), source
    if accepted:
        assert plain is not None and plain.count(ANSWER) == 1


def _format_sees_only_plain_slots(source: str) -> list[str] | None:
    """The slot names if str.format reads *source* as plain ``{identifier}`` slots."""
    try:
        parsed = list(string.Formatter().parse(source))
    except ValueError:
        return None
    slots = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion is not None:
            return None
        slots.append(name)
    return slots


@PROPERTY
@given(templates(), nasty_text, st.sampled_from(["", " ", "\n", " \t\n "]))
def test_equal_renderings_share_one_hash(
    case: tuple[str, list[Any]], instruction: str, blank: str
) -> None:
    source, _ = case
    template = Template(source)
    plain = Prompt(source)
    # a blank instruction renders nothing, so it changes nothing
    assert Prompt(source, instruction=blank).content_hash == plain.content_hash
    assume(instruction.strip())
    # an instruction renders exactly like the same text written into the template
    with_instruction = Prompt(source, instruction=instruction)
    written_in = Prompt(escape(instruction) + "\n\n" + source)
    values = {name: f"[{name}]" for name in template.fields}
    assert with_instruction.render(values) == written_in.render(values)
    assert with_instruction.content_hash == written_in.content_hash
    assert with_instruction.content_hash != plain.content_hash


@PROPERTY
@given(templates(), templates())
def test_different_templates_have_different_hashes(
    first: tuple[str, list[Any]], second: tuple[str, list[Any]]
) -> None:
    assume(first[0] != second[0])
    assert Prompt(first[0]).content_hash != Prompt(second[0]).content_hash


@PROPERTY
@given(
    templates(),
    nasty_text,
    st.dictionaries(
        st.sampled_from(["0", "1", "2"]),
        st.lists(st.text(min_size=1, max_size=6).filter(str.strip), min_size=1, max_size=3),
        min_size=1,
    ),
)
def test_prompts_survive_a_round_trip_through_json(
    case: tuple[str, list[Any]], instruction: str, verbalizer: dict[str, list[str]]
) -> None:
    prompt = Prompt(case[0], instruction=instruction, verbalizer=verbalizer)
    again = Prompt.from_dict(prompt.to_dict())
    assert again == prompt
    assert again.content_hash == prompt.content_hash
    # the order in which the verbalizer was written does not matter
    backwards = Prompt(
        case[0], instruction=instruction, verbalizer=dict(reversed(list(verbalizer.items())))
    )
    assert backwards.content_hash == prompt.content_hash


@PROPERTY
@given(templates(), nasty_text)
def test_the_hash_covers_every_value_a_template_can_hold(
    case: tuple[str, list[Any]], extra: str
) -> None:
    source, _ = case
    assume(extra)
    # one more literal character anywhere changes the prompt, and so its hash
    changed = escape(extra) + source
    assert Prompt(changed).content_hash != Prompt(source).content_hash

"""Prompt templates: literal text with ``{field}`` slots and one ``{answer}`` slot.

The syntax is a strict subset of :meth:`str.format`: ``{name}`` where *name* is a
Python identifier, and ``{{`` / ``}}`` for literal braces.  Format specifiers and
conversions (``{x:>10}``, ``{x!r}``), attribute access and positional slots are
rejected, so a template taken from a user or a searcher can never run code or
raise deep inside rendering.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from promptsearch.errors import TemplateError

__all__ = ["ANSWER", "Literal", "Slot", "Template"]

ANSWER = "answer"
"""Name of the slot where the model's answer goes."""


@dataclass(frozen=True)
class Literal:
    """A run of literal text."""

    text: str


@dataclass(frozen=True)
class Slot:
    """A ``{name}`` placeholder."""

    name: str


Part = Literal | Slot


def _parse(source: str) -> tuple[Part, ...]:
    parts: list[Part] = []
    text: list[str] = []
    i = 0
    n = len(source)
    while i < n:
        char = source[i]
        if char == "{":
            if source.startswith("{{", i):
                text.append("{")
                i += 2
                continue
            close = source.find("}", i + 1)
            if close < 0:
                raise TemplateError(
                    f"template {source!r}: '{{' at position {i} is never closed; "
                    "write '{{' for a literal brace"
                )
            name = source[i + 1 : close]
            if not name.isidentifier():
                raise TemplateError(
                    f"template {source!r}: slot {{{name}}} at position {i} is not allowed; "
                    "slots are {field_name} with a plain identifier (no format specs, "
                    "conversions or indexing); write '{{' and '}}' for literal braces"
                )
            if text:
                parts.append(Literal("".join(text)))
                text = []
            parts.append(Slot(name))
            i = close + 1
        elif char == "}":
            if source.startswith("}}", i):
                text.append("}")
                i += 2
                continue
            raise TemplateError(
                f"template {source!r}: single '}}' at position {i}; "
                "write '}}' for a literal brace"
            )
        else:
            text.append(char)
            i += 1
    if text:
        parts.append(Literal("".join(text)))
    return tuple(parts)


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class Template:
    """A parsed template with exactly one ``{answer}`` slot.

    >>> t = Template("Review: {sentence}\\nSentiment: {answer}")
    >>> t.fields
    ('sentence',)
    >>> t.split({"sentence": "Great."})
    ('Review: Great.\\nSentiment: ', '')
    """

    source: str
    parts: tuple[Part, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            raise TemplateError(f"template must be a string, got {type(self.source).__name__}")
        parts = _parse(self.source)
        answers = sum(1 for p in parts if isinstance(p, Slot) and p.name == ANSWER)
        if answers != 1:
            raise TemplateError(
                f"template {self.source!r} has {answers} {{{ANSWER}}} slots; it needs "
                "exactly one, where the model's answer goes "
                f"(e.g. '{{sentence}} It was {{{ANSWER}}}.')"
            )
        object.__setattr__(self, "parts", parts)

    @property
    def fields(self) -> tuple[str, ...]:
        """Input field names in order of first appearance (the answer slot excluded)."""
        seen: dict[str, None] = {}
        for part in self.parts:
            if isinstance(part, Slot) and part.name != ANSWER:
                seen.setdefault(part.name, None)
        return tuple(seen)

    def check_fields(self, allowed: tuple[str, ...] | list[str]) -> None:
        """Raise :class:`TemplateError` if the template uses a field not in *allowed*."""
        unknown = [name for name in self.fields if name not in allowed]
        if unknown:
            raise TemplateError(
                f"template {self.source!r} uses unknown field(s) {unknown}; "
                f"the task's input fields are {list(allowed)}"
            )

    def _fill(self, parts: tuple[Part, ...], values: Mapping[str, str]) -> str:
        out: list[str] = []
        for part in parts:
            if isinstance(part, Literal):
                out.append(part.text)
            else:
                try:
                    out.append(str(values[part.name]))
                except KeyError:
                    raise TemplateError(
                        f"template {self.source!r} needs field {part.name!r}, but the "
                        f"example only has {sorted(values)}"
                    ) from None
        return "".join(out)

    def split(self, values: Mapping[str, str]) -> tuple[str, str]:
        """Render the text before and after the answer slot."""
        index = next(
            i for i, p in enumerate(self.parts) if isinstance(p, Slot) and p.name == ANSWER
        )
        return self._fill(self.parts[:index], values), self._fill(self.parts[index + 1 :], values)

    def render(self, values: Mapping[str, str], answer: str) -> str:
        """Render the whole template with *answer* in the answer slot."""
        before, after = self.split(values)
        return before + answer + after

    def skeleton(self) -> str:
        """The template in canonical form (escapes normalised), for hashing."""
        return "".join(
            _escape(p.text) if isinstance(p, Literal) else "{" + p.name + "}" for p in self.parts
        )

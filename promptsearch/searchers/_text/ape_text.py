"""Text helpers of the ``ape`` searcher: default meta-prompts, placeholders, cleaning.

The meta-prompts are plain strings with ``{name}`` placeholders filled in one pass
(text that happens to contain ``{output}`` or ``{demos}`` is never filled again).
Any other braces are literal, so a meta-prompt may show JSON or code.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Container, Mapping, Sequence

from promptsearch.errors import ConfigError

__all__ = [
    "DEMO_TEMPLATE",
    "FORWARD_TEMPLATE",
    "INSERT_TEMPLATE",
    "RESAMPLE_TEMPLATE",
    "SKIP_REASONS",
    "Cleaner",
    "check_placeholders",
    "check_stop",
    "dedup_key",
    "fill",
]

FORWARD_TEMPLATE = """Below are examples of a task. Every output was made from its input by \
following the same instruction.

{demos}

In one sentence, the instruction asked to"""
"""Forward generation: the generator continues the text with the instruction.
``{demos}`` is the block of demonstrations.  The cue ends mid-sentence, so the
generator writes a verb phrase ("add the two numbers"); its first letter is
capitalised to make the instruction."""

INSERT_TEMPLATE = """Instruction: {instruction}

{demos}"""
"""Insert (fill-in-the-blank) generation: ``{instruction}`` marks the blank, before
the demonstrations, which a generator that can infill fills in (a T5-style model
gets its first sentinel token there)."""

RESAMPLE_TEMPLATE = """Reword each instruction so that it means the same thing.

Instruction: Name the capital city of the given country.
Reworded: Give the capital of the country.

Instruction: Turn every letter of the text into upper case.
Reworded: Write the text in capital letters.

Instruction: {instruction}
Reworded:"""
"""Resampling: a variation of one of the best instructions so far (``{instruction}``).
``{demos}`` may appear too (optional), to show the task while rewording."""

DEMO_TEMPLATE = "Input: {input}\nOutput: {output}"
"""How one train example is shown: ``{input}`` (its input fields; ``name: value``
lines when there are several) and ``{output}`` (its answer as the prompt would
say it: the verbalizer word of a classification label)."""

DEMO_SEPARATOR = "\n\n"

MAX_JUNK = 0.3
"""A generated text with a larger share of replacement or control characters is
malformed; a smaller share is removed."""

SKIP_REASONS = ("empty", "malformed", "too_long", "echo", "duplicate")
"""Why a generated text can be dropped; each is counted as ``skipped.<reason>``."""

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LABEL = re.compile(
    r"^(?:the\s+)?(?:new\s+|reworded\s+)?(?:instruction|reworded|rewording|variation|"
    r"new version|answer)\s*(?:was|is)?\s*[:\-]\s*",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])")
_QUOTES = "\"'`“”‘’«»"
_CLOSING = {"“": "”", "‘": "’", "«": "»"}
_WORD = re.compile(r"[^\W\d_]+")


def check_placeholders(
    text: object,
    label: str,
    *,
    required: Sequence[str],
    optional: Sequence[str] = (),
    owner: str,
) -> str:
    """Return *text* if it holds each *required* placeholder once, *optional* ones at
    most once, and no other ``{name}``; else raise :class:`ConfigError`."""
    allowed = [*required, *optional]
    shown = ", ".join("{" + name + "}" for name in allowed)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(
            f"{owner}: {label} must be a non-empty string with the placeholder(s) {shown}; "
            f"got {text!r:.120}"
        )
    found = _PLACEHOLDER.findall(text)
    unknown = sorted({name for name in found if name not in allowed})
    if unknown:
        raise ConfigError(
            f"{owner}: {label} has unknown placeholder(s) "
            f"{', '.join('{' + u + '}' for u in unknown)}; allowed: {shown}; got {text!r:.120}"
        )
    for name in allowed:
        count = found.count(name)
        if name in required and count != 1:
            raise ConfigError(
                f"{owner}: {label} must contain {{{name}}} exactly once (found {count}); "
                f"got {text!r:.120}"
            )
        if count > 1:
            raise ConfigError(
                f"{owner}: {label} may contain {{{name}}} at most once (found {count}); "
                f"got {text!r:.120}"
            )
    return text


def check_stop(stop: object, *, owner: str) -> tuple[str, ...]:
    """*stop* as a tuple if it is a list of at most 8 non-empty strings, else a
    :class:`ConfigError` naming ``stop``."""
    if (
        isinstance(stop, str)
        or not isinstance(stop, Sequence)
        or len(stop) > 8
        or not all(isinstance(s, str) and s for s in stop)
    ):
        raise ConfigError(
            f"{owner}: stop must be a list of at most 8 non-empty strings, e.g. ['\\n']; "
            f"got {stop!r}"
        )
    return tuple(stop)


def fill(template: str, values: Mapping[str, str]) -> str:
    """*template* with each ``{name}`` in *values* replaced, in a single pass."""

    def swap(match: re.Match[str]) -> str:
        name = match.group(1)
        return values[name] if name in values else match.group(0)

    return _PLACEHOLDER.sub(swap, template)


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def dedup_key(text: str) -> str:
    """What two instructions must share to count as the same: case, spacing and final
    punctuation aside."""
    return _normal(text).rstrip(" .!?;:")


def _literal_pieces(template: str) -> list[str]:
    """The fixed text of a template, split at placeholders, line breaks and sentence ends."""
    pieces: list[str] = []
    for chunk in _PLACEHOLDER.split(template)[::2]:  # split() interleaves the names
        for line in chunk.split("\n"):
            pieces.extend(part.strip() for part in _SENTENCE_END.split(line))
    return [p for p in pieces if p]


class Cleaner:
    """Turns a generated text into an instruction, or says why it is dropped.

    Steps: remove stray replacement and control characters; cut at the first blank
    line and at the stop strings; drop a leading label ("Instruction:"), surrounding
    quotes and, with *first_sentence*, all but the first sentence; capitalise the first
    letter.  Dropped: empty texts; malformed ones (not a string, no letters, or more
    than :data:`MAX_JUNK` of broken characters); texts over *max_chars*; duplicates;
    texts that echo the meta-prompt (a copy of part of the request, a sentence of the
    meta-prompt's own wording, or a text that starts like a demonstration).
    """

    def __init__(
        self,
        meta_templates: Sequence[str],
        demo_template: str,
        *,
        stop: Sequence[str],
        max_chars: int,
        first_sentence: bool,
    ) -> None:
        self.stop = tuple(stop)
        self.max_chars = max_chars
        self.first_sentence = first_sentence
        # sentences of the meta-prompts' own wording (4+ words): a text holding one echoes
        self._wording = sorted(
            {
                _normal(piece)
                for template in meta_templates
                for piece in _literal_pieces(template)
                if len(piece.split()) >= 4
            }
        )
        # the labels of a demonstration ("Input:", "Output:"): a text starting so echoes
        self._demo_starts = sorted(
            {_normal(piece) for piece in _literal_pieces(demo_template) if _WORD.search(piece)}
        )

    def clean(
        self, text: object, request: str, seen: Container[str] = ()
    ) -> tuple[str | None, str]:
        """(instruction, "kept"), or (None, reason) with a reason from SKIP_REASONS.

        *seen* holds the :func:`dedup_key` of instructions already kept.
        """
        if not isinstance(text, str):
            return None, "malformed"
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        junk = [
            c for c in text if c == "\ufffd" or (c != "\n" and unicodedata.category(c)[0] == "C")
        ]
        if len(junk) > MAX_JUNK * len(text):
            return None, "malformed"  # mostly broken bytes or control characters
        if junk:
            text = "".join(" " if c in junk else c for c in text)
        text = re.split(r"\n[ \t]*\n", text.strip(), maxsplit=1)[0]
        for marker in self.stop:
            text = text.split(marker, 1)[0]
        text = _LABEL.sub("", text.strip(), count=1).strip()
        if text and text[0] in _QUOTES:  # a quoted instruction: keep what is inside
            end = text.find(_CLOSING.get(text[0], text[0]), 1)
            text = (text[1:end] if end > 0 else text[1:]).strip()
        if self.first_sentence:
            text = _SENTENCE_END.split(text, maxsplit=1)[0].strip()
        text = re.sub(r"[ \t]+", " ", text).strip()
        if not text:
            return None, "empty"
        if not _WORD.search(text):
            return None, "malformed"  # no word at all: digits or punctuation only
        if len(text) > self.max_chars:
            return None, "too_long"
        if dedup_key(text) in seen:
            return None, "duplicate"
        if self._echoes(text, request):
            return None, "echo"
        if text[0].islower():
            text = text[0].upper() + text[1:]
        return text, "kept"

    def _echoes(self, text: str, request: str) -> bool:
        norm = _normal(text).rstrip(" .")
        if norm and norm in _normal(request):
            return True
        if any(piece.rstrip(" .") in norm for piece in self._wording):
            return True
        return any(norm.startswith(start) for start in self._demo_starts)

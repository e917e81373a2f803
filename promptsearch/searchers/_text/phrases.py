"""Text surgery for paraphrasing searchers: slot markers and phrase edits.

Templates are edited in *marked* form, where each slot is a bracketed capital
letter that translators and language models tend to leave alone::

    "Review: {sentence}\\nSentiment: {answer}"  <->  "Review: [X]\\nSentiment: [Y]"

The answer slot is always ``[Y]``; input fields get ``[X]``, ``[Z]``, ``[W]``, ...
in order of first appearance (the LAMA convention).  :func:`unmark` turns edited
text back into a template and refuses any result whose slots differ in number or
order from the original.

A *phrase* is a run of one to three words of literal text: whitespace and markers
are never part of one, so phrase edits can never touch a slot.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from promptsearch.errors import TemplateError
from promptsearch.template import ANSWER, Slot, Template

__all__ = [
    "CUE_MARKS",
    "MAX_GROWTH",
    "MAX_PHRASE_WORDS",
    "Marked",
    "clean_line",
    "delete_phrase",
    "has_letters",
    "has_marker",
    "insert_phrase",
    "mark",
    "phrase_spans",
    "phrases_of",
    "plausible",
    "replace_phrase",
    "swap_phrases",
    "tokens",
    "too_long",
    "trailing_cue",
    "unmark",
]

MAX_PHRASE_WORDS = 3
"""A phrase is 1 to this many words."""

CUE_MARKS = ":;,"
"""Punctuation that ends a cue such as ``Answer:``; kept when the cue's words change."""

MAX_GROWTH = 3.0
"""A rewrite may be at most this many times longer than its source (plus 20 characters)."""

_FIELD_MARKERS = ("[X]", "[Z]", "[W]", "[V]", "[U]", "[T]", "[S]", "[R]")
_ANSWER_MARKER = "[Y]"
_MARKER = re.compile(r"\[[A-Z]\]")
_SPLIT = re.compile(r"(\s+|\[[A-Z]\]|[.!?]+(?=\s|$))")  # sentence ends stand alone
_WORDY = re.compile(r"\w")
_NUMBERING = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s+")
_CUE = re.compile(r"^(?:rewrite|rewritten|paraphrase|new text|blank)\s*:\s*", re.IGNORECASE)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019*"


@dataclass(frozen=True)
class Marked:
    """A template in marked form, with what is needed to turn it back."""

    text: str
    slots: tuple[str, ...]  # slot names in order of appearance (repeats included)
    markers: tuple[tuple[str, str], ...]  # (marker, slot name)


def mark(template: str) -> Marked | None:
    """*template* with its slots as markers; ``None`` if it cannot be marked safely
    (literal braces or bracketed capitals in its text, or too many fields)."""
    parts = Template(template).parts
    names: dict[str, str] = {}
    out: list[str] = []
    slots: list[str] = []
    for part in parts:
        if isinstance(part, Slot):
            if part.name not in names:
                if part.name == ANSWER:
                    names[part.name] = _ANSWER_MARKER
                else:
                    used = sum(1 for n in names if n != ANSWER)
                    if used >= len(_FIELD_MARKERS):
                        return None
                    names[part.name] = _FIELD_MARKERS[used]
            out.append(names[part.name])
            slots.append(part.name)
        else:
            if "{" in part.text or "}" in part.text or _MARKER.search(part.text):
                return None
            out.append(part.text)
    return Marked("".join(out), tuple(slots), tuple((m, n) for n, m in names.items()))


def unmark(text: str, marked: Marked) -> str | None:
    """The template for edited marked *text*, or ``None`` when its slots no longer
    match the original's (a marker lost, added, unknown or moved) or it is invalid."""
    if "{" in text or "}" in text:
        return None
    lookup = dict(marked.markers)
    found = _MARKER.findall(text)
    if any(m not in lookup for m in found):
        return None
    if tuple(lookup[m] for m in found) != marked.slots:
        return None
    source = _MARKER.sub(lambda m: "{" + lookup[m.group(0)] + "}", text)
    try:
        Template(source)
    except TemplateError:
        return None
    return source


def has_marker(text: str) -> bool:
    """Whether *text* holds a bracketed capital such as ``[X]``."""
    return _MARKER.search(text) is not None


def plausible(text: str) -> bool:
    """Whether *text* looks like written language: printable, no replacement
    characters, and mostly letters among its non-space characters."""
    if "\ufffd" in text or not all(c.isprintable() or c in "\n\t" for c in text):
        return False
    visible = [c for c in text if not c.isspace()]
    return bool(visible) and sum(c.isalpha() for c in visible) >= 0.5 * len(visible)


def has_letters(text: str) -> bool:
    """Whether *text* holds at least one letter."""
    return any(c.isalpha() for c in text)


def too_long(new: str, old: str) -> bool:
    """Whether the rewrite *new* of *old* grew beyond :data:`MAX_GROWTH`."""
    return len(new) > MAX_GROWTH * len(old) + 20


def trailing_cue(phrase: str) -> str:
    """The punctuation that ends *phrase* (the colon of a cue such as ``Answer:``)."""
    return phrase[len(phrase.rstrip(CUE_MARKS)) :]


def tokens(text: str) -> list[str]:
    """*text* split into words, whitespace runs and markers (joined back, the same text)."""
    return [t for t in _SPLIT.split(text) if t]


def _is_word(token: str) -> bool:
    return not token.isspace() and not _MARKER.fullmatch(token) and bool(_WORDY.search(token))


def phrase_spans(toks: Sequence[str]) -> list[tuple[int, int]]:
    """Every (start, end) token span holding 1 to :data:`MAX_PHRASE_WORDS` words joined by
    plain spaces (no markers, no line breaks, no punctuation-only tokens)."""
    spans: list[tuple[int, int]] = []
    for start, token in enumerate(toks):
        if not _is_word(token):
            continue
        end, words = start + 1, 1
        spans.append((start, end))
        while words < MAX_PHRASE_WORDS and end + 1 < len(toks):
            gap, nxt = toks[end], toks[end + 1]
            if not gap.isspace() or "\n" in gap or not _is_word(nxt):
                break
            end, words = end + 2, words + 1
            spans.append((start, end))
    return spans


def phrases_of(text: str) -> list[str]:
    """The distinct phrases of *text*, in order."""
    toks = tokens(text)
    seen: dict[str, None] = {}
    for start, end in phrase_spans(toks):
        seen.setdefault("".join(toks[start:end]), None)
    return list(seen)


def _tidy(toks: list[str], at: int) -> list[str]:
    """Merge the whitespace left around position *at* after a removal."""
    left = toks[at - 1] if at > 0 else None
    right = toks[at] if at < len(toks) else None
    if left is not None and right is not None and left.isspace() and right.isspace():
        keep = right if "\n" in right and "\n" not in left else left
        return [*toks[: at - 1], keep, *toks[at + 1 :]]
    if left is None and right is not None and right.isspace():
        return toks[1:]
    if right is None and left is not None and left.isspace():
        return toks[:-1]
    return toks


def delete_phrase(text: str, rng: random.Random) -> str | None:
    """*text* with one random phrase removed; ``None`` if it has none."""
    toks = tokens(text)
    spans = phrase_spans(toks)
    if not spans:
        return None
    start, end = rng.choice(spans)
    return "".join(_tidy([*toks[:start], *toks[end:]], start))


def swap_phrases(text: str, rng: random.Random) -> str | None:
    """*text* with two non-overlapping random phrases swapped; ``None`` if impossible."""
    toks = tokens(text)
    spans = phrase_spans(toks)
    first = rng.choice(spans) if spans else None
    if first is None:
        return None
    others = [s for s in spans if s[1] <= first[0] or s[0] >= first[1]]
    if not others:
        return None
    second = rng.choice(others)
    (a, b), (c, d) = sorted([first, second])
    return "".join([*toks[:a], *toks[c:d], *toks[b:c], *toks[a:b], *toks[d:]])


def insert_phrase(text: str, phrase: str, rng: random.Random) -> str:
    """*text* with *phrase* inserted at a random word boundary."""
    toks = tokens(text)
    starts = [
        i for i, t in enumerate(toks) if not t.isspace() and (i == 0 or toks[i - 1].isspace())
    ]
    # at the very end only in plain text: after a template's last slot it would be noise
    ends = [] if has_marker(text) else [len(toks)]
    position = rng.choice([*starts, *ends])
    if position == len(toks):
        joiner = "" if not toks or toks[-1].isspace() else " "
        return text + joiner + phrase
    return "".join([*toks[:position], phrase, " ", *toks[position:]])


def replace_phrase(text: str, span: tuple[int, int], phrase: str) -> str:
    """*text* with the token span *span* (from :func:`phrase_spans`) replaced by *phrase*."""
    toks = tokens(text)
    return "".join([*toks[: span[0]], phrase, *toks[span[1] :]])


def clean_line(output: str, *, max_words: int | None = None) -> str:
    """The usable part of a model's answer: its first non-empty line without list
    numbering, a leading cue such as ``Rewrite:``, or wrapping quotes; at most
    *max_words* words when given."""
    line = next((s.strip() for s in output.splitlines() if s.strip()), "")
    previous = None
    while line != previous:
        previous = line
        line = _CUE.sub("", _NUMBERING.sub("", line)).strip()
        if len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
            line = line[1:-1].strip()
    if max_words is not None:
        line = " ".join(line.split()[:max_words])
    return line

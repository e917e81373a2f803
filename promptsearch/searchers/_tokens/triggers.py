"""Trigger templates and trigger-token vocabularies for the ``autoprompt`` searcher.

A *trigger template* is a prompt template whose literal text holds ``[T]``
markers, one per trigger token: ``"{sentence} [T] [T] [T] [T] {answer}"``.  The
search (see :mod:`promptsearch.searchers._tokens.trigger_search`) replaces every marker by one
vocabulary token; this module does the text side and needs no torch:

- :func:`insert_triggers` puts markers into a template that has none;
- :func:`fill_triggers` writes the template with trigger words in place of the
  markers, so the study can score it as ordinary text;
- :class:`TokenScheme` tells how a tokenizer marks word starts, and
  :func:`allowed_tokens` lists the vocabulary ids a trigger may take.

Spacing.  With a tokenizer that marks word starts by a leading symbol (``Ġ`` in
byte-level BPE, ``▁`` in SentencePiece), a trigger token carries its own leading
space.  The space in front of a marker in the template therefore belongs to the
trigger: ``"{sentence} [T]"`` becomes ``"{sentence} the"``, and a marker with no
space before it (at the very start, or after a newline) still gets one
(``"Q:\\n[T]"`` becomes ``"Q:\\n the"``), exactly as the search fed it to the model.
WordPiece tokens carry no space; the template's own spaces are kept as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from promptsearch.errors import ConfigError, TemplateError
from promptsearch.template import ANSWER, Literal, Slot, Template

__all__ = [
    "MAX_TRIGGERS",
    "TRIGGER",
    "TokenScheme",
    "allowed_tokens",
    "check_trigger_template",
    "count_triggers",
    "fill_triggers",
    "insert_triggers",
    "sentinel",
    "strip_sentinels",
]

TRIGGER = "[T]"
"""The marker of one trigger token in a template."""

MAX_TRIGGERS = 64
"""At most this many trigger tokens per template."""

_SENTINEL_BASE = 0xE000  # private-use characters stand for trigger j while rendering
_SENTINELS = re.compile(f"[{chr(_SENTINEL_BASE)}-{chr(_SENTINEL_BASE + MAX_TRIGGERS - 1)}]")


def sentinel(index: int) -> str:
    """The private-use character that stands for trigger *index* in rendered text."""
    return chr(_SENTINEL_BASE + index)


def sentinel_index(char: str) -> int | None:
    """The trigger index *char* stands for, or None if it is no sentinel."""
    index = ord(char) - _SENTINEL_BASE if len(char) == 1 else -1
    return index if 0 <= index < MAX_TRIGGERS else None


def split_sentinels(text: str) -> list[str | int]:
    """``"a\\ue000b"`` -> ``["a", 0, "b"]``: text pieces and trigger indices in order."""
    out: list[str | int] = []
    start = 0
    for match in _SENTINELS.finditer(text):
        if match.start() > start:
            out.append(text[start : match.start()])
        out.append(ord(match.group()) - _SENTINEL_BASE)
        start = match.end()
    if start < len(text):
        out.append(text[start:])
    return out


def strip_sentinels(text: str) -> str:
    """*text* without sentinel characters (applied to example inputs before rendering)."""
    return _SENTINELS.sub("", text)


def count_triggers(template: str) -> int:
    """How many ``[T]`` markers *template* holds."""
    return template.count(TRIGGER)


def check_trigger_template(template: str, owner: str = "") -> Template:
    """Parse *template* (markers included) and check its markers; return the parse."""
    where = f"{owner}: " if owner else ""
    try:
        parsed = Template(template)
    except TemplateError as error:
        raise ConfigError(
            f"{where}template {template!r} is not a valid template: {error}"
        ) from None
    count = count_triggers(template)
    if count > MAX_TRIGGERS:
        raise ConfigError(
            f"{where}template {template!r} has {count} {TRIGGER} markers; at most "
            f"{MAX_TRIGGERS} are allowed"
        )
    if _SENTINELS.search(template):
        raise ConfigError(
            f"{where}template {template!r} contains private-use characters U+E000-U+E03F, "
            "which the trigger search reserves; remove them"
        )
    return parsed


def triggers_before_answer(template: str) -> bool:
    """Whether every ``[T]`` marker of *template* comes before its ``{answer}`` slot."""
    seen_answer = False
    for part in Template(template).parts:
        if isinstance(part, Slot) and part.name == ANSWER:
            seen_answer = True
        elif isinstance(part, Literal) and seen_answer and TRIGGER in part.text:
            return False
    return True


def _source(part: Literal | Slot) -> str:
    if isinstance(part, Slot):
        return "{" + part.name + "}"
    return part.text.replace("{", "{{").replace("}", "}}")


def insert_triggers(template: str, count: int) -> str:
    """*template* with *count* ``[T]`` markers between its input and its answer.

    The markers go right after the last ``{field}`` slot that precedes ``{answer}``
    (``"Review: {sentence}\\nSentiment: {answer}"`` becomes ``"Review: {sentence}
    [T] [T]\\nSentiment: {answer}"``).  When no field comes before the answer, they
    go right before ``{answer}``.
    """
    parts = Template(template).parts
    answer = next(i for i, p in enumerate(parts) if isinstance(p, Slot) and p.name == ANSWER)
    fields = [i for i, p in enumerate(parts[:answer]) if isinstance(p, Slot)]
    markers = " ".join([TRIGGER] * count)
    pieces = [_source(p) for p in parts]
    if fields:
        pieces[fields[-1]] += " " + markers
    else:
        pieces[answer] = markers + " " + pieces[answer]
    return "".join(pieces)


def _substitute(template: str, replacements: Sequence[str], absorb_space: bool) -> str:
    out: list[str] = []
    rest = template
    for replacement in replacements:
        at = rest.find(TRIGGER)
        if at < 0:
            break
        before = rest[:at]
        if absorb_space and before.endswith(" "):
            before = before[:-1]
        out.extend((before, replacement))
        rest = rest[at + len(TRIGGER) :]
    out.append(rest)
    return "".join(out)


def fill_triggers(template: str, words: Sequence[str], space_marker: bool) -> str:
    """The template with ``words[j]`` in place of the *j*-th ``[T]`` marker.

    *space_marker*: the tokens carry their own leading space (see the module
    docstring), so the space before a marker is replaced along with it.
    """
    if len(words) != count_triggers(template):
        raise ConfigError(
            f"template {template!r} has {count_triggers(template)} trigger markers; got "
            f"{len(words)} trigger words"
        )
    texts = [(" " + w) if space_marker else w for w in words]
    return _substitute(template, texts, space_marker)


def sentinel_template(template: str, space_marker: bool) -> str:
    """The template with sentinel characters in place of the markers (for rendering)."""
    return _substitute(
        template, [sentinel(j) for j in range(count_triggers(template))], space_marker
    )


@dataclass(frozen=True)
class TokenScheme:
    """How a tokenizer writes word starts.

    ``marker``: the symbol that opens a word-initial token (``"Ġ"`` or ``"▁"``), or
    ``""`` for WordPiece, where continuation pieces start with ``"##"`` instead.
    """

    marker: str

    @property
    def space_marker(self) -> bool:
        """Whether word-initial tokens carry their leading space."""
        return bool(self.marker)

    @classmethod
    def detect(cls, tokens: Sequence[str]) -> TokenScheme:
        """The scheme of a vocabulary given as token strings."""
        counts = {m: sum(1 for t in tokens if t.startswith(m)) for m in ("Ġ", "▁")}
        marker = max(counts, key=lambda m: counts[m])
        if counts[marker] >= max(1, len(tokens) // 50):
            return cls(marker)
        return cls("")

    def word(self, token: str) -> str | None:
        """The word a token spells when it starts a word, else None (a sub-word piece)."""
        if self.marker:
            return token[len(self.marker) :] if token.startswith(self.marker) else None
        return None if token.startswith("##") else token

    def token(self, word: str) -> str:
        """The token string of *word* at the start of a word."""
        return self.marker + word


def vocabulary(tokenizer: Any) -> list[str]:
    """The token string of every id below ``len(tokenizer)``."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return [t if isinstance(t, str) else "" for t in tokens]


def special_ids(tokenizer: Any) -> set[int]:
    """Ids of the tokenizer's special and added tokens."""
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", [])}
    ids.update(int(i) for i in getattr(tokenizer, "added_tokens_decoder", {}))
    return ids


def allowed_tokens(
    tokens: Sequence[str],
    scheme: TokenScheme,
    specials: Iterable[int],
    label_words: Iterable[str] = (),
    banned_ids: Iterable[int] = (),
) -> list[bool]:
    """Which vocabulary ids a trigger may take.

    Excluded: special and added tokens, sub-word pieces (tokens that do not start
    a word), tokens that are not plain ASCII letters, tokens spelling one of the
    *label_words* (case-insensitive), and *banned_ids* (e.g. the label words'
    own token ids).
    """
    special = set(specials)
    banned = set(banned_ids)
    lowered = {w.strip().lower() for w in label_words}
    out = []
    for index, token in enumerate(tokens):
        word = scheme.word(token)
        ok = (
            word is not None
            and index not in special
            and index not in banned
            and word.isascii()
            and word.isalpha()
            and word.lower() not in lowered
        )
        out.append(bool(ok))
    return out

"""Model inputs for the trigger search: examples rendered with trigger slots.

Each example is rendered the way the scorer renders it (see
:mod:`promptsearch.scoring.backends.causal` and :mod:`promptsearch.scoring.backends.masked`),
with a private-use sentinel character standing for each trigger (see
:mod:`promptsearch.searchers._tokens.triggers`).  The text between sentinels is tokenized piece
by piece and a placeholder id is put where each sentinel was; the search fills
in the trigger token ids per forward pass.

Causal models: the context is the prefix without its trailing whitespace, and a
label word is scored as that whitespace plus the word.  When every word is one
token, one row per example scores them all at its last position; otherwise one
row per word, ``context + word[:-1]``, scores the word's tokens at its last
positions.  Masked models: one row per word length, with that many ``[MASK]``
tokens in the answer slot and the suffix after them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from promptsearch.errors import ConfigError, DataError
from promptsearch.models.base import LanguageModel
from promptsearch.prompt import Prompt
from promptsearch.scoring.backends.base import encode_text, special_tokens, split_trailing_space
from promptsearch.searchers._tokens.triggers import (
    sentinel_template,
    split_sentinels,
    strip_sentinels,
)
from promptsearch.task import Example

__all__ = ["Row", "TriggerBatch", "TriggerEncoder"]


@dataclass(frozen=True)
class Row:
    """One model input.

    ``triggers``: (position, trigger index) of every trigger token.  ``answer_at``:
    the positions whose logits score the answer tokens.  ``targets``: (word index,
    one token id per answer position) of every word this row scores.
    """

    example: int
    ids: tuple[int, ...]
    triggers: tuple[tuple[int, int], ...]
    answer_at: tuple[int, ...]
    targets: tuple[tuple[int, tuple[int, ...]], ...]


@dataclass(frozen=True)
class TriggerBatch:
    """Encoded examples: their rows and the index of each example's gold label."""

    rows: tuple[Row, ...]
    gold: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.gold)


class TriggerEncoder:
    """Encodes examples for one model, trigger template and word list.

    *prompt*'s template holds ``[T]`` markers; *words* are the verbalizer words
    of all labels, flattened; *space_marker* says whether trigger tokens carry
    their leading space.
    """

    def __init__(
        self,
        model: LanguageModel,
        prompt: Prompt,
        labels: Sequence[str],
        words: Sequence[str],
        space_marker: bool,
    ) -> None:
        self.lm = model
        self.tokenizer: Any = model.tokenizer
        self.prompt = prompt
        self.labels = list(labels)
        self.words = list(words)
        self._rendering = replace(prompt, template=sentinel_template(prompt.template, space_marker))
        self.specials = special_tokens(self.tokenizer)
        self.pad_id: int = self.tokenizer.pad_token_id
        fallback = [self.tokenizer.bos_token_id, self.tokenizer.eos_token_id, self.pad_id]
        self.start_id: int = next(t for t in fallback if t is not None)
        self.mask_id: int | None = getattr(self.tokenizer, "mask_token_id", None)
        if model.kind == "masked" and self.mask_id is None:
            raise ConfigError(f"masked model {model.name!r} has no mask token")
        self._encoded: dict[str, tuple[tuple[Row, ...], int]] = {}

    def _splice(self, text: str, offset: int) -> tuple[list[int], list[tuple[int, int]]]:
        ids: list[int] = []
        triggers: list[tuple[int, int]] = []
        for piece in split_sentinels(text):
            if isinstance(piece, int):
                triggers.append((offset + len(ids), piece))
                ids.append(self.pad_id)  # filled with the trigger token later
            else:
                ids.extend(encode_text(self.tokenizer, piece))
        return ids, triggers

    def _rows(self, values: dict[str, str]) -> list[Row]:
        rendered = self._rendering.render(values)
        context_text, space = split_trailing_space(rendered.prefix)
        lead = list(self.specials.lead)
        left, triggers = self._splice(context_text, len(lead))
        left = lead + left
        answers = [encode_text(self.tokenizer, space + word) for word in self.words]
        rows: list[Row] = []
        if self.lm.kind == "causal":
            if not left:
                left = [self.start_id]
            end = len(left) - 1
            if all(len(a) == 1 for a in answers):
                targets = tuple((w, (a[0],)) for w, a in enumerate(answers))
                return [Row(0, tuple(left), tuple(triggers), (end,), targets)]
            for w, answer in enumerate(answers):
                ids = tuple(left + answer[:-1])
                at = tuple(range(end, end + len(answer)))
                rows.append(Row(0, ids, tuple(triggers), at, ((w, tuple(answer)),)))
            return rows
        assert self.mask_id is not None  # checked in __init__
        by_length: dict[int, list[tuple[int, tuple[int, ...]]]] = {}
        for w, answer in enumerate(answers):
            by_length.setdefault(len(answer), []).append((w, tuple(answer)))
        for count, targets_of in by_length.items():
            start = len(left) + count
            right, right_triggers = self._splice(rendered.suffix, start)
            ids = tuple(left + [self.mask_id] * count + right + list(self.specials.trail))
            at = tuple(range(len(left), start))
            rows.append(Row(0, ids, tuple(triggers + right_triggers), at, tuple(targets_of)))
        return rows

    def _encode_one(self, example: Example) -> tuple[Row, ...]:
        values = {k: strip_sentinels(str(v)) for k, v in example.inputs.items()}
        limit = self.lm.max_length
        for _ in range(40):
            rows = self._rows(values)
            if max(len(r.ids) for r in rows) <= limit:
                return tuple(rows)
            fields = [f for f in self.prompt.fields if values.get(f)]
            if not fields:
                break
            longest = max(fields, key=lambda f: len(values[f]))
            values[longest] = values[longest][: len(values[longest]) * 3 // 4]
        raise DataError(
            f"example {example.id!r} does not fit the {limit}-token context of model "
            f"{self.lm.name!r} with template {self.prompt.template!r}"
        )

    def encode(self, examples: Sequence[Example]) -> TriggerBatch:
        """Encode *examples* (labelled with the task's labels) into a batch."""
        rows: list[Row] = []
        gold: list[int] = []
        for index, example in enumerate(examples):
            if example.target not in self.labels:
                raise DataError(
                    f"example {example.id!r}: label {example.target!r} is not one of {self.labels}"
                )
            key = f"{example.id}\x00{sorted(example.inputs.items())!r}"
            cached = self._encoded.get(key)
            if cached is None:
                cached = (self._encode_one(example), self.labels.index(example.target))
                self._encoded[key] = cached
            rows.extend(replace(row, example=index) for row in cached[0])
            gold.append(cached[1])
        return TriggerBatch(tuple(rows), tuple(gold))

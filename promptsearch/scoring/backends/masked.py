"""Scoring with masked language models (BERT, RoBERTa, ...).

The input is ``prefix + [MASK] * n + suffix`` where *n* is the number of tokens of
the answer word as tokenized in place (with the prefix's trailing whitespace, as a
RoBERTa-style tokenizer would see it).  A word's log-probability is the sum over its
mask positions of the log-probability of its token there (independent masks).
Words of the same length share one sequence.  The language-model head is applied
only at mask positions when the model is a base model plus one head module; other
models fall back to full logits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from promptsearch.errors import ConfigError, ModelError
from promptsearch.scoring.backends.base import (
    Encoded,
    encode_text,
    right_pad,
    special_tokens,
    split_trailing_space,
)
from promptsearch.scoring.batching import BatchSize, run_batches

if TYPE_CHECKING:
    from promptsearch.models.base import LanguageModel
    from promptsearch.prompt import RenderedPrompt

__all__ = ["MaskedBackend"]


@dataclass
class _Row:
    item: int
    sequence: list[int]
    start: int  # index of the first mask
    targets: list[tuple[int, list[int]]]  # (answer index, token ids), all of the mask count


class MaskedBackend:
    """Log-probabilities of answer words at mask positions."""

    def __init__(self, model: LanguageModel, batch_size: int | BatchSize) -> None:
        self.lm = model
        self.model = model.model
        self.tokenizer = model.tokenizer
        self.sizer = (
            batch_size
            if isinstance(batch_size, BatchSize)
            else BatchSize(batch_size, device_type=model.device.type)
        )
        self.specials = special_tokens(self.tokenizer)
        mask_id = getattr(self.tokenizer, "mask_token_id", None)
        if mask_id is None:
            raise ModelError(
                f"model {model.name!r} is used as a masked LM but its tokenizer has no mask "
                "token; load it with kind='causal' or 'seq2seq' if that is what it is"
            )
        self.mask_id: int = mask_id
        self.pad_id: int = self.tokenizer.pad_token_id
        self._head: tuple[Any, Any] | None = self._find_head()
        self._head_checked = False

    def _find_head(self) -> tuple[Any, Any] | None:
        prefix = getattr(self.model, "base_model_prefix", "")
        base = getattr(self.model, prefix, None) if prefix else None
        if base is None or base is self.model:
            return None
        heads = [module for name, module in self.model.named_children() if name != prefix]
        return (base, heads[0]) if len(heads) == 1 else None

    def encode(self, rendered: RenderedPrompt, words: Sequence[str], budget: int) -> Encoded:
        context_text, space = split_trailing_space(rendered.prefix)
        left = list(self.specials.lead) + encode_text(self.tokenizer, context_text)
        right = encode_text(self.tokenizer, rendered.suffix) + list(self.specials.trail)
        answers = [encode_text(self.tokenizer, space + word) for word in words]
        longest = max((len(a) for a in answers), default=0)
        return Encoded(
            context=left, answers=answers, right=right, length=len(left) + longest + len(right)
        )

    def _rows(self, items: Sequence[Encoded]) -> list[_Row]:
        rows = []
        for index, item in enumerate(items):
            by_length: dict[int, list[tuple[int, list[int]]]] = defaultdict(list)
            for j, answer in enumerate(item.answers):
                if answer:
                    by_length[len(answer)].append((j, answer))
            for count, targets in by_length.items():
                sequence = item.context + [self.mask_id] * count + item.right
                rows.append(_Row(index, sequence, len(item.context), targets))
        return rows

    def _mask_logits(
        self, ids: torch.Tensor, mask: torch.Tensor, rows_at: torch.Tensor, cols_at: torch.Tensor
    ) -> torch.Tensor:
        """Logits at positions (rows_at[k], cols_at[k]), shape (K, vocab)."""
        if self._head is not None:
            base, head = self._head
            try:
                hidden = base(input_ids=ids, attention_mask=mask)[0]
                selected: torch.Tensor = head(hidden[rows_at, cols_at])
            except Exception:  # a head that needs more than hidden states
                self._head = None
            else:
                if self._head_checked:
                    return selected
                full = self.model(input_ids=ids, attention_mask=mask).logits[rows_at, cols_at]
                tolerance = 1e-3 if full.dtype == torch.float32 else 5e-2
                self._head_checked = True
                if full.shape == selected.shape and torch.allclose(
                    full.float(), selected.float(), atol=tolerance, rtol=tolerance
                ):
                    return selected
                self._head = None
                return full
        logits: torch.Tensor = self.model(input_ids=ids, attention_mask=mask).logits
        return logits[rows_at, cols_at]

    def logprobs(self, items: Sequence[Encoded]) -> tuple[list[list[float]], int]:
        results = [[0.0] * len(item.answers) for item in items]
        rows = self._rows(items)

        def step(batch: list[int]) -> None:
            chosen = [rows[i] for i in batch]
            ids, mask = right_pad([r.sequence for r in chosen], self.pad_id, self.lm.device)
            row_index: list[int] = []
            col_index: list[int] = []
            for b, row in enumerate(chosen):
                count = len(row.targets[0][1])
                row_index.extend([b] * count)
                col_index.extend(range(row.start, row.start + count))
            device = ids.device
            logits = self._mask_logits(
                ids,
                mask,
                torch.tensor(row_index, device=device),
                torch.tensor(col_index, device=device),
            )
            logprobs = logits.float().log_softmax(dim=-1)  # (masks in batch, vocab)
            offset = 0
            for row in chosen:
                count = len(row.targets[0][1])
                block = logprobs[offset : offset + count]
                targets = torch.tensor([t for _, t in row.targets], device=device)  # (n, count)
                values = block.gather(-1, targets.T).sum(dim=0).tolist()
                for (j, _), value in zip(row.targets, values, strict=True):
                    results[row.item][j] = float(value)
                offset += count

        run_batches([len(r.sequence) for r in rows], self.sizer, step)
        return results, len(rows)

    def generate(self, items: Sequence[Encoded], max_new_tokens: int) -> tuple[list[str], int]:
        raise ConfigError(
            f"model {self.lm.name!r} is a masked LM, which cannot generate free text; use a "
            "causal or seq2seq model for generation tasks"
        )

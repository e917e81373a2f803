"""Scoring with encoder-decoder models (T5, BART, ...).

The encoder reads the prompt with the answer slot removed.  When the answer sits in
the middle of the template (the suffix is not blank) and the tokenizer has T5's
sentinel ``<extra_id_0>``, the sentinel takes the slot and the decoder is primed with
it, as in T5's span-filling pretraining; when the answer ends the prompt the encoder
reads the prefix alone and the decoder answers directly.  The decoder scores the
answer's tokens by teacher forcing (sum of log-probabilities).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from transformers import GenerationConfig

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

__all__ = ["SENTINEL", "Seq2SeqBackend"]

SENTINEL = "<extra_id_0>"
_SENTINEL_PATTERN = re.compile(r"^<extra_id_\d+>$")


@dataclass
class _Row:
    item: int
    answer: int
    encoder: list[int]
    decoder: list[int]  # answer prefix + answer tokens; the answer part is scored
    scored_from: int


class Seq2SeqBackend:
    """Log-probabilities and greedy answers from an encoder-decoder model."""

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
        self.pad_id: int = self.tokenizer.pad_token_id
        start = getattr(self.model.config, "decoder_start_token_id", None)
        self.start_id: int = start if start is not None else self.pad_id
        vocab = self.tokenizer.get_vocab()
        self.sentinel: int | None = vocab.get(SENTINEL)
        self.sentinels = {i for token, i in vocab.items() if _SENTINEL_PATTERN.match(token)}

    def encode(self, rendered: RenderedPrompt, words: Sequence[str], budget: int) -> Encoded:
        context_text, space = split_trailing_space(rendered.prefix)
        answer_prefix: list[int] = []
        if not rendered.suffix.strip():
            text = context_text
        elif self.sentinel is not None:
            text = rendered.prefix + SENTINEL + rendered.suffix
            answer_prefix = [self.sentinel]
        else:
            text = rendered.prefix + rendered.suffix
        encoder = list(self.specials.lead) + encode_text(self.tokenizer, text)
        encoder += list(self.specials.trail)
        answers = [encode_text(self.tokenizer, space + word) for word in words]
        return Encoded(
            context=encoder, answers=answers, length=len(encoder), answer_prefix=answer_prefix
        )

    def logprobs(self, items: Sequence[Encoded]) -> tuple[list[list[float]], int]:
        results = [[0.0] * len(item.answers) for item in items]
        rows = [
            _Row(i, j, item.context, item.answer_prefix + answer, len(item.answer_prefix))
            for i, item in enumerate(items)
            for j, answer in enumerate(item.answers)
            if answer
        ]

        def step(batch: list[int]) -> None:
            chosen = [rows[i] for i in batch]
            device = self.lm.device
            ids, mask = right_pad([r.encoder for r in chosen], self.pad_id, device)
            inputs = [[self.start_id, *r.decoder[:-1]] for r in chosen]
            decoder_ids, decoder_mask = right_pad(inputs, self.pad_id, device)
            targets, _ = right_pad([r.decoder for r in chosen], self.pad_id, device)
            scored = torch.zeros_like(targets, dtype=torch.bool)
            for b, row in enumerate(chosen):
                scored[b, row.scored_from : len(row.decoder)] = True
            logits = self.model(
                input_ids=ids,
                attention_mask=mask,
                decoder_input_ids=decoder_ids,
                decoder_attention_mask=decoder_mask,
                use_cache=False,
            ).logits
            picked = logits.float().log_softmax(dim=-1).gather(-1, targets.unsqueeze(-1))
            sums = (picked.squeeze(-1) * scored).sum(dim=-1).tolist()
            for row, value in zip(chosen, sums, strict=True):
                results[row.item][row.answer] = float(value)

        run_batches([len(r.encoder) for r in rows], self.sizer, step)
        return results, len(rows)

    def _cut(self, ids: list[int]) -> list[int]:
        eos = self.tokenizer.eos_token_id
        for k, token in enumerate(ids):
            if token in self.sentinels or token == eos:
                return ids[:k]
        return ids

    def _generate_group(
        self,
        items: Sequence[Encoded],
        members: list[int],
        prefix: tuple[int, ...],
        config: GenerationConfig,
        texts: list[str],
    ) -> None:
        """Greedy answers of the *members* of *items* whose decoder starts with *prefix*."""
        device = self.lm.device

        def step(batch: list[int]) -> None:
            chosen = [members[k] for k in batch]
            ids, mask = right_pad([items[i].context for i in chosen], self.pad_id, device)
            start = torch.tensor([[self.start_id, *prefix]] * len(chosen), device=device)
            output: Any = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                decoder_input_ids=start,
                generation_config=config,
            )
            for i, row in zip(chosen, output[:, start.shape[1] :].tolist(), strict=True):
                text = self.tokenizer.decode(self._cut(row), skip_special_tokens=True)
                texts[i] = text.strip()

        run_batches([len(items[i].context) for i in members], self.sizer, step)

    def generate(self, items: Sequence[Encoded], max_new_tokens: int) -> tuple[list[str], int]:
        texts = [""] * len(items)
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=self.pad_id,
            eos_token_id=eos if eos is not None else self.tokenizer.eos_token_id,
            decoder_start_token_id=self.start_id,
        )
        by_prefix: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            by_prefix[tuple(item.answer_prefix)].append(i)
        for prefix, members in by_prefix.items():
            self._generate_group(items, members, prefix, config, texts)
        return texts, len(items)

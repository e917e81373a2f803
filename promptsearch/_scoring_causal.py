"""Scoring with causal (left-to-right) language models.

The answer continues the prompt: the context is the prefix without its trailing
whitespace and the continuation is that whitespace plus the answer word, tokenized
separately and concatenated.  Log-probabilities are full-vocabulary log-softmax,
computed only at the positions that predict answer tokens: when every answer of an
example is one token, one sequence per example and only its last position; otherwise
one sequence ``context + answer[:-1]`` per answer, batched by answer length so that
the model returns only the last ``len(answer)`` positions' logits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from promptsearch._scoring import (
    Encoded,
    accepted_kwargs,
    encode_text,
    left_pad,
    length_batches,
    special_tokens,
    split_trailing_space,
)

if TYPE_CHECKING:
    from promptsearch.model import LanguageModel
    from promptsearch.prompt import RenderedPrompt

__all__ = ["CausalBackend", "first_line"]


@dataclass
class _Row:
    """One sequence to run: which item, how many final positions to score, and targets."""

    item: int
    sequence: list[int]
    keep: int
    targets: list[tuple[int, list[int]]]  # (answer index, token ids, one per kept position)


def first_line(text: str) -> str:
    """The answer in generated *text*: its first non-blank line, stripped."""
    stripped = text.strip()
    return stripped.splitlines()[0].strip() if stripped else ""


class _StopAtNewline(StoppingCriteria):
    """Stop a row once its generated text (leading whitespace aside) holds a newline."""

    def __init__(self, tokenizer: Any, start: int) -> None:
        self.tokenizer = tokenizer
        self.start = start

    def __call__(
        self, input_ids: torch.LongTensor, scores: Any, **_ignored: Any
    ) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        done = torch.tensor(["\n" in t.lstrip() for t in texts], device=input_ids.device)
        return done  # type: ignore[return-value]


class CausalBackend:
    """Log-probabilities and greedy answers from a causal LM."""

    def __init__(self, model: LanguageModel, batch_size: int) -> None:
        self.lm = model
        self.model = model.model
        self.tokenizer = model.tokenizer
        self.batch_size = batch_size
        self.specials = special_tokens(self.tokenizer)
        accepted = accepted_kwargs(self.model)
        self.keep_argument = next(
            (name for name in ("logits_to_keep", "num_logits_to_keep") if name in accepted), None
        )
        self.pass_positions = "position_ids" in accepted
        self.pass_use_cache = "use_cache" in accepted
        self.pad_id: int = self.tokenizer.pad_token_id
        fallback = [self.tokenizer.bos_token_id, self.tokenizer.eos_token_id, self.pad_id]
        self.start_id: int = next(t for t in fallback if t is not None)
        self._answer_ids: dict[str, list[int]] = {}

    # -- encoding ------------------------------------------------------------------------

    def _answer(self, text: str) -> list[int]:
        ids = self._answer_ids.get(text)
        if ids is None:
            ids = encode_text(self.tokenizer, text)
            self._answer_ids[text] = ids
        return ids

    def encode(self, rendered: RenderedPrompt, words: Sequence[str], budget: int) -> Encoded:
        context_text, space = split_trailing_space(rendered.prefix)
        context = list(self.specials.lead) + encode_text(self.tokenizer, context_text)
        if not context:  # the answer comes first: condition on a start token
            context = [self.start_id]
        answers = [self._answer(space + word) for word in words]
        longest = max((len(a) for a in answers), default=0)
        return Encoded(context=context, answers=answers, length=len(context) + max(longest, budget))

    # -- log-probabilities -----------------------------------------------------------------

    def _rows(self, items: Sequence[Encoded]) -> list[_Row]:
        rows = []
        for index, item in enumerate(items):
            if item.answers and all(len(a) == 1 for a in item.answers):
                rows.append(_Row(index, item.context, 1, list(enumerate(item.answers))))
                continue
            for j, answer in enumerate(item.answers):
                if answer:
                    rows.append(_Row(index, item.context + answer[:-1], len(answer), [(j, answer)]))
        return rows

    def _last_logits(self, sequences: list[list[int]], keep: int) -> torch.Tensor:
        device = self.lm.device
        ids, mask, positions = left_pad(sequences, self.pad_id, device)
        arguments: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if self.pass_positions:
            arguments["position_ids"] = positions
        if self.pass_use_cache:
            arguments["use_cache"] = False
        if self.keep_argument is not None:
            arguments[self.keep_argument] = keep
        logits: torch.Tensor = self.model(**arguments).logits
        return logits[:, -keep:, :]

    def logprobs(self, items: Sequence[Encoded]) -> tuple[list[list[float]], int]:
        results = [[0.0] * len(item.answers) for item in items]
        groups: dict[int, list[_Row]] = defaultdict(list)
        rows = self._rows(items)
        for row in rows:
            groups[row.keep].append(row)
        for keep, group in groups.items():
            for batch in length_batches([len(r.sequence) for r in group], self.batch_size):
                chosen = [group[i] for i in batch]
                logprobs = self._last_logits([r.sequence for r in chosen], keep)
                logprobs = logprobs.float().log_softmax(dim=-1)
                for b, row in enumerate(chosen):
                    targets = torch.tensor(
                        [ids for _, ids in row.targets], dtype=torch.long, device=logprobs.device
                    )  # (answers, keep)
                    picked = logprobs[b].gather(-1, targets.T)  # (keep, answers)
                    for (j, _), value in zip(row.targets, picked.sum(dim=0).tolist(), strict=True):
                        results[row.item][j] = float(value)
        return results, len(rows)

    # -- generation ---------------------------------------------------------------------------

    def _generation_config(self, max_new_tokens: int) -> GenerationConfig:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=self.pad_id,
            eos_token_id=eos,
        )

    def generate(self, items: Sequence[Encoded], max_new_tokens: int) -> tuple[list[str], int]:
        texts = [""] * len(items)
        config = self._generation_config(max_new_tokens)
        for batch in length_batches([len(item.context) for item in items], self.batch_size):
            ids, mask, _ = left_pad([items[i].context for i in batch], self.pad_id, self.lm.device)
            stop = StoppingCriteriaList([_StopAtNewline(self.tokenizer, ids.shape[1])])
            output = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                generation_config=config,
                stopping_criteria=stop,
            )
            new = output[:, ids.shape[1] :]
            decoded = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            for i, text in zip(batch, decoded, strict=True):
                texts[i] = first_line(text)
        return texts, len(items)

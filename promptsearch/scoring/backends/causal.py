"""Scoring with causal (left-to-right) language models.

The answer continues the prompt: the context is the prefix without its trailing
whitespace and the continuation is that whitespace plus the answer word, tokenized
separately and concatenated.  Log-probabilities are full-vocabulary log-softmax,
computed only at the positions that predict answer tokens: when every answer of an
example is one token, one sequence per example and only its last position; otherwise
one sequence ``context + answer[:-1]`` per answer, batched by answer length so that
the model returns only the last ``len(answer)`` positions' logits.

The language-model head thus runs only where an answer token is predicted, never
over ``(batch, sequence, vocabulary)``.  There it covers the whole vocabulary: a
log-probability needs the normaliser (the log-sum-exp over every token), and that
one ``(rows, vocabulary)`` product costs under one per cent of the forward pass of
even a short row on the models this is built for, so computing only the answer
tokens' rows of the output embedding would save nothing worth its complexity.

Rows whose token ids start with the same run (the prompt's instruction,
demonstrations and template text) share that run's keys and values: it runs once
per call and each row runs only its remaining tokens (see
:mod:`promptsearch.scoring.backends.prefix_cache`); identical rows (a template that starts with the
answer slot, say) run once.  ``forward_passes`` still counts one per row, so budgets
do not depend on these savings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from promptsearch.scoring.backends.base import (
    Encoded,
    accepted_kwargs,
    cache_argument,
    encode_text,
    first_line,
    left_pad,
    special_tokens,
    split_trailing_space,
)
from promptsearch.scoring.backends.prefix_cache import (
    SharedPrefix,
    choose_shared_prefix,
    run_prefix,
)
from promptsearch.scoring.batching import BatchSize, run_batches

if TYPE_CHECKING:
    from promptsearch.models.base import LanguageModel
    from promptsearch.prompt import RenderedPrompt

__all__ = ["CausalBackend", "first_line"]


@dataclass
class _Row:
    """One sequence to run: which item, how many final positions to score, and targets."""

    item: int
    sequence: list[int]
    keep: int
    targets: list[tuple[int, list[int]]]  # (answer index, token ids, one per kept position)


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

    def __init__(
        self, model: LanguageModel, batch_size: int | BatchSize, *, share_prefix: bool = True
    ) -> None:
        self.lm = model
        self.model = model.model
        self.tokenizer = model.tokenizer
        self.sizer = (
            batch_size
            if isinstance(batch_size, BatchSize)
            else BatchSize(batch_size, device_type=model.device.type)
        )
        self.specials = special_tokens(self.tokenizer)
        accepted = accepted_kwargs(self.model)
        self.keep_argument = next(
            (name for name in ("logits_to_keep", "num_logits_to_keep") if name in accepted), None
        )
        self.pass_positions = "position_ids" in accepted
        self.pass_use_cache = "use_cache" in accepted
        self.cache_argument = cache_argument(accepted)
        """The name ``forward`` takes a key/value cache under (``None``: it takes none)."""
        self.share_prefix = bool(
            share_prefix
            and self.pass_positions
            and self.pass_use_cache
            and self.cache_argument is not None
        )
        """Share the keys and values of the rows' common leading tokens (if the model can)."""
        self._prefix_checked = False
        self.last_shared = (0, 0)
        """Of the last ``logprobs`` call: the shared prefix's length and the rows that used it."""
        self.tokens_run = 0
        """Token positions run through the model for log-probabilities (padding included)."""
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
        self.tokens_run += ids.numel()
        return logits[:, -keep:, :]

    def _cached_logits(
        self, prefix: SharedPrefix, sequences: list[list[int]], keep: int
    ) -> torch.Tensor:
        rests = [sequence[prefix.length :] for sequence in sequences]
        logits = prefix.last_logits(
            self.model, rests, keep, self.pad_id, self.keep_argument, self.cache_argument
        )
        self.tokens_run += len(rests) * max(len(rest) for rest in rests)
        return logits

    def _shared_prefix(self, rows: list[_Row]) -> tuple[SharedPrefix | None, set[int]]:
        """The prefix the rows share, run once, and the indices of the rows that use it."""
        if not self.share_prefix or len(rows) < 2:
            return None, set()
        limits = [len(row.sequence) - row.keep for row in rows]
        length, members = choose_shared_prefix([row.sequence for row in rows], limits)
        if not members:
            return None, set()
        ids = rows[members[0]].sequence[:length]
        prefix = run_prefix(
            self.model, ids, self.lm.device, self.keep_argument, self.cache_argument or ""
        )
        if prefix is None:
            self.share_prefix = False
            return None, set()
        self.tokens_run += length
        if not self._prefix_checked:
            self._prefix_checked = True
            first = rows[members[0]]
            probe = [r.sequence for r in (rows[i] for i in members[:2]) if r.keep == first.keep]
            plain = self._last_logits(probe, first.keep).float().log_softmax(dim=-1)
            cached = self._cached_logits(prefix, probe, first.keep).float().log_softmax(dim=-1)
            tolerance = 1e-3 if self.lm.dtype == torch.float32 else 5e-2
            if not torch.allclose(plain, cached, atol=tolerance, rtol=tolerance):
                self.share_prefix = False
                return None, set()
        return prefix, set(members)

    def _score_rows(
        self, rows: list[_Row], keep: int, prefix: SharedPrefix | None, results: list[list[float]]
    ) -> None:
        """Score *rows* (all with *keep* scored positions); identical sequences run once."""
        same: dict[tuple[int, ...], list[_Row]] = {}
        for row in rows:
            same.setdefault(tuple(row.sequence), []).append(row)
        unique = list(same)

        def step(batch: list[int]) -> None:
            sequences = [list(unique[i]) for i in batch]
            if prefix is None:
                logits = self._last_logits(sequences, keep)
            else:
                logits = self._cached_logits(prefix, sequences, keep)
            logprobs = logits.float().log_softmax(dim=-1)
            for b, i in enumerate(batch):
                for row in same[unique[i]]:
                    targets = torch.tensor(
                        [ids for _, ids in row.targets], dtype=torch.long, device=logprobs.device
                    )  # (answers, keep)
                    picked = logprobs[b].gather(-1, targets.T).sum(dim=0)  # (answers,)
                    for (j, _), value in zip(row.targets, picked.tolist(), strict=True):
                        results[row.item][j] = float(value)

        if unique:
            run_batches([len(sequence) for sequence in unique], self.sizer, step)

    def logprobs(self, items: Sequence[Encoded]) -> tuple[list[list[float]], int]:
        results = [[0.0] * len(item.answers) for item in items]
        rows = self._rows(items)
        prefix, shared = self._shared_prefix(rows)
        self.last_shared = (prefix.length if prefix else 0, len(shared))
        for keep in sorted({row.keep for row in rows}):
            group = [(i, row) for i, row in enumerate(rows) if row.keep == keep]
            self._score_rows([row for i, row in group if i not in shared], keep, None, results)
            self._score_rows([row for i, row in group if i in shared], keep, prefix, results)
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

        def step(batch: list[int]) -> None:
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

        run_batches([len(item.context) for item in items], self.sizer, step)
        return texts, len(items)

"""Gradient-guided search for trigger tokens (after AutoPrompt, Shin et al. 2020).

:class:`TriggerSearch` holds one model and one trigger template (see
:mod:`promptsearch.searchers._tokens.triggers`) with its verbalizer, and does one search step at a
time:

1. **Inputs.**  Every example is rendered the way the scorer renders it, with a
   private-use sentinel character standing for each trigger.  The text between
   sentinels is tokenized piece by piece and the trigger token ids are spliced in
   where the sentinels were.  Causal models: the context is the prefix without its
   trailing whitespace, and a label word is scored as that whitespace plus the word
   (all its tokens).  Masked models: ``[MASK]`` tokens stand in the answer slot,
   one per token of the word.
2. **Loss.**  A label's log-probability is the log-sum-exp over its verbalizer
   words of the word's log-probability (full-vocabulary softmax, summed over the
   word's tokens), as in the scorer.  ``"likelihood"``: the loss of an example is
   minus its gold label's log-probability.  ``"cross-entropy"``: the same,
   normalised over the task's labels.
3. **Gradient.**  The model runs on input embeddings in which the trigger
   positions hold a ``[triggers, hidden]`` tensor that requires grad (the model's
   own weights are frozen for the duration); the mean loss over the batch is
   back-propagated, which gives the gradient of each trigger summed over its
   occurrences and averaged over the batch.
4. **Candidates.**  For one trigger position *i*, the first-order estimate of the
   loss change of token *v* is ``-grad_i . E_v`` (``E`` the input embedding
   matrix), one vector over the vocabulary; the ``top_k`` allowed tokens by that
   score are then scored exactly on the batch, all of them in batched forward
   passes without grad, and the best one is kept if it lowers the loss.

Memory stays bounded: the language-model head runs only at the answer positions
(``logits_to_keep`` on causal models, the base model plus the head at gathered
positions on masked ones), so no ``[batch, sequence, vocabulary]`` tensor is
built.  The code works in the model's dtype (bfloat16 on a GPU included); the
gradient is cast to float32 for the dot products with the embedding matrix.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.models.base import LanguageModel
from promptsearch.prompt import Prompt
from promptsearch.scoring.backends.base import accepted_kwargs, encode_text, left_pad, right_pad
from promptsearch.searchers._tokens.trigger_inputs import Row, TriggerBatch, TriggerEncoder
from promptsearch.searchers._tokens.triggers import (
    TokenScheme,
    allowed_tokens,
    count_triggers,
    special_ids,
    vocabulary,
)
from promptsearch.task import Example

if TYPE_CHECKING:
    import torch

__all__ = ["OBJECTIVES", "Row", "StepResult", "TriggerBatch", "TriggerSearch", "word_token_flags"]

OBJECTIVES = ("likelihood", "cross-entropy")
"""The losses a trigger search can minimise (see the module docstring)."""

_VOCAB_CHUNK = 16384  # embedding rows per matrix-vector product


@dataclass(frozen=True)
class StepResult:
    """One search step: the loss before it, the candidates tried, the token chosen."""

    position: int
    loss: float
    candidates: tuple[tuple[int, float], ...]  # (token id, loss on the batch), best first
    chosen: int | None

    @property
    def improved(self) -> bool:
        return self.chosen is not None


@contextlib.contextmanager
def _frozen(model: Any) -> Iterator[None]:
    """The model's parameters without grad and the model in eval mode, restored after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    training = bool(getattr(model, "training", False))
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    model.eval()
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
        if training:
            model.train()


def _find_split(model: Any) -> tuple[Any, Any] | None:
    """(base model, head) when the model is a base model plus one head module."""
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None) if prefix else None
    if base is None or base is model:
        return None
    heads = [module for name, module in model.named_children() if name != prefix]
    return (base, heads[0]) if len(heads) == 1 else None


def word_token_flags(
    tokenizer: Any, tokens: Sequence[str], scheme: TokenScheme, size: int, words: Sequence[str]
) -> list[bool]:
    """For each of *size* vocabulary ids (the model's embedding rows), whether a
    searched token may take it:
    :func:`~promptsearch.searchers._tokens.triggers.allowed_tokens`, with *words* (the
    label words) banned by spelling and by their token ids, with and without a leading
    space.  Ids beyond the tokenizer's vocabulary are not allowed."""
    banned = {t for w in words for t in encode_text(tokenizer, " " + w)}
    banned.update(t for w in words for t in encode_text(tokenizer, w))
    flags = allowed_tokens(tokens[:size], scheme, special_ids(tokenizer), words, banned)
    return flags + [False] * (size - len(flags))


class TriggerSearch:
    """Trigger-token search for one model, trigger template and verbalizer.

    Parameters
    ----------
    model:
        A causal or masked :class:`~promptsearch.models.base.LanguageModel`.
    prompt:
        A prompt whose template holds ``[T]`` markers and whose verbalizer is set.
    labels:
        The task's labels, in order.
    objective:
        One of :data:`OBJECTIVES`.
    forward_batch_size:
        Sequences per forward pass (memory, not results).
    """

    def __init__(
        self,
        model: LanguageModel,
        prompt: Prompt,
        labels: Sequence[str],
        *,
        objective: str = "likelihood",
        forward_batch_size: int = 32,
    ) -> None:
        import torch

        if model.kind not in ("causal", "masked"):
            raise ConfigError(
                f"trigger search works with causal and masked LMs; model {model.name!r} is "
                f"a {model.kind} model"
            )
        if objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {list(OBJECTIVES)}; got {objective!r}")
        if prompt.verbalizer is None:
            raise ConfigError("trigger search needs a prompt with its verbalizer set")
        self.lm = model
        self.model = model.model
        self.tokenizer = model.tokenizer
        self.objective = objective
        self.forward_batch_size = forward_batch_size
        self.tokens = vocabulary(self.tokenizer)
        self.scheme = TokenScheme.detect(self.tokens)
        self.num_triggers = count_triggers(prompt.template)
        if self.num_triggers < 1:
            raise ConfigError(f"template {prompt.template!r} has no [T] trigger markers")
        self.prompt = prompt
        self.labels = [str(label) for label in labels]
        verbalizer = prompt.verbalizer
        missing = [label for label in self.labels if label not in verbalizer]
        if missing:
            raise ConfigError(f"verbalizer {dict(verbalizer)} has no word for label(s) {missing}")
        self.words = [w for label in self.labels for w in verbalizer[label]]
        self.owners = [k for k, label in enumerate(self.labels) for _ in verbalizer[label]]
        self.encoder = TriggerEncoder(
            model, prompt, self.labels, self.words, self.scheme.space_marker
        )
        self.pad_id = self.encoder.pad_id
        accepted = accepted_kwargs(self.model)
        self._keep_arg = next(
            (a for a in ("logits_to_keep", "num_logits_to_keep") if a in accepted), None
        )
        self._pass_positions = model.kind == "causal" and "position_ids" in accepted
        self._pass_use_cache = "use_cache" in accepted
        self._split = _find_split(self.model)
        self._split_checked = False
        self.embedding: torch.Tensor = self.model.get_input_embeddings().weight
        size = int(self.embedding.shape[0])
        flags = word_token_flags(self.tokenizer, self.tokens, self.scheme, size, self.words)
        self.allowed = torch.tensor(flags, dtype=torch.bool, device=self.embedding.device)
        if not bool(self.allowed.any()):
            raise ConfigError(f"model {model.name!r}: no vocabulary token can be a trigger")

    # -- tokens ----------------------------------------------------------------------------

    def word(self, token_id: int) -> str:
        """The word that trigger token *token_id* spells (without its space marker)."""
        word = self.scheme.word(self.tokens[token_id])
        return self.tokens[token_id] if word is None else word

    def token_id(self, word: str) -> int | None:
        """The id of the allowed word-initial token that spells *word*, if any."""
        for text in (word, word.lower()):
            token = self.scheme.token(text)
            found = self.tokenizer.convert_tokens_to_ids(token)
            if (
                isinstance(found, int)
                and 0 <= found < len(self.tokens)
                and self.tokens[found] == token
                and bool(self.allowed[found])
            ):
                return found
        return None

    def encode(self, examples: Sequence[Example]) -> TriggerBatch:
        """Encode *examples* (labelled with the task's labels) into a batch."""
        return self.encoder.encode(examples)

    # -- forward passes ------------------------------------------------------------------------

    def _inputs(
        self, sequences: list[list[int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        device = self.embedding.device
        if self.lm.kind == "causal":
            ids, mask, positions = left_pad(sequences, self.pad_id, device)
            width = ids.shape[1]
            return ids, mask, positions, [width - len(s) for s in sequences]
        ids, mask = right_pad(sequences, self.pad_id, device)
        return ids, mask, mask, [0] * len(sequences)

    def _answer_logits(
        self,
        rows: Sequence[Row],
        variants: Sequence[Sequence[int]],
        trigger_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits at every row's answer positions, in row order: (positions, vocab).

        ``variants[r]`` is the trigger token sequence of row *r*; with
        *trigger_embeds* the trigger positions take those vectors instead.
        """
        import torch

        sequences = []
        for row, variant in zip(rows, variants, strict=True):
            sequence = list(row.ids)
            for position, j in row.triggers:
                sequence[position] = int(variant[j])
            sequences.append(sequence)
        ids, mask, positions, offsets = self._inputs(sequences)
        rows_at = [r for r, row in enumerate(rows) for _ in row.answer_at]
        cols_at = [c + offsets[r] for r, row in enumerate(rows) for c in row.answer_at]
        inputs: dict[str, Any] = {"attention_mask": mask}
        if trigger_embeds is None:
            inputs["input_ids"] = ids
        else:
            where = [(r, p + offsets[r], j) for r, row in enumerate(rows) for p, j in row.triggers]
            embeds = self.embedding[ids]
            if where:
                index = torch.tensor(where, dtype=torch.long, device=ids.device)
                embeds = embeds.index_put(
                    (index[:, 0], index[:, 1]), trigger_embeds[index[:, 2]].to(embeds.dtype)
                )
            inputs["inputs_embeds"] = embeds
        if self._pass_positions:
            inputs["position_ids"] = positions
        if self._pass_use_cache:
            inputs["use_cache"] = False
        row_index = torch.tensor(rows_at, dtype=torch.long, device=ids.device)
        col_index = torch.tensor(cols_at, dtype=torch.long, device=ids.device)
        if self.lm.kind == "causal" and self._keep_arg is not None:
            width = int(ids.shape[1])
            keep = width - min(cols_at)
            logits: torch.Tensor = self.model(**inputs, **{self._keep_arg: keep}).logits
            return logits[row_index, col_index - (width - keep)]
        return self._gathered_logits(inputs, row_index, col_index)

    def _gathered_logits(
        self, inputs: dict[str, Any], rows_at: torch.Tensor, cols_at: torch.Tensor
    ) -> torch.Tensor:
        if self._split is not None and not self._split_checked:
            self._check_split(inputs, rows_at, cols_at)
        if self._split is not None:
            base, head = self._split
            allowed = accepted_kwargs(base)
            hidden = base(**{k: v for k, v in inputs.items() if k in allowed})[0]
            selected: torch.Tensor = head(hidden[rows_at, cols_at])
            return selected
        logits: torch.Tensor = self.model(**inputs).logits  # no usable head: full logits
        return logits[rows_at, cols_at]

    def _check_split(
        self, inputs: dict[str, Any], rows_at: torch.Tensor, cols_at: torch.Tensor
    ) -> None:
        """Once per model: does base + head give the model's own logits?"""
        import torch

        self._split_checked = True
        assert self._split is not None
        base, head = self._split
        detached = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        allowed = accepted_kwargs(base)
        with torch.no_grad():
            try:
                hidden = base(**{k: v for k, v in detached.items() if k in allowed})[0]
                selected = head(hidden[rows_at, cols_at])
            except Exception:  # a head that needs more than hidden states
                self._split = None
                return
            full = self.model(**detached).logits[rows_at, cols_at]
        tolerance = 1e-3 if full.dtype == torch.float32 else 5e-2
        if full.shape != selected.shape or not torch.allclose(
            full.float(), selected.float(), atol=tolerance, rtol=tolerance
        ):
            self._split = None

    # -- losses ---------------------------------------------------------------------------------

    def _word_logprobs(
        self, logits: torch.Tensor, rows: Sequence[Row], slots: Sequence[int], n_slots: int
    ) -> torch.Tensor:
        """(slots, words): each word's log-probability, summed over its tokens."""
        import torch

        logprobs = logits.float().log_softmax(dim=-1)
        at: list[int] = []
        tokens: list[int] = []
        slot_of: list[int] = []
        word_of: list[int] = []
        offset = 0
        for row, slot in zip(rows, slots, strict=True):
            for word, ids in row.targets:
                for i, token in enumerate(ids):
                    at.append(offset + i)
                    tokens.append(token)
                    slot_of.append(slot)
                    word_of.append(word)
            offset += len(row.answer_at)
        device = logprobs.device
        values = logprobs[torch.tensor(at, device=device), torch.tensor(tokens, device=device)]
        table = torch.zeros((n_slots, len(self.words)), dtype=torch.float32, device=device)
        index = (torch.tensor(slot_of, device=device), torch.tensor(word_of, device=device))
        return table.index_put(index, values, accumulate=True)

    def _example_losses(self, words: torch.Tensor, gold: Sequence[int]) -> torch.Tensor:
        """(slots,) loss of each example from its (slots, words) word log-probabilities."""
        import torch

        per_label = torch.stack(
            [
                torch.logsumexp(words[:, [w for w, o in enumerate(self.owners) if o == k]], dim=1)
                for k in range(len(self.labels))
            ],
            dim=1,
        )
        index = torch.tensor(list(gold), dtype=torch.long, device=words.device)
        gold_logprob = per_label.gather(1, index[:, None]).squeeze(1)
        if self.objective == "cross-entropy":
            return torch.logsumexp(per_label, dim=1) - gold_logprob
        return -gold_logprob

    def losses(self, variants: Sequence[Sequence[int]], batch: TriggerBatch) -> list[float]:
        """Mean loss over *batch* of every trigger sequence in *variants* (no grad)."""
        import torch

        if not variants:
            return []
        n_slots = len(variants) * batch.size
        items = [(v, row) for v in range(len(variants)) for row in batch.rows]
        items.sort(key=lambda item: -len(item[1].ids))
        table: torch.Tensor | None = None
        with _frozen(self.model), torch.no_grad():
            for start in range(0, len(items), self.forward_batch_size):
                chunk = items[start : start + self.forward_batch_size]
                rows = [row for _, row in chunk]
                logits = self._answer_logits(rows, [variants[v] for v, _ in chunk])
                slots = [v * batch.size + row.example for v, row in chunk]
                part = self._word_logprobs(logits, rows, slots, n_slots)
                table = part if table is None else table + part
            assert table is not None
            per_example = self._example_losses(table, list(batch.gold) * len(variants))
        means = per_example.view(len(variants), batch.size).mean(dim=1)
        return [float(x) for x in means.tolist()]

    def loss(self, triggers: Sequence[int], batch: TriggerBatch) -> float:
        """Mean loss of *triggers* over *batch*."""
        return self.losses([triggers], batch)[0]

    def gradient(self, triggers: Sequence[int], batch: TriggerBatch) -> tuple[float, torch.Tensor]:
        """Mean loss over *batch* and its gradient at each trigger, ``(triggers, hidden)``
        in float32."""
        import torch

        self._check_triggers(triggers)
        by_example: list[list[Row]] = [[] for _ in range(batch.size)]
        for row in batch.rows:
            by_example[row.example].append(row)
        total = 0.0
        with _frozen(self.model), torch.enable_grad():
            index = torch.tensor(list(triggers), dtype=torch.long, device=self.embedding.device)
            vectors = self.embedding[index].detach().clone().requires_grad_(True)
            chunk: list[int] = []
            for example in [*range(batch.size), None]:
                if example is not None and (
                    not chunk
                    or sum(len(by_example[e]) for e in chunk) + len(by_example[example])
                    <= self.forward_batch_size
                ):
                    chunk.append(example)
                    continue
                rows = [row for e in chunk for row in by_example[e]]
                local = {e: i for i, e in enumerate(chunk)}
                logits = self._answer_logits(rows, [triggers] * len(rows), vectors)
                slots = [local[row.example] for row in rows]
                words = self._word_logprobs(logits, rows, slots, len(chunk))
                losses = self._example_losses(words, [batch.gold[e] for e in chunk])
                (losses.sum() / batch.size).backward()
                total += float(losses.detach().sum())
                chunk = [] if example is None else [example]
            grad = vectors.grad
        if grad is None:
            grad = torch.zeros_like(vectors)
        return total / batch.size, grad.detach().float()

    # -- the step ---------------------------------------------------------------------------------

    def first_order(self, gradient: torch.Tensor) -> torch.Tensor:
        """``-gradient . E_v`` for every vocabulary token *v*: (vocab,) float32."""
        import torch

        vector = gradient.detach().float().to(self.embedding.device)
        size = int(self.embedding.shape[0])
        out = torch.empty(size, dtype=torch.float32, device=self.embedding.device)
        with torch.no_grad():
            for start in range(0, size, _VOCAB_CHUNK):
                block = self.embedding[start : start + _VOCAB_CHUNK].detach().float()
                out[start : start + block.shape[0]] = -(block @ vector)
        return out

    def top_candidates(self, gradient: torch.Tensor, current: int, top_k: int) -> list[int]:
        """The *top_k* allowed tokens by first-order score (*current* excluded), best first."""
        import torch

        scores = self.first_order(gradient)
        scores = scores.masked_fill(~self.allowed, -math.inf)
        scores[current] = -math.inf
        count = min(top_k, int(torch.isfinite(scores).sum()))
        if count <= 0:
            return []
        return [int(i) for i in torch.topk(scores, count).indices.tolist()]

    def _check_triggers(self, triggers: Sequence[int]) -> None:
        if len(triggers) != self.num_triggers:
            raise ConfigError(f"expected {self.num_triggers} trigger tokens; got {len(triggers)}")

    def step(
        self, triggers: Sequence[int], position: int, batch: TriggerBatch, top_k: int
    ) -> StepResult:
        """Try the *top_k* first-order replacements of trigger *position* on *batch*."""
        import torch

        current = [int(t) for t in triggers]
        if not 0 <= position < self.num_triggers:
            raise ConfigError(f"position must be in [0, {self.num_triggers}); got {position}")
        _, gradient = self.gradient(current, batch)
        tokens = self.top_candidates(gradient[position], current[position], top_k)
        variants = [current] + [
            [*current[:position], token, *current[position + 1 :]] for token in tokens
        ]
        losses = self.losses(variants, batch)
        before = losses[0]
        ranked = tuple(sorted(zip(tokens, losses[1:], strict=True), key=lambda c: (c[1], c[0])))
        relative = 1e-6 if self.embedding.dtype == torch.float32 else 1e-3
        margin = relative * max(1.0, abs(before))
        chosen = ranked[0][0] if ranked and ranked[0][1] < before - margin else None
        return StepResult(position, before, ranked, chosen)

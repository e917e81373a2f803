"""A prompt's fixed prefix, run once and shared by every example (causal LMs).

Every example rendered with one prompt starts with the same text: the instruction,
the demonstrations and the template up to the first input field.  A causal LM's
keys and values at a position depend only on the tokens up to it, so the model
can run those tokens once and every example can continue from the cached keys and
values, running only its own remaining tokens.

**Where the split falls.**  The split is made on token ids, never on text: every
row is tokenized in full exactly as on the plain path, and the shared prefix is a
run of leading token ids that the rows have in common.  A row takes the cached path
only if its own ids start with that run, so ``prefix + rest`` is by construction the
row's full tokenization; a row whose tokenization differs near the boundary (a BPE
merge across the end of the template text) simply runs on the plain path.  The
prefix chosen is the one that saves the most tokens: at each length, the most
common next token among the rows still in agreement extends it, and the length
kept maximises ``(rows sharing it - 1) * length``.  A row's kept positions (those
that predict answer tokens) always stay outside the prefix.

**How a batch runs.**  The prefix runs once (batch of one, positions ``0..P-1``).
For each batch, its keys and values are copied into a fresh ``DynamicCache``
expanded to the batch; the rows' remaining tokens are left-padded behind it, with
an attention mask of ones over the prefix and the rows' own padding mask after it,
and position ids ``P, P+1, ...`` for each row's real tokens, as in the unpadded
full sequence.

**When it is not used.**  Models whose ``forward`` takes no ``past_key_values`` or
``position_ids``, caches that are not plain dynamic caches (sliding windows,
recurrent state), prefixes shorter than :data:`MIN_SHARED_TOKENS`, or fewer than
two rows sharing.  The first time a back-end uses the cache, up to two rows are
also scored on the plain path; if the two disagree (beyond rounding), sharing is
switched off for that back-end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from promptsearch.scoring.backends.base import left_pad, output_cache

__all__ = ["MIN_SHARED_TOKENS", "SharedPrefix", "choose_shared_prefix", "run_prefix"]

MIN_SHARED_TOKENS = 8
"""A shorter common prefix is not worth a cache: every row runs in full."""


def _common_length(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading ids all *sequences* share (those of the lexicographic extremes)."""
    low, high = min(sequences, key=list), max(sequences, key=list)
    for k, (a, b) in enumerate(zip(low, high, strict=False)):
        if a != b:
            return k
    return min(len(low), len(high))


def choose_shared_prefix(
    sequences: Sequence[Sequence[int]], limits: Sequence[int], minimum: int = MIN_SHARED_TOKENS
) -> tuple[int, list[int]]:
    """The prefix length to share and the rows that share it (``(0, [])``: none).

    *limits*: the most leading tokens of each row that may be cached (the rest, at
    least the positions whose outputs are scored, must run).
    """
    active = [i for i in range(len(sequences)) if limits[i] > 0]
    best_length, best_members, best_gain = 0, [], 0
    length = 0
    if len(active) >= 2:  # the walk below, in one step while every row agrees
        length = min(_common_length([sequences[i] for i in active]), *(limits[i] for i in active))
        best_length, best_members, best_gain = length, list(active), (len(active) - 1) * length
        active = [i for i in active if limits[i] > length]
    while len(active) >= 2:
        counts = Counter(sequences[i][length] for i in active)
        token, count = counts.most_common(1)[0]
        if count < 2:
            break
        active = [i for i in active if sequences[i][length] == token]
        length += 1
        gain = (len(active) - 1) * length
        if gain > best_gain:
            best_length, best_members, best_gain = length, list(active), gain
        active = [i for i in active if limits[i] > length]
    if best_length < minimum:
        return 0, []
    return best_length, best_members


@dataclass
class SharedPrefix:
    """The keys and values of a run of prefix tokens, one ``(keys, values)`` per layer."""

    ids: list[int]
    layers: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def length(self) -> int:
        return len(self.ids)

    def expanded(self, rows: int) -> DynamicCache:
        """A fresh cache holding the prefix once per row (a copy: the rows append to it)."""
        data = [
            (keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1))
            for keys, values in self.layers
        ]
        return DynamicCache(ddp_cache_data=data)

    def last_logits(
        self,
        model: Any,
        rests: Sequence[Sequence[int]],
        keep: int,
        pad_id: int,
        keep_argument: str | None,
        cache_argument: str | None = "past_key_values",
    ) -> torch.Tensor:
        """Logits of the last *keep* positions of each ``prefix + rest`` row, (rows, keep, V)."""
        device = self.layers[0][0].device
        ids, mask, positions = left_pad(rests, pad_id, device)
        ones = torch.ones((len(rests), self.length), dtype=mask.dtype, device=device)
        arguments: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": torch.cat([ones, mask], dim=1),
            "position_ids": positions + self.length,
            cache_argument or "past_key_values": self.expanded(len(rests)),
            "use_cache": True,
        }
        if keep_argument is not None:
            arguments[keep_argument] = keep
        logits: torch.Tensor = model(**arguments).logits
        return logits[:, -keep:, :]


def run_prefix(
    model: Any,
    ids: Sequence[int],
    device: torch.device,
    keep_argument: str | None,
    cache_argument: str = "past_key_values",
) -> SharedPrefix | None:
    """Run *ids* once and keep their keys and values; ``None`` if the cache is unusable."""
    tensor = torch.tensor([list(ids)], dtype=torch.long, device=device)
    arguments: dict[str, Any] = {
        "input_ids": tensor,
        "attention_mask": torch.ones_like(tensor),
        "position_ids": torch.arange(len(ids), device=device).unsqueeze(0),
        cache_argument or "past_key_values": DynamicCache(),
        "use_cache": True,
    }
    if keep_argument is not None:  # the prefix's logits are not needed: keep the fewest
        arguments[keep_argument] = 1
    output = model(**arguments)
    cache = output_cache(output)
    if not isinstance(cache, DynamicCache):
        return None
    layers: list[tuple[torch.Tensor, torch.Tensor]] = []
    for layer in cache.layers:
        if type(layer) is not DynamicLayer or layer.keys is None or layer.values is None:
            return None
        if layer.keys.dim() != 4 or layer.keys.shape[0] != 1 or layer.keys.shape[-2] != len(ids):
            return None
        layers.append((layer.keys, layer.values))
    return SharedPrefix(list(ids), layers) if layers else None

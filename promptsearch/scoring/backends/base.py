"""Shared pieces of the scoring back-ends: encoded examples, batching, padding.

A back-end turns a :class:`~promptsearch.prompt.RenderedPrompt` and the candidate
answer words into an :class:`Encoded` (token ids, and how long the model input
gets), then computes the log-probability of each answer and, for generation tasks,
generates text.  Everything here runs under ``torch.inference_mode()``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from promptsearch.prompt import RenderedPrompt

__all__ = [
    "Backend",
    "Encoded",
    "SpecialTokens",
    "accepted_kwargs",
    "encode_text",
    "first_line",
    "left_pad",
    "length_batches",
    "right_pad",
    "special_tokens",
    "split_trailing_space",
]


@dataclass
class Encoded:
    """One example, tokenized for one back-end.

    ``context``: what conditions the answer (causal: the prefix without its trailing
    whitespace, with any leading special tokens; masked: special tokens and prefix,
    left of the masks; seq2seq: the encoder input).  ``right``: masked LMs only, the
    suffix and closing special tokens.  ``answers``: token ids of each candidate
    answer as the model would see it in place.  ``answer_prefix``: seq2seq only,
    decoder tokens given before the answer (a sentinel) and not scored.
    ``length``: the longest model input this example needs.
    """

    context: list[int]
    answers: list[list[int]]
    length: int
    right: list[int] = field(default_factory=list)
    answer_prefix: list[int] = field(default_factory=list)


class Backend(Protocol):
    """What the scorer needs from a model family."""

    def encode(self, rendered: RenderedPrompt, words: Sequence[str], budget: int) -> Encoded:
        """Tokenize one example; *budget* is the number of tokens generation may add."""
        ...

    def logprobs(self, items: Sequence[Encoded]) -> tuple[list[list[float]], int]:
        """Log-probability of every answer of every item, and the sequences run."""
        ...

    def generate(self, items: Sequence[Encoded], max_new_tokens: int) -> tuple[list[str], int]:
        """Greedy answer text for every item, and the sequences run."""
        ...


@dataclass(frozen=True)
class SpecialTokens:
    """The ids a tokenizer puts before (``lead``) and after (``trail``) a text."""

    lead: tuple[int, ...]
    trail: tuple[int, ...]


def special_tokens(tokenizer: Any) -> SpecialTokens:
    """Find which special tokens *tokenizer* adds around a text, by encoding a probe."""
    probe = "hello"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return SpecialTokens(tuple(full[:start]), tuple(full[start + len(plain) :]))
    return SpecialTokens((), ())


def split_trailing_space(prefix: str) -> tuple[str, str]:
    """``"Sentiment: "`` → ``("Sentiment:", " ")``: the space belongs to the answer."""
    context = prefix.rstrip()
    return context, prefix[len(context) :]


def first_line(text: str) -> str:
    """The answer in generated *text*: its first non-blank line, stripped."""
    stripped = text.strip()
    return stripped.splitlines()[0].strip() if stripped else ""


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of *text* without special tokens."""
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length (longest first); the back-ends use
    :func:`promptsearch.scoring.batching.run_batches`, which also backs off on out-of-memory."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def left_pad(
    rows: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded ids, attention mask and position ids (0 at each row's first real token)."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def right_pad(
    rows: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
            mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


def accepted_kwargs(model: Any) -> set[str]:
    """Names of the keyword arguments the model's ``forward`` takes explicitly."""
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


CACHE_ARGUMENTS = ("cache", "past_key_values")
"""The names ``forward`` takes a key/value cache under, newest first: transformers 5.2x
renamed ``past_key_values`` to ``cache`` (the old name warns, then goes in 5.40)."""


def cache_argument(accepted: set[str]) -> str | None:
    """The name under which a model whose ``forward`` takes *accepted* wants its cache."""
    return next((name for name in CACHE_ARGUMENTS if name in accepted), None)


def output_cache(output: Any) -> Any:
    """The key/value cache a forward pass returned, under either name."""
    for name in CACHE_ARGUMENTS:
        value = getattr(output, name, None) if name in _output_keys(output) else None
        if value is not None:
            return value
    return None


def _output_keys(output: Any) -> set[str]:
    keys = getattr(output, "keys", None)
    return set(keys()) if callable(keys) else set(dir(output))

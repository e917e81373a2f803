"""Token log-probabilities for ``promptsearch serve``'s ``/v1/completions`` (``echo`` and
``logprobs``), in the shape vLLM and llama-cpp-python's server answer:

``choices[i].logprobs = {"tokens": [...], "token_logprobs": [...], "top_logprobs":
[...], "text_offset": [...]}``

* The prompt is tokenized with the tokenizer's special tokens (as the model reads it)
  and the completion is appended without them; one forward pass over both gives each
  token's log-probability given the tokens before it (full-vocabulary log-softmax in
  float32).  The first token has none (``null``), as in the other servers.
* With ``echo``, the arrays cover the prompt and the completion, and ``text_offset``
  counts characters from the start of the prompt; without it, the completion only,
  with offsets that still count from the start of the prompt (the OpenAI convention).
* ``tokens`` are the token texts (each the text its id adds to the decoded prefix, so
  they join to the decoded text); special tokens are ``""``.
* ``top_logprobs[k]`` maps the texts of the ``logprobs`` most likely tokens at position
  *k* (and of the token itself) to their log-probabilities; ``null`` for the first.
"""

from __future__ import annotations

from typing import Any

from promptsearch.generators._server_requests import Refusal
from promptsearch.models.base import LanguageModel

__all__ = ["token_logprobs"]


def _decoded(tokenizer: Any, ids: list[int]) -> str:
    text: str = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return text


def _pieces(tokenizer: Any, ids: list[int]) -> tuple[list[str], list[int]]:
    """The text each token adds to the decoded prefix, and where it starts."""
    pieces, offsets, previous = [], [], ""
    for k in range(len(ids)):
        current = _decoded(tokenizer, ids[: k + 1])
        if current.startswith(previous):
            piece = current[len(previous) :]
        else:  # a character split across tokens: decoding the prefix alone changed it
            piece = _decoded(tokenizer, ids[k : k + 1])
        offsets.append(len(previous))
        pieces.append(piece)
        previous = current if current.startswith(previous) else previous + piece
    return pieces, offsets


def token_logprobs(
    lm: LanguageModel,
    prompt: str,
    completion: str | None,
    top: int,
    echo: bool,
) -> tuple[str, dict[str, Any]]:
    """The completion and the ``logprobs`` object of one choice (see the module
    docstring).  *completion* ``None``: the greedy next token, read off the same
    forward pass (a ``max_tokens: 1``, ``temperature: 0`` request)."""
    import torch

    tokenizer = lm.tokenizer
    prompt_ids = list(tokenizer(prompt, add_special_tokens=True, verbose=False)["input_ids"])
    added = (
        list(tokenizer(completion, add_special_tokens=False, verbose=False)["input_ids"])
        if completion
        else []
    )
    ids = prompt_ids + added
    if len(ids) + (completion is None) > lm.max_length:
        raise Refusal(
            400,
            f"this model's maximum context length is {lm.max_length} tokens; the prompt and "
            f"completion have {len(ids) + (completion is None)}",
            code="context_length_exceeded",
            param="prompt",
        )
    logprobs = None
    if ids:
        with torch.inference_mode():
            batch = torch.tensor([ids], dtype=torch.long, device=lm.device)
            logits = lm.model(input_ids=batch, use_cache=False).logits[0]
            logprobs = logits.float().log_softmax(dim=-1)  # row k: the token after ids[k]
        if completion is None:
            ids.append(int(logprobs[-1].argmax()))
    text = _decoded(tokenizer, ids[len(prompt_ids) :]) if completion is None else completion
    values: list[float | None] = [None] * len(ids)
    tops: list[dict[str, float] | None] = [None] * len(ids)
    pieces, offsets = _pieces(tokenizer, ids)
    if logprobs is not None and len(ids) > 1:
        targets = torch.tensor(ids[1:], dtype=torch.long, device=logprobs.device)
        rows = logprobs[: len(ids) - 1]
        chosen = rows.gather(-1, targets[:, None])[:, 0].tolist()
        best = rows.topk(top, dim=-1) if top > 0 else None
        for k in range(1, len(ids)):
            values[k] = float(chosen[k - 1])
            row: dict[str, float] = {}
            if best is not None:
                for value, index in zip(
                    best.values[k - 1].tolist(), best.indices[k - 1].tolist(), strict=True
                ):
                    row.setdefault(_decoded(tokenizer, [int(index)]), float(value))
            row.setdefault(pieces[k], float(chosen[k - 1]))
            tops[k] = row
    start = 0 if echo else len(prompt_ids)
    return text, {
        "tokens": pieces[start:],
        "token_logprobs": values[start:],
        "top_logprobs": tops[start:],
        "text_offset": offsets[start:],
    }

"""The requests ``promptsearch serve`` accepts, their fields checked (see
:mod:`promptsearch.generators.server`).

Every refusal is a :class:`Refusal`, answered as an OpenAI-style JSON error.  Numbers
are checked here, before the model sees them: a bool, NaN, an infinity, a fraction
where an integer is due, or a value out of range gets 400 naming the field and its
allowed range, so no request can reach ``int(inf)`` or ``torch.manual_seed(2**64)``.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

from promptsearch.generators.base import MAX_COMPLETIONS, MAX_NEW_TOKENS, MAX_STOP_STRINGS
from promptsearch.models.base import LanguageModel

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MAX_SEED",
    "MAX_TOKENS_ASKED",
    "Refusal",
    "conversation",
    "generation_options",
    "logprob_options",
    "prompt_list",
    "prompt_text",
]

DEFAULT_MAX_TOKENS = 256
"""Completion length when a request gives no ``max_tokens``."""

MAX_TOKENS_ASKED = 1 << 16
"""Largest ``max_tokens`` accepted; at most ``MAX_NEW_TOKENS`` (1024) are generated, and a
longer ask gets ``finish_reason: "length"``."""

MAX_PROMPTS = 64
"""Most prompts one ``/v1/completions`` request may list."""

MAX_LOGPROBS = 5
"""Largest ``logprobs`` (top tokens per position) on ``/v1/completions``, as OpenAI's API."""

MAX_SEED = (1 << 63) - 1
"""Largest ``seed`` accepted (a signed 64-bit integer, as OpenAI's API takes)."""


class Refusal(Exception):
    """An HTTP error answer: status, message, OpenAI error type, code and param."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.code, self.param = code, param

    def payload(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.kind, "param": self.param}
        return {"error": {**error, "code": self.code}}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(
    body: dict[str, Any],
    key: str,
    default: Any,
    *,
    integer: bool,
    low: float,
    high: float,
    open_low: bool = False,
) -> Any:
    """The number *body[key]* (or *default* when absent or null), refused unless it is a
    finite int or float (not a bool) in its range; an integer field takes ``5.0`` as 5."""
    value = body.get(key)
    if value is None:
        return default
    lower = "(" if open_low else "["
    kind = "an integer" if integer else "a number"
    span = f"{int(low)}, {int(high)}" if integer else f"{low:g}, {high:g}"
    allowed = f"'{key}' must be {kind} in {lower}{span}]"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Refusal(400, f"{allowed}; got {_shown(value)}", param=key, code="invalid_value")
    if isinstance(value, float) and not math.isfinite(value):
        raise Refusal(400, f"{allowed}; got {value!r}", param=key, code="invalid_value")
    if integer and isinstance(value, float):
        if not value.is_integer():
            raise Refusal(400, f"{allowed}; got {value!r}", param=key, code="invalid_value")
        value = int(value)
    below = value <= low if open_low else value < low
    if below or value > high:
        raise Refusal(400, f"{allowed}; got {_shown(value)}", param=key, code="invalid_value")
    return int(value) if integer else float(value)


def generation_options(
    body: dict[str, Any], *, chat: bool, zero_tokens: bool = False
) -> dict[str, Any]:
    """The :class:`~promptsearch.generators.LocalGenerator` arguments of a request, every
    number checked; the numeric OpenAI fields the server ignores are checked too.
    *zero_tokens*: ``max_tokens`` may be 0 (an ``echo`` request: the prompt only)."""
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    low = 0 if zero_tokens else 1
    tokens = _number(body, key, DEFAULT_MAX_TOKENS, integer=True, low=low, high=MAX_TOKENS_ASKED)
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if (
        not isinstance(stop, list)
        or len(stop) > MAX_STOP_STRINGS
        or not all(isinstance(s, str) for s in stop)
    ):
        raise Refusal(
            400,
            f"'stop' must be a string or a list of at most {MAX_STOP_STRINGS} strings",
            param="stop",
        )
    for ignored in ("presence_penalty", "frequency_penalty"):
        _number(body, ignored, 0.0, integer=False, low=-2.0, high=2.0)
    _number(body, "top_logprobs", 0, integer=True, low=0, high=20)
    if chat:
        if body.get("logprobs") not in (None, False, True):
            raise Refusal(400, "'logprobs' must be true or false", param="logprobs")
    else:
        _number(body, "logprobs", 0, integer=True, low=0, high=MAX_LOGPROBS)
    seed = _number(body, "seed", None, integer=True, low=0, high=MAX_SEED)
    return {
        "n": _number(body, "n", 1, integer=True, low=1, high=MAX_COMPLETIONS),
        "max_new_tokens": min(tokens, MAX_NEW_TOKENS),  # longer asks get finish_reason "length"
        "temperature": _number(body, "temperature", 1.0, integer=False, low=0.0, high=5.0),
        "top_p": _number(body, "top_p", 1.0, integer=False, low=0.0, high=1.0, open_low=True),
        "seed": secrets.randbelow(2**31) if seed is None else seed,
        "stop": [s for s in stop if s],
    }


def _text(content: Any, where: str) -> str:
    """A message content: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        texts = [p for p in parts if isinstance(p, str)]
        if texts and len(texts) == len(parts):
            return "".join(texts)
    raise Refusal(400, f"{where} must be a string or a list of text parts")


def conversation(messages: Any, lm: LanguageModel) -> tuple[str, bool]:
    """The prompt to generate from, and whether to apply the chat template to it."""
    if not isinstance(messages, list) or not messages:
        raise Refusal(400, "'messages' must be a non-empty list", param="messages")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise Refusal(400, f"messages[{i}] must be an object with a 'role'", param="messages")
        turns.append(
            {
                "role": message["role"],
                "content": _text(message.get("content"), f"messages[{i}].content"),
            }
        )
    if len(turns) == 1 and turns[0]["role"] == "user":
        return turns[0]["content"], True
    tokenizer = lm.tokenizer
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        return str(rendered), False
    return "\n\n".join(t["content"] for t in turns), False


def prompt_text(raw: Any) -> str:
    """The ``prompt`` of a ``/v1/completions`` request: a string or a list of one."""
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    if not isinstance(raw, str):
        raise Refusal(400, "'prompt' must be a string", param="prompt")
    return raw


def prompt_list(raw: Any) -> list[str]:
    """The prompts of a ``/v1/completions`` request: a string, or a list of 1 to
    ``MAX_PROMPTS`` strings (answered in order, ``n`` choices each)."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(p, str) for p in raw):
        if len(raw) > MAX_PROMPTS:
            raise Refusal(
                400, f"'prompt' lists {len(raw)} prompts; at most {MAX_PROMPTS}", param="prompt"
            )
        return list(raw)
    raise Refusal(
        400,
        f"'prompt' must be a string or a list of 1 to {MAX_PROMPTS} strings (token ids are "
        "not taken)",
        param="prompt",
    )


def logprob_options(body: dict[str, Any]) -> tuple[bool, int | None]:
    """``echo`` and ``logprobs`` of a ``/v1/completions`` request: whether to return the
    prompt with the completion, and how many top tokens per position (``None``: no
    log-probabilities)."""
    echo = body.get("echo")
    if echo not in (None, False, True):
        raise Refusal(400, "'echo' must be true or false", param="echo")
    top = _number(body, "logprobs", None, integer=True, low=0, high=MAX_LOGPROBS)
    return bool(echo), top

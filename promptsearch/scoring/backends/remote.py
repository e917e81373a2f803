"""Scoring with a model behind an OpenAI-compatible server (``openai:`` model specs,
see :mod:`promptsearch.models.remote`).

Log-probabilities come from ``POST /v1/completions`` with ``echo: true``,
``logprobs: 1``, ``max_tokens: 1`` and ``temperature: 0``: the server returns every
prompt token with its log-probability given the tokens before it
(``choices[i].logprobs.tokens``, ``token_logprobs``, ``text_offset``), as vLLM,
llama-cpp-python's server and ``promptsearch serve`` do.  For each example and
candidate answer the prompt is the context (the rendered prefix without its trailing
whitespace) followed by that whitespace and the answer word; the answer's
log-probability is the sum over the tokens that end after the context, up to the end
of the prompt (the one generated token is left out).  ``max_tokens: 1`` rather than 0
because vLLM refuses 0 and llama-cpp-python reads 0 as "no limit".

The server tokenizes the whole text, while the local causal back-end tokenizes the
context and the answer apart; with answers that start with a space the two agree on
the tokenizers tried (see docs/scoring.md).  A template that starts with the answer
leaves it no context: the server gives the first token of a prompt no log-probability,
so such a prompt raises :class:`~promptsearch.errors.ModelError`.

Requests carry ``batch`` prompts each (the ``prompt`` list form), and at most
``concurrency`` are in flight (options of the spec); identical prompts are sent once.
Generation sends the context with ``max_tokens`` = ``max_new_tokens``, greedy, and
keeps the first non-blank line, as the local back-end does (no ``stop`` string: a
completion that starts with a newline would otherwise come back empty).

**Next-token mode** (``mode=next-token`` in the spec), for servers that do not echo
the prompt (OpenAI's API, Ollama): each example's context alone is sent once with
``max_tokens: 1``, ``temperature: 0`` and ``logprobs: K`` (the spec's ``logprobs``,
default 5), and each answer's log-probability is read from the first position's
``top_logprobs``: the entry whose text is the continuation exactly (the whitespace
before the answer and the word, e.g. ``" positive"``).  That is the answer's whole
log-probability only when the continuation is one token of the server's tokenizer,
which is unknown here: a continuation that appears as one ``top_logprobs`` entry is
one token.  An answer missing from the top K gets a floor: the lower of the K-th
entry's log-probability and the log of the probability mass the top K leave (at
least ``log(1e-30)``), the tightest upper bound of its true value the answer gives.
An answer in the top K thus always outranks one outside it, and answers all outside
it tie (the first label wins).  When no answer of any example of a call appears, the
prompt has nothing to rank (the answers may not be single tokens, or the model does
not expect any of them there), and the call raises
:class:`~promptsearch.errors.ModelError` saying so: in a study, that trial fails.
One request per context, not one per answer.  Generation is the same in both modes,
but a generation task's gold log-likelihood is read the same way, so it is only right
for a one-token target (a longer one gets the floor, with no error): rank generation
by its metric there.

No tokenizer is at hand, so the scorer cannot cut an input that is too long for the
context: the server refuses it, and that is a :class:`ModelError` naming the server's
reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ModelError
from promptsearch.models.remote import RemoteScoringHandle
from promptsearch.scoring.backends.base import Encoded, first_line, split_trailing_space

if TYPE_CHECKING:
    from promptsearch.models.base import LanguageModel
    from promptsearch.prompt import RenderedPrompt

__all__ = ["FLOOR_PROBABILITY", "RemoteBackend", "RemoteEncoded", "answer_logprob", "top_entries"]

FLOOR_PROBABILITY = 1e-30
"""The least probability next-token mode gives an answer missing from the top K."""


@dataclass
class RemoteEncoded(Encoded):
    """An example as text: ``text`` is the context, ``continuations`` the candidate answers
    as they follow it (their whitespace included).  ``length`` is 0: no tokenizer here."""

    text: str = ""
    continuations: list[str] = field(default_factory=list)


def _choices(answer: Any, count: int, url: str) -> list[dict[str, Any]]:
    """The answer's choices in prompt order (by ``index``), one per prompt sent."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise ModelError(f"{url} answered without a list of choices; is it OpenAI-compatible?")
    if len(choices) != count:
        raise ModelError(
            f"{url} answered {len(choices)} choices to {count} prompts; the server must take "
            "a list of prompts (set batch=1 in the model spec if it takes one at a time)"
        )
    indices = [c.get("index") for c in choices]
    if sorted(i for i in indices if isinstance(i, int)) == list(range(count)):
        ordered: list[dict[str, Any]] = [{}] * count
        for choice in choices:
            ordered[choice["index"]] = choice
        return ordered
    return choices


def _lead_shift(prompt: str, tokens: list[Any], offsets: list[Any]) -> int:
    """How far a leading special token (a BOS such as ``"<s>"`` that some servers echo
    and count in ``text_offset``) moves the prompt's characters; 0 when none."""
    if len(tokens) < 2 or not isinstance(tokens[0], str) or not tokens[0]:
        return 0
    if prompt.startswith(tokens[0]) or not all(isinstance(o, int) for o in offsets[:2]):
        return 0
    step: int = offsets[1] - offsets[0]
    return step if step == len(tokens[0]) else 0


def answer_logprob(logprobs: Any, start: int, end: int, url: str, prompt: str = "") -> float:
    """The sum of ``token_logprobs`` over the echoed tokens that end after character
    *start* and begin before *end* (the answer's span in *prompt*); offsets count from
    the first token's, past a leading special token the prompt does not start with."""
    if not isinstance(logprobs, dict):
        raise ModelError(
            f"{url} answered without logprobs; the server must support 'echo' with "
            "'logprobs' on /completions (vLLM, llama-cpp-python and promptsearch serve do)"
        )
    tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    offsets = logprobs.get("text_offset")
    if not (isinstance(tokens, list) and isinstance(values, list) and len(tokens) == len(values)):
        raise ModelError(f"{url} answered logprobs without matching tokens and token_logprobs")
    if not isinstance(offsets, list) or len(offsets) != len(tokens):
        offsets, position = [], 0  # rebuild the offsets from the token texts
        for token in tokens:
            offsets.append(position)
            position += len(token) if isinstance(token, str) else 0
    base = offsets[0] if offsets and isinstance(offsets[0], int) else 0
    shift = base + _lead_shift(prompt, tokens, offsets)
    start, end = start + shift, end + shift
    total, seen = 0.0, 0
    for k, (token, value) in enumerate(zip(tokens, values, strict=True)):
        begin = offsets[k]
        if not isinstance(begin, int):
            raise ModelError(f"{url} answered a text_offset that is not an integer")
        finish = offsets[k + 1] if k + 1 < len(offsets) else begin + len(str(token))
        if finish <= start or begin >= end:
            continue
        if value is None:
            raise ModelError(
                f"{url} gave no log-probability for the first token of a prompt, which is "
                "part of the answer here: the template puts the answer slot first, with no "
                "text before it; put some text before the answer, or score it with a local "
                "model"
            )
        if not isinstance(value, (int, float)):
            raise ModelError(f"{url} answered a token log-probability that is not a number")
        total += float(value)
        seen += 1
    if seen == 0:
        raise ModelError(
            f"{url} echoed no token of the answer: the server must echo the prompt with "
            "'echo': true (its answer had only the completion)"
        )
    return total


def top_entries(logprobs: Any, url: str) -> dict[str, float]:
    """The first position's ``top_logprobs`` of a choice's *logprobs*: a mapping of token
    text to log-probability (the completions form) or a list of ``{"token", "logprob"}``
    objects (the chat form some servers use), as ``{text: logprob}``."""
    tops = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
    row = tops[0] if isinstance(tops, list) and tops else None
    if isinstance(row, list):
        row = {
            e.get("token"): e.get("logprob")
            for e in row
            if isinstance(e, dict) and isinstance(e.get("token"), str)
        }
    if not isinstance(row, dict) or not row:
        raise ModelError(
            f"{url} answered without top_logprobs for the next token; next-token mode needs "
            "'logprobs': K on /completions (the top K tokens and their log-probabilities)"
        )
    out: dict[str, float] = {}
    for token, value in row.items():
        if not isinstance(token, str) or not isinstance(value, (int, float)):
            raise ModelError(f"{url} answered a top_logprobs entry that is not text: number")
        out[token] = max(out.get(token, -math.inf), float(value))
    return out


def floor_logprob(row: dict[str, float]) -> float:
    """What an answer missing from *row* (the top K) gets: the lower of the smallest
    entry and the log of the mass the entries leave, at least ``log(FLOOR_PROBABILITY)``."""
    rest = 1.0 - sum(math.exp(v) for v in row.values())
    return max(
        min(min(row.values()), math.log(max(rest, FLOOR_PROBABILITY))), math.log(FLOOR_PROBABILITY)
    )


class RemoteBackend:
    """Log-probabilities and greedy answers from a server (see the module docstring)."""

    def __init__(self, model: LanguageModel) -> None:
        handle = model.model
        if not isinstance(handle, RemoteScoringHandle):
            raise ModelError(f"model {model.name!r} is not a remote model")
        self.lm = model
        self.handle = handle
        self.client = handle.client
        self.url = f"{handle.client.base_url}/completions"
        self.batch = handle.spec.batch
        self.mode = handle.spec.mode
        self.top = handle.spec.logprobs

    def encode(self, rendered: RenderedPrompt, words: Sequence[str], budget: int) -> Encoded:
        context, space = split_trailing_space(rendered.prefix)
        return RemoteEncoded(
            context=[],
            answers=[[] for _ in words],
            length=0,
            text=context,
            continuations=[space + word for word in words],
        )

    def _completions(self, prompts: list[str], options: dict[str, Any]) -> list[dict[str, Any]]:
        """One choice per prompt, in *batch*-sized requests run concurrently."""
        chunks = [prompts[i : i + self.batch] for i in range(0, len(prompts), self.batch)]

        def send(chunk: list[str]) -> list[dict[str, Any]]:
            # one prompt goes as a string: llama-cpp-python's server takes no longer list
            prompt: str | list[str] = chunk[0] if len(chunk) == 1 else chunk
            body = {"model": self.handle.served_model, "prompt": prompt, **options}
            return _choices(self.client.post("completions", body), len(chunk), self.url)

        out: list[dict[str, Any]] = []
        for choices in self.client.run_all(send, chunks):
            out.extend(choices)
        return out

    def logprobs(self, items: Sequence[Encoded]) -> tuple[list[list[float]], int]:
        if self.mode == "next-token":
            return self._next_token(items)
        try:
            return self._echoed(items)
        except ModelError as error:
            text = str(error)
            if "echo" in text.lower():  # refused, ignored or not supported
                raise ModelError(
                    f"{text}; if the server does not support 'echo' (OpenAI's API, Ollama), "
                    "score with single-token label words in next-token mode: add "
                    "&mode=next-token to the model spec"
                ) from None
            raise

    def _next_token(self, items: Sequence[Encoded]) -> tuple[list[list[float]], int]:
        """Each answer's log-probability from the context's top-K next tokens."""
        encoded: list[RemoteEncoded] = []
        for item in items:
            if not isinstance(item, RemoteEncoded):
                raise ModelError("the remote back-end scores only what it encoded")
            if not item.text:
                raise ModelError(
                    f"{self.url}: the template puts the answer slot first, with no text "
                    "before it, so there is nothing to predict the answer from; put some text "
                    "before the answer, or score it with a local model"
                )
            encoded.append(item)
        contexts = [item.text for item in encoded]
        unique = list(dict.fromkeys(contexts))
        options = {"max_tokens": 1, "temperature": 0, "logprobs": self.top}
        choices = self._completions(unique, options)
        rows = {
            context: top_entries(choice.get("logprobs"), self.url)
            for context, choice in zip(unique, choices, strict=True)
        }
        results: list[list[float]] = []
        found = False
        for item in encoded:
            row = rows[item.text]
            floor = floor_logprob(row)
            values = []
            for continuation in item.continuations:
                if continuation in row:
                    found = found or len(item.continuations) > 1
                    values.append(row[continuation])
                else:
                    values.append(floor)
            results.append(values)
        # classification only: one continuation is a generation task's gold answer, seldom
        # one token, which gets its top-K value or the floor (docs/scoring.md)
        answers = {c for item in encoded if len(item.continuations) > 1 for c in item.continuations}
        if answers and not found:
            shown = ", ".join(repr(a) for a in sorted(answers)[:6])
            raise ModelError(
                f"{self.url}: none of the answers {shown} was among the top {self.top} next "
                f"tokens after any of {len(unique)} prompts, so this prompt cannot be scored in "
                "next-token mode: label words must be one token each (with the space before "
                "them) for the server's tokenizer and among its likeliest next tokens; use "
                "single-token label words, put the answer where the model expects them, raise "
                "logprobs= in the model spec (if the server allows), or use mode=echo on a "
                "server that supports it"
            )
        return results, len(encoded)  # one sequence per example, as the local back-end

    def _echoed(self, items: Sequence[Encoded]) -> tuple[list[list[float]], int]:
        spans: dict[str, tuple[int, int]] = {}
        rows: list[tuple[int, int, str]] = []
        for i, item in enumerate(items):
            if not isinstance(item, RemoteEncoded):
                raise ModelError("the remote back-end scores only what it encoded")
            for j, continuation in enumerate(item.continuations):
                prompt = item.text + continuation
                spans[prompt] = (len(item.text), len(prompt))
                rows.append((i, j, prompt))
        unique = list(spans)
        options = {"max_tokens": 1, "temperature": 0, "echo": True, "logprobs": 1}
        choices = self._completions(unique, options)
        values = {
            prompt: answer_logprob(choice.get("logprobs"), *spans[prompt], self.url, prompt)
            for prompt, choice in zip(unique, choices, strict=True)
        }
        results = [[0.0] * len(item.answers) for item in items]
        for i, j, prompt in rows:
            results[i][j] = values[prompt]
        return results, len(rows)

    def generate(self, items: Sequence[Encoded], max_new_tokens: int) -> tuple[list[str], int]:
        texts = [item.text if isinstance(item, RemoteEncoded) else "" for item in items]
        options = {"max_tokens": max_new_tokens, "temperature": 0}
        choices = self._completions(texts, options)
        out = []
        for choice in choices:
            text = choice.get("text")
            if not isinstance(text, str):
                raise ModelError(f"{self.url} answered a choice without text")
            out.append(first_line(text))
        return out, len(items)

"""The text-generation interface: :class:`TextGenerator`, the argument checks every
backend shares (:func:`check_generate_args`) and :func:`cut_at_stop`.

A :class:`TextGenerator` turns instructions ("Paraphrase this: ...") into text.
Searchers such as ``paraphrase`` and ``mining`` take one as a parameter, so the
model that *writes* candidate prompts can differ from the model that *scores*
them.  The interface is one method, :meth:`TextGenerator.generate`, so that several
backends fit behind it: :class:`~promptsearch.generators.local.LocalGenerator` (a
local transformers model) and
:class:`~promptsearch.generators.openai_compat.OpenAICompatibleGenerator` (any
OpenAI-compatible server).  Backends validate their arguments with
:func:`check_generate_args`.

Importing this module does not import torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from promptsearch.errors import ConfigError
from promptsearch.validation import check_float, check_int

__all__ = [
    "MAX_COMPLETIONS",
    "MAX_NEW_TOKENS",
    "MAX_STOP_STRINGS",
    "TextGenerator",
    "check_generate_args",
    "cut_at_stop",
]

MAX_COMPLETIONS = 64
"""Upper bound on ``n`` (completions per prompt) in one call."""

MAX_NEW_TOKENS = 1024
"""Upper bound on ``max_new_tokens``."""

MAX_STOP_STRINGS = 8
"""Upper bound on the number of ``stop`` strings."""


def check_generate_args(
    prompts: Sequence[str],
    *,
    n: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    chat: bool,
    stop: Sequence[str] = (),
    owner: str = "generate",
) -> list[str]:
    """Validate the arguments of :meth:`TextGenerator.generate`; return the prompts as a list."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise ConfigError(
            f"{owner}: prompts must be a list of strings (one per request); got "
            f"{type(prompts).__name__} {prompts!r:.80}"
        )
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise ConfigError(
            f"{owner}: prompts must all be strings; item {bad[0]} is "
            f"{type(prompts[bad[0]]).__name__}"
        )
    check_int(n, "n", minimum=1, maximum=MAX_COMPLETIONS, owner=owner)
    check_int(max_new_tokens, "max_new_tokens", minimum=1, maximum=MAX_NEW_TOKENS, owner=owner)
    check_float(temperature, "temperature", minimum=0.0, maximum=5.0, owner=owner)
    check_float(top_p, "top_p", minimum=0.0, maximum=1.0, exclusive_minimum=True, owner=owner)
    check_int(seed, "seed", minimum=0, owner=owner)
    if not isinstance(chat, bool):
        raise ConfigError(f"{owner}: chat must be True or False; got {chat!r}")
    if (
        isinstance(stop, str)
        or not isinstance(stop, Sequence)
        or len(stop) > MAX_STOP_STRINGS
        or not all(isinstance(s, str) and s for s in stop)
    ):
        raise ConfigError(
            f"{owner}: stop must be a list of at most {MAX_STOP_STRINGS} non-empty strings "
            f"(e.g. ['\\n']); got {stop!r}"
        )
    return list(prompts)


class TextGenerator(ABC):
    """Generates text from instructions.

    Call order: construct, then :meth:`generate` any number of times.  Generators
    must be picklable (searchers that hold one are pickled with the study).
    """

    @abstractmethod
    def generate(
        self,
        prompts: Sequence[str],
        *,
        n: int = 1,
        max_new_tokens: int = 64,
        temperature: float = 0.8,
        top_p: float = 0.95,
        seed: int = 0,
        chat: bool = True,
        stop: Sequence[str] = (),
    ) -> list[list[str]]:
        """For each prompt, *n* completions (stripped strings; may be empty).

        ``temperature == 0`` means greedy decoding; otherwise nucleus sampling with
        *top_p*.  The same *seed* and arguments give the same text.  ``chat=True``
        wraps each prompt as a user message in the model's chat format, when it has
        one; ``chat=False`` continues the raw text.  Each completion ends before the
        first of the *stop* strings it contains (generation may stop there early).
        """


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """*text* up to the first occurrence of any of the *stop* strings, stripped."""
    end = len(text)
    for marker in stop:
        found = text.find(marker)
        if 0 <= found < end:
            end = found
    return text[:end].strip()

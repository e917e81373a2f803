"""The text-generation interface: :class:`TextGenerator`, the argument checks every
backend shares (:func:`check_generate_args`) and :func:`cut_at_stop`.

A :class:`TextGenerator` turns instructions ("Paraphrase this: ...") into text.
Searchers such as ``paraphrase`` and ``mining`` take one as a parameter, so the
model that *writes* candidate prompts can differ from the model that *scores*
them.  Several backends fit behind it:
:class:`~promptsearch.generators.local.LocalGenerator` (a local transformers model)
and :class:`~promptsearch.generators.openai_compat.OpenAICompatibleGenerator` (any
OpenAI-compatible server).

The public method, :meth:`TextGenerator.generate`, is written once, here: it checks
every argument (:func:`check_generate_args`), answers an empty list of prompts
itself, and hands the checked values to :meth:`TextGenerator._generate`, the one
method a backend implements.  A backend therefore never repeats the checks, and
every backend refuses the same bad arguments with the same messages.

Importing this module does not import torch.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

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

    A backend implements :meth:`_generate` only; :meth:`generate` checks the
    arguments first.  A subclass that still overrides :meth:`generate` itself (the
    interface before this split) keeps working, with a :class:`DeprecationWarning`
    when the class is defined, but skips the shared checks.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "generate" not in cls.__dict__:
            return
        warnings.warn(
            f"{cls.__module__}.{cls.__qualname__} overrides TextGenerator.generate(); "
            "implement _generate() instead, which receives the checked arguments "
            "(an override of generate() skips the shared argument checks, and support "
            "for it will be removed)",
            DeprecationWarning,
            stacklevel=3,  # the class statement (through ABCMeta.__new__)
        )
        if getattr(cls._generate, "__isabstractmethod__", False):
            cls._generate = _no_generate  # type: ignore[method-assign]

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

        Every argument is checked first (:func:`check_generate_args`; a bad one raises
        :class:`~promptsearch.errors.ConfigError` naming it); an empty list of prompts
        gives ``[]`` without calling the backend.
        """
        items = check_generate_args(
            prompts,
            n=n,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            chat=chat,
            stop=stop,
            owner=f"{type(self).__name__}.generate",
        )
        if not items:
            return []
        return self._generate(
            items,
            n=n,
            max_new_tokens=max_new_tokens,
            temperature=float(temperature),
            top_p=float(top_p),
            seed=seed,
            chat=chat,
            stop=tuple(stop),
        )

    @abstractmethod
    def _generate(
        self,
        prompts: list[str],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        chat: bool,
        stop: tuple[str, ...],
    ) -> list[list[str]]:
        """The backend's work behind :meth:`generate`, with checked arguments: at least
        one prompt, ``1 <= n <= MAX_COMPLETIONS``, ``1 <= max_new_tokens <=
        MAX_NEW_TOKENS``, ``0 <= temperature <= 5`` and ``0 < top_p <= 1`` as floats,
        ``seed >= 0``, *chat* a bool and *stop* a tuple of at most
        :data:`MAX_STOP_STRINGS` non-empty strings.  Return one list of *n* stripped
        completions per prompt, in order, each cut before its first stop string
        (:func:`cut_at_stop`)."""


def _no_generate(
    self: TextGenerator,
    prompts: list[str],
    *,
    n: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    chat: bool,
    stop: tuple[str, ...],
) -> list[list[str]]:
    """The ``_generate`` of a subclass that overrides ``generate()`` but not
    ``_generate()``: reached only when its ``generate()`` calls ``super().generate()``."""
    raise NotImplementedError(
        f"{type(self).__name__} overrides generate() but implements no _generate(): "
        "move the body of its generate() into _generate()"
    )


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """*text* up to the first occurrence of any of the *stop* strings, stripped."""
    end = len(text)
    for marker in stop:
        found = text.find(marker)
        if 0 <= found < end:
            end = found
    return text[:end].strip()

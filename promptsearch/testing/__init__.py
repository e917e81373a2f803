"""Helpers for tests: tiny randomly-initialised models that need no download
(:mod:`~promptsearch.testing.tiny_models`), the searcher contract suite
(:mod:`~promptsearch.testing.searchers`) and fakes.

>>> from promptsearch.testing import tiny_model
>>> lm = tiny_model("causal")   # also "masked" and "seq2seq"
"""

from __future__ import annotations

import functools

from promptsearch.models.base import LanguageModel
from promptsearch.models.loading import load_model
from promptsearch.testing.tiny_models import (
    TINY_CORPUS,
    tiny_causal_lm,
    tiny_chat_lm,
    tiny_gpt2_lm,
    tiny_masked_lm,
    tiny_model,
    tiny_seq2seq_lm,
    tiny_tokenizer,
)

__all__ = [
    "TINY_CORPUS",
    "embedded_model",
    "tiny_causal_lm",
    "tiny_chat_lm",
    "tiny_gpt2_lm",
    "tiny_masked_lm",
    "tiny_model",
    "tiny_seq2seq_lm",
    "tiny_tokenizer",
]


@functools.lru_cache(maxsize=1)
def embedded_model() -> LanguageModel:
    """The embedded model, loaded once per process through the usual cache folder.

    For slow tests that several modules share; the first call ever on a machine
    converts the GGUF file (about 20 s), later ones reuse the cached weights.
    """
    return load_model()

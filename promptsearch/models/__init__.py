"""Language models: the :class:`LanguageModel` wrapper and its kinds, loading from the
embedded GGUF file, a local folder or the Hugging Face hub, and wrapping objects the
caller already has.

Nothing here imports torch or transformers at import time.
"""

from __future__ import annotations

from promptsearch.models.base import (
    EMBEDDED_ALIASES,
    EMBEDDED_MODEL,
    MODEL_KINDS,
    LanguageModel,
    cache_root,
    detect_kind,
    resolve_device,
    resolve_dtype,
    wrap_model,
)
from promptsearch.models.loading import load_model

__all__ = [
    "EMBEDDED_ALIASES",
    "EMBEDDED_MODEL",
    "MODEL_KINDS",
    "LanguageModel",
    "cache_root",
    "detect_kind",
    "load_model",
    "resolve_device",
    "resolve_dtype",
    "wrap_model",
]

"""Exports: a prompt, or a stored study's pick, in the formats other tools read.

:mod:`~promptsearch.export.formats` writes one prompt (or an ensemble) as ``json``,
``text`` (one :meth:`str.format` template), ``messages`` (an OpenAI-style chat) or
``dspy`` (the state ``dspy.Predict(...).load(path)`` reads);
:mod:`~promptsearch.export.study` chooses what a study exports (its pick, a
leaderboard rank, one member of a picked ensemble).  Importing this package loads
neither the storage nor the study: ``promptsearch.export.study`` does.
"""

from __future__ import annotations

from promptsearch.export.formats import (
    DSPY_VERSIONS,
    FORMATS,
    dspy_signature,
    dspy_state,
    export_prompt,
    label_words,
    prompt_messages,
    prompt_text,
)

__all__ = [
    "DSPY_VERSIONS",
    "FORMATS",
    "dspy_signature",
    "dspy_state",
    "export_prompt",
    "label_words",
    "prompt_messages",
    "prompt_text",
]

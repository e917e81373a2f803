"""Text generation from instructions, for searchers that write prompts: the
:class:`TextGenerator` interface, a local transformers generator, an OpenAI-compatible
HTTP client, :func:`make_generator` that builds one from a spec, and the
``promptsearch serve`` server.
"""

from __future__ import annotations

from promptsearch.generators.base import (
    GENERATOR_SPEC_HELP,
    GeneratorStats,
    LocalGenerator,
    OpenAICompatibleGenerator,
    TextGenerator,
    check_generate_args,
    cut_at_stop,
    make_generator,
)

__all__ = [
    "GENERATOR_SPEC_HELP",
    "GeneratorStats",
    "LocalGenerator",
    "OpenAICompatibleGenerator",
    "TextGenerator",
    "check_generate_args",
    "cut_at_stop",
    "make_generator",
]

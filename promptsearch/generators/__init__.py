"""Text generation from instructions, for searchers that write prompts: the
:class:`TextGenerator` interface, a local transformers generator, an OpenAI-compatible
HTTP client, :func:`make_generator` that builds one from a spec, and the
``promptsearch serve`` server.
"""

from __future__ import annotations

import re

from promptsearch.errors import ConfigError
from promptsearch.generators.base import TextGenerator, check_generate_args, cut_at_stop
from promptsearch.generators.local import LocalGenerator
from promptsearch.generators.openai_compat import (
    GeneratorStats,
    OpenAICompatibleGenerator,
    from_spec,
)
from promptsearch.models.base import LanguageModel

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


GENERATOR_SPEC_HELP = """\
A generator spec names the backend that writes text:
  local                      the study's model (or the embedded model when there is none)
  local:NAME                 a local transformers model: a hub id or a model folder
  NAME                       the same as local:NAME (a hub id or path with no 'scheme:')
  openai:URL[#OPTIONS]       an OpenAI-compatible server at base URL (ending in /v1);
                             OPTIONS are key=value pairs joined by '&': model=NAME,
                             key_env=VAR (the environment variable holding the API key;
                             default OPENAI_API_KEY, empty for none), timeout=SECONDS,
                             max_retries=N, backoff=SECONDS, max_concurrency=N
e.g. openai:http://127.0.0.1:8000/v1#model=smollm2-135m-instruct&key_env=MY_KEY"""
"""The syntax :func:`make_generator` accepts, for help texts and error messages."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9_.+-]+):")


def make_generator(
    spec: str | TextGenerator | None, *, model: LanguageModel | None = None
) -> TextGenerator:
    """A :class:`TextGenerator` from a spec (see :data:`GENERATOR_SPEC_HELP`) or instance.

    ``None`` and ``"local"`` give a :class:`LocalGenerator` of *model* when one is
    given, else of the embedded model (loaded on first use).  A generator instance
    is returned as it is.  An API key never appears in a spec: ``openai:`` specs
    name the environment variable that holds it.
    """
    if isinstance(spec, TextGenerator):
        return spec
    if spec is None or (isinstance(spec, str) and spec.strip() == "local"):
        return LocalGenerator(model)
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(
            "generator must be a TextGenerator, a spec string or None; got "
            f"{spec!r:.80}\n{GENERATOR_SPEC_HELP}"
        )
    text = spec.strip()
    found = _SCHEME.match(text)
    scheme = found.group(1).lower() if found else ""
    if scheme == "local":
        name = text[len("local:") :].strip()
        if not name:
            raise ConfigError(
                f"generator spec {spec!r}: 'local:' needs a model name or path after it "
                f"(or write 'local' for the study's model)\n{GENERATOR_SPEC_HELP}"
            )
        return LocalGenerator(name)
    if scheme == "openai":
        return from_spec(text[len("openai:") :])
    if scheme in ("http", "https"):
        raise ConfigError(
            f"generator spec {spec!r}: a server URL needs its backend first: "
            f"write 'openai:{text}'\n{GENERATOR_SPEC_HELP}"
        )
    if scheme:
        raise ConfigError(
            f"generator spec {spec!r}: unknown backend {scheme!r}; the backends are 'local' "
            f"and 'openai'\n{GENERATOR_SPEC_HELP}"
        )
    return LocalGenerator(text)

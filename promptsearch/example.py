"""Examples and verbalizers: the data a task is made of and a prompt renders.

Below both :mod:`promptsearch.task` (which re-exports these names) and
:mod:`promptsearch.prompt`, so that a prompt can render examples without importing the
task that holds its seed prompts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from promptsearch.errors import ConfigError

__all__ = ["Example", "normalize_verbalizer"]


@dataclass(frozen=True, eq=True)
class Example:
    """One example: its input fields and the target (a label or a gold output).

    ``alternatives`` holds further accepted outputs for generation tasks.
    """

    id: str
    inputs: Mapping[str, str]
    target: str
    alternatives: tuple[str, ...] = ()

    @property
    def answers(self) -> tuple[str, ...]:
        """The target followed by its accepted alternatives."""
        return (self.target, *self.alternatives)

    def without_target(self) -> Example:
        """A copy with the target and alternatives blanked (for unlabelled use)."""
        return replace(self, target="", alternatives=())


def normalize_verbalizer(
    verbalizer: Mapping[Any, str | Sequence[str]], where: str = "verbalizer"
) -> dict[str, tuple[str, ...]]:
    """Turn ``{label: word or [words]}`` into ``{str(label): (words, ...)}`` and check it."""
    if not isinstance(verbalizer, Mapping) or not verbalizer:
        raise ConfigError(
            f"{where} must be a non-empty mapping from label to word(s), "
            f"e.g. {{'0': 'terrible', '1': 'great'}}; got {verbalizer!r}"
        )
    out: dict[str, tuple[str, ...]] = {}
    for label, words in verbalizer.items():
        word_list = (words,) if isinstance(words, str) else tuple(words)
        if not word_list or not all(isinstance(w, str) and w.strip() for w in word_list):
            raise ConfigError(
                f"{where}[{label!r}] must be a non-empty word or list of non-empty words; "
                f"got {words!r}"
            )
        out[str(label)] = word_list
    return out

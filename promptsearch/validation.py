"""Eager validation of constructor arguments, with errors that say what was given
and what is allowed (in the spirit of scikit-learn's parameter validation)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from promptsearch.errors import ConfigError

__all__ = [
    "check_choice",
    "check_float",
    "check_int",
    "check_str",
    "control_characters",
    "printable",
]


def _owner(owner: str, name: str) -> str:
    return f"{owner}: {name}" if owner else name


def check_int(
    value: Any,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    owner: str = "",
) -> int:
    """Return *value* if it is an int within [minimum, maximum], else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{_owner(owner, name)} must be an integer; got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{_owner(owner, name)} must be >= {minimum}; got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{_owner(owner, name)} must be <= {maximum}; got {value!r}")
    return value


def check_float(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    owner: str = "",
) -> float:
    """Return *value* as float if it is a real number within bounds, else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(f"{_owner(owner, name)} must be a number; got {value!r}")
    if minimum is not None:
        if exclusive_minimum and value <= minimum:
            raise ConfigError(f"{_owner(owner, name)} must be > {minimum}; got {value!r}")
        if not exclusive_minimum and value < minimum:
            raise ConfigError(f"{_owner(owner, name)} must be >= {minimum}; got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{_owner(owner, name)} must be <= {maximum}; got {value!r}")
    return float(value)


def check_choice(value: Any, name: str, allowed: Iterable[Any], *, owner: str = "") -> Any:
    """Return *value* if it is one of *allowed*, else raise ConfigError listing them."""
    options = list(allowed)
    if value not in options:
        raise ConfigError(f"{_owner(owner, name)} must be one of {options}; got {value!r}")
    return value


def check_str(value: Any, name: str, *, allow_empty: bool = False, owner: str = "") -> str:
    """Return *value* if it is a (non-empty) string, else raise ConfigError."""
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        what = "a string" if allow_empty else "a non-empty string"
        raise ConfigError(f"{_owner(owner, name)} must be {what}; got {value!r}")
    return value


def control_characters(text: str) -> list[str]:
    """The characters of *text* a terminal would not print as themselves (escape
    codes, newlines, tabs, other non-printables), each once, in order."""
    return list(dict.fromkeys(c for c in text if not c.isprintable()))


def printable(text: str) -> str:
    r"""*text* with every non-printable character written as its escape (``\x1b``,
    ``\n``), so a stored name cannot move the cursor or recolour a terminal."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )

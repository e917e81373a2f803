"""Reading the parameters of a searcher spec (``"name:key=value,key=value"``).

A value is JSON when it parses as JSON (a list, an object, a number, a quoted
string, true/false/null), else the plain text; commas inside JSON brackets, braces
or quotes do not split, so ``manual:prompts=["A, {sentence} {answer}", "B {answer}"]``
works.  Each value is checked against the type annotation of the searcher's
constructor parameter, so a wrong type is one :class:`ConfigError` naming the
searcher, the parameter and the type expected.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from typing import Any

from promptsearch.errors import ConfigError

__all__ = ["convert_value", "split_items"]

_CLOSE = {"[": "]", "{": "}"}
_BOOLS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLS |= {"0": False, "false": False, "no": False, "off": False}


def split_items(spec: str, rest: str) -> list[str]:
    """Split *rest* on the commas that are outside JSON brackets, braces and quotes."""
    items: list[str] = []
    stack: list[str] = []
    in_string = escaped = False
    start = 0
    for i, char in enumerate(rest):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in _CLOSE:
            stack.append(_CLOSE[char])
        elif stack and char == stack[-1]:
            stack.pop()
        elif char == "," and not stack:
            items.append(rest[start:i])
            start = i + 1
    if in_string or stack:
        what = "a quote" if in_string else f"a bracket (missing {stack[-1]!r})"
        raise ConfigError(
            f"searcher spec {spec!r}: {what} is not closed; close it, e.g. "
            """'manual:prompts=["A {sentence} {answer}", "B {sentence} {answer}"]'"""
        )
    items.append(rest[start:])
    return items


def _kinds(parameter: inspect.Parameter) -> set[str]:
    """What a parameter takes: some of none, bool, int, float, str, list (of strings),
    list-any, dict, any."""
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        default = parameter.default
        if default is inspect.Parameter.empty or default is None:
            return {"any"}
        return {{bool: "bool", int: "int", float: "float", str: "str"}.get(type(default), "any")}
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    kinds: set[str] = set()
    depth, start, members = 0, 0, []
    for i, char in enumerate(text + "|"):
        depth += char == "["
        depth -= char == "]"
        if char == "|" and depth == 0:
            members.append(text[start:i].strip())
            start = i + 1
    for member in members:
        head = re.sub(r"^(typing|collections\.abc)\.", "", member).split("[")[0]
        if head in ("None", "NoneType"):
            kinds.add("none")
        elif head in ("bool", "int", "float", "str"):
            kinds.add(head)
        elif head in ("Sequence", "list", "tuple", "Iterable", "Collection"):
            inner = member.partition("[")[2]
            kinds.add("list" if "str" in inner and "Mapping" not in inner else "list-any")
        elif head in ("Mapping", "dict"):
            kinds.add("dict")
        elif head == "Optional":
            kinds |= {"none", "any"}
        else:
            kinds.add("any")
    return kinds


_NAMES = {
    "none": "null",
    "bool": "true/false",
    "int": "a whole number",
    "float": "a number",
    "str": "text",
    "list": 'a JSON list such as ["a", "b"]',
    "dict": 'a JSON object such as {"0": "bad"}',
}


def _expected(kinds: set[str]) -> str:
    order = ["list", "dict", "int", "float", "bool", "str", "none"]
    named = kinds | ({"list"} if "list-any" in kinds else set())
    return " or ".join(_NAMES[k] for k in order if k in named)


def convert_value(raw: str, parameter: inspect.Parameter) -> Any:
    """The typed value of *raw* for *parameter* (see the module docstring)."""
    kinds = _kinds(parameter)
    try:
        value: Any = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        value = _NOT_JSON
    if "any" in kinds:
        return raw if value is _NOT_JSON else value
    if "bool" in kinds and raw.lower() in _BOOLS:
        return _BOOLS[raw.lower()]
    if isinstance(value, bool):
        if "bool" in kinds:
            return value
    elif isinstance(value, int) and "int" in kinds:
        return value
    elif isinstance(value, (int, float)) and "float" in kinds:
        return _finite(float(value), raw)
    elif isinstance(value, list) and "list-any" in kinds:
        return value
    elif isinstance(value, list) and "list" in kinds:
        if not all(isinstance(item, str) for item in value):
            raise ConfigError(f"expected a JSON list of strings; got {raw!r}")
        return value
    elif isinstance(value, dict) and "dict" in kinds:
        return value
    elif value is None and "none" in kinds:
        return None
    elif isinstance(value, str) and "str" in kinds:
        return value
    if "float" in kinds and value is _NOT_JSON:
        try:
            number = float(raw)
        except ValueError:
            pass
        else:
            return _finite(number, raw)
    lists = "list" in kinds or "list-any" in kinds
    if "str" in kinds or (lists and (value is _NOT_JSON or isinstance(value, str))):
        # plain text; a list parameter takes it as its '+'-separated form ("good+bad")
        return raw if value is _NOT_JSON or not isinstance(value, str) else value
    raise ConfigError(f"expected {_expected(kinds)}; got {raw!r}")


def _finite(value: float, raw: str) -> float:
    if not math.isfinite(value):
        raise ConfigError(f"expected a finite number; got {raw!r}")
    return value


class _NotJson:
    def __repr__(self) -> str:
        return "<not JSON>"


_NOT_JSON: Any = _NotJson()

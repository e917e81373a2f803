"""``promptsearch run --config study.toml``: a study spec file whose keys are ``run``'s
own options, and the options a study stores so that ``run --study NAME`` resumes it.

The keys are the options' destinations (``budget``, ``task_seed``, ``input_fields``;
the option's own name, ``task-seed`` or ``input-field``, works too), read from the
parser, so an option added to ``run`` is a key at once.  A table groups keys:
``[task] path = "data.csv"`` and ``[task] seed = 42`` are ``task`` and ``task_seed``;
``[model] name = "..."`` is ``model``, ``[budget] evaluations = 48`` is ``budget``;
inside a table ``T``, key ``k`` is ``T_k`` or ``k``.  A table under an option's own
name groups options only when it holds that option's value (``name``, or ``path`` /
``evaluations``); otherwise it is the option's value.

``searchers`` is a list of specs (``"random-edit:top_k=2"``) or tables (``{name =
"random-edit", top_k = 2}``), or a table of tables by searcher name.  A table value of
any other option (``verbalizer = {0 = "bad", 1 = "good"}``) is written as
``key=value`` pairs, lists as comma lists.  Relative paths (``task``, ``data_dir``, an
SQLite ``storage``, a ``model`` folder that exists there) start at the file's folder.
Options given on the command line win over the file.
"""

from __future__ import annotations

import argparse
import difflib
import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from promptsearch.errors import ConfigError

__all__ = [
    "GIVEN",
    "apply_options",
    "read_config",
    "stored_options",
    "track_given",
]

GIVEN: Final = "given_options"
"""The namespace attribute that holds the destinations given on the command line."""
_NOT_KEYS: Final = frozenset({"help", "verbose", "config", GIVEN, "handler"})
_ALIASES: Final = {("task", "path"): "task", ("task", "source"): "task"}
_ALIASES_BY_KEY: Final = {("budget", "evaluations"): "budget"}
_PATH_KEYS: Final = frozenset({"data_dir"})
_NOT_STORED: Final = frozenset({"storage", "quiet", "top", "create_only", "optuna_storage"})


def track_given(parser: argparse.ArgumentParser) -> None:
    """Make every option of *parser* note its destination in ``args.given_options`` when
    it is given, so that a config file fills only the options not given."""
    for action in parser._actions:
        if not action.option_strings or action.dest in _NOT_KEYS:
            continue
        base = type(action)

        def call(
            self: argparse.Action,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: Any,
            option_string: str | None = None,
            _base: type[argparse.Action] = base,
        ) -> None:
            given = getattr(namespace, GIVEN, None)
            if not isinstance(given, set):
                given = set()
                setattr(namespace, GIVEN, given)
            given.add(self.dest)
            _base.__call__(self, parser, namespace, values, option_string)

        action.__class__ = type(f"Tracked{base.__name__}", (base,), {"__call__": call})
    parser.set_defaults(**{GIVEN: None})


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Config key -> action: each destination, and each long option's name."""
    found: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if not action.option_strings or action.dest in _NOT_KEYS:
            continue
        found.setdefault(action.dest, action)
        for option in action.option_strings:
            if option.startswith("--"):
                found.setdefault(option[2:].replace("-", "_"), action)
    return found


def _known(parser: argparse.ArgumentParser) -> list[str]:
    return sorted({a.dest for a in _options(parser).values()})


def _unknown(where: str, key: str, parser: argparse.ArgumentParser) -> ConfigError:
    known = _known(parser)
    close = difflib.get_close_matches(key.replace("-", "_"), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigError(f"{where}: unknown key {key!r}; {hint}known keys: {', '.join(known)}")


def _flatten(
    data: Mapping[str, Any], where: str, parser: argparse.ArgumentParser
) -> list[tuple[str, str, Any]]:
    """(key as written, destination, value) of every entry, tables opened."""
    options = _options(parser)
    out: list[tuple[str, str, Any]] = []
    for key, value in data.items():
        dest_key = key.replace("-", "_")
        action = options.get(dest_key)
        if isinstance(value, Mapping) and (action is None or _groups(dest_key, value)):
            for inner, inner_value in value.items():
                inner_key = inner.replace("-", "_")
                candidates = [
                    _ALIASES.get((dest_key, inner_key)),
                    _ALIASES_BY_KEY.get((dest_key, inner_key)),
                    dest_key if inner_key == "name" and action is not None else None,
                    f"{dest_key}_{inner_key}",
                    inner_key,
                ]
                chosen = next((c for c in candidates if c and c in options), None)
                if chosen is None:
                    raise _unknown(where, f"{key}.{inner}", parser)
                out.append((f"{key}.{inner}", options[chosen].dest, inner_value))
            continue
        if action is None:
            raise _unknown(where, key, parser)
        out.append((key, action.dest, value))
    return out


def _groups(key: str, table: Mapping[str, Any]) -> bool:
    """Whether the table under option *key* groups options (it names the option's own
    value: ``name``, or ``path`` under ``task``, ``evaluations`` under ``budget``)
    rather than being the option's value (``verbalizer = {0 = "bad"}``)."""
    own = {"name"} | {inner for (outer, inner) in {**_ALIASES, **_ALIASES_BY_KEY} if outer == key}
    return any(k.replace("-", "_") in own for k in table)


def _text(value: Any, key: str, where: str) -> str:
    """A TOML value as the text typed after the option."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, list):
        return ",".join(_text(v, key, where) for v in value)
    if isinstance(value, Mapping):
        pairs = []
        for k, v in value.items():
            words = "|".join(_text(w, key, where) for w in v) if isinstance(v, list) else v
            pairs.append(f"{k}={_text(words, key, where)}")
        return ",".join(pairs)
    raise ConfigError(f"{where}: {key} has a value of type {type(value).__name__}; give text")


def _searcher_specs(value: Any, where: str) -> list[str]:
    """``searchers`` as spec strings: specs, {name = ..., params...} tables, or a table
    of parameter tables by searcher name."""
    if isinstance(value, Mapping):
        value = [{"name": name, **(params or {})} for name, params in value.items()]
    items = value if isinstance(value, list) else [value]
    specs = []
    for item in items:
        if isinstance(item, str):
            specs.append(item)
            continue
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ConfigError(
                f"{where}: each searcher is a spec such as 'random-edit:top_k=2' or a table "
                f"with a name, e.g. {{name = 'random-edit', top_k = 2}}; got {item!r}"
            )
        params = {k: v for k, v in item.items() if k != "name"}
        specs.append(
            item["name"]
            + (":" + ",".join(f"{k}={json.dumps(v)}" for k, v in params.items()) if params else "")
        )
    return specs


def _convert(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    """The value argparse would have made of the option given on the command line."""
    here = f"{where}: {key}"
    if action.nargs == 0:  # a flag: store_true and friends
        if not isinstance(value, bool):
            raise ConfigError(f"{here} is a switch; write {key} = true or {key} = false")
        return action.const if value else action.default
    if action.dest == "searchers":
        return _searcher_specs(value, where)
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_one(action, here, item) for item in items]
    return _one(action, here, value)


def _one(action: argparse.Action, here: str, value: Any) -> Any:
    text = _text(value, here, here)
    if action.type is None:
        if not isinstance(value, (str, list, Mapping)):
            raise ConfigError(f"{here} = {value!r}: give text, in quotes")
        converted: Any = text
    else:
        try:
            converted = action.type(text)  # type: ignore[operator]
        except (argparse.ArgumentTypeError, ValueError, TypeError) as error:
            raise ConfigError(f"{here} = {value!r}: {error}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigError(f"{here} = {value!r}: choose one of {choices}")
    return converted


def _relative(dest: str, value: Any, folder: Path) -> Any:
    """Paths in the file start at the file's folder."""
    if not isinstance(value, str) or not value:
        return value
    if dest == "storage":
        return value if "://" in value else str((folder / Path(value).expanduser()).resolve())
    if dest == "model":  # a local model folder beside the file; else a hub id as is
        local = folder / Path(value).expanduser()
        return str(local.resolve()) if local.exists() else value
    if dest in _PATH_KEYS:
        return str(folder / Path(value).expanduser())
    if dest == "task":
        from promptsearch.tasks.sources import HF_DISK_PREFIX, HF_PREFIX, is_source

        if not is_source(value):
            return value
        for prefix in (HF_DISK_PREFIX, HF_PREFIX):
            if value.startswith(prefix):
                rest = value[len(prefix) :]
                local = folder / Path(rest).expanduser()
                return prefix + str(local) if local.is_dir() else value
        return ",".join(str(folder / Path(p.strip()).expanduser()) for p in value.split(","))
    return value


def read_config(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Destination -> value of the study spec file *path*, checked against *parser*'s
    options (an unknown key is one error listing the known ones)."""
    file = Path(path).expanduser()
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: file not found; check the path") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--config {path}: cannot be read ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"--config {path}: not valid TOML ({error}); fix the file") from None
    options = _options(parser)
    values: dict[str, Any] = {}
    for key, dest, value in _flatten(data, str(file), parser):
        if dest in values:
            raise ConfigError(f"{file}: {key} sets {dest!r} a second time; set it once")
        converted = _convert(options[dest], key, value, str(file))
        values[dest] = _relative(dest, converted, file.resolve().parent)
    return values


def apply_options(args: argparse.Namespace, values: Mapping[str, Any]) -> None:
    """Set the options of *values* on *args* unless given on the command line."""
    given = getattr(args, GIVEN, None) or set()
    for dest, value in values.items():
        if dest not in given:
            setattr(args, dest, value)


def _json(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    name = getattr(value, "name", None)  # a loaded model: its name
    return name if isinstance(name, str) else str(value)


def stored_options(
    args: argparse.Namespace, parser: argparse.ArgumentParser, chosen: Iterable[str]
) -> dict[str, Any]:
    """The options of *chosen* destinations (given, or from the file) as JSON, for the
    study's record; display-only options, the storage and --create-only are left out."""
    keep = {a.dest for a in _options(parser).values()} - _NOT_STORED
    return {dest: _json(getattr(args, dest)) for dest in sorted(set(chosen)) if dest in keep}


def stored_run_options(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The options a study stored (its ``config["run"]["options"]``), or None."""
    run = config.get("run")
    options = run.get("options") if isinstance(run, Mapping) else None
    return dict(options) if isinstance(options, Mapping) else None

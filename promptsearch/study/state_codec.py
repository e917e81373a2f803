"""Searcher state as data: a versioned JSON document, tensors in safetensors.

A study stores each searcher's :meth:`~promptsearch.searchers.base.Searcher.state_dict`
in the ``searcher_states`` table.  It is stored as data, never as a pickle, so a row
planted in the database cannot run code when a study resumes.  The document is
UTF-8 JSON::

    {"format": "promptsearch-state", "version": 1, "data": NODE, "tensors": BASE64|null}

``tensors`` holds every tensor of the state in one safetensors file (base64), named
``"0"``, ``"1"``, ...  A NODE is a JSON null, boolean, string, integer or finite
float as itself, a list as a JSON array of nodes, and anything else as an object with
a type tag ``t`` and a value ``v``:

=========  =================================================================
``t``      ``v``
=========  =================================================================
tuple      array of nodes
dict       array of ``[key, node]`` pairs; a key is a string or an integer
bytes      base64 string
float      ``"nan"``, ``"inf"`` or ``"-inf"`` (finite floats are plain numbers)
tensor     index of the tensor in ``tensors``
=========  =================================================================

These are exactly the types a state may hold: dict (str or int keys), list, tuple,
str, int, float (non-finite too), bool, None, bytes and :class:`torch.Tensor` (a
Python :func:`random.getstate` tuple and a torch generator state, a uint8 tensor,
are among them).  Subclasses are stored as their base type (an ``OrderedDict`` comes
back a dict, a ``Parameter`` a tensor, on the CPU).  Anything else is refused when
saving; anything that is not this format is refused when loading.  Nothing here
unpickles, evaluates or imports by a stored name.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from promptsearch.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from promptsearch.storage import Storage

__all__ = [
    "FORMAT",
    "MAGIC",
    "VERSION",
    "StateFormatError",
    "decode_searcher_state",
    "decode_state",
    "encode_state",
    "load_saved_states",
]

FORMAT = "promptsearch-state"
VERSION = 1
MAGIC = b'{"format":"promptsearch-state",'
"""How every encoded state begins (migration 0004 keeps only rows that begin so)."""

_ALLOWED = (
    "dict (str or int keys), list, tuple, str, int, float, bool, None, bytes and torch.Tensor"
)
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_TAGS = frozenset({"tuple", "dict", "bytes", "float", "tensor"})


# -- encoding ------------------------------------------------------------------------------


class _Encoder:
    def __init__(self, what: str) -> None:
        self.what = what
        self.tensors: dict[str, Any] = {}
        self._open: set[int] = set()  # containers on the current path (cycle check)
        torch = sys.modules.get("torch")  # no tensor can exist unless torch is imported
        self._tensor_type: type | None = None if torch is None else torch.Tensor

    def refuse(self, path: str, problem: str) -> NoReturn:
        where = f"state{path}" if path else "the state itself"
        raise ConfigError(
            f"{self.what}: {where} {problem}; a searcher state may hold only {_ALLOWED}"
        )

    def node(self, obj: Any, path: str) -> Any:
        if obj is None or isinstance(obj, bool):
            return obj
        if isinstance(obj, str):
            return str(obj)
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            value = float(obj)
            if math.isfinite(value):
                return value
            return {"t": "float", "v": "nan" if math.isnan(value) else repr(value)}
        if isinstance(obj, bytes | bytearray):
            return {"t": "bytes", "v": base64.b64encode(bytes(obj)).decode("ascii")}
        if self._tensor_type is not None and isinstance(obj, self._tensor_type):
            return self.tensor(obj, path)
        if isinstance(obj, list | tuple | dict):
            if id(obj) in self._open:
                self.refuse(path, "contains itself")
            self._open.add(id(obj))
            try:
                if isinstance(obj, dict):
                    return {"t": "dict", "v": [self.item(k, v, path) for k, v in obj.items()]}
                items = [self.node(v, f"{path}[{i}]") for i, v in enumerate(obj)]
                return items if isinstance(obj, list) else {"t": "tuple", "v": items}
            finally:
                self._open.discard(id(obj))
        self.refuse(path, f"has type {_type_name(obj)}")

    def item(self, key: Any, value: Any, path: str) -> list[Any]:
        if isinstance(key, bool) or not isinstance(key, str | int):
            self.refuse(path, f"has a key {key!r} of type {_type_name(key)} (use str or int)")
        key = str(key) if isinstance(key, str) else int(key)
        return [key, self.node(value, f"{path}[{key!r}]")]

    def tensor(self, obj: Any, path: str) -> dict[str, Any]:
        import torch

        if obj.layout != torch.strided or obj.is_complex() or obj.is_meta or obj.is_quantized:
            kind = str(obj.layout).removeprefix("torch.")
            kind = "meta" if obj.is_meta else "quantized" if obj.is_quantized else kind
            self.refuse(path, f"is a {kind} {obj.dtype} tensor (store dense real ones)")
        name = str(len(self.tensors))
        self.tensors[name] = obj.detach().to("cpu").contiguous().clone()
        return {"t": "tensor", "v": int(name)}


def _type_name(obj: Any) -> str:
    kind = type(obj)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def encode_state(obj: Any, *, what: str = "searcher state") -> bytes:
    """Encode *obj* as a state document (UTF-8 JSON); *what* names it in errors.

    Raises :class:`~promptsearch.errors.ConfigError` naming the place of the first
    value of a type not listed in the module docstring.
    """
    encoder = _Encoder(what)
    try:
        data = encoder.node(obj, "")
    except RecursionError:
        raise ConfigError(f"{what}: nested too deeply to store") from None
    tensors = None
    if encoder.tensors:
        from safetensors.torch import save

        try:
            blob = save(encoder.tensors)
        except (ValueError, TypeError) as error:  # a dtype safetensors does not know
            raise ConfigError(f"{what}: a tensor cannot be stored: {error}") from None
        tensors = base64.b64encode(blob).decode("ascii")
    document = {"format": FORMAT, "version": VERSION, "data": data, "tensors": tensors}
    text = json.dumps(document, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


# -- decoding ------------------------------------------------------------------------------


class StateFormatError(StorageError):
    """Bytes that are not a state document this version reads (see :func:`decode_state`)."""

    def __init__(self, message: str, *, foreign: bool = False, newer: bool = False) -> None:
        super().__init__(message)
        self.foreign = foreign  # not this format at all (a pickle, planted data)
        self.newer = newer  # this format, from a newer promptsearch


def _damaged(detail: str) -> NoReturn:
    raise StateFormatError(f"damaged state document: {detail}")


def _reject_constant(name: str) -> NoReturn:
    _damaged(f"{name} is not JSON")


class _Decoder:
    def __init__(self, tensors: dict[str, Any]) -> None:
        self.tensors = tensors

    def node(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | str | int | float):
            return value
        if isinstance(value, list):
            return [self.node(v) for v in value]
        if not isinstance(value, dict) or set(value) != {"t", "v"} or not _is_tag(value["t"]):
            _damaged(f"unknown node {_excerpt(value)}")
        tag, v = value["t"], value["v"]
        if tag == "tuple" and isinstance(v, list):
            return tuple(self.node(x) for x in v)
        if tag == "dict" and isinstance(v, list):
            return self.mapping(v)
        if tag == "bytes" and isinstance(v, str):
            try:
                return base64.b64decode(v, validate=True)
            except binascii.Error:
                _damaged("bytes that are not base64")
        if tag == "float" and isinstance(v, str) and v in _NON_FINITE:
            return _NON_FINITE[v]
        if tag == "tensor" and type(v) is int and str(v) in self.tensors:
            return self.tensors[str(v)]
        _damaged(f"bad {tag} node {_excerpt(value)}")

    def mapping(self, pairs: list[Any]) -> dict[str | int, Any]:
        out: dict[str | int, Any] = {}
        for pair in pairs:
            if not isinstance(pair, list) or len(pair) != 2:
                _damaged(f"a dict entry is not a [key, value] pair: {_excerpt(pair)}")
            key, value = pair
            if isinstance(key, bool) or not isinstance(key, str | int):
                _damaged(f"a dict key is not a string or an integer: {_excerpt(key)}")
            if key in out:
                _damaged(f"a dict has the key {key!r} twice")
            out[key] = self.node(value)
        return out


def _is_tag(value: Any) -> bool:
    return isinstance(value, str) and value in _TAGS


def _excerpt(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _tensors(encoded: Any) -> dict[str, Any]:
    if encoded is None:
        return {}
    if not isinstance(encoded, str):
        _damaged("'tensors' is neither null nor a base64 string")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        _damaged("'tensors' is not base64")
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(blob)
    except (SafetensorError, ValueError, TypeError) as error:
        _damaged(f"'tensors' is not a safetensors file ({error})")
    if set(tensors) != {str(i) for i in range(len(tensors))}:
        _damaged("the tensors are not named 0, 1, ...")
    return tensors


def decode_state(data: bytes) -> Any:
    """The state that :func:`encode_state` encoded as *data*.

    Raises :class:`StateFormatError` (a :class:`~promptsearch.errors.StorageError`)
    for bytes that are not a state document, one from a newer promptsearch, or a
    damaged one.
    """
    data = bytes(data)
    if not data.startswith(MAGIC):
        raise StateFormatError("not promptsearch's JSON state format", foreign=True)
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError:
        _damaged("nested too deeply")
    except (UnicodeDecodeError, ValueError) as error:
        _damaged(f"not UTF-8 JSON ({error})")
    if not isinstance(document, dict) or set(document) != {"format", "version", "data", "tensors"}:
        _damaged("expected the keys format, version, data and tensors")
    version = document["version"]
    if type(version) is not int or version < 1:
        _damaged(f"bad version {_excerpt(version)}")
    if version > VERSION:
        raise StateFormatError(
            f"state format version {version}, written by a newer promptsearch (this one "
            f"reads version {VERSION}); upgrade promptsearch",
            newer=True,
        )
    decoder = _Decoder(_tensors(document["tensors"]))
    try:
        return decoder.node(document["data"])
    except RecursionError:
        _damaged("nested too deeply")


# -- a study's saved states ------------------------------------------------------------------


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def decode_searcher_state(data: bytes, study: str, searcher: str) -> dict[str, Any]:
    """The saved state of *searcher* in *study*, for its ``load_state_dict``.

    Anything else raises one :class:`~promptsearch.errors.StorageError` that names the
    row and the fix.
    """
    row = f"the searcher_states row of searcher {searcher!r} in study {study!r}"
    delete = (
        f"DELETE FROM searcher_states WHERE searcher = {_sql_text(searcher)} AND study_id = "
        f"(SELECT id FROM studies WHERE name = {_sql_text(study)})"
    )
    fix = f"delete the row to start that searcher afresh ({delete}); nothing was loaded"
    try:
        state = decode_state(data)
    except StateFormatError as error:
        if error.foreign:
            raise StorageError(
                f"{row} is not promptsearch's JSON state format (a pickle from a "
                "promptsearch before schema revision 0004, which `promptsearch db upgrade` "
                f"drops, or planted data); {fix}"
            ) from None
        if error.newer:
            raise StorageError(f"{row} holds {error}, or {fix}") from None
        raise StorageError(f"{row} is a {error}; {fix}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise StorageError(f"{row} is a state document but not a dict with str keys; {fix}")
    return state


def load_saved_states(
    storage: Storage, study: str, searchers: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The decoded saved state of each of *searchers* that has one in *study* (none
    when the study does not exist yet).

    Called before the study writes anything, so that a row that cannot be loaded
    leaves the database as it was.
    """
    if storage.get_study(study) is None:
        return {}
    states: dict[str, dict[str, Any]] = {}
    for name in searchers:
        data = storage.load_searcher_state(study, name)
        if data is not None:
            states[name] = decode_searcher_state(data, study, name)
    return states

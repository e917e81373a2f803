"""Loading the model that scores prompts: the embedded GGUF model, a local ``.gguf``
file, a local folder or a Hugging Face hub id (see :func:`load_model`).

Above :mod:`~promptsearch.models.base` (what a loaded model is),
:mod:`~promptsearch.models.gguf` and :mod:`~promptsearch.models.hub` (how each source is
read).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from promptsearch.errors import ConfigError
from promptsearch.hashing import content_hash
from promptsearch.models import gguf as _gguf
from promptsearch.models import hub as _hub
from promptsearch.models import remote as _remote
from promptsearch.models.base import (
    EMBEDDED_ALIASES,
    EMBEDDED_MODEL,
    LanguageModel,
    ModelKind,
    _check_kind,
    cache_root,
    resolve_device,
    resolve_dtype,
    wrap_model,
)

__all__ = ["load_model"]


def load_model(
    name: str | None = None,
    *,
    kind: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | Path | None = None,
) -> LanguageModel:
    """Load a model for scoring prompts.

    Parameters
    ----------
    name:
        ``None`` or ``"smollm2-135m-instruct"`` (also ``"embedded"``, ``"default"``) for
        the embedded model; a local model folder; a local ``.gguf`` file; a GGUF file
        on the hub, ``owner/name:file.gguf`` (``owner/name@revision:file.gguf``),
        downloaded through ``huggingface_hub``'s cache; a hub id; or
        ``openai:URL#model=M&key_env=VAR``, a model behind an OpenAI-compatible server
        (see :mod:`promptsearch.models.remote`; *kind*, *device*, *dtype*,
        *trust_remote_code* and *cache_dir* do not apply to it).
    kind:
        ``"causal"``, ``"masked"`` or ``"seq2seq"``; detected from the config if ``None``.
    device, dtype:
        See :func:`resolve_device` and :func:`resolve_dtype`; ``None`` means automatic.
    trust_remote_code:
        Passed to transformers; leave ``False`` unless you trust the model's code.
    cache_dir:
        Cache folder: converted GGUF weights go under ``<cache_dir>/models``, and hub
        downloads use it as their cache.  Default: :func:`cache_root` (GGUF) and the
        Hugging Face cache (hub).
    """
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigError(
            f"name must be a model name, folder or hub id (or None for the embedded model "
            f"{EMBEDDED_MODEL!r}); got {name!r}"
        )
    checked = _check_kind(kind)
    if name is not None and name.strip().startswith(_remote.REMOTE_PREFIX):
        if checked not in (None, "causal"):
            raise ConfigError(
                f"kind={kind!r} does not fit a remote model, which continues text (causal); "
                "leave kind=None or use 'causal'"
            )
        return _remote.load_remote(name)
    if not isinstance(trust_remote_code, bool):
        raise ConfigError(f"trust_remote_code must be True or False; got {trust_remote_code!r}")
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    requested = EMBEDDED_MODEL if name is None or name.strip().lower() in EMBEDDED_ALIASES else name

    with _gguf.quiet_transformers():
        identity: dict[str, Any] | None = None
        if requested == EMBEDDED_MODEL or requested.lower().endswith(".gguf"):
            if checked not in (None, "causal"):
                raise ConfigError(
                    f"kind={kind!r} does not fit model {requested!r}, a causal language model; "
                    "leave kind=None or use 'causal'"
                )
            stem = requested
            if requested == EMBEDDED_MODEL:
                path = _gguf.embedded_gguf_path()
            elif _hub.parse_hub_gguf(requested) is not None:
                path, identity = _hub.download_gguf(requested, cache_dir)
                stem = str(identity["file"])
            else:
                path = Path(requested).expanduser()
            model, tokenizer, source = _gguf.load_gguf(
                path, stem, torch_dtype, cache_root(cache_dir)
            )
            resolved: ModelKind = "causal"
        else:
            model, tokenizer, resolved, source = _hub.load_pretrained(
                requested, checked, torch_device, torch_dtype, trust_remote_code, cache_dir
            )
        if torch_device.type != "cuda" or source in ("gguf", "cache"):
            model = model.to(device=torch_device, dtype=torch_dtype)
        loaded = wrap_model(model, tokenizer, name=requested, kind=resolved, source=source)
        if identity is not None:  # a hub GGUF file: the file itself is part of the identity
            identity["file_key"] = _gguf.file_key(path)
            fingerprint = content_hash({"model": loaded.fingerprint, "gguf": identity})
            loaded = replace(loaded, fingerprint=fingerprint)
        return loaded

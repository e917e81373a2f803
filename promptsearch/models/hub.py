"""Loading models from a local folder or the Hugging Face hub with the Auto classes.

A cached hub model is tried first without the network; the hub is asked only when
that fails and it can be reached, so an offline machine fails fast with one line.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

from promptsearch.errors import ModelError
from promptsearch.models.base import EMBEDDED_MODEL, ModelKind, detect_kind

__all__ = ["download_gguf", "load_pretrained", "parse_hub_gguf"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _auto_class(kind: ModelKind) -> Any:
    import transformers

    return {
        "causal": transformers.AutoModelForCausalLM,
        "masked": transformers.AutoModelForMaskedLM,
        "seq2seq": transformers.AutoModelForSeq2SeqLM,
    }[kind]


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _hub_reachable() -> bool:
    """False when the environment says offline or the hub's host cannot be resolved."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on"):
            return False
    proxies = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")
    if any(os.environ.get(p) for p in proxies):
        return True  # the proxy resolves names; let the hub client try
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = re.sub(r"^\w+://", "", endpoint).split("/")[0].split(":")[0]
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def load_pretrained(
    name: str,
    kind: ModelKind | None,
    torch_device: Any,
    torch_dtype: Any,
    trust_remote_code: bool,
    cache_dir: str | Path | None,
) -> tuple[Any, Any, ModelKind, str]:
    """Load a local folder or a hub id with the Auto classes; ModelError on failure."""
    from transformers import AutoConfig, AutoTokenizer

    local = Path(name).expanduser()
    is_local = local.is_dir()
    if not is_local and not _HUB_ID.match(name):
        raise ModelError(
            f"model {name!r} was not found: there is no local folder of that name and it is not "
            f"a valid hub id (owner/name); the embedded model is {EMBEDDED_MODEL!r}"
        )
    source = "local" if is_local else "hub"
    target = str(local) if is_local else name
    common: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if cache_dir is not None and not is_local:
        common["cache_dir"] = str(cache_dir)

    def attempt(local_only: bool) -> tuple[Any, Any, ModelKind]:
        options = dict(common, local_files_only=local_only)
        config = AutoConfig.from_pretrained(target, **options)
        resolved: ModelKind = kind or detect_kind(config)
        tokenizer = AutoTokenizer.from_pretrained(target, **options)
        load_options: dict[str, Any] = dict(options, config=config, dtype=torch_dtype)
        if torch_device.type == "cuda":
            load_options["device_map"] = {"": str(torch_device)}
        model = _auto_class(resolved).from_pretrained(target, **load_options)
        return model, tokenizer, resolved

    try:
        model, tokenizer, resolved = attempt(local_only=True)
    except Exception as local_error:
        if is_local:
            raise ModelError(
                f"model folder {str(local)!r} could not be loaded ({_one_line(local_error)}); "
                f"check that it holds a transformers model and tokenizer, or use the embedded "
                f"model {EMBEDDED_MODEL!r}"
            ) from local_error
        if not _hub_reachable():
            raise ModelError(
                f"model {name!r} was not found: there is no local folder or cached hub model of "
                f"that name and the hub cannot be reached (the network may be off); the embedded "
                f"model is {EMBEDDED_MODEL!r}"
            ) from local_error
        try:
            model, tokenizer, resolved = attempt(local_only=False)
        except Exception as error:
            raise ModelError(
                f"model {name!r} could not be loaded: no local folder or cached hub model of that "
                f"name, and downloading failed ({_one_line(error)}; the network may be off); the "
                f"embedded model is {EMBEDDED_MODEL!r}"
            ) from error
    return model, tokenizer, resolved, source


# -- GGUF files on the hub: ``owner/name:file.gguf`` ------------------------------------------

_HUB_GGUF = re.compile(
    r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?:(?P<file>[^:@]+\.gguf)$",
    re.IGNORECASE,
)


def parse_hub_gguf(name: str) -> tuple[str, str | None, str] | None:
    """``(repo, revision, filename)`` of a hub GGUF spec ``owner/name[@revision]:file.gguf``,
    or ``None`` when *name* is not one (a local file of that name is never a spec)."""
    found = _HUB_GGUF.match(name.strip())
    if found is None or Path(name).expanduser().is_file():
        return None
    filename = found.group("file")
    if filename.startswith("/") or ".." in filename.split("/"):
        return None
    return found.group("repo"), found.group("revision"), filename


def _commit(path: Path) -> str | None:
    """The commit of a file in huggingface_hub's cache layout (``snapshots/<commit>/...``)."""
    parts = path.parts
    if "snapshots" in parts[:-1]:
        commit = parts[parts.index("snapshots") + 1]
        if re.fullmatch(r"[0-9a-f]{40}", commit):
            return commit
    return None


def download_gguf(name: str, cache_dir: str | Path | None) -> tuple[Path, dict[str, Any]]:
    """The local path of hub GGUF spec *name* (see :func:`parse_hub_gguf`), downloaded
    through ``huggingface_hub`` (its cache; *cache_dir* if given) when it is not cached,
    and what identifies the file: repo, filename, requested revision and the commit the
    cached copy came from.  Offline and not cached: one :class:`ModelError` line."""
    parsed = parse_hub_gguf(name)
    if parsed is None:
        raise ModelError(f"model {name!r} is not a hub GGUF spec 'owner/name:file.gguf'")
    repo, revision, filename = parsed
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        raise ModelError(
            f"model {name!r}: downloading from the hub needs the package huggingface_hub "
            "(pip install huggingface_hub), or give a local path to the .gguf file"
        ) from None
    options: dict[str, Any] = {"revision": revision}
    if cache_dir is not None:
        options["cache_dir"] = str(cache_dir)
    command = f"hf download {repo} {filename}" + (f" --revision {revision}" if revision else "")
    fix = (
        f"download it first on a machine with network ({command}, into the same hub "
        "cache) or give the local path of the .gguf file"
    )
    try:
        path = hf_hub_download(repo, filename, local_files_only=True, **options)
    except Exception as local_error:
        if not _hub_reachable():
            raise ModelError(
                f"model {name!r}: the GGUF file is not in the local hub cache and the hub "
                f"cannot be reached (offline, or HF_HUB_OFFLINE is set); {fix}"
            ) from local_error
        try:
            path = hf_hub_download(repo, filename, **options)
        except Exception as error:
            raise ModelError(
                f"model {name!r}: the GGUF file could not be downloaded ({_one_line(error)}); "
                f"check the repo and file names, or {fix}"
            ) from error
    local = Path(path)
    identity = {
        "repo": repo,
        "file": filename,
        "revision": revision or "main",
        "commit": _commit(local),
    }
    return local, identity

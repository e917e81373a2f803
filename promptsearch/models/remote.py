"""Models behind an OpenAI-compatible server: ``openai:URL#model=M&key_env=VAR`` specs.

:func:`load_remote` turns a spec into a :class:`~promptsearch.models.base.LanguageModel`
with ``source="remote"``, ``kind="causal"``, no tokenizer, and a
:class:`~promptsearch.models.remote_http.RemoteClient` where a local model keeps its
network.  The scoring back-end :mod:`promptsearch.scoring.backends.remote` scores
with it through ``/v1/completions``.

The spec is ``openai:`` + the API root (``http://127.0.0.1:8000/v1``) + options after
``#``, joined by ``&``:

``model``         the model name the server knows (default: the first it lists)
``key_env``       the NAME of the environment variable holding the API key
                  (default ``OPENAI_API_KEY``; unset: no key is sent)
``timeout``       seconds per request (60)
``max_retries``   retries of a 408/409/429/5xx answer, timeout or dropped connection (4)
``backoff``       first wait between retries in seconds, doubling (0.5)
``concurrency``   requests in flight at once (4)
``batch``         prompts per request, in the ``prompt`` list form (16)
``max_length``    the model's context in tokens (default: the server's
                  ``max_model_len`` if ``/models`` gives one, else 2048)
``mode``          how classification is scored: ``echo`` (default; the prompt echoed
                  with its token log-probabilities) or ``next-token`` (the top
                  ``logprobs`` next tokens after the context, for servers without
                  ``echo``, such as OpenAI's API; label words must be single tokens;
                  see :mod:`promptsearch.scoring.backends.remote`)
``logprobs``      top tokens asked for in ``next-token`` mode (5, OpenAI's limit;
                  1 to 20)

The fingerprint is a hash of the API root, the model name and the model id the server
reports (and, in ``next-token`` mode, the mode and ``logprobs``), so scores of a remote
model never share a cache entry with a local model's (or another server's).  The key is
never part of it, nor of the model's name: a spec with an option that looks like a key
(``key=``, ``api_key=``, ``token=``...) or a URL with a user part is refused.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from promptsearch.errors import ConfigError, ModelError
from promptsearch.hashing import content_hash
from promptsearch.models.base import MAX_SCORING_LENGTH, LanguageModel
from promptsearch.models.remote_http import RemoteClient

__all__ = [
    "DEFAULT_KEY_ENV",
    "REMOTE_PREFIX",
    "SCORING_MODES",
    "RemoteScoringHandle",
    "RemoteSpec",
    "is_remote",
    "load_remote",
    "parse_remote_spec",
    "short_name",
]

REMOTE_PREFIX = "openai:"
"""Model names that start with this are remote models."""

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
"""The environment variable read for the API key unless another is named."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_OPTIONS = ("key", "api_key", "apikey", "token", "secret", "password")
_OPTIONS = (
    "model",
    "key_env",
    "timeout",
    "max_retries",
    "backoff",
    "concurrency",
    "batch",
    "max_length",
    "mode",
    "logprobs",
)

SCORING_MODES = ("echo", "next-token")
"""The ways a remote model scores classification (the ``mode`` option)."""

DEFAULT_TOP_LOGPROBS = 5
"""Top tokens asked for in ``next-token`` mode (OpenAI's ``/completions`` limit)."""


@dataclass(frozen=True)
class RemoteSpec:
    """The parts of an ``openai:`` model spec (no key: only its variable's name)."""

    base_url: str
    model: str | None
    key_env: str | None
    timeout: float = 60.0
    max_retries: int = 4
    backoff: float = 0.5
    concurrency: int = 4
    batch: int = 16
    max_length: int | None = None
    mode: str = "echo"
    logprobs: int = DEFAULT_TOP_LOGPROBS


def _shown(url: str) -> str:
    """The URL for an error message, without any user part."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
    except ValueError:
        return "<bad URL>"


def _check_url(url: str, where: str) -> str:
    url = url.strip().rstrip("/")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        raise ConfigError(f"{where}: the URL is not valid: {error}") from None
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"{where}: the URL must not carry a user name or password; put the API key in an "
            "environment variable and name it with key_env=VAR"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where}: the URL must start with http:// or https:// and name a host, e.g. "
            "'openai:http://127.0.0.1:8000/v1#model=NAME'"
        )
    if parts.query:
        raise ConfigError(f"{where}: the URL must have no query; options go after '#'")
    if parts.path.endswith(("/chat/completions", "/completions", "/models")):
        raise ConfigError(
            f"{where}: give the API root (e.g. 'http://127.0.0.1:8000/v1'), not an endpoint"
        )
    return url


def _number(values: dict[str, str], key: str, kind: type, low: float, high: float) -> Any:
    text = values.get(key)
    if text is None:
        return None
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"option {key} must be {what} in [{low:g}, {high:g}]; got {text!r}")
    return value


def parse_remote_spec(spec: str) -> RemoteSpec:
    """Check and split an ``openai:URL#key=value&...`` model spec (see the module docstring).

    Errors never echo an option's value but the model's (a mistaken spec may hold the key).
    """
    if not isinstance(spec, str) or not spec.strip().startswith(REMOTE_PREFIX):
        raise ConfigError(f"a remote model spec starts with {REMOTE_PREFIX!r}; got {spec!r:.80}")
    url, _, options = spec.strip()[len(REMOTE_PREFIX) :].partition("#")
    where = f"model spec '{REMOTE_PREFIX}{_shown(url)}'"
    values: dict[str, str] = {}
    for item in options.split("&") if options.strip() else []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if key.lower() in _SECRET_OPTIONS:
            problem = (
                f"option {key!r}: an API key never goes in a spec (specs are stored with the "
                "study); put it in an environment variable and name that with key_env=VAR"
            )
        elif not sep:
            problem = f"{key!r} is not key=value"
        elif key in values:
            problem = f"{key!r} is given twice"
        elif key not in _OPTIONS:
            problem = f"unknown option {key!r}"
        else:
            values[key] = urllib.parse.unquote(value.strip())
            continue
        raise ConfigError(
            f"{where}: {problem}; the options after '#' are {', '.join(_OPTIONS)}, joined by "
            "'&' (e.g. '#model=NAME&key_env=MY_KEY')"
        )
    base_url = _check_url(url, where)
    key_env = values.get("key_env", DEFAULT_KEY_ENV) or None
    if key_env is not None and not _ENV_NAME.match(key_env):
        raise ConfigError(
            f"{where}: key_env must be the NAME of the environment variable that holds the API "
            f"key (letters, digits and '_', e.g. {DEFAULT_KEY_ENV!r}); the value given is not a "
            "variable name (not shown, in case it is a key)"
        )
    try:
        numbers = {
            "timeout": _number(values, "timeout", float, 0.001, 3600.0),
            "max_retries": _number(values, "max_retries", int, 0, 20),
            "backoff": _number(values, "backoff", float, 0.0, 60.0),
            "concurrency": _number(values, "concurrency", int, 1, 256),
            "batch": _number(values, "batch", int, 1, 1024),
            "max_length": _number(values, "max_length", int, 2, 1 << 20),
            "logprobs": _number(values, "logprobs", int, 1, 20),
        }
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    mode = values.get("mode", "echo").strip().lower().replace("_", "-")
    if mode not in SCORING_MODES:
        raise ConfigError(
            f"{where}: option mode must be one of {', '.join(SCORING_MODES)}; got "
            f"{values['mode']!r:.40}"
        )
    return RemoteSpec(
        base_url=base_url,
        model=values.get("model") or None,
        key_env=key_env,
        mode=mode,
        **{k: v for k, v in numbers.items() if v is not None},
    )


def short_name(spec: str) -> str:
    """A short name for default study names: ``remote-`` and the model's last path part
    (or the host when the spec names no model)."""
    parsed = parse_remote_spec(spec)
    name = parsed.model or urllib.parse.urlsplit(parsed.base_url).hostname or "model"
    return "remote-" + (name.rstrip("/").split("/")[-1] or "model")


def _listed(answer: Any) -> list[dict[str, Any]]:
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        return []
    return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


def load_remote(spec: str) -> LanguageModel:
    """The remote model of *spec*: asks ``{URL}/models`` which model it serves (one
    request) and returns a model whose ``model`` is the HTTP client."""
    import torch

    parsed = parse_remote_spec(spec)
    client = RemoteClient(
        parsed.base_url,
        key_env=parsed.key_env,
        timeout=parsed.timeout,
        max_retries=parsed.max_retries,
        backoff=parsed.backoff,
        concurrency=parsed.concurrency,
    )
    listed = _listed(client.get("models"))
    ids = [m["id"] for m in listed]
    if parsed.model is None and not ids:
        raise ModelError(
            f"{parsed.base_url}/models listed no model this client can read; name the model "
            "with model=NAME in the spec"
        )
    model = parsed.model or ids[0]
    entry = next((m for m in listed if m["id"] == model), None)
    if ids and entry is None:
        raise ModelError(
            f"{parsed.base_url} does not serve the model {model!r}; it lists "
            f"{', '.join(repr(i) for i in ids[:10])}; fix model= in the spec"
        )
    served = entry or {"id": model}
    server_length = served.get("max_model_len")
    if parsed.max_length is not None:
        max_length = parsed.max_length
    elif isinstance(server_length, int) and server_length > 1:
        max_length = server_length
    else:
        max_length = MAX_SCORING_LENGTH
    identity: dict[str, Any] = {
        "remote": parsed.base_url,
        "model": model,
        "served": served["id"],
        "version": 1,
    }
    if parsed.mode != "echo":  # other scores: never the echo mode's cache entries
        identity.update(mode=parsed.mode, logprobs=parsed.logprobs)
    fingerprint = content_hash(identity)
    return LanguageModel(
        name=spec.strip(),
        kind="causal",
        model=RemoteScoringHandle(parsed, client, model),
        tokenizer=None,
        device=torch.device("cpu"),
        dtype=torch.float32,
        fingerprint=fingerprint,
        max_length=max_length,
        source="remote",
    )


@dataclass
class RemoteScoringHandle:
    """What a remote model holds where a local one holds its network: the parsed spec,
    the HTTP client and the model name sent with each request."""

    spec: RemoteSpec
    client: RemoteClient
    served_model: str
    training: bool = False

    def eval(self) -> RemoteScoringHandle:
        """No-op (the scorer puts networks in eval mode)."""
        return self

    def train(self, mode: bool = True) -> RemoteScoringHandle:
        """No-op."""
        return self


def is_remote(model: LanguageModel) -> bool:
    """Whether *model* is served over HTTP (from :func:`load_remote`)."""
    return isinstance(model.model, RemoteScoringHandle)

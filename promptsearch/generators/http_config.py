"""Parameters of the HTTP generator: base URLs, key variable names, and ``openai:`` specs.

Kept apart from :mod:`promptsearch.generators.openai_compat` (the client itself).  Nothing
here echoes a value that may be a secret: a user part of a URL, an option that
looks like a key, or a key given where its variable's name belongs.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from promptsearch.errors import ConfigError

__all__ = ["DEFAULT_KEY_ENV", "OWNER", "check_base_url", "check_env_name", "parse_openai_spec"]

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
"""The environment variable read for the API key unless another is named."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OWNER = "OpenAICompatibleGenerator"


def check_base_url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"{OWNER}: base_url must be the server's base URL, e.g. "
            f"'http://127.0.0.1:8000/v1'; got {value!r:.80}"
        )
    url = value.strip().rstrip("/")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        raise ConfigError(f"{OWNER}: base_url {url!r} is not a valid URL: {error}") from None
    if parts.username is not None or parts.password is not None:
        # the URL is not echoed: its user part may hold a secret
        raise ConfigError(
            f"{OWNER}: base_url must not carry a user name or password; put the API key in "
            "an environment variable and name it with api_key_env (key_env= in a spec)"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{OWNER}: base_url must start with http:// or https:// and name a host, e.g. "
            f"'http://127.0.0.1:8000/v1'; got {url!r}"
        )
    if parts.query or parts.fragment:
        raise ConfigError(
            f"{OWNER}: base_url must have no query or fragment (model and options are "
            f"parameters of their own); got {url!r}"
        )
    if parts.path.endswith(("/chat/completions", "/completions", "/models")):
        raise ConfigError(
            f"{OWNER}: base_url is the API root (e.g. 'http://127.0.0.1:8000/v1'), not an "
            f"endpoint; got {url!r}"
        )
    return url


def check_env_name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        # the value is not echoed: it may be the key itself, given by mistake
        raise ConfigError(
            f"{OWNER}: api_key_env must be the NAME of the environment variable that holds "
            f"the API key (letters, digits and '_', e.g. {DEFAULT_KEY_ENV!r}), or None for no "
            "key; the value given is not a variable name (not shown, in case it is a key)"
        )
    return value


_SPEC_OPTIONS = ("model", "key_env", "timeout", "max_retries", "backoff", "max_concurrency")
_SECRET_OPTIONS = ("key", "api_key", "apikey", "token", "secret", "password")


def _shown(url: str, options: str) -> str:
    """The spec for an error message, with no user part and no option value but the model's
    (a mistaken spec may hold the key itself)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        where = f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else url.strip()
    except ValueError:
        where = "<bad URL>"
    shown = []
    for item in options.split("&") if options.strip() else []:
        key, sep, value = item.partition("=")
        keep = key.strip() == "model" and sep
        shown.append(f"{key.strip()}={value.strip()}" if keep else f"{key.strip()}=...")
    return f"'openai:{where}" + (f"#{'&'.join(shown)}'" if shown else "'")


def parse_openai_spec(rest: str) -> tuple[str, dict[str, Any], str]:
    """Split the part of an ``openai:`` spec after ``openai:`` into the base URL and the
    generator's keyword arguments; also return the spec as error messages show it."""
    url, _, options = rest.partition("#")
    shown = _shown(url, options)
    values: dict[str, str] = {}
    for item in options.split("&") if options.strip() else []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in _SPEC_OPTIONS or key in values:
            if key.lower() in _SECRET_OPTIONS:
                problem = (
                    f"option {key!r}: an API key never goes in a spec (specs are stored with "
                    "the study); put it in an environment variable and name that with "
                    "key_env=VAR"
                )
            elif not sep:
                problem = f"{key!r} is not key=value"
            elif key in values:
                problem = f"{key!r} is given twice"
            else:
                problem = f"unknown option {key!r}"
            raise ConfigError(
                f"generator spec {shown}: {problem}; the options after '#' are "
                f"{', '.join(_SPEC_OPTIONS)}, joined by '&' "
                "(e.g. '#model=NAME&key_env=MY_KEY')"
            )
        values[key] = urllib.parse.unquote(value.strip())
    try:
        kwargs: dict[str, Any] = {
            "model": values.get("model") or None,
            "api_key_env": values.get("key_env", DEFAULT_KEY_ENV) or None,
            "timeout": float(values.get("timeout", 60.0)),
            "max_retries": int(values.get("max_retries", 4)),
            "backoff": float(values.get("backoff", 0.5)),
            "max_concurrency": int(values.get("max_concurrency", 4)),
        }
    except ValueError:
        raise ConfigError(
            f"generator spec {shown}: timeout and backoff must be numbers, max_retries and "
            "max_concurrency integers"
        ) from None
    return url.strip(), kwargs, shown

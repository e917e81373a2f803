"""Pieces the OpenAI-compatible HTTP code shares: the generator's client
(:mod:`promptsearch.generators.openai_compat`), the remote scoring client
(:mod:`promptsearch.models.remote_http`) and ``promptsearch serve``
(:mod:`promptsearch.generators.server`).  Standard library only."""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import random
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http.client import HTTPException
from typing import Any, Final

from promptsearch.errors import PromptSearchError

__all__ = [
    "JITTER",
    "MAX_DELAY",
    "UNREACHABLE",
    "RetryRules",
    "error_detail",
    "is_loopback",
    "missing_key_reason",
    "retry_after",
    "retryable",
    "send_with_retries",
]

MAX_DELAY: Final = 60.0
"""Upper bound, in seconds, on one wait between retries (``Retry-After`` included)."""

JITTER: Final = random.SystemRandom()
"""Source of retry jitter; leaves the global random state alone."""

UNREACHABLE: Final = {
    errno.ECONNREFUSED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EADDRNOTAVAIL,
}
"""``errno`` values of a connection that retrying will not fix."""


def retryable(status: int) -> bool:
    """Whether an HTTP answer with *status* is worth sending again (408, 409, 429, 5xx
    except 501 and 505)."""
    return status in (408, 409, 429) or (500 <= status < 600 and status not in (501, 505))


def is_loopback(host: str) -> bool:
    """Whether *host* (a name or an address) is this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def error_detail(error: urllib.error.HTTPError) -> str:
    """The server's own error message, as ``": message"`` (or ``""``)."""
    try:
        raw = error.read(4096)
    except (OSError, HTTPException):
        return ""
    finally:
        error.close()
    text = raw.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        inner = data.get("error", data)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if isinstance(message, str) and message.strip():
            text = message.strip()
    text = " ".join(text.split())
    return f": {text[:300]}" if text else ""


def retry_after(headers: Any) -> float | None:
    """Seconds the server asks to wait (``retry-after-ms``, or ``Retry-After`` as seconds
    or an HTTP date), if any."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def missing_key_reason(env: str | None, sent_key: bool, how_to_name: str) -> str:
    """Why a server answered 401/403: the key it refused, the variable that is unset, or
    no variable at all; *how_to_name* says how this client names the variable."""
    if sent_key:
        return (
            f"it refused the API key from the environment variable {env}; check that "
            f"{env} holds a valid key for this server"
        )
    if env:
        return (
            f"no API key was sent because the environment variable {env} is not set; "
            f"set it (export {env}=...) or name another variable with {how_to_name}"
        )
    return f"no API key is configured; name its environment variable with {how_to_name}"


@dataclass(frozen=True)
class RetryRules:
    """How one client sends a request and gives up.

    *error* is the exception it raises; *rate_limit_hint* and *timeout_hint* end the
    message of a request that still failed after all retries with HTTP 429 or a timeout.
    """

    timeout: float
    max_retries: int
    backoff: float
    error: type[PromptSearchError]
    rate_limit_hint: str
    timeout_hint: str
    base_url_name: str = "base_url"


def send_with_retries(
    url: str,
    payload: bytes | None,
    *,
    base_url: str,
    key_env: str | None,
    rules: RetryRules,
    open_request: Callable[[urllib.request.Request], bytes],
    abort: threading.Event,
    refused: Callable[[str, int, str, bool], PromptSearchError],
    count: Callable[[str], None],
) -> bytes:
    """The body of a 200 answer to one request (a POST of *payload*, or a GET when it is
    ``None``), after retries.

    The key is read from the environment variable *key_env* at each attempt and sent as
    ``Authorization: Bearer``.  Retryable answers (:func:`retryable`), timeouts and
    dropped connections are sent again up to ``rules.max_retries`` times, after
    ``backoff * 2**attempt`` seconds with jitter or the server's ``Retry-After`` (capped
    at :data:`MAX_DELAY`); setting *abort* ends the waiting.  Any other answer raises
    ``refused(url, status, detail, sent_key)``; an unreachable host, TLS failure or
    failure after the last retry raises ``rules.error``.  *count* is told of each
    ``"requests"`` and ``"retries"``.
    """
    attempt = 0
    while True:
        headers = {"Content-Type": "application/json", "User-Agent": "promptsearch"}
        key = os.environ.get(key_env) if key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(url, data=payload, headers=headers)
        count("requests")
        wait_for: float | None = None
        try:
            return open_request(request)
        except urllib.error.HTTPError as error:
            detail = error_detail(error)
            if not retryable(error.code):
                raise refused(url, error.code, detail, bool(key)) from None
            wait_for = retry_after(error.headers)
            failure = f"HTTP {error.code}{detail}"
        except (urllib.error.URLError, OSError, HTTPException) as error:
            reason: Any = error.reason if isinstance(error, urllib.error.URLError) else error
            failure = _transport_failure(url, reason, base_url, rules)
        if attempt >= rules.max_retries or abort.is_set():
            tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
            hint = (
                rules.rate_limit_hint
                if failure.startswith("HTTP 429")
                else rules.timeout_hint
                if "timed out" in failure
                else ""
            )
            raise rules.error(f"{url} failed after {tries}: {failure}{hint}")
        delay = rules.backoff * 2**attempt * (0.5 + JITTER.random())
        if wait_for is not None:
            delay = wait_for
        count("retries")
        if abort.wait(min(delay, MAX_DELAY)):
            raise rules.error(f"{url}: request abandoned after another request failed")
        attempt += 1


def _transport_failure(url: str, reason: Any, base_url: str, rules: RetryRules) -> str:
    """Describe a retryable transport failure; raise at once for a hopeless one."""
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"timed out after {rules.timeout:g} s"
    unreachable = isinstance(reason, socket.gaierror) or (
        isinstance(reason, OSError) and reason.errno in UNREACHABLE
    )
    if unreachable:
        raise rules.error(
            f"cannot reach {url}: {reason}; is the server running, and are the host and "
            f"port of {rules.base_url_name} {base_url!r} right?"
        ) from None
    if isinstance(reason, ssl.SSLError):
        raise rules.error(f"TLS failed for {url}: {reason}") from None
    if not isinstance(reason, BaseException):
        raise rules.error(f"cannot send a request to {url}: {reason}") from None
    return f"{type(reason).__name__}: {reason}"

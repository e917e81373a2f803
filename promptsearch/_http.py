"""Pieces the OpenAI-compatible HTTP code shares: the generator's client
(:mod:`promptsearch.generators.openai_compat`), the remote scoring client
(:mod:`promptsearch.models.remote_http`) and ``promptsearch serve``
(:mod:`promptsearch.generators.server`).  Standard library only."""

from __future__ import annotations

import errno
import ipaddress
import json
import random
import urllib.error
from http.client import HTTPException
from typing import Final

__all__ = ["JITTER", "MAX_DELAY", "UNREACHABLE", "error_detail", "is_loopback", "retryable"]

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

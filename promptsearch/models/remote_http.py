"""The HTTP client of remote scoring models (see :mod:`promptsearch.models.remote`).

Standard library only (``urllib``), no torch.  It speaks the OpenAI-compatible API
that vLLM, llama-cpp-python's server and ``promptsearch serve`` share:

* The API key is read from the environment variable *key_env* at each request and
  sent as ``Authorization: Bearer``; it is never stored on the object, so it is in
  no ``repr``, fingerprint, model name or database row.  With the variable unset,
  no key is sent (fine for local servers).
* 408, 409, 429 and 5xx answers, timeouts and dropped connections are retried up to
  *max_retries* times, after ``backoff * 2**attempt`` seconds with jitter (or the
  server's ``Retry-After``, capped at 60 s).  Anything else (a refused connection,
  an unknown host, 400, 401/403, 404, an answer that is not JSON) raises one
  :class:`~promptsearch.errors.ModelError` that says what to fix.
* :meth:`RemoteClient.run_all` runs jobs on at most *concurrency* threads; the first
  failure stops the others from retrying and is raised.

The generator's client (:mod:`promptsearch.generators.openai_compat`) follows the
same rules; it sits a floor above ``models`` in the package layout, so it cannot be
imported from here.  What both clients share (which answers are retried, loopback
hosts, the server's error text) is in :mod:`promptsearch._http`.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from promptsearch._http import (
    MAX_DELAY,
    RetryRules,
    is_loopback,
    missing_key_reason,
    send_with_retries,
)
from promptsearch.errors import ModelError

__all__ = ["MAX_DELAY", "RemoteClient"]

T = TypeVar("T")


class RemoteClient:
    """Requests to one OpenAI-compatible server (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        *,
        key_env: str | None,
        timeout: float,
        max_retries: int,
        backoff: float,
        concurrency: int,
    ) -> None:
        self.base_url = base_url
        self.key_env = key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.concurrency = concurrency
        self.requests = 0
        """HTTP requests sent, retries included."""
        self.retries = 0
        """Requests sent again after a retryable failure."""
        self._lock = threading.Lock()
        self._rules = RetryRules(
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            error=ModelError,
            rate_limit_hint=(
                "; the server is rate-limiting: lower concurrency, or raise max_retries or "
                "backoff (options of the model spec)"
            ),
            timeout_hint="; raise timeout= in the model spec if the server is slow",
            base_url_name="the model spec's URL",
        )
        host = urllib.parse.urlsplit(base_url).hostname or ""
        # a local server is reached directly, whatever proxy the environment names
        handlers = [urllib.request.ProxyHandler({})] if is_loopback(host) else []
        self._opener = urllib.request.build_opener(*handlers)
        self._abort = threading.Event()  # never set: requests outside run_all
        self._thread_abort = threading.local()  # the abort event of run_all's current job

    def __repr__(self) -> str:
        return (
            f"RemoteClient(base_url={self.base_url!r}, key_env={self.key_env!r}, "
            f"timeout={self.timeout:g}, max_retries={self.max_retries}, "
            f"concurrency={self.concurrency})"
        )

    def get(self, path: str) -> Any:
        """The JSON answer of ``GET {base_url}/{path}``."""
        return self._request(path, None)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """The JSON answer of ``POST {base_url}/{path}`` with *body*."""
        return self._request(path, body)

    def run_all(self, function: Callable[[T], Any], jobs: Sequence[T]) -> list[Any]:
        """``[function(job) for job in jobs]`` on at most ``concurrency`` threads; the first
        error is raised, and requests still waiting to retry give up."""
        if len(jobs) <= 1 or self.concurrency == 1:
            return [function(job) for job in jobs]
        abort = threading.Event()
        with ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(jobs)), thread_name_prefix="promptsearch-remote"
        ) as pool:
            futures = [pool.submit(self._guarded, function, job, abort) for job in jobs]
            wait(futures, return_when=FIRST_EXCEPTION)
            errors = [f.exception() for f in futures if f.done()]
            error = next((e for e in errors if e is not None), None)
            if error is not None:
                abort.set()
                for future in futures:
                    future.cancel()
                raise error
            return [future.result() for future in futures]

    def _guarded(self, function: Callable[[T], Any], job: T, abort: threading.Event) -> Any:
        self._thread_abort.abort = abort
        try:
            return function(job)
        finally:
            self._thread_abort.abort = None

    # -- one request ---------------------------------------------------------------------------

    def _request(self, path: str, body: dict[str, Any] | None) -> Any:
        abort: threading.Event = getattr(self._thread_abort, "abort", None) or self._abort
        url = f"{self.base_url}/{path}"
        raw = send_with_retries(
            url,
            None if body is None else json.dumps(body).encode("utf-8"),
            base_url=self.base_url,
            key_env=self.key_env,
            rules=self._rules,
            open_request=self._open,
            abort=abort,
            refused=self._refused,
            count=self._count,
        )
        return self._json(url, raw)

    def _open(self, request: urllib.request.Request) -> bytes:
        with self._opener.open(request, timeout=self.timeout) as response:
            raw: bytes = response.read()
        return raw

    def _count(self, field: str) -> None:
        with self._lock:
            setattr(self, field, getattr(self, field) + 1)

    @staticmethod
    def _json(url: str, raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ModelError(
                f"{url} answered 200 with a body that is not JSON ({len(raw)} bytes); is the "
                "base URL an OpenAI-compatible API root (usually ending in /v1)?"
            ) from None

    def _refused(self, url: str, status: int, detail: str, sent_key: bool) -> ModelError:
        if status in (401, 403):
            why = missing_key_reason(self.key_env, sent_key, "key_env= in the model spec")
            return ModelError(f"{url} answered HTTP {status}{detail}: {why}")
        if status == 404:
            return ModelError(
                f"{url} answered HTTP 404{detail}: either the server does not know the model "
                f"(see {self.base_url}/models) or the base URL is wrong (it usually ends in /v1)"
            )
        return ModelError(f"{url} rejected the request with HTTP {status}{detail}")

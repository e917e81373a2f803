"""Text generation through an OpenAI-compatible HTTP server (re-exported by
:mod:`promptsearch.generators`).

:class:`OpenAICompatibleGenerator` speaks the chat-completions protocol that vLLM,
llama.cpp's server, Ollama, hosted APIs and ``promptsearch serve`` share.  It uses
the standard library only (``urllib``), so it adds no dependency and imports no
torch.

Choices made here:

* ``chat=True`` posts ``{base_url}/chat/completions`` with the prompt as one user
  message; ``chat=False`` posts ``{base_url}/completions`` with the raw prompt (the
  few-shot requests of the searchers continue text; chat-only APIs need
  ``chat=True``).
* ``n`` completions of one prompt are ``n`` requests of one completion each, with
  seeds derived from *seed* (many servers ignore the API's ``n``); with
  ``temperature == 0`` one request is sent and its text repeated.  At most
  ``max_concurrency`` requests are in flight at once.
* The API key is read from the environment variable *api_key_env* at each request.
  It is never stored on the object, so it is in no ``repr``, parameter dump,
  pickle or database row.  With the variable unset, no ``Authorization`` header is
  sent (fine for local servers).
* 408, 409, 429 and 5xx answers, timeouts and dropped connections are retried up
  to ``max_retries`` times, after ``backoff * 2**attempt`` seconds with jitter, or
  after the server's ``Retry-After``.  A refused connection, an unknown host, a
  rejected key (401/403) or an unknown model or path (404) fail at once with a
  :class:`~promptsearch.errors.GeneratorError` that says what to fix.
* A 200 answer without a readable completion (not JSON, no ``choices``, no text) is
  returned as ``""`` and counted in :attr:`OpenAICompatibleGenerator.stats`, as are
  empty completions: searchers skip empty texts and the search goes on.
"""

from __future__ import annotations

import json
import random
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any

from promptsearch._http import (
    MAX_DELAY,
    RetryRules,
    is_loopback,
    missing_key_reason,
    send_with_retries,
)
from promptsearch.errors import ConfigError, GeneratorError
from promptsearch.generators.base import TextGenerator, cut_at_stop
from promptsearch.generators.http_config import (
    DEFAULT_KEY_ENV,
    OWNER,
    check_base_url,
    check_env_name,
    parse_openai_spec,
)
from promptsearch.validation import check_float, check_int

__all__ = ["DEFAULT_KEY_ENV", "GeneratorStats", "OpenAICompatibleGenerator", "from_spec"]

_API_STOP_LIMIT = 4  # OpenAI accepts at most 4 stop strings; the rest are cut client-side


@dataclass
class GeneratorStats:
    """Counters of an :class:`OpenAICompatibleGenerator` since it was built."""

    requests: int = 0
    """HTTP requests sent, retries included."""
    retries: int = 0
    """Requests sent again after a 408/409/429/5xx answer, a timeout or a dropped connection."""
    completions: int = 0
    """Completions received (one per successful request)."""
    empty: int = 0
    """Well-formed completions with no text (after cutting at the stop strings)."""
    malformed: int = 0
    """200 answers with no readable completion (bad JSON, no choices, no text), kept as ``""``."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _draw_seed(seed: int, draw: int) -> int:
    """The seed sent with draw *draw* of a prompt: *seed* itself for the first one."""
    if draw == 0:
        return seed % 2**31
    return random.Random(f"{seed}:{draw}").randrange(2**31)


def _completion_text(raw: bytes, chat: bool) -> str | None:
    """The text of the first choice of a 200 answer; ``None`` if it cannot be read."""
    try:
        data = json.loads(raw)
        choice = data["choices"][0]
        content = choice["message"]["content"] if chat else choice["text"]
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    if content is None:  # a refusal or tool call: no text
        return ""
    return content if isinstance(content, str) else None


class OpenAICompatibleGenerator(TextGenerator):
    """Generation by an OpenAI-compatible server (vLLM, llama.cpp, Ollama, a hosted API).

    Parameters
    ----------
    base_url:
        The API root, usually ending in ``/v1`` (``http://127.0.0.1:8000/v1``).
    model:
        The model name the server knows; ``None`` uses the first model listed at
        ``{base_url}/models``.
    api_key_env:
        The *name* of the environment variable that holds the API key, read at each
        request and never stored; ``None``, or the variable unset, sends no key.
    timeout:
        Seconds to wait for the server on one request (connecting or reading).
    max_retries:
        How many times a request that met a 408/409/429/5xx answer, a timeout or a
        dropped connection is sent again before giving up.
    backoff:
        The first wait between retries, in seconds; it doubles each retry, with
        jitter, unless the server sends ``Retry-After``.  Waits are capped at 60 s.
    max_concurrency:
        At most this many requests in flight at once.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key_env: str | None = DEFAULT_KEY_ENV,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_concurrency: int = 4,
    ) -> None:
        self.base_url = check_base_url(base_url)
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise ConfigError(
                f"{OWNER}: model must be a non-empty model name, or None for the server's "
                f"first model; got {model!r:.80}"
            )
        self.model = model
        self.api_key_env = check_env_name(api_key_env)
        self.timeout = check_float(
            timeout, "timeout", minimum=0.0, maximum=3600.0, exclusive_minimum=True, owner=OWNER
        )
        self.max_retries = check_int(max_retries, "max_retries", minimum=0, maximum=20, owner=OWNER)
        self.backoff = check_float(backoff, "backoff", minimum=0.0, maximum=MAX_DELAY, owner=OWNER)
        self.max_concurrency = check_int(
            max_concurrency, "max_concurrency", minimum=1, maximum=256, owner=OWNER
        )
        self.stats = GeneratorStats()
        self._lock = threading.Lock()
        self._served_model: str | None = None
        self._opener: urllib.request.OpenerDirector | None = None

    # -- parameters, repr, pickling --------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments (the key's variable name, never the key)."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "backoff": self.backoff,
            "max_concurrency": self.max_concurrency,
        }

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{OWNER}({params})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for transient in ("_lock", "_opener", "_served_model"):
            state.pop(transient, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._served_model = None
        self._opener = None

    # -- generation ------------------------------------------------------------------------------

    def _generate(
        self,
        prompts: list[str],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        chat: bool,
        stop: tuple[str, ...],
    ) -> list[list[str]]:
        model = self.served_model()
        stops = list(stop)
        draws = n if temperature > 0 else 1  # greedy gives the same text every time
        texts = [[""] * draws for _ in prompts]
        abort = threading.Event()

        def run(i: int, j: int) -> None:
            body: dict[str, Any] = {
                "model": model,
                "max_tokens": max_new_tokens,
                "temperature": temperature,
                "top_p": top_p,
                "seed": _draw_seed(seed, j),
            }
            if stops:
                body["stop"] = stops[:_API_STOP_LIMIT]
            if chat:
                body["messages"] = [{"role": "user", "content": prompts[i]}]
            else:
                body["prompt"] = prompts[i]
            raw = self._request("chat/completions" if chat else "completions", body, abort)
            texts[i][j] = self._read_completion(raw, chat, stops)

        jobs = [(i, j) for i in range(len(prompts)) for j in range(draws)]
        workers = min(self.max_concurrency, len(jobs))
        if workers == 1:
            for i, j in jobs:
                run(i, j)
        else:
            with ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="promptsearch-http"
            ) as pool:
                futures = [pool.submit(run, i, j) for i, j in jobs]
                error: BaseException | None = None
                try:
                    wait(futures, return_when=FIRST_EXCEPTION)
                    # read before the abort below, which makes other requests fail too
                    errors = [f.exception() for f in futures if f.done()]
                    error = next((e for e in errors if e is not None), None)
                finally:
                    if error is not None or not all(f.done() for f in futures):
                        abort.set()  # requests still in flight give up instead of retrying
                        for future in futures:
                            future.cancel()
                if error is not None:
                    raise error
        return [row if draws == n else row * n for row in texts]

    def served_model(self) -> str:
        """The model name sent with each request (asked of the server when not given)."""
        if self.model is not None:
            return self.model
        with self._lock:
            known = self._served_model
        if known is not None:
            return known
        raw = self._request("models", None, threading.Event())
        try:
            listed = [str(m["id"]) for m in json.loads(raw)["data"]]
        except (ValueError, TypeError, KeyError):
            listed = []
        if not listed:
            raise GeneratorError(
                f"{self.base_url}/models listed no model this client can read; give the model "
                "name (model=NAME in a spec)"
            )
        with self._lock:
            self._served_model = listed[0]
        return listed[0]

    # -- internals -------------------------------------------------------------------------------

    def _count(self, field: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self.stats, field, getattr(self.stats, field) + amount)

    def _read_completion(self, raw: bytes, chat: bool, stop: Sequence[str]) -> str:
        text = _completion_text(raw, chat)
        with self._lock:
            self.stats.completions += 1
            if text is None:
                self.stats.malformed += 1
                return ""
            text = cut_at_stop(text, stop)
            if not text:
                self.stats.empty += 1
        return text

    def _open(self, request: urllib.request.Request) -> bytes:
        if self._opener is None:
            host = urllib.parse.urlsplit(self.base_url).hostname or ""
            # a local server is reached directly, whatever proxy the environment names
            handlers = [urllib.request.ProxyHandler({})] if is_loopback(host) else []
            self._opener = urllib.request.build_opener(*handlers)
        with self._opener.open(request, timeout=self.timeout) as response:
            data: bytes = response.read()
        return data

    def _request(self, path: str, body: dict[str, Any] | None, abort: threading.Event) -> bytes:
        """The body of a 200 answer to one request, after retries; else GeneratorError."""
        rules = RetryRules(
            timeout=self.timeout,
            max_retries=self.max_retries,
            backoff=self.backoff,
            error=GeneratorError,
            rate_limit_hint=(
                "; the server is rate-limiting: lower max_concurrency, or raise max_retries "
                "or backoff"
            ),
            timeout_hint="; raise timeout if the server is slow",
        )
        return send_with_retries(
            f"{self.base_url}/{path}",
            None if body is None else json.dumps(body).encode("utf-8"),
            base_url=self.base_url,
            key_env=self.api_key_env,
            rules=rules,
            open_request=self._open,
            abort=abort,
            refused=self._refused,
            count=self._count,
        )

    def _refused(self, url: str, status: int, detail: str, sent_key: bool) -> GeneratorError:
        if status in (401, 403):
            why = missing_key_reason(self.api_key_env, sent_key, "api_key_env (key_env= in a spec)")
            return GeneratorError(f"{url} answered HTTP {status}{detail}: {why}")
        if status == 404:
            hint = ""
            if url.endswith("/completions") and not url.endswith("/chat/completions"):
                hint = "; chat-only servers have no /completions endpoint: use chat=True"
            return GeneratorError(
                f"{url} answered HTTP 404{detail}: either the server does not know the model "
                f"{self.model or self._served_model!r} (see {self.base_url}/models) or the "
                f"base URL is wrong (it usually ends in /v1){hint}"
            )
        return GeneratorError(f"{url} rejected the request with HTTP {status}{detail}")


def from_spec(rest: str) -> OpenAICompatibleGenerator:
    """The generator of an ``openai:URL[#key=value&...]`` spec, given the part after ``openai:``."""
    url, options, shown = parse_openai_spec(rest)
    try:
        return OpenAICompatibleGenerator(url, **options)
    except ConfigError as error:
        raise ConfigError(f"generator spec {shown}: {error}") from None

"""An OpenAI-compatible HTTP server in front of a local model (``promptsearch serve``).

It answers the three endpoints the generation clients use, under ``/v1``:

* ``POST /v1/chat/completions``: ``messages`` in, ``choices[i].message.content`` out;
* ``POST /v1/completions``: ``prompt`` in, ``choices[i].text`` out;
* ``GET /v1/models``: the one model served.

Generation goes through a :class:`~promptsearch.generators.LocalGenerator`, so it
follows the same rules: ``temperature`` 0 is greedy, ``seed`` makes sampling
repeatable, ``stop`` cuts each completion, and a single user message goes through
the model's chat template.  A longer conversation is rendered with the chat
template (or, without one, joined by blank lines) and continued as text.  Requests
are answered by several threads, but the model generates for one at a time.

With an API key (read from an environment variable at start-up), every request
needs ``Authorization: Bearer <key>``; a missing or wrong key gets 401.  A request
that names another model gets 404, as OpenAI's API answers.  This is a test and
development server: it has no streaming, batching across requests or TLS.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from promptsearch.errors import ConfigError, ModelError
from promptsearch.generators.base import MAX_NEW_TOKENS
from promptsearch.generators.local import LocalGenerator
from promptsearch.models.base import LanguageModel

__all__ = ["DEFAULT_MAX_TOKENS", "MAX_BODY_BYTES", "ModelServer", "make_server"]

DEFAULT_MAX_TOKENS = 256
"""Completion length when a request gives no ``max_tokens``."""

MAX_BODY_BYTES = 1 << 20
"""Largest request body accepted (1 MiB)."""


class _Refusal(Exception):
    """An HTTP error answer: status, message, OpenAI error type and code."""

    def __init__(self, status: int, message: str, kind: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


class ModelServer(ThreadingHTTPServer):
    """A threading HTTP server that answers OpenAI-style requests with a local model.

    Build one with :func:`make_server`; call ``serve_forever()`` (in a thread, for
    tests) and ``shutdown()``/``server_close()`` to stop.  ``requests``,
    ``in_flight`` and ``max_in_flight`` count the requests seen.
    """

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        generator: LocalGenerator,
        *,
        model_name: str,
        api_key: str | None,
        verbose: bool = False,
    ) -> None:
        super().__init__(address, _Handler)
        self.generator = generator
        self.model_name = model_name
        self._api_key = api_key
        self.verbose = verbose
        self.created = int(time.time())
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._counter_lock = threading.Lock()
        self._generate_lock = threading.Lock()

    @property
    def requires_key(self) -> bool:
        """Whether every request must carry the API key."""
        return self._api_key is not None

    @property
    def base_url(self) -> str:
        """The URL clients use as their base URL, e.g. ``http://127.0.0.1:8000/v1``."""
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/v1"

    def authorised(self, header: str | None) -> bool:
        if self._api_key is None:
            return True
        given = (header or "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode("utf-8"), self._api_key.encode("utf-8"))

    def enter(self) -> None:
        with self._counter_lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._counter_lock:
            self.in_flight -= 1

    def complete(self, prompt: str, chat: bool, options: dict[str, Any]) -> list[str]:
        """*n* completions of one prompt (one generation at a time)."""
        with self._generate_lock:
            return self.generator.generate([prompt], chat=chat, **options)[0]


def _text(content: Any, where: str) -> str:
    """A message content: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        texts = [p for p in parts if isinstance(p, str)]
        if texts and len(texts) == len(parts):
            return "".join(texts)
    raise _Refusal(
        400, f"{where} must be a string or a list of text parts", "invalid_request_error"
    )


def _conversation(messages: Any, lm: LanguageModel) -> tuple[str, bool]:
    """The prompt to generate from, and whether to apply the chat template to it."""
    if not isinstance(messages, list) or not messages:
        raise _Refusal(400, "'messages' must be a non-empty list", "invalid_request_error")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _Refusal(
                400, f"messages[{i}] must be an object with a 'role'", "invalid_request_error"
            )
        turns.append(
            {
                "role": message["role"],
                "content": _text(message.get("content"), f"messages[{i}].content"),
            }
        )
    if len(turns) == 1 and turns[0]["role"] == "user":
        return turns[0]["content"], True
    tokenizer = lm.tokenizer
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        return str(rendered), False
    return "\n\n".join(t["content"] for t in turns), False


def _number(body: dict[str, Any], key: str, default: float, kind: type) -> Any:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Refusal(
            400, f"'{key}' must be a number; got {value!r:.40}", "invalid_request_error", key
        )
    if kind is int:
        if value != int(value):
            raise _Refusal(
                400, f"'{key}' must be an integer; got {value!r}", "invalid_request_error", key
            )
        return int(value)
    return float(value)


def _options(body: dict[str, Any]) -> dict[str, Any]:
    """The LocalGenerator arguments of a request (validated again by the generator)."""
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    tokens = _number({"max_tokens": limit}, "max_tokens", DEFAULT_MAX_TOKENS, int)
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise _Refusal(
            400, "'stop' must be a string or a list of strings", "invalid_request_error", "stop"
        )
    seed = body.get("seed")
    return {
        "n": _number(body, "n", 1, int),
        "max_new_tokens": min(tokens, MAX_NEW_TOKENS),  # longer asks get finish_reason "length"
        "temperature": _number(body, "temperature", 1.0, float),
        "top_p": _number(body, "top_p", 1.0, float),
        "seed": secrets.randbelow(2**31) if seed is None else _number(body, "seed", 0, int),
        "stop": [s for s in stop if s],
    }


class _Handler(BaseHTTPRequestHandler):
    server: ModelServer
    server_version = "promptsearch"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout): nothing to answer

    def _handle(self, work: Callable[[], dict[str, Any]]) -> None:
        """Answer with *work*'s payload, or its refusal; the request counts as in flight
        until its answer is ready (not sent: the client may send the next one at once)."""
        self.server.enter()
        try:
            status, payload = 200, work()
        except _Refusal as refusal:
            error = {
                "message": refusal.message,
                "type": refusal.kind,
                "param": None,
                "code": refusal.code,
            }
            status, payload = refusal.status, {"error": error}
        finally:
            self.server.leave()
        self._send(status, payload)

    def _check_key(self) -> None:
        if not self.server.authorised(self.headers.get("Authorization")):
            given = (
                "no API key was given"
                if not self.headers.get("Authorization")
                else "incorrect API key"
            )
            raise _Refusal(
                401,
                f"{given}; send 'Authorization: Bearer <key>'",
                "invalid_request_error",
                "invalid_api_key",
            )

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    def do_GET(self) -> None:
        self._handle(self._models)

    def do_POST(self) -> None:
        self._handle(self._completion)

    def _models(self) -> dict[str, Any]:
        self._check_key()
        if self._path() != "/v1/models":
            raise _Refusal(404, f"no such endpoint: GET {self._path()}", "invalid_request_error")
        model = {
            "id": self.server.model_name,
            "object": "model",
            "created": self.server.created,
            "owned_by": "promptsearch",
        }
        return {"object": "list", "data": [model]}

    def _completion(self) -> dict[str, Any]:
        self._check_key()
        path = self._path()
        if path not in ("/v1/chat/completions", "/v1/completions"):
            raise _Refusal(404, f"no such endpoint: POST {path}", "invalid_request_error")
        return self._answer(self._body(), chat=path == "/v1/chat/completions")

    def _body(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise _Refusal(411, "a Content-Length header is required", "invalid_request_error")
        if int(length) > MAX_BODY_BYTES:
            raise _Refusal(413, f"the body is over {MAX_BODY_BYTES} bytes", "invalid_request_error")
        try:
            body = json.loads(self.rfile.read(int(length)))
        except (ValueError, UnicodeDecodeError):
            raise _Refusal(400, "the body is not valid JSON", "invalid_request_error") from None
        if not isinstance(body, dict):
            raise _Refusal(400, "the body must be a JSON object", "invalid_request_error")
        return body

    def _answer(self, body: dict[str, Any], *, chat: bool) -> dict[str, Any]:
        server = self.server
        model = body.get("model")
        if model not in (None, "", server.model_name):
            raise _Refusal(
                404,
                f"the model {model!r} does not exist here; this server serves "
                f"{server.model_name!r}",
                "invalid_request_error",
                "model_not_found",
            )
        if body.get("stream"):
            raise _Refusal(400, "streaming is not supported", "invalid_request_error", "stream")
        lm = server.generator.language_model
        if chat:
            prompt, templated = _conversation(body.get("messages"), lm)
        else:
            raw = body.get("prompt")
            if isinstance(raw, list) and len(raw) == 1:
                raw = raw[0]
            if not isinstance(raw, str):
                raise _Refusal(400, "'prompt' must be a string", "invalid_request_error", "prompt")
            prompt, templated = raw, False
        options = _options(body)
        if options["max_new_tokens"] < 1:
            raise _Refusal(
                400, "'max_tokens' must be at least 1", "invalid_request_error", "max_tokens"
            )
        try:
            texts = server.complete(prompt, templated, options)
        except ConfigError as error:
            raise _Refusal(400, str(error), "invalid_request_error") from None
        except ModelError as error:
            raise _Refusal(500, str(error), "server_error") from None
        count = _token_counter(lm)
        used = [count(t) for t in texts]
        choices = []
        for i, (text, tokens) in enumerate(zip(texts, used, strict=True)):
            finish = "length" if tokens >= options["max_new_tokens"] else "stop"
            if chat:
                choice = {"index": i, "message": {"role": "assistant", "content": text}}
            else:
                choice = {"index": i, "text": text}
            choices.append({**choice, "finish_reason": finish, "logprobs": None})
        prompt_tokens = count(prompt)
        return {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{secrets.token_hex(12)}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": server.model_name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": sum(used),
                "total_tokens": prompt_tokens + sum(used),
            },
        }


def _token_counter(lm: LanguageModel) -> Any:
    def count(text: str) -> int:
        return len(lm.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    return count


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(
    model: LanguageModel | str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key_env: str | None = None,
    served_model_name: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    verbose: bool = False,
) -> ModelServer:
    """A server (bound, not yet serving) for *model*: a loaded model, a name for
    :func:`~promptsearch.model.load_model`, or ``None`` for the embedded model.

    *port* 0 picks a free port (see ``server.base_url``).  With *api_key_env*, the
    key is read from that environment variable now, and required of every request.
    *served_model_name* is the model name clients send (default: the model's name).
    """
    key = None
    if api_key_env is not None:
        if not isinstance(api_key_env, str) or not api_key_env.strip():
            raise ConfigError(
                "api_key_env must name an environment variable (e.g. PROMPTSEARCH_SERVE_KEY)"
            )
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigError(
                f"the environment variable {api_key_env} holds no API key; set it "
                f"(export {api_key_env}=...) or serve without a key"
            )
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port must be an integer in [0, 65535] (0: any free port); got {port!r}")
    if isinstance(model, LanguageModel):
        lm = model
    else:
        from promptsearch.models.loading import load_model

        lm = load_model(model, device=device, dtype=dtype)
    generator = LocalGenerator(lm)  # refuses a masked LM, which cannot generate
    name = served_model_name or lm.name
    try:
        return ModelServer((host, port), generator, model_name=name, api_key=key, verbose=verbose)
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error}") from None


def serve_forever(server: ModelServer, *, out: Any = None) -> None:
    """Serve until Ctrl-C, then close the socket."""
    out = out or sys.stdout
    host = str(server.server_address[0])
    keyed = "an API key is required" if server.requires_key else "no API key"
    print(
        f"promptsearch: serving {server.model_name!r} at {server.base_url} ({keyed}); Ctrl-C stops",
        file=out,
        flush=True,
    )
    if not _is_loopback(host) and not server.requires_key:
        print(
            f"promptsearch: warning: {host} may be reachable from other machines and no API "
            "key is required; consider --api-key-env",
            file=sys.stderr,
        )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("promptsearch: server stopped", file=sys.stderr)
    finally:
        server.server_close()

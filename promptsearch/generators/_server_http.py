"""The connections and requests of ``promptsearch serve``: the HTTP handler, its
deadline-keeping reader, and log sanitising (see :mod:`promptsearch.generators.server`)."""

from __future__ import annotations

import io
import json
import logging
import secrets
import socket
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError, ModelError
from promptsearch.generators._server_requests import (
    Refusal,
    conversation,
    generation_options,
    logprob_options,
    prompt_list,
)
from promptsearch.models.base import LanguageModel

if TYPE_CHECKING:
    from promptsearch.generators.server import ModelServer

__all__ = ["MAX_BODY_BYTES", "DeadlineReader", "Handler", "clean", "logger"]

MAX_BODY_BYTES = 1 << 20
"""Largest request body accepted (1 MiB)."""

logger = logging.getLogger(__name__)

_LOG_LIMIT = 300


def clean(text: str, limit: int = _LOG_LIMIT) -> str:
    """*text* fit for a log line: control characters and other unprintable ones
    escaped (``\\x1b``, ``\\n``, ``\\u202e``), cut to *limit* characters."""
    out = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )
    return out if len(out) <= limit else f"{out[:limit]}...[{len(out) - limit} more]"


class DeadlineReader(io.RawIOBase):
    """A connection's reads, each waiting at most until the current request's deadline."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        super().__init__()
        self._sock, self._timeout = sock, timeout
        self._deadline: float | None = None

    def readable(self) -> bool:
        return True

    def arm(self) -> None:
        """Start the clock: the whole request must arrive within the timeout."""
        self._deadline = time.monotonic() + self._timeout

    def disarm(self) -> None:
        """The request has arrived; later socket operations each wait up to the timeout."""
        self._deadline = None
        self._sock.settimeout(self._timeout)

    def readinto(self, buffer: Any) -> int:
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete request within {self._timeout:g} s")
            self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class Handler(BaseHTTPRequestHandler):
    server: ModelServer
    server_version = "promptsearch"

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # replaced by a reader that keeps each request's deadline
        self._reader = DeadlineReader(self.connection, self.server.read_timeout)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.arm()
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            logger.info("%s", clean(f"{self.address_string()} {format % args}"))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The errors of http.server itself (a malformed request line or header, an
        unknown method), answered as JSON and logged like the others."""
        self.log_error("code %d, message %s", code, message)
        text = message or self.responses.get(code, ("error",))[0]
        self._send(code, Refusal(code, text).payload(), {"Connection": "close"})

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up or stopped reading: nothing to answer
            self.close_connection = True

    def do_GET(self) -> None:
        self._reader.disarm()
        self._respond(self._models)

    def do_POST(self) -> None:
        try:
            raw = self._read_body()
        except Refusal as refusal:
            self._reader.disarm()
            self._send(refusal.status, refusal.payload(), {"Connection": "close"})
            return
        self._reader.disarm()
        self._respond(lambda: self._completion(raw))

    def _respond(self, work: Callable[[], dict[str, Any]]) -> None:
        """Answer with *work*'s payload, its refusal, 503 when the server is busy, or 500.
        The request counts as in flight until its answer is ready (not sent: the client
        may send the next one at once)."""
        server, headers = self.server, {}
        try:
            self._check_key()
            if not server.enter():
                headers["Retry-After"] = "1"
                raise Refusal(
                    503,
                    f"the server is busy: {server.max_concurrency} requests are being "
                    "answered, its limit; retry later",
                    "server_error",
                    "server_busy",
                )
            try:
                status, payload = 200, work()
            finally:
                server.leave()
        except Refusal as refusal:
            status, payload = refusal.status, refusal.payload()
        except Exception:
            logger.error(
                "%s internal error answering %s",
                clean(self.address_string()),
                clean(repr(self.requestline)),
                exc_info=True,
            )
            internal = Refusal(
                500, "internal server error (the server's log has the details)", "server_error"
            )
            status, payload = 500, internal.payload()
        self._send(status, payload, headers)

    def _check_key(self) -> None:
        problem = self.server.key_problem(self.headers.get("Authorization"))
        if problem is not None:
            raise Refusal(
                401,
                f"{problem}; send 'Authorization: Bearer <key>'",
                code="invalid_api_key",
            )

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    def _read_body(self) -> bytes:
        close, self.close_connection = self.close_connection, True  # unless the body arrives
        length = self.headers.get("Content-Length", "")
        if not (length.isascii() and length.isdigit() and len(length) <= 12):
            raise Refusal(411, "a Content-Length header (a number of bytes) is required")
        size = int(length)
        if size > MAX_BODY_BYTES:
            raise Refusal(413, f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            data = self.rfile.read(size)
        except TimeoutError:
            raise Refusal(
                408,
                f"the request body did not arrive within {self.server.read_timeout:g} s",
                code="timeout",
            ) from None
        if len(data) < size:
            raise Refusal(400, "the body ended before its Content-Length")
        self.close_connection = close
        return data

    def _models(self) -> dict[str, Any]:
        if self._path() != "/v1/models":
            raise Refusal(404, f"no such endpoint: GET {clean(self._path(), 80)}")
        model = {
            "id": self.server.model_name,
            "object": "model",
            "created": self.server.created,
            "owned_by": "promptsearch",
        }
        return {"object": "list", "data": [model]}

    def _completion(self, raw: bytes) -> dict[str, Any]:
        path = self._path()
        if path not in ("/v1/chat/completions", "/v1/completions"):
            raise Refusal(404, f"no such endpoint: POST {clean(path, 80)}")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise Refusal(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise Refusal(400, "the body must be a JSON object")
        return self._answer(body, chat=path == "/v1/chat/completions")

    def _answer(self, body: dict[str, Any], *, chat: bool) -> dict[str, Any]:
        server = self.server
        model = body.get("model")
        if model not in (None, "", server.model_name):
            raise Refusal(
                404,
                f"the model {_shown(model)} does not exist here; this server serves "
                f"{server.model_name!r}",
                code="model_not_found",
                param="model",
            )
        if body.get("stream"):
            raise Refusal(400, "streaming is not supported", param="stream")
        lm = server.generator.language_model
        echo, top = False, None
        if chat:
            prompt, templated = conversation(body.get("messages"), lm)
            prompts = [prompt]
        else:
            prompts, templated = prompt_list(body.get("prompt")), False
            echo, top = logprob_options(body)
        options = generation_options(body, chat=chat, zero_tokens=echo)
        count = _token_counter(lm)
        choices: list[dict[str, Any]] = []
        used: list[int] = []
        # one greedy token with log-probabilities: read off the scoring pass itself
        greedy = top is not None and options["max_new_tokens"] == 1 and options["n"] == 1
        greedy = greedy and options["temperature"] == 0 and not options["stop"]
        for prompt in prompts:
            try:
                texts: list[str | None] = (
                    [None] if greedy else list(server.complete(prompt, templated, options))
                )
            except ConfigError as error:
                raise Refusal(400, str(error)) from None
            except ModelError as error:
                raise Refusal(500, str(error), "server_error") from None
            for generated in texts:
                logprobs = None
                if top is not None:
                    generated, logprobs = server.token_logprobs(prompt, generated, top, echo)
                text = generated or ""
                tokens = count(text)
                used.append(tokens)
                finish = "length" if tokens >= options["max_new_tokens"] else "stop"
                index = len(choices)
                if chat:
                    choice = {"index": index, "message": {"role": "assistant", "content": text}}
                else:
                    choice = {"index": index, "text": prompt + text if echo else text}
                choices.append({**choice, "finish_reason": finish, "logprobs": logprobs})
        prompt_tokens = sum(count(prompt) for prompt in prompts)
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


def _shown(value: Any) -> str:
    text = repr(value)
    return clean(text if len(text) <= 60 else text[:57] + "...")


def _token_counter(lm: LanguageModel) -> Any:
    def count(text: str) -> int:
        return len(lm.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    return count

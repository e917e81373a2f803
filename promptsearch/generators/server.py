"""An OpenAI-compatible HTTP server in front of a local model (``promptsearch serve``).

It answers the three endpoints the generation clients use, under ``/v1``:

* ``POST /v1/chat/completions``: ``messages`` in, ``choices[i].message.content`` out;
* ``POST /v1/completions``: ``prompt`` in, ``choices[i].text`` out;
* ``GET /v1/models``: the one model served.

Generation goes through a :class:`~promptsearch.generators.LocalGenerator`, so it
follows the same rules: ``temperature`` 0 is greedy, ``seed`` makes sampling
repeatable, ``stop`` cuts each completion, and a single user message goes through
the model's chat template.  A longer conversation is rendered with the chat
template (or, without one, joined by blank lines) and continued as text.  The
fields are checked in :mod:`promptsearch.generators._server_requests`.

Limits, so that no client can hold the server: a connection has *timeout* seconds
to send each request (its headers and body; an idle keep-alive connection is closed
after as long), and is dropped, or answered 408 when its body is late.  At most
*max_connections* connections are open at once, one thread each; one more is
answered 503 at once and closed.  At most *max_concurrency* requests are answered
at once (the model generates for one at a time); one more gets 503 with
``Retry-After``.  Every request gets an answer: an unexpected error is 500, logged
with its traceback on the server only.  ``server_close()`` ends every thread.

With an API key (read from an environment variable at start-up), every request
needs ``Authorization: Bearer <key>``; a missing or wrong key gets 401.  A request
that names another model gets 404, as OpenAI's API answers.  This is a test and
development server: it has no streaming, batching across requests or TLS.  Requests
are logged (without control characters) to the ``promptsearch.generators`` loggers,
at INFO (each request, with *verbose*) and ERROR (with the traceback).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import socket
import sys
import threading
import time
from http.server import HTTPServer
from typing import Any

from promptsearch._http import is_loopback
from promptsearch.errors import ConfigError
from promptsearch.generators._server_http import MAX_BODY_BYTES, Handler, clean
from promptsearch.generators._server_requests import DEFAULT_MAX_TOKENS
from promptsearch.generators.local import LocalGenerator
from promptsearch.models.base import LanguageModel
from promptsearch.validation import check_float, check_int

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_TIMEOUT",
    "MAX_BODY_BYTES",
    "ModelServer",
    "clean",
    "exposed",
    "make_server",
    "serve_forever",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
"""Seconds a client has to send a request's headers and body."""

DEFAULT_MAX_CONCURRENCY = 4
"""Requests answered at once; one more gets 503."""

DEFAULT_MAX_CONNECTIONS = 32
"""Connections open at once; one more is answered 503 and closed."""

THREAD_PREFIX = "promptsearch-serve"
"""The name of every connection thread starts with this."""


def _busy_answer(limit: int) -> bytes:
    message = f"the server has {limit} connections open, its limit; retry later"
    error = {"message": message, "type": "server_error", "param": None, "code": "server_busy"}
    body = json.dumps({"error": error}).encode("utf-8")
    head = (
        "HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class ModelServer(HTTPServer):
    """An HTTP server that answers OpenAI-style requests with a local model.

    Build one with :func:`make_server`; call ``serve_forever()`` (in a thread, for
    tests) and ``shutdown()``/``server_close()`` to stop: ``server_close`` wakes the
    connections waiting for a request and joins every connection thread.
    ``requests``, ``in_flight`` and ``max_in_flight`` count the requests seen;
    ``busy`` the requests and ``refused`` the connections answered 503.
    """

    request_queue_size = 128  # connections the kernel holds until accepted (listen backlog)

    def __init__(
        self,
        address: tuple[str, int],
        generator: LocalGenerator,
        *,
        model_name: str,
        api_key: str | None,
        verbose: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        super().__init__(address, Handler)
        self.generator = generator
        self.model_name = model_name
        self._api_key = api_key
        self.verbose = verbose
        self.read_timeout = timeout
        self.max_concurrency = max_concurrency
        self.max_connections = max_connections
        self.created = int(time.time())
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.busy = 0
        self.refused = 0
        self._counter_lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._opened = 0

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

    @property
    def open_connections(self) -> int:
        """Connections being served now (each has a thread)."""
        with self._counter_lock:
            return len(self._connections)

    def key_problem(self, header: str | None) -> str | None:
        """What is wrong with an ``Authorization`` header, or ``None`` if it is accepted:
        ``Bearer <key>`` (the scheme in any case, one space) with the right key."""
        if self._api_key is None:
            return None
        if not header:
            return "no API key was given"
        scheme, space, given = header.partition(" ")
        if scheme.lower() != "bearer" or not space or not given:
            return "the Authorization header does not use the Bearer scheme"
        if not hmac.compare_digest(given.encode("utf-8"), self._api_key.encode("utf-8")):
            return "incorrect API key"
        return None

    def enter(self) -> bool:
        """Count a request in; ``False`` (counted as busy) when *max_concurrency* are in."""
        with self._counter_lock:
            self.requests += 1
            if self.in_flight >= self.max_concurrency:
                self.busy += 1
                return False
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return True

    def leave(self) -> None:
        with self._counter_lock:
            self.in_flight -= 1

    def complete(self, prompt: str, chat: bool, options: dict[str, Any]) -> list[str]:
        """*n* completions of one prompt (one generation at a time)."""
        with self._generate_lock:
            if options["max_new_tokens"] == 0:  # an echo request: the prompt only
                return [""] * options["n"]
            return self.generator.generate([prompt], chat=chat, **options)[0]

    def token_logprobs(
        self, prompt: str, completion: str | None, top: int, echo: bool
    ) -> tuple[str, dict[str, Any]]:
        """The completion and ``logprobs`` of one choice (see
        :mod:`promptsearch.generators._server_logprobs`), one model call at a time."""
        from promptsearch.generators._server_logprobs import token_logprobs

        with self._generate_lock:
            return token_logprobs(self.generator.language_model, prompt, completion, top, echo)

    # -- connections: one thread each, at most max_connections ------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._counter_lock:
            full = len(self._connections) >= self.max_connections
            if not full:
                self._opened += 1
                thread = threading.Thread(
                    target=self._serve_connection,
                    args=(request, client_address),
                    name=f"{THREAD_PREFIX}-{self._opened}",
                )
                self._connections[thread] = request
                try:
                    thread.start()
                except RuntimeError:  # no thread to be had: the caller closes the request
                    del self._connections[thread]
                    raise
        if full:
            self._refuse(request, client_address)

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._counter_lock:
                self._connections.pop(threading.current_thread(), None)

    def _refuse(self, request: socket.socket, client_address: Any) -> None:
        """Answer a connection over the limit with 503, without a thread."""
        with self._counter_lock:
            self.refused += 1
        if self.verbose:
            logger.info("%s refused: %d connections open", client_address[0], self.max_connections)
        try:
            request.settimeout(0.5)
            request.sendall(_busy_answer(self.max_connections))
            request.shutdown(socket.SHUT_WR)
            request.setblocking(False)
            while request.recv(1 << 16):  # what the client sent, so that closing resets nothing
                pass
        except OSError:
            pass
        finally:
            request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        where = clean(str(client_address[0]))
        if isinstance(error, OSError):
            if self.verbose:
                logger.info("%s connection ended: %s", where, clean(repr(error)))
        else:
            logger.error("%s unexpected error on a connection", where, exc_info=True)

    def server_close(self) -> None:
        """Stop listening, wake the connections waiting for a request, join every thread
        (a request being answered is answered first)."""
        super().server_close()
        while True:
            with self._counter_lock:
                connections = list(self._connections.items())
            if not connections:
                return
            for _, sock in connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RD)
            for thread, _ in connections:
                thread.join()


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
    timeout: float = DEFAULT_TIMEOUT,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> ModelServer:
    """A server (bound, not yet serving) for *model*: a loaded model, a name for
    :func:`~promptsearch.model.load_model`, or ``None`` for the embedded model.

    *port* 0 picks a free port (see ``server.base_url``).  With *api_key_env*, the
    key is read from that environment variable now, and required of every request.
    *served_model_name* is the model name clients send (default: the model's name).
    *timeout*, *max_concurrency* and *max_connections* are the limits described in
    :mod:`promptsearch.generators.server`.
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
    timeout = check_float(
        timeout,
        "timeout (seconds)",
        minimum=0.0,
        maximum=3600.0,
        exclusive_minimum=True,
        owner="serve",
    )
    check_int(max_concurrency, "max_concurrency", minimum=1, maximum=1024, owner="serve")
    check_int(max_connections, "max_connections", minimum=1, maximum=4096, owner="serve")
    if max_connections < max_concurrency:
        raise ConfigError(
            f"serve: max_connections must be at least max_concurrency ({max_concurrency}); "
            f"got {max_connections}"
        )
    if isinstance(model, LanguageModel):
        lm = model
    else:
        from promptsearch.models.loading import load_model

        lm = load_model(model, device=device, dtype=dtype)
    generator = LocalGenerator(lm)  # refuses a masked LM, which cannot generate
    name = served_model_name or lm.name
    try:
        return ModelServer(
            (host, port),
            generator,
            model_name=name,
            api_key=key,
            verbose=verbose,
            timeout=timeout,
            max_concurrency=max_concurrency,
            max_connections=max_connections,
        )
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error}") from None


def exposed(server: ModelServer) -> bool:
    """Whether *server* may be reachable from other machines with no API key required."""
    return not is_loopback(str(server.server_address[0])) and not server.requires_key


def serve_forever(server: ModelServer) -> None:
    """Serve until Ctrl-C (or SIGTERM, which the CLI takes as Ctrl-C), then close the
    socket and end every connection thread.  Returns after the Ctrl-C."""
    logger.debug("serving %r at %s", server.model_name, server.base_url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.debug("server at %s interrupted; closing it", server.base_url)
    finally:
        server.server_close()

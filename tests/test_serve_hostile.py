"""``promptsearch serve`` under hostile clients, over real sockets on 127.0.0.1.

Half-open connections (part of the headers, a body shorter than its Content-Length,
a byte every tenth of a second) are dropped or answered 408 after the timeout; a
flood of requests beyond the limit gets 503 while the admitted ones are answered;
numbers that are not finite or out of range get 400 naming the field; a key
without ``Bearer`` gets 401; the log escapes what the client sent; and after
shutdown no connection thread is left.  The load is bounded (a few dozen
connections, seconds) and stays on loopback.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from process_support import first_line, start_serve

from promptsearch.errors import ConfigError
from promptsearch.generators import LocalGenerator, make_generator
from promptsearch.generators.server import THREAD_PREFIX, ModelServer, make_server
from promptsearch.testing import tiny_model

KEY_ENV = "PROMPTSEARCH_TEST_HOSTILE_KEY"
SECRET = "sk-hostile-test-0b7e"
WAIT = 20.0  # the longest any step may take before the test fails (never reached when all is well)


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting ({WAIT:g} s) until {what}")
        time.sleep(0.02)


def _server_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


@contextmanager
def running(**limits: Any) -> Iterator[ModelServer]:
    """A keyed server with a tiny model and short limits, serving in a thread; on exit it
    is shut down, and no thread of it may be left."""
    settings: dict[str, Any] = {"timeout": 0.5, "max_concurrency": 2, "max_connections": 6}
    settings.update(limits)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, SECRET)
        server = make_server(
            tiny_model("causal", seed=0), port=0, api_key_env=KEY_ENV, verbose=True, **settings
        )
    loop = threading.Thread(target=server.serve_forever, args=(0.02,), name="test-serve-loop")
    loop.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        loop.join(WAIT)
    assert not loop.is_alive()
    assert _server_threads() == []
    assert server.open_connections == 0


def request(
    server: ModelServer,
    path: str,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, Any]:
    """(status, headers, decoded JSON) of one request; a POST when there is a body."""
    host, port = str(server.server_address[0]), server.server_address[1]
    connection = http.client.HTTPConnection(host, port, timeout=WAIT)
    sent = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
    sent.update(headers or {})
    try:
        connection.request("GET" if body is None else "POST", "/v1" + path, body, sent)
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read())
    finally:
        connection.close()


def opened(server: ModelServer, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection((str(server.server_address[0]), server.server_address[1]), WAIT)
    if data:
        sock.sendall(data)
    return sock


def received(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    try:
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return b"".join(chunks)


class _Gate(LocalGenerator):
    """Generates only once ``opened`` is set: a slow model, to fill the server."""

    def __init__(self, generator: LocalGenerator) -> None:
        super().__init__(generator.language_model)
        self.opened = threading.Event()

    def _generate(self, prompts: list[str], **options: Any) -> list[list[str]]:
        if not self.opened.wait(WAIT):
            raise RuntimeError("the gate was never opened")
        return super()._generate(prompts, **options)


class _Broken(LocalGenerator):
    def _generate(self, prompts: list[str], **options: Any) -> list[list[str]]:
        raise RuntimeError("boom: an internal detail")


# -- numbers --------------------------------------------------------------------------------

BAD_NUMBERS = [
    ("max_tokens", "1e400", "an integer in [1, 65536]"),
    ("max_tokens", "NaN", "an integer in [1, 65536]"),
    ("max_tokens", "-Infinity", "an integer in [1, 65536]"),
    ("max_tokens", "true", "an integer in [1, 65536]"),
    ("max_tokens", "2.5", "an integer in [1, 65536]"),
    ("max_tokens", "100000", "an integer in [1, 65536]"),
    ("max_completion_tokens", "Infinity", "an integer in [1, 65536]"),
    ("seed", "9223372036854775808", "an integer in [0, 9223372036854775807]"),
    ("seed", "18446744073709551616", "an integer in [0, 9223372036854775807]"),
    ("seed", "1e19", "an integer in [0, 9223372036854775807]"),
    ("seed", "-1", "an integer in [0, 9223372036854775807]"),
    ("seed", "NaN", "an integer in [0, 9223372036854775807]"),
    ("temperature", "NaN", "a number in [0, 5]"),
    ("temperature", "Infinity", "a number in [0, 5]"),
    ("temperature", "false", "a number in [0, 5]"),
    ("temperature", "6", "a number in [0, 5]"),
    ("top_p", "0", "a number in (0, 1]"),
    ("top_p", "1e400", "a number in (0, 1]"),
    ("n", "1e400", "an integer in [1, 64]"),
    ("n", "65", "an integer in [1, 64]"),
    ("logprobs", "NaN", "an integer in [0, 5]"),
    ("top_logprobs", "-1", "an integer in [0, 20]"),
    ("presence_penalty", "Infinity", "a number in [-2, 2]"),
    ("frequency_penalty", "-1e400", "a number in [-2, 2]"),
]


def test_bad_numbers_get_400_naming_the_field_and_its_range() -> None:
    with running() as server:
        for field, value, allowed in BAD_NUMBERS:
            for path, start in (("/completions", '"prompt": "x"'), ("/chat/completions", None)):
                if start is None:
                    if field == "logprobs":
                        continue  # a bool in chat requests
                    start = '"messages": [{"role": "user", "content": "x"}]'
                status, _, answer = request(server, path, f'{{{start}, "{field}": {value}}}')
                assert status == 400, (field, value, answer)
                error = answer["error"]
                assert error["param"] == field and error["type"] == "invalid_request_error"
                assert error["message"].startswith(f"'{field}' must be {allowed}; got ")
        status, _, answer = request(server, "/chat/completions", '{"messages": [], "seed": NaN}')
        assert status == 400 and answer["error"]["param"] == "messages"  # checked first
        assert request(server, "/models")[0] == 200


@pytest.mark.parametrize(
    ("head", "body", "status"),
    [
        (b"Content-Length: \xc2\xb2\r\n", b"", 411),  # a Unicode digit
        (b"Content-Length: -1\r\n", b"", 411),
        (b"Content-Length: " + b"9" * 40 + b"\r\n", b"", 411),
        (b"Content-Length: 2000000\r\n", b"", 413),
        (b"Content-Length: 5\r\n", b'{"a":', 400),  # not JSON
        (b"Content-Length: 4\r\n", b"\xff\xfe{}", 400),  # not UTF-8
        (b"Content-Length: 60000\r\n", b"[" * 60000, 400),  # nested too deep
        (b"Content-Length: 5000\r\n", b"1" * 5000, 400),  # too many digits for an int
        (b"Transfer-Encoding: chunked\r\n", b"", 411),
    ],
)
def test_no_body_ends_the_connection_without_an_answer(
    head: bytes, body: bytes, status: int
) -> None:
    with running() as server:
        auth = f"Authorization: Bearer {SECRET}\r\n".encode()
        sock = opened(server, b"POST /v1/completions HTTP/1.1\r\n" + auth + head + b"\r\n" + body)
        answer = received(sock)
        assert answer.startswith(f"HTTP/1.0 {status} ".encode()), answer[:200]
        assert "message" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]


def test_an_unexpected_error_is_a_500_and_its_traceback_stays_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with running() as server, caplog.at_level(logging.ERROR, logger="promptsearch.generators"):
        server.generator = _Broken(server.generator.language_model)
        status, _, answer = request(server, "/completions", '{"prompt": "x", "max_tokens": 2}')
    assert status == 500 and answer["error"]["type"] == "server_error"
    assert "boom" not in json.dumps(answer) and "Traceback" not in json.dumps(answer)
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert logged and "boom: an internal detail" in str(logged[0])


# -- the key --------------------------------------------------------------------------------


def test_only_a_bearer_key_is_accepted() -> None:
    with running() as server:
        for header in (SECRET, f"Basic {SECRET}", "Bearer", f"Bearer  {SECRET}", f"Token {SECRET}"):
            status, _, answer = request(server, "/models", headers={"Authorization": header})
            assert status == 401, header
            assert "send 'Authorization: Bearer <key>'" in answer["error"]["message"]
            assert answer["error"]["code"] == "invalid_api_key"
        status, _, answer = request(server, "/models", headers={"Authorization": SECRET})
        assert "does not use the Bearer scheme" in answer["error"]["message"]
        for header in (f"bearer {SECRET}", f"BEARER {SECRET}", f"Bearer {SECRET}"):
            assert request(server, "/models", headers={"Authorization": header})[0] == 200


# -- half-open connections, a full server, a flood --------------------------------------------


def test_half_open_connections_time_out_and_free_their_threads() -> None:
    with running(max_connections=8) as server:
        start = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
        idle = [opened(server), opened(server)]
        headers_cut = [opened(server, start), opened(server, b"GET /v1/mod")]
        body_cut = [
            opened(server, start + b"Content-Length: 100\r\n\r\n" + b'{"prompt": "x"'),
            opened(server, start + b"Content-Length: 10\r\n\r\n"),
        ]
        _until(lambda: server.open_connections == 6, "the six connections are open")
        trickle = opened(server)
        closed = False
        for _ in range(200):  # a byte every 50 ms: each read is on time, the request is not
            try:
                trickle.sendall(b"G")
            except OSError:
                closed = True
                break
            time.sleep(0.05)
        assert closed, "a connection sending a byte at a time was never dropped"
        trickle.close()
        for sock in idle + headers_cut:
            assert received(sock) == b""  # dropped
        for sock in body_cut:
            answer = received(sock)
            assert answer.startswith(b"HTTP/1.0 408 "), answer[:100]
            assert b"did not arrive within 0.5 s" in answer
        _until(lambda: server.open_connections == 0, "every timed-out connection is closed")
        assert not any(name.startswith(THREAD_PREFIX) for name in _server_threads())
        status, _, answer = request(server, "/completions", '{"prompt": "x", "max_tokens": 3}')
        assert status == 200 and len(answer["choices"]) == 1


def test_a_connection_over_the_limit_gets_503_at_once() -> None:
    with running(timeout=2.0, max_connections=4) as server:
        held = [opened(server) for _ in range(4)]
        _until(lambda: server.open_connections == 4, "four connections are open")
        extra = opened(server)  # reads at once: the answer comes before any request
        answer = received(extra)
        assert answer.startswith(b"HTTP/1.0 503 ") and b"Retry-After: 1\r\n" in answer
        error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        assert error["code"] == "server_busy" and "4 connections" in error["message"]
        assert server.refused == 1
        for sock in held:
            assert received(sock) == b""  # each dropped after its timeout
        assert request(server, "/models")[0] == 200


def test_a_flood_gets_503s_while_the_admitted_requests_are_answered() -> None:
    with running(timeout=5.0, max_concurrency=2, max_connections=24) as server:
        gate = _Gate(server.generator)
        server.generator = gate
        answers: queue.Queue[tuple[int, Any, Any]] = queue.Queue()
        body = '{"prompt": "x", "max_tokens": 3, "seed": 1}'

        def ask() -> None:
            answers.put(request(server, "/completions", body))

        flood = [threading.Thread(target=ask, name=f"test-flood-{i}") for i in range(16)]
        for thread in flood:
            thread.start()
        _until(lambda: server.busy == 14, "14 of the 16 requests are refused")
        assert server.in_flight == 2
        refused = [answers.get(timeout=WAIT) for _ in range(14)]
        for status, headers, answer in refused:
            assert status == 503 and headers["Retry-After"] == "1"
            assert answer["error"]["code"] == "server_busy"
        assert request(server, "/models", headers={"Authorization": "wrong"})[0] == 401
        gate.opened.set()
        for thread in flood:
            thread.join(WAIT)
        admitted = [answers.get(timeout=WAIT) for _ in range(2)]
        assert [status for status, _, _ in admitted] == [200, 200]
        assert server.max_in_flight == 2
        status, _, answer = request(server, "/completions", body)  # the flood is over
        assert status == 200 and answer["choices"][0]["finish_reason"] in ("stop", "length")


# -- the log --------------------------------------------------------------------------------


def test_the_log_escapes_what_the_client_sent(caplog: pytest.LogCaptureFixture) -> None:
    injected = b"/v1/models\x1b[2J\x1b]0;owned\x07\x9b31m" + b"A" * 2000
    with running() as server, caplog.at_level(logging.INFO, logger="promptsearch.generators"):
        sock = opened(server, b"GET " + injected + b" HTTP/1.0\r\nHost: \x1bx\r\n\r\n")
        answer = received(sock)
    assert answer.startswith(b"HTTP/1.0 401 ")  # no key: refused before the path is looked at
    lines = [r.getMessage() for r in caplog.records]
    assert any("\\x1b[2J\\x1b]0;owned\\x07\\x9b31m" in line for line in lines), lines
    for line in lines:
        assert not re.search(r"[\x00-\x1f\x7f-\x9f]", line)
        assert len(line) < 400  # cut, with a count of what was left out


# -- arguments, and a real process -------------------------------------------------------------


def test_make_server_checks_its_limits() -> None:
    lm = tiny_model("causal")
    for limits, match in (
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"max_concurrency": 0}, "max_concurrency must be >= 1"),
        ({"max_concurrency": True}, "max_concurrency must be an integer"),
        ({"max_concurrency": 8, "max_connections": 4}, r"at least max_concurrency \(8\); got 4"),
    ):
        with pytest.raises(ConfigError, match=match):
            make_server(lm, port=0, **limits)


def test_promptsearch_serve_ends_at_sigterm_with_connections_half_open(tmp_path: Path) -> None:
    lm = tiny_model("causal", seed=2)
    folder = tmp_path / "tiny"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    env = {**os.environ, KEY_ENV: SECRET, "OMP_NUM_THREADS": "1"}
    arguments = ["--model", str(folder), "--port", "0", "--api-key-env", KEY_ENV]
    arguments += ["--served-model-name", "tiny", "--timeout", "60", "--max-concurrency", "1"]
    process = start_serve([*arguments, "--max-connections", "4"], env)
    try:
        line = first_line(process, 120)
        found = re.search(r"at (http://(\S+):(\d+)/v1) .*1 request at once, 4 connections", line)
        assert found, (line, process.poll())
        address = (found.group(2), int(found.group(3)))
        half_open = [socket.create_connection(address, timeout=WAIT) for _ in range(2)]
        half_open[0].sendall(b"POST /v1/completions HTTP/1.1\r\nContent-Length: 50\r\n\r\n{")
        escape = socket.create_connection(address, timeout=WAIT)
        escape.sendall(b"GET /v1/\x1b[31mred HTTP/1.0\r\n\r\n")
        assert received(escape).startswith(b"HTTP/1.0 401 ")
        generator = make_generator(f"openai:{found.group(1)}#model=tiny&key_env={KEY_ENV}")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(KEY_ENV, SECRET)
            out = generator.generate(["Hello"], n=2, max_new_tokens=4, seed=3)
        assert [len(row) for row in out] == [2]
        process.send_signal(signal.SIGTERM)
        try:
            # well before the 60 s timeout: the half-open connections are woken at shutdown
            process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail("promptsearch serve did not end within 20 s of SIGTERM")
        assert received(half_open[1]) == b""  # woken at shutdown: it had sent nothing
        assert received(half_open[0]).startswith(b"HTTP/1.0 400 ")  # its body ended short
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    stderr = process.stderr.read() if process.stderr else ""
    assert process.returncode == 143, stderr  # SIGTERM, as the other commands
    assert "server stopped" in stderr
    assert "\\x1b[31mred" in stderr and "\x1b" not in stderr

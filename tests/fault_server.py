"""A scripted OpenAI-compatible HTTP server on loopback, for the generator tests.

A real ``ThreadingHTTPServer``: each request is answered by the next programmed
:class:`Reply` (status, JSON or raw body, delay, headers) and recorded, so tests
check what the client sent and how it took failures.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FaultServer", "Reply"]


@dataclass
class Reply:
    """One scripted answer: status, body (a dict is sent as JSON) and headers, after *delay*."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class FaultServer(ThreadingHTTPServer):
    """Answers POSTs from :attr:`script` (first in, first out), then with an echo of the
    request; records every request and the most requests in flight at once."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FaultHandler)
        self.script: deque[Reply] = deque()
        self.seen: list[dict[str, Any]] = []
        self.delay = 0.0  # of the echo answers
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def next_reply(self, request: dict[str, Any]) -> Reply:
        with self.lock:
            self.seen.append(request)
            if self.script:
                return self.script.popleft()
        body = request["body"]
        prompt = body.get("prompt") or body["messages"][0]["content"]
        text = f"echo {prompt} seed={body.get('seed')}"
        choice = {"text": text} if "prompt" in body else {"message": {"content": text}}
        return Reply(200, {"choices": [choice]}, delay=self.delay)


class _FaultHandler(BaseHTTPRequestHandler):
    server: FaultServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, reply: Reply) -> None:
        body = reply.body
        data = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
        try:
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.seen.append({"path": self.path, "headers": dict(self.headers)})
        self._reply(Reply(200, {"object": "list", "data": [{"id": "listed-model"}]}))

    def do_POST(self) -> None:
        server = self.server
        with server.lock:
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        length = int(self.headers["Content-Length"])
        request = {
            "path": self.path,
            "headers": dict(self.headers),
            "body": json.loads(self.rfile.read(length)),
        }
        reply = server.next_reply(request)
        time.sleep(reply.delay)
        with server.lock:  # done before answering: the client may send its next at once
            server.in_flight -= 1
        self._reply(reply)

"""Remote scoring (``openai:`` model specs) against a fake OpenAI-compatible server on a
real loopback socket: spec checks, the echo/logprobs protocol, batching, concurrency,
retries, errors, and the API key (sent, never stored).

The fake server "tokenizes" a prompt into runs of whitespace plus a word, and gives a
token the log-probability ``-len(word) / 10``, so the expected scores are plain
arithmetic.  The real servers are in ``tests/test_remote_serve.py``.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from promptsearch.errors import ConfigError, ModelError
from promptsearch.example import Example
from promptsearch.models.loading import load_model
from promptsearch.models.remote import parse_remote_spec
from promptsearch.prompt import Prompt
from promptsearch.scoring.scorer import Scorer
from promptsearch.task import Task

KEY_ENV = "PROMPTSEARCH_TEST_REMOTE_KEY"
SECRET = "sk-remote-test-93ac1e-never-stored"
MODEL = "fake-model"


def fake_tokens(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text) or ([text] if text else [])


def fake_logprob(token: str) -> float:
    return -len(token.strip()) / 10


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.bodies: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.failures: list[tuple[int, dict[str, str]]] = []  # answered before the next 200
        self.generated = "\n Paris\nand more"
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.no_echo = False
        self.bos = ""  # a leading special token to echo (and count in text_offset)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class FakeHandler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.server.headers_seen.append(dict(self.headers))
        self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv = self.server
        with srv.lock:
            srv.bodies.append(body)
            srv.headers_seen.append(dict(self.headers))
            failure = srv.failures.pop(0) if srv.failures else None
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        time.sleep(srv.delay)
        with srv.lock:  # no longer in flight once the answer is ready (the client may go on)
            srv.in_flight -= 1
        if failure is not None:
            status, headers = failure
            self._send(status, {"error": {"message": f"planted {status}"}}, headers)
            return
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        self._send(200, {"choices": [self._choice(i, p, body) for i, p in enumerate(prompts)]})

    def _choice(self, index: int, prompt: str, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("echo"):
            return {"index": index, "text": self.server.generated, "logprobs": None}
        lead = [self.server.bos] if self.server.bos else []
        tokens = [*lead, *fake_tokens(prompt), " x"]  # one generated token after the prompt
        offsets, position = [], 0
        for token in tokens:
            offsets.append(position)
            position += len(token)
        values: list[float | None] = [fake_logprob(t) for t in tokens]
        values[0] = None
        logprobs = {"tokens": tokens, "token_logprobs": values, "text_offset": offsets}
        return {
            "index": index,
            "text": prompt + " x",
            "logprobs": None if self.server.no_echo else logprobs,
        }


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def spec(server: FakeServer, **options: Any) -> str:
    values = {"model": MODEL, "key_env": KEY_ENV, "backoff": "0.001", **options}
    return f"openai:{server.base_url}#" + "&".join(f"{k}={v}" for k, v in values.items())


def word_task() -> Task:
    dev = tuple(
        Example(f"dev-{i}", {"sentence": f"review number {i}"}, ("short", "lengthy")[i % 2])
        for i in range(6)
    )
    return Task(
        name="words",
        kind="classification",
        input_fields=("sentence",),
        train=(Example("train-0", {"sentence": "a review"}, "short"),),
        dev=dev,
        labels=("short", "lengthy"),
        verbalizer={"short": ("ok",), "lengthy": ("wonderful", "a b")},
    )


PROMPT = Prompt(template="Review: {sentence}\nSentiment: {answer}")


# -- the spec ------------------------------------------------------------------------------


def test_a_spec_gives_its_parts_and_defaults() -> None:
    parsed = parse_remote_spec("openai:http://127.0.0.1:8000/v1/#model=m&batch=3&concurrency=2")
    assert (parsed.base_url, parsed.model, parsed.key_env) == (
        "http://127.0.0.1:8000/v1",
        "m",
        "OPENAI_API_KEY",
    )
    assert (parsed.batch, parsed.concurrency, parsed.timeout, parsed.max_retries) == (3, 2, 60.0, 4)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("openai:http://127.0.0.1:1/v1#key=sk-abc123", "never goes in a spec"),
        ("openai:http://127.0.0.1:1/v1#api_key=sk-abc123", "never goes in a spec"),
        ("openai:http://user:sk-abc123@127.0.0.1:1/v1", "must not carry a user name"),
        ("openai:http://127.0.0.1:1/v1#colour=red", "unknown option 'colour'"),
        ("openai:http://127.0.0.1:1/v1#batch=0", "batch must be an integer in [1, 1024]"),
        ("openai:http://127.0.0.1:1/v1#timeout=soon", "timeout must be a number"),
        ("openai:http://127.0.0.1:1/v1/completions", "not an endpoint"),
        ("openai:ftp://127.0.0.1:1/v1", "http:// or https://"),
        ("openai:http://127.0.0.1:1/v1#key_env=sk-abc123", "NAME of the environment variable"),
        ("openai:http://127.0.0.1:1/v1#model=a&model=b", "given twice"),
    ],
)
def test_a_bad_spec_is_one_config_error_that_never_echoes_a_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_model(text)
    message = str(caught.value)
    assert expected in message
    assert "sk-abc123" not in message
    assert "\n" not in message


def test_kind_must_fit_a_remote_model() -> None:
    with pytest.raises(ConfigError, match="does not fit a remote model"):
        load_model("openai:http://127.0.0.1:1/v1#model=m", kind="masked")


# -- scoring --------------------------------------------------------------------------------


def test_label_logprobs_are_the_answer_tokens_of_the_echo(fake: FakeServer) -> None:
    model = load_model(spec(fake, batch=4))
    assert model.source == "remote" and model.kind == "causal" and model.tokenizer is None
    task = word_task()
    report = Scorer(model).score(PROMPT, task.dev, task)
    for result in report.results:
        values = result.label_logprobs or {}
        assert values["short"] == pytest.approx(-0.2)  # " ok"
        # log-sum-exp of " wonderful" (-0.9) and " a b" (-0.1 + -0.1)
        assert values["lengthy"] == pytest.approx(_lse(-0.9, -0.2))
        assert result.prediction == "lengthy"
    completions = [b for b in fake.bodies if "prompt" in b]
    # 6 examples x 3 words = 18 distinct prompts, 4 per request
    assert sorted(len(b["prompt"]) for b in completions) == [2, 4, 4, 4, 4]
    first = completions[0]
    assert (first["echo"], first["logprobs"], first["max_tokens"], first["temperature"]) == (
        True,
        1,
        1,
        0,
    )
    assert first["model"] == MODEL
    assert report.forward_passes == 18


def _lse(*values: float) -> float:
    import math

    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def test_an_echoed_bos_token_does_not_move_the_answer(fake: FakeServer) -> None:
    model = load_model(spec(fake))
    task = word_task()
    plain = Scorer(model).score(PROMPT, task.dev[:2], task)
    fake.bos = "<s>"
    shifted = Scorer(model).score(PROMPT, task.dev[:2], task)
    assert [r.label_logprobs for r in shifted.results] == [r.label_logprobs for r in plain.results]


def test_identical_prompts_are_sent_once_and_one_prompt_goes_as_a_string(
    fake: FakeServer,
) -> None:
    model = load_model(spec(fake, batch=1))
    task = word_task()
    same = [Example(f"e{i}", {"sentence": "same text"}, "short") for i in range(3)]
    Scorer(model).score(PROMPT, same, task)
    prompts = [b["prompt"] for b in fake.bodies]
    assert len(prompts) == 3 and all(isinstance(p, str) for p in prompts)


def test_requests_run_concurrently_within_the_limit(fake: FakeServer) -> None:
    fake.delay = 0.05
    model = load_model(spec(fake, batch=1, concurrency=3))
    task = word_task()
    Scorer(model).score(PROMPT, task.dev, task)
    assert len(fake.bodies) == 18
    assert 1 <= fake.max_in_flight <= 3


def test_generation_keeps_the_first_line_and_scores_the_gold_answer(fake: FakeServer) -> None:
    model = load_model(spec(fake))
    task = Task(
        name="capitals",
        kind="generation",
        input_fields=("country",),
        train=(Example("t0", {"country": "Spain"}, "Madrid"),),
        dev=(Example("d0", {"country": "France"}, "Paris"),),
        metric="exact_match",
    )
    prompt = Prompt(template="The capital of {country} is {answer}")
    report = Scorer(model, max_new_tokens=8).score(prompt, task.dev, task)
    (result,) = report.results
    assert result.prediction == "Paris" and result.correct
    assert result.gold_logprob == pytest.approx(-0.5)
    generation = [b for b in fake.bodies if not b.get("echo")]
    assert generation[0]["max_tokens"] == 8
    assert generation[0]["prompt"] == "The capital of France is"


def test_the_remote_fingerprint_differs_from_the_local_and_by_server(fake: FakeServer) -> None:
    first = load_model(spec(fake))
    again = load_model(spec(fake, timeout=30))
    assert first.fingerprint == again.fingerprint  # settings that do not change scores
    other = FakeServer()
    try:
        threading.Thread(target=other.serve_forever, args=(0.02,), daemon=True).start()
        elsewhere = load_model(spec(other))
    finally:
        other.shutdown()
        other.server_close()
    assert elsewhere.fingerprint != first.fingerprint
    assert Scorer(first).fingerprint != Scorer(elsewhere).fingerprint


# -- retries and errors ----------------------------------------------------------------------


def test_429_and_5xx_are_retried(fake: FakeServer) -> None:
    model = load_model(spec(fake, batch=32))
    fake.failures = [(503, {}), (429, {"Retry-After": "0"}), (502, {})]
    task = word_task()
    report = Scorer(model).score(PROMPT, task.dev, task)
    assert len(report.results) == 6
    assert model.model.client.retries == 3


def test_retries_end_in_one_model_error(fake: FakeServer) -> None:
    model = load_model(spec(fake, max_retries=2))
    fake.failures = [(503, {})] * 3
    task = word_task()
    with pytest.raises(ModelError, match=r"failed after 3 attempts: HTTP 503: planted 503"):
        Scorer(model).score(PROMPT, task.dev[:1], task)


def test_a_400_is_not_retried(fake: FakeServer) -> None:
    model = load_model(spec(fake))
    fake.failures = [(400, {})]
    task = word_task()
    with pytest.raises(ModelError, match=r"rejected the request with HTTP 400: planted 400"):
        Scorer(model).score(PROMPT, task.dev[:1], task)
    assert model.model.client.retries == 0


def test_a_refused_key_names_the_variable(fake: FakeServer, monkeypatch: Any) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    model = load_model(spec(fake))
    fake.failures = [(401, {})]
    task = word_task()
    with pytest.raises(ModelError, match=f"environment variable {KEY_ENV} is not set"):
        Scorer(model).score(PROMPT, task.dev[:1], task)


def test_no_server_is_a_model_error_at_load() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ModelError, match="cannot reach"):
        load_model(f"openai:http://127.0.0.1:{port}/v1#model=m")


def test_an_unknown_model_is_named(fake: FakeServer) -> None:
    with pytest.raises(ModelError, match=r"does not serve the model 'other'.*'fake-model'"):
        load_model(spec(fake, model="other"))


def test_a_server_without_echo_is_a_clear_error(fake: FakeServer) -> None:
    model = load_model(spec(fake))
    fake.no_echo = True
    task = word_task()
    with pytest.raises(ModelError, match="must support 'echo' with 'logprobs'"):
        Scorer(model).score(PROMPT, task.dev[:1], task)


def test_an_answer_first_template_is_a_clear_error(fake: FakeServer) -> None:
    model = load_model(spec(fake))
    task = word_task()
    with pytest.raises(ModelError, match="puts the answer slot first"):
        Scorer(model).score(Prompt(template="{answer} {sentence}"), task.dev[:1], task)


# -- the key ---------------------------------------------------------------------------------


def test_the_key_is_sent_but_never_stored(
    fake: FakeServer, tmp_path: Path, monkeypatch: Any
) -> None:
    from promptsearch.api import search

    monkeypatch.setenv(KEY_ENV, SECRET)
    name = spec(fake)
    model = load_model(name)
    assert SECRET not in repr(model) + repr(model.model) + model.fingerprint + model.name
    database = tmp_path / "study.db"
    search(
        word_task(),
        model=name,
        searchers=["manual"],
        budget=4,
        storage=str(database),
        study="remote-study",
        progress=False,
        selection=False,
    )
    auth = [h.get("Authorization") for h in fake.headers_seen]
    assert auth and all(a == f"Bearer {SECRET}" for a in auth)
    assert database.exists()
    with sqlite3.connect(database) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master")]
        dump = "\n".join(connection.iterdump())
        models = connection.execute("SELECT model_name FROM studies").fetchall()
    assert models == [(name,)]
    assert SECRET not in dump and tables
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert SECRET.encode() not in raw

"""Remote scoring in next-token mode (``mode=next-token``): the label words' log-
probabilities read from the top-K next tokens after the context, for servers without
``echo``.  A fake server on a real loopback socket answers every context with the same
top-K row (set per test), so the expected scores are plain arithmetic; the real server
(``promptsearch serve``) is in ``tests/test_remote_serve.py``.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from promptsearch.errors import ConfigError, ModelError
from promptsearch.example import Example
from promptsearch.models.loading import load_model
from promptsearch.models.remote import parse_remote_spec
from promptsearch.prompt import Prompt
from promptsearch.scoring.backends.remote import FLOOR_PROBABILITY, floor_logprob
from promptsearch.scoring.scorer import Scorer
from promptsearch.task import Task

MODEL = "fake-next"
PROMPT = Prompt(template="Review: {sentence}\nSentiment: {answer}")


class NextTokenServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), NextTokenHandler)
        self.bodies: list[dict[str, Any]] = []
        self.row: dict[str, float] = {" ok": -0.9, " the": -1.6, " wonderful": -2.0}
        self.rows: dict[str, dict[str, float]] = {}  # a row of its own for some prompts
        self.chat_form = False  # top_logprobs as [{"token", "logprob"}] lists
        self.refuse_echo = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class NextTokenHandler(BaseHTTPRequestHandler):
    server: NextTokenServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv = self.server
        srv.bodies.append(body)
        if body.get("echo") and srv.refuse_echo:
            message = "echo is not supported with logprobs for this model"
            self._send(400, {"error": {"message": message, "type": "invalid_request_error"}})
            return
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        self._send(200, {"choices": [self._choice(i, p) for i, p in enumerate(prompts)]})

    def _choice(self, index: int, prompt: str) -> dict[str, Any]:
        srv = self.server
        values = srv.rows.get(prompt, srv.row)
        row: Any = dict(values)
        if srv.chat_form:
            row = [{"token": t, "logprob": v} for t, v in values.items()]
        best = max(values, key=lambda t: values[t])
        logprobs = {
            "tokens": [best],
            "token_logprobs": [values[best]],
            "top_logprobs": [row],
            "text_offset": [len(prompt)],
        }
        return {"index": index, "text": best, "logprobs": logprobs, "finish_reason": "length"}


@pytest.fixture
def fake() -> Iterator[NextTokenServer]:
    server = NextTokenServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def spec(server: NextTokenServer, **options: Any) -> str:
    values = {"model": MODEL, "key_env": "PROMPTSEARCH_TEST_NO_KEY", "mode": "next-token"}
    values.update(options)
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


def _lse(*values: float) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def test_the_mode_and_logprobs_options() -> None:
    base = "openai:http://127.0.0.1:1/v1#model=m"
    assert (parse_remote_spec(base).mode, parse_remote_spec(base).logprobs) == ("echo", 5)
    parsed = parse_remote_spec(base + "&mode=next-token&logprobs=20")
    assert (parsed.mode, parsed.logprobs) == ("next-token", 20)
    with pytest.raises(ConfigError, match="option mode must be one of echo, next-token"):
        parse_remote_spec(base + "&mode=guess")
    with pytest.raises(ConfigError, match=r"logprobs must be an integer in \[1, 20\]"):
        parse_remote_spec(base + "&logprobs=0")


def test_floor_is_the_lower_of_the_last_entry_and_the_mass_left() -> None:
    assert floor_logprob({"a": math.log(0.5), "b": math.log(0.3)}) == pytest.approx(math.log(0.2))
    assert floor_logprob({"a": math.log(0.9), "b": math.log(0.01)}) == pytest.approx(math.log(0.01))
    assert floor_logprob({"a": 0.0}) == pytest.approx(math.log(FLOOR_PROBABILITY))


@pytest.mark.parametrize("chat_form", [False, True])
def test_label_logprobs_come_from_the_top_k_of_one_request_per_context(
    fake: NextTokenServer, chat_form: bool
) -> None:
    fake.chat_form = chat_form
    model = load_model(spec(fake, batch=4))
    task = word_task()
    report = Scorer(model).score(PROMPT, task.dev, task)
    floor = floor_logprob(fake.row)
    assert floor == pytest.approx(-2.0)  # the mass left (0.26) is more than exp(-2)
    for result in report.results:
        values = result.label_logprobs or {}
        assert values["short"] == pytest.approx(-0.9)  # " ok"
        # " wonderful" is in the top K, " a b" is not: it gets the floor
        assert values["lengthy"] == pytest.approx(_lse(-2.0, floor))
        assert result.prediction == "short"
    # 6 examples: 6 contexts, 4 per request, no echo
    assert sorted(len(b["prompt"]) for b in fake.bodies) == [2, 4]
    first = min(fake.bodies, key=lambda body: body["prompt"][0])  # requests run concurrently
    assert "echo" not in first
    assert (first["max_tokens"], first["temperature"], first["logprobs"]) == (1, 0, 5)
    assert first["prompt"][0] == "Review: review number 0\nSentiment:"
    assert report.forward_passes == 6


def test_no_label_among_the_top_k_is_a_clear_error(fake: NextTokenServer) -> None:
    fake.row = {" the": -0.5, " a": -1.0}
    model = load_model(spec(fake))
    task = word_task()
    with pytest.raises(ModelError) as caught:
        Scorer(model).score(PROMPT, task.dev[:2], task)
    message = str(caught.value)
    assert "none of the answers" in message and "' ok'" in message
    assert "one token each" in message and "logprobs=" in message and "mode=echo" in message
    assert "\n" not in message


def test_an_example_without_labels_in_its_top_k_gets_floors(fake: NextTokenServer) -> None:
    model = load_model(spec(fake))
    task = word_task()
    fake.rows["Review: review number 1\nSentiment:"] = {" the": -0.1, " a": -3.0}
    report = Scorer(model).score(PROMPT, task.dev[:2], task)
    floor = math.log(1 - math.exp(-0.1) - math.exp(-3.0))
    assert floor < -3.0  # the mass left is less than the K-th entry
    values = report.results[1].label_logprobs or {}
    assert values["short"] == pytest.approx(floor)
    assert values["lengthy"] == pytest.approx(_lse(floor, floor))
    assert (report.results[0].label_logprobs or {})["short"] == pytest.approx(-0.9)


def test_the_fingerprint_depends_on_the_mode_and_k(fake: NextTokenServer) -> None:
    echo = load_model(spec(fake, mode="echo"))
    five = load_model(spec(fake))
    ten = load_model(spec(fake, logprobs=10))
    assert len({echo.fingerprint, five.fingerprint, ten.fingerprint}) == 3
    assert load_model(spec(fake)).fingerprint == five.fingerprint


def test_an_answer_first_template_is_a_clear_error(fake: NextTokenServer) -> None:
    model = load_model(spec(fake))
    task = word_task()
    with pytest.raises(ModelError, match="puts the answer slot first"):
        Scorer(model).score(Prompt(template="{answer} {sentence}"), task.dev[:1], task)


def test_a_refused_echo_points_at_next_token_mode(fake: NextTokenServer) -> None:
    model = load_model(spec(fake, mode="echo"))
    task = word_task()
    with pytest.raises(ModelError, match=r"HTTP 400.*echo is not supported.*&mode=next-token"):
        Scorer(model).score(PROMPT, task.dev[:1], task)


def test_generation_is_the_same_in_next_token_mode(fake: NextTokenServer) -> None:
    model = load_model(spec(fake))
    examples = (Example("g0", {"country": "France"}, "Paris"),)
    task = Task(
        name="gen",
        kind="generation",
        input_fields=("country",),
        train=examples,
        dev=examples,
        metric="exact_match",
    )
    report = Scorer(model).score(Prompt(template="Capital of {country}: {answer}"), examples, task)
    result = report.results[0]
    assert result.prediction == "ok"
    # the gold answer " Paris" is not among the top K: the floor, and no error
    assert result.gold_logprob == pytest.approx(floor_logprob(fake.row))
    assert all("echo" not in b for b in fake.bodies)

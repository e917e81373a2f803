"""``promptsearch serve`` and the HTTP generator together, over loopback, with a tiny model.

The server runs in a thread (and once as a real ``promptsearch serve`` process);
the texts of a tiny random model are gibberish, which is fine: what is checked
is the protocol, the arguments, the key and model checks, and that a study whose
searcher writes through the server never stores the key.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from process_support import first_line, start_serve, stop

from promptsearch.errors import ConfigError, GeneratorError
from promptsearch.generators import OpenAICompatibleGenerator, make_generator
from promptsearch.generators.server import ModelServer, make_server
from promptsearch.testing import tiny_model
from promptsearch.testing.searchers import contract_task

KEY_ENV = "PROMPTSEARCH_TEST_SERVE_KEY"
SECRET = "sk-serve-test-5f1d2c-never-stored"
MODEL = "tiny-causal-0"
PROMPTS = ["Review: a great movie.\nSentiment:", "The capital of France is"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, SECRET)
        srv = make_server(tiny_model("causal", seed=0), port=0, api_key_env=KEY_ENV)
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


def client(server: ModelServer, **options: Any) -> OpenAICompatibleGenerator:
    settings: dict[str, Any] = {"api_key_env": KEY_ENV, "backoff": 0.001, "timeout": 30.0}
    settings.update(options)
    return OpenAICompatibleGenerator(server.base_url, MODEL, **settings)


def call(server: ModelServer, path: str, body: Any = None, token: str | None = SECRET) -> Any:
    """A raw request: (status, decoded JSON answer)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(server.base_url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


# -- the protocol -------------------------------------------------------------------------------


def test_chat_completions_follow_the_openai_schema(server: ModelServer) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 5,
        "n": 2,
        "seed": 1,
    }
    status, answer = call(server, "/chat/completions", body)
    assert status == 200
    assert answer["id"].startswith("chatcmpl-") and answer["object"] == "chat.completion"
    assert answer["model"] == MODEL and isinstance(answer["created"], int)
    assert [c["index"] for c in answer["choices"]] == [0, 1]
    for choice in answer["choices"]:
        assert choice["message"]["role"] == "assistant"
        assert isinstance(choice["message"]["content"], str)
        assert choice["finish_reason"] in ("stop", "length")
    usage = answer["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    status, answer = call(server, "/completions", {"model": MODEL, "prompt": "It was", "seed": 1})
    assert status == 200 and answer["object"] == "text_completion"
    assert isinstance(answer["choices"][0]["text"], str)
    status, answer = call(server, "/models")
    assert status == 200 and [m["id"] for m in answer["data"]] == [MODEL]


def test_a_conversation_of_several_messages_is_answered(server: ModelServer) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Say hi"}]},
    ]
    status, answer = call(server, "/chat/completions", {"model": MODEL, "messages": messages})
    assert status == 200 and len(answer["choices"]) == 1


@pytest.mark.parametrize(
    ("path", "body", "status", "match"),
    [
        ("/chat/completions", {"model": "gpt-9", "messages": []}, 404, "'gpt-9' does not exist"),
        ("/chat/completions", {"messages": "hi"}, 400, "non-empty list"),
        ("/chat/completions", {"messages": [{"content": "x"}]}, 400, "'role'"),
        ("/completions", {"prompt": 3}, 400, "'prompt' must be a string"),
        ("/completions", {"prompt": "x", "n": 0}, 400, r"'n' must be an integer in \[1, 64\]"),
        ("/completions", {"prompt": "x", "temperature": "hot"}, 400, "must be a number"),
        ("/completions", {"prompt": "x", "max_tokens": 0}, 400, r"in \[1, 65536\]; got 0"),
        ("/completions", {"prompt": "x", "stream": True}, 400, "streaming"),
        ("/embeddings", {"input": "x"}, 404, "no such endpoint"),
    ],
)
def test_bad_requests_get_openai_style_errors(
    server: ModelServer, path: str, body: Any, status: int, match: str
) -> None:
    got, answer = call(server, path, body)
    assert got == status
    assert re.search(match, answer["error"]["message"])
    assert answer["error"]["type"] == "invalid_request_error"


def test_the_key_is_checked(server: ModelServer) -> None:
    for token, match in ((None, "no API key"), ("sk-wrong", "incorrect API key")):
        status, answer = call(server, "/models", token=token)
        assert status == 401 and match in answer["error"]["message"]
        assert answer["error"]["code"] == "invalid_api_key"


# -- the generator against the server -----------------------------------------------------------


def test_the_generator_gets_completions(server: ModelServer, key: str) -> None:
    generator = client(server)
    out = generator.generate(PROMPTS, n=3, max_new_tokens=6, seed=4)
    assert [len(row) for row in out] == [3, 3]
    assert all(isinstance(t, str) and t == t.strip() for row in out for t in row)
    assert out == generator.generate(PROMPTS, n=3, max_new_tokens=6, seed=4)  # seeded
    raw = generator.generate(PROMPTS, n=2, max_new_tokens=6, seed=4, chat=False)
    assert [len(row) for row in raw] == [2, 2]
    greedy = generator.generate(PROMPTS[:1], n=3, max_new_tokens=6, temperature=0.0)
    assert len(set(greedy[0])) == 1
    assert generator.stats.malformed == 0
    assert generator.stats.retries == 0


def test_stop_strings_cut_the_completions(server: ModelServer, key: str) -> None:
    out = client(server).generate(PROMPTS, n=4, max_new_tokens=12, seed=1, stop=["e", "a"])
    assert all("e" not in t and "a" not in t for row in out for t in row)


def test_the_concurrency_limit_holds_on_the_server(server: ModelServer, key: str) -> None:
    server.max_in_flight = 0
    client(server, max_concurrency=2).generate(PROMPTS * 3, n=2, max_new_tokens=8)
    assert 1 <= server.max_in_flight <= 2


def test_the_model_is_found_through_the_models_endpoint(server: ModelServer, key: str) -> None:
    generator = OpenAICompatibleGenerator(server.base_url, api_key_env=KEY_ENV)
    assert len(generator.generate(PROMPTS[:1], max_new_tokens=3)) == 1
    assert generator.served_model() == MODEL


def test_a_wrong_or_missing_key_is_a_clear_error(
    server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    with pytest.raises(GeneratorError, match=rf"HTTP 401: incorrect API key.*{KEY_ENV}"):
        client(server).generate(PROMPTS)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(GeneratorError, match=rf"no API key was sent.*{KEY_ENV} is not set"):
        client(server).generate(PROMPTS)


def test_an_unknown_model_is_a_clear_error(server: ModelServer, key: str) -> None:
    generator = OpenAICompatibleGenerator(server.base_url, "no-such-model", api_key_env=KEY_ENV)
    with pytest.raises(GeneratorError) as caught:
        generator.generate(PROMPTS)
    message = str(caught.value)
    assert "HTTP 404" in message and "'no-such-model'" in message and f"'{MODEL}'" in message


def test_make_server_checks_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMPTSEARCH_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError, match="PROMPTSEARCH_NO_SUCH_KEY holds no API key"):
        make_server(tiny_model("causal"), port=0, api_key_env="PROMPTSEARCH_NO_SUCH_KEY")
    with pytest.raises(ConfigError, match="cannot generate"):
        make_server(tiny_model("masked"), port=0)
    with pytest.raises(ConfigError, match="port must be"):
        make_server(tiny_model("causal"), port=70000)


# -- a study whose searcher writes through the server -------------------------------------------


def test_a_study_through_the_server_never_stores_the_key(
    server: ModelServer, key: str, tmp_path: Path
) -> None:
    import promptsearch

    spec = f"openai:{server.base_url}#model={MODEL}&key_env={KEY_ENV}&max_concurrency=2"
    searcher = (
        "paraphrase:methods=lm-rewrite,num_samples=2,max_new_tokens=8,max_attempts=2,"
        f"generator={spec}"
    )
    before = server.requests
    database = tmp_path / "study.db"
    result = promptsearch.search(
        contract_task("classification"),
        model=tiny_model("causal", seed=1),
        searchers=[searcher],
        budget=5,
        storage=str(database),
        study="through-http",
        candidates_per_round=2,
        progress=False,
    )
    assert result.leaderboard(top=1)
    assert server.requests - before >= 2  # the searcher asked the server for rewrites
    files = [p for p in tmp_path.iterdir() if p.name.startswith("study.db")]
    for path in files:
        assert SECRET.encode() not in path.read_bytes()
    with sqlite3.connect(database) as connection:
        configs = [row[0] for row in connection.execute("SELECT config FROM studies")]
    assert any(KEY_ENV in str(config) and spec in str(config) for config in configs)


class _Garbage(BaseHTTPRequestHandler):
    """Answers every request with 200 and a body that is not JSON."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "9")
        self.end_headers()
        self.wfile.write(b"<garbage>")


def test_a_study_goes_on_when_the_server_answers_garbage(tmp_path: Path) -> None:
    import promptsearch
    from promptsearch.searchers.paraphrase import ParaphraseSearcher

    garbage = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=garbage.serve_forever, args=(0.02,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{garbage.server_address[1]}/v1"
        searcher = ParaphraseSearcher(
            methods="lm-rewrite", generator=f"openai:{url}#model=m&key_env=", max_attempts=2
        )
        result = promptsearch.search(
            contract_task("classification"),
            model=tiny_model("causal", seed=1),
            searchers=[searcher],
            budget=4,
            storage=str(tmp_path / "garbage.db"),
            candidates_per_round=2,
            progress=False,
        )
    finally:
        garbage.shutdown()
        garbage.server_close()
    assert result.leaderboard(top=1)  # the seed prompts were scored
    stats = (
        searcher._built.stats if isinstance(searcher._built, OpenAICompatibleGenerator) else None
    )
    assert stats is not None and stats.malformed > 0 and stats.malformed == stats.completions


def test_a_study_with_a_missing_key_stops_with_a_clear_error(
    server: ModelServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import promptsearch

    monkeypatch.delenv("PROMPTSEARCH_TEST_UNSET_KEY", raising=False)
    spec = f"openai:{server.base_url}#key_env=PROMPTSEARCH_TEST_UNSET_KEY"
    with pytest.raises(GeneratorError, match="PROMPTSEARCH_TEST_UNSET_KEY is not set"):
        promptsearch.search(
            contract_task("classification"),
            model=tiny_model("causal", seed=1),
            searchers=[f"paraphrase:methods=lm-rewrite,generator={spec}"],
            budget=6,
            storage=str(tmp_path / "nokey.db"),
            candidates_per_round=2,
            progress=False,
        )


# -- the command -------------------------------------------------------------------------------


def test_promptsearch_serve_as_a_process(tmp_path: Path) -> None:
    lm = tiny_model("causal", seed=2)
    folder = tmp_path / "tiny"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    env = {**os.environ, KEY_ENV: SECRET, "OMP_NUM_THREADS": "1"}
    arguments = ["--model", str(folder), "--port", "0", "--api-key-env", KEY_ENV]
    process = start_serve([*arguments, "--served-model-name", "tiny"], env)
    try:
        line = first_line(process, timeout=120)
        found = re.search(r"serving 'tiny' at (http://\S+/v1) \(an API key is required\)", line)
        assert process.stderr is not None  # stderr=PIPE
        assert found, (line, process.stderr.read() if process.poll() is not None else "")
        generator = make_generator(f"openai:{found.group(1)}#model=tiny&key_env={KEY_ENV}")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(KEY_ENV, SECRET)
            out = generator.generate(PROMPTS, n=2, max_new_tokens=5, seed=3)
        assert [len(row) for row in out] == [2, 2]
    finally:
        stop(process, timeout=60)  # a loaded machine can be slow to shut down
    assert process.returncode == 0
    assert "server stopped" in (process.stderr.read() if process.stderr else "")

"""The OpenAI-compatible HTTP generator against a scripted server on loopback.

The server is a real ``ThreadingHTTPServer`` whose handler answers from a programmed
script (429 with Retry-After, 5xx, malformed JSON, empty text, slow answers ...),
so retries, backoff, the concurrency limit and the error messages are checked
over real sockets.  ``tests/test_serve.py`` runs the generator against
``promptsearch serve`` with a real (tiny) model.
"""

from __future__ import annotations

import pickle
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fault_server import FaultServer, Reply

from promptsearch.errors import ConfigError, GeneratorError
from promptsearch.generators import GENERATOR_SPEC_HELP, OpenAICompatibleGenerator, make_generator
from promptsearch.generators.local import LocalGenerator
from promptsearch.searchers import make_searcher
from promptsearch.searchers.paraphrase import ParaphraseSearcher

KEY_ENV = "PROMPTSEARCH_TEST_HTTP_KEY"
SECRET = "sk-test-0123456789-do-not-store"


@pytest.fixture
def server() -> Iterator[FaultServer]:
    srv = FaultServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


def client(server: FaultServer, **options: Any) -> OpenAICompatibleGenerator:
    settings: dict[str, Any] = {"api_key_env": KEY_ENV, "backoff": 0.001, "timeout": 5.0}
    settings.update(options)
    return OpenAICompatibleGenerator(server.base_url, "scripted-model", **settings)


def chat_reply(content: Any) -> Reply:
    return Reply(200, {"choices": [{"message": {"role": "assistant", "content": content}}]})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- requests and completions -------------------------------------------------------------------


def test_chat_requests_carry_the_arguments_and_answers_come_back_in_order(
    server: FaultServer,
) -> None:
    generator = client(server, max_concurrency=3)
    out = generator.generate(
        ["first", "second"], n=3, max_new_tokens=7, temperature=0.5, top_p=0.9, seed=11
    )
    assert [len(row) for row in out] == [3, 3]
    assert all(text.startswith("echo first ") for text in out[0])
    assert all(text.startswith("echo second ") for text in out[1])
    assert out[0][0] == "echo first seed=11"  # the first draw uses the seed as given
    assert len(set(out[0])) == 3  # each draw has a seed of its own
    seeds = [[text.split("seed=")[1] for text in row] for row in out]
    assert seeds[0] == seeds[1]  # draw j has the same seed for every prompt
    assert len(server.seen) == 6
    for request in server.seen:
        assert request["path"] == "/v1/chat/completions"
        body = request["body"]
        assert body["model"] == "scripted-model"
        assert body["max_tokens"] == 7 and body["temperature"] == 0.5 and body["top_p"] == 0.9
        assert body["messages"][0]["role"] == "user"
        assert "stop" not in body and "Authorization" not in request["headers"]
    assert generator.stats.requests == 6 and generator.stats.completions == 6
    assert generator.generate([]) == []
    assert out == client(server, max_concurrency=1).generate(
        ["first", "second"], n=3, max_new_tokens=7, temperature=0.5, top_p=0.9, seed=11
    )  # the same texts whatever the concurrency


def test_raw_text_goes_to_the_completions_endpoint(server: FaultServer) -> None:
    [[text]] = client(server).generate(["Text: cat\nRewrite:"], chat=False, seed=3)
    assert text == "echo Text: cat\nRewrite: seed=3"
    [request] = server.seen
    assert request["path"] == "/v1/completions"
    assert request["body"]["prompt"] == "Text: cat\nRewrite:"


def test_greedy_sends_one_request_and_repeats_it(server: FaultServer) -> None:
    out = client(server).generate(["a", "b"], n=4, temperature=0.0)
    assert out == [["echo a seed=0"] * 4, ["echo b seed=0"] * 4]
    assert len(server.seen) == 2


def test_stop_strings_are_sent_and_applied(server: FaultServer) -> None:
    server.script.extend([chat_reply("first line\nsecond line"), chat_reply("a;b|c")])
    generator = client(server, max_concurrency=1)
    assert generator.generate(["x"], stop=["\n"]) == [["first line"]]
    stops = ["#", "@", "!", "?", "|", ";"]
    assert generator.generate(["y"], stop=stops) == [["a"]]  # ';' is cut here, not by the API
    assert server.seen[0]["body"]["stop"] == ["\n"]
    assert server.seen[1]["body"]["stop"] == stops[:4]  # the API's limit


def test_the_concurrency_limit_holds(server: FaultServer) -> None:
    server.delay = 0.1
    start = time.monotonic()
    client(server, max_concurrency=2).generate(["a", "b", "c", "d"], n=2)
    assert server.max_in_flight == 2
    assert time.monotonic() - start >= 0.35  # 8 requests, 2 at a time, 0.1 s each
    server.max_in_flight = 0
    client(server, max_concurrency=1).generate(["a", "b"], n=2)
    assert server.max_in_flight == 1


def test_the_model_is_asked_of_the_server_when_not_given(server: FaultServer) -> None:
    generator = OpenAICompatibleGenerator(server.base_url, api_key_env=None)
    assert generator.generate(["hi"]) == [["echo hi seed=0"]]
    assert generator.served_model() == "listed-model"
    assert server.seen[0]["path"] == "/v1/models"
    assert server.seen[1]["body"]["model"] == "listed-model"
    assert generator.model is None  # the parameter stays as given


# -- retries and backoff ------------------------------------------------------------------------


def test_429_and_5xx_are_retried_with_backoff_and_retry_after(server: FaultServer) -> None:
    server.script.extend(
        [
            Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "0.3"}),
            Reply(500, {"error": {"message": "boom"}}),
            Reply(503, b"busy"),
            chat_reply("finally"),
        ]
    )
    generator = client(server, max_retries=3)
    start = time.monotonic()
    assert generator.generate(["x"]) == [["finally"]]
    assert time.monotonic() - start >= 0.3  # Retry-After was honoured
    assert len(server.seen) == 4
    assert (generator.stats.requests, generator.stats.retries) == (4, 3)


def test_backoff_grows_exponentially(server: FaultServer) -> None:
    server.script.extend([Reply(502), Reply(502), Reply(502), chat_reply("ok")])
    generator = client(server, max_retries=3, backoff=0.05)
    start = time.monotonic()
    assert generator.generate(["x"]) == [["ok"]]
    # waits of 0.05, 0.1 and 0.2 s, each with jitter in [0.5, 1.5)
    assert 0.175 <= time.monotonic() - start < 2.0


def test_retries_run_out_with_a_clear_error(server: FaultServer) -> None:
    server.script.extend([Reply(503, {"error": {"message": "overloaded"}})] * 3)
    with pytest.raises(GeneratorError, match=r"failed after 3 attempts: HTTP 503: overloaded"):
        client(server, max_retries=2).generate(["x"])
    assert len(server.seen) == 3


def test_rate_limiting_that_does_not_stop_says_what_to_change(server: FaultServer) -> None:
    server.script.extend([Reply(429, {"error": {"message": "quota"}})] * 2)
    with pytest.raises(GeneratorError, match=r"HTTP 429: quota.*lower max_concurrency"):
        client(server, max_retries=1).generate(["x"])


def test_a_slow_server_times_out_and_is_retried(server: FaultServer) -> None:
    server.script.extend([Reply(200, {"choices": []}, delay=2.0)] * 2)
    start = time.monotonic()
    with pytest.raises(GeneratorError, match=r"failed after 2 attempts: timed out after 0.2 s"):
        client(server, timeout=0.2, max_retries=1).generate(["x"])
    assert time.monotonic() - start < 1.5  # did not wait for the slow answers
    assert len(server.seen) == 2


def test_one_failed_request_stops_the_others(server: FaultServer) -> None:
    server.script.extend([Reply(404, {"error": {"message": "nope"}}, delay=0.05)] * 48)
    with pytest.raises(GeneratorError, match="HTTP 404: nope"):
        client(server, max_concurrency=4).generate(["a", "b", "c"], n=16)
    assert len(server.seen) < 48  # the requests not yet sent were cancelled


# -- malformed and empty answers ----------------------------------------------------------------


def test_malformed_and_empty_answers_are_counted_not_raised(server: FaultServer) -> None:
    server.script.extend(
        [
            Reply(200, b"this is not JSON"),
            Reply(200, {"choices": []}),
            Reply(200, {"choices": [{"message": {"content": 42}}]}),
            chat_reply(""),
            chat_reply(None),
            chat_reply("   "),
            chat_reply("\nonly after the stop"),
            chat_reply("fine"),
        ]
    )
    generator = client(server, max_concurrency=1)
    out = generator.generate(["x"], n=8, stop=["\n"])
    assert out == [["", "", "", "", "", "", "", "fine"]]
    assert generator.stats.as_dict() == {
        "requests": 8,
        "retries": 0,
        "completions": 8,
        "empty": 4,
        "malformed": 3,
    }


# -- errors that end at once --------------------------------------------------------------------


def test_401_names_the_key_variable(server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.script.extend([Reply(401, {"error": {"message": "Invalid API key"}})] * 2)
    with pytest.raises(GeneratorError, match=rf"no API key was sent.*{KEY_ENV} is not set"):
        client(server).generate(["x"])
    monkeypatch.setenv(KEY_ENV, SECRET)
    with pytest.raises(GeneratorError) as caught:
        client(server).generate(["x"])
    message = str(caught.value)
    assert "HTTP 401: Invalid API key" in message
    assert f"refused the API key from the environment variable {KEY_ENV}" in message
    assert SECRET not in message
    assert len(server.seen) == 2  # not retried
    assert server.seen[1]["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_403_without_any_key_configured(server: FaultServer) -> None:
    server.script.append(Reply(403, {"error": {"message": "forbidden"}}))
    with pytest.raises(GeneratorError, match="HTTP 403: forbidden: no API key is configured"):
        client(server, api_key_env=None).generate(["x"])


def test_404_points_at_the_model_and_the_base_url(server: FaultServer) -> None:
    server.script.extend([Reply(404, {"error": {"message": "model not found"}})] * 2)
    with pytest.raises(GeneratorError) as caught:
        client(server).generate(["x"])
    message = str(caught.value)
    assert "HTTP 404: model not found" in message
    assert "'scripted-model'" in message and "ends in /v1" in message
    with pytest.raises(GeneratorError, match="use chat=True"):
        client(server).generate(["x"], chat=False)
    assert len(server.seen) == 2


def test_other_client_errors_are_not_retried(server: FaultServer) -> None:
    server.script.append(Reply(400, {"error": {"message": "max_tokens is too large"}}))
    with pytest.raises(GeneratorError, match="rejected the request with HTTP 400: max_tokens"):
        client(server).generate(["x"])
    assert len(server.seen) == 1


def test_an_unreachable_endpoint_fails_at_once() -> None:
    port = closed_port()
    generator = OpenAICompatibleGenerator(
        f"http://127.0.0.1:{port}/v1", "m", max_retries=4, backoff=5.0
    )
    start = time.monotonic()
    with pytest.raises(GeneratorError, match=rf"cannot reach http://127.0.0.1:{port}/v1.*running"):
        generator.generate(["x"])
    assert time.monotonic() - start < 2.0  # no backoff on a refused connection
    assert generator.stats.retries == 0


def test_a_proxy_in_the_environment_is_bypassed_for_loopback(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert client(server).generate(["x"]) == [["echo x seed=0"]]


# -- the key stays out of everything that is kept -----------------------------------------------


def test_the_key_is_in_no_repr_parameters_or_pickle(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    generator = client(server)
    assert generator.generate(["x"]) == [["echo x seed=0"]]
    assert server.seen[0]["headers"]["Authorization"] == f"Bearer {SECRET}"
    blob = pickle.dumps(generator)
    for kept in (repr(generator), str(generator.get_params()), blob.decode("latin-1")):
        assert SECRET not in kept
    assert generator.get_params()["api_key_env"] == KEY_ENV
    clone = pickle.loads(blob)
    assert clone.get_params() == generator.get_params()
    assert clone.stats == generator.stats
    assert clone.generate(["y"]) == [["echo y seed=0"]]  # works after unpickling


# -- parameters and specs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"base_url": "127.0.0.1:8000/v1"}, "must start with http"),
        ({"base_url": "http://127.0.0.1:8000/v1/chat/completions"}, "not an endpoint"),
        ({"base_url": "http://127.0.0.1:8000/v1?x=1"}, "no query"),
        ({"base_url": "http://127.0.0.1:99999/v1"}, "not a valid URL"),
        ({"model": ""}, "model must be a non-empty"),
        ({"timeout": 0}, "timeout must be > 0"),
        ({"max_retries": -1}, "max_retries must be >= 0"),
        ({"backoff": -0.1}, "backoff must be >= 0"),
        ({"max_concurrency": 0}, "max_concurrency must be >= 1"),
        ({"api_key_env": "MY KEY"}, "NAME of the environment variable"),
    ],
)
def test_bad_parameters_are_refused_eagerly(options: dict[str, Any], match: str) -> None:
    settings: dict[str, Any] = {"base_url": "http://127.0.0.1:8000/v1", "model": "m"}
    settings.update(options)
    with pytest.raises(ConfigError, match=match):
        OpenAICompatibleGenerator(**settings)


def test_secrets_given_by_mistake_are_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        OpenAICompatibleGenerator("http://127.0.0.1/v1", api_key_env=SECRET)
    assert SECRET not in str(caught.value)
    with pytest.raises(ConfigError, match="user name or password") as caught:
        OpenAICompatibleGenerator(f"http://user:{SECRET}@127.0.0.1/v1")
    assert SECRET not in str(caught.value)
    for spec in (
        f"openai:http://127.0.0.1/v1#model=m&api_key={SECRET}",
        f"openai:http://127.0.0.1/v1#key_env={SECRET}",
        f"openai:http://me:{SECRET}@127.0.0.1/v1",
    ):
        with pytest.raises(ConfigError) as caught:
            make_generator(spec)
        assert SECRET not in str(caught.value)
    with pytest.raises(ConfigError, match="never goes in a spec"):
        make_generator(f"openai:http://127.0.0.1/v1#api_key={SECRET}")


def test_generate_validates_its_arguments(server: FaultServer) -> None:
    with pytest.raises(ConfigError, match="n must be >= 1"):
        client(server).generate(["x"], n=0)
    with pytest.raises(ConfigError, match="list of strings"):
        client(server).generate("x")
    assert server.seen == []


def test_specs_build_generators() -> None:
    generator = make_generator(
        "openai:http://127.0.0.1:8000/v1/#model=llama3.2%3A1b&key_env=MY_KEY&timeout=2.5"
        "&max_retries=1&backoff=0.25&max_concurrency=8"
    )
    assert isinstance(generator, OpenAICompatibleGenerator)
    assert generator.get_params() == {
        "base_url": "http://127.0.0.1:8000/v1",
        "model": "llama3.2:1b",
        "api_key_env": "MY_KEY",
        "timeout": 2.5,
        "max_retries": 1,
        "backoff": 0.25,
        "max_concurrency": 8,
    }
    plain = make_generator("openai:http://localhost:11434/v1")
    assert isinstance(plain, OpenAICompatibleGenerator)
    assert (plain.model, plain.api_key_env) == (None, "OPENAI_API_KEY")
    keyless = make_generator("openai:http://localhost:11434/v1#key_env=")
    assert isinstance(keyless, OpenAICompatibleGenerator) and keyless.api_key_env is None
    assert make_generator(plain) is plain
    local = make_generator("local:HuggingFaceTB/SmolLM2-360M-Instruct")
    assert (
        isinstance(local, LocalGenerator) and local.model == "HuggingFaceTB/SmolLM2-360M-Instruct"
    )
    assert isinstance(make_generator("some/model"), LocalGenerator)
    default = make_generator(None)
    assert isinstance(default, LocalGenerator) and default.model is None
    assert isinstance(make_generator("local"), LocalGenerator)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("opneai:http://127.0.0.1/v1", "unknown backend 'opneai'"),
        ("http://127.0.0.1:8000/v1", "write 'openai:http://127.0.0.1:8000/v1'"),
        ("local:", "needs a model name"),
        ("", "spec string"),
        ("openai:http://127.0.0.1/v1#modle=x", "unknown option 'modle'"),
        ("openai:http://127.0.0.1/v1#model", "is not key=value"),
        ("openai:http://127.0.0.1/v1#model=a&model=b", "given twice"),
        ("openai:http://127.0.0.1/v1#timeout=soon", "timeout and backoff must be numbers"),
        ("openai:http://127.0.0.1/v1#max_concurrency=0", "max_concurrency must be >= 1"),
    ],
)
def test_bad_specs_are_refused_with_the_syntax(spec: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_generator(spec)
    with pytest.raises(ConfigError):
        make_generator(42)  # type: ignore[arg-type]
    assert "openai:URL" in GENERATOR_SPEC_HELP


def test_a_spec_survives_the_searcher_spec_parser(server: FaultServer) -> None:
    spec = f"openai:{server.base_url}#model=scripted-model&key_env={KEY_ENV}&max_concurrency=2"
    searcher = make_searcher(f"paraphrase:methods=lm-rewrite,generator={spec},num_samples=2")
    assert isinstance(searcher, ParaphraseSearcher)
    assert searcher.generator == spec  # stored as given: the database keeps the spec
    assert searcher.get_params()["generator"] == spec
    with pytest.raises(ConfigError, match="unknown option"):
        make_searcher("paraphrase:generator=openai:http://127.0.0.1/v1#mdl=x")
    with pytest.raises(ConfigError, match="write 'openai:http"):
        ParaphraseSearcher(generator="http://127.0.0.1/v1")

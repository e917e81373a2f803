"""Remote scoring against real, independent server processes serving the embedded model:
``promptsearch serve`` always, and llama-cpp-python's server when ``llama_cpp`` is
installed (it is not part of the default set-up; see docs/scoring.md).

The remote scorer's predictions must equal the local scorer's on the same prompts and
examples; the measured agreement and largest log-probability difference are printed
(run with ``-s``) and documented in docs/scoring.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from process_support import first_line, start_serve, stop

from promptsearch.errors import ModelError
from promptsearch.example import Example
from promptsearch.models.base import LanguageModel
from promptsearch.models.loading import load_model
from promptsearch.prompt import Prompt
from promptsearch.scoring.scorer import Scorer
from promptsearch.task import Task

MIN_AGREEMENT = 0.95
"""Share of predictions the remote scorer must share with the local one."""

SST2_EXAMPLES = 12
"""Test examples per prompt (x 2 label words each)."""

NEXT_TOKEN_EXAMPLES = 40
"""Test examples per prompt in next-token mode (one request row each)."""


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """A ``promptsearch serve`` process with the default (embedded) model: its base URL."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("OPENAI_API_KEY", None)
    process = start_serve(["--port", "0"], env)
    try:
        line = first_line(process, timeout=180)
        found = re.search(r"serving '([^']+)' at (http://\S+/v1)", line)
        errors = process.stderr.read() if process.stderr and process.poll() is not None else ""
        assert found, (line, errors)
        yield f"openai:{found.group(2)}#model={found.group(1)}&concurrency=2&batch=8"
    finally:
        stop(process, timeout=20)


@pytest.fixture(scope="module")
def local() -> LanguageModel:
    import torch

    torch.set_num_threads(1)
    return load_model()


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def test_serve_echoes_prompt_logprobs_like_vllm(served: str) -> None:
    base = served.removeprefix("openai:").split("#")[0]
    prompt = "Review: a great movie.\nSentiment: positive"
    answer = _post(
        f"{base}/completions",
        {"prompt": [prompt, "Hello"], "echo": True, "logprobs": 2, "max_tokens": 0},
    )
    first, second = answer["choices"]
    assert (first["index"], second["index"]) == (0, 1)
    assert first["text"] == prompt
    logprobs = first["logprobs"]
    assert "".join(logprobs["tokens"]) == prompt
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    assert all(isinstance(v, float) and v <= 0 for v in logprobs["token_logprobs"][1:])
    offsets = logprobs["text_offset"]
    assert offsets[0] == 0 and offsets == sorted(offsets)
    assert [prompt[o:] for o in offsets] == [
        "".join(logprobs["tokens"][k:]) for k in range(len(offsets))
    ]
    assert all(2 <= len(top) <= 3 for top in logprobs["top_logprobs"][1:])
    # max_tokens 1 at temperature 0: the greedy token, with its log-probability, after the echo
    greedy = _post(
        f"{base}/completions",
        {"prompt": prompt, "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0},
    )["choices"][0]
    assert greedy["text"].startswith(prompt) and len(greedy["text"]) > len(prompt)
    assert len(greedy["logprobs"]["tokens"]) == len(logprobs["tokens"]) + 1


def _agreement(
    local: LanguageModel, remote: LanguageModel, task: Task, examples: list[Example]
) -> tuple[int, int, float]:
    agree = total = 0
    worst = 0.0
    for prompt in task.seed_prompts[:2]:
        mine = Scorer(local).score(prompt, examples, task)
        theirs = Scorer(remote).score(prompt, examples, task)
        for a, b in zip(mine.results, theirs.results, strict=True):
            total += 1
            agree += a.prediction == b.prediction
            if a.label_logprobs and b.label_logprobs:
                worst = max(
                    worst,
                    *(abs(a.label_logprobs[k] - b.label_logprobs[k]) for k in a.label_logprobs),
                )
            if a.gold_logprob is not None and b.gold_logprob is not None:
                worst = max(worst, abs(a.gold_logprob - b.gold_logprob))
    return agree, total, worst


def test_remote_scores_through_serve_equal_local_scores(
    served: str, local: LanguageModel, shared_data: Path
) -> None:
    from promptsearch.tasks import load_task

    remote = load_model(served)
    assert remote.fingerprint != local.fingerprint
    task = load_task("sst2", data_dir=str(shared_data), seed=13)
    agree, total, worst = _agreement(local, remote, task, list(task.test)[:SST2_EXAMPLES])
    print(f"\npromptsearch serve, sst2: {agree}/{total} agree, max |d logprob| {worst:.2e}")
    assert agree / total >= MIN_AGREEMENT
    assert worst < 1e-3


def test_serve_answers_next_token_top_logprobs_without_echo(served: str) -> None:
    base = served.removeprefix("openai:").split("#")[0]
    prompt = "Review: a great movie.\nSentiment:"
    body = {"prompt": [prompt], "max_tokens": 1, "logprobs": 5, "temperature": 0}
    choice = _post(f"{base}/completions", body)["choices"][0]
    logprobs = choice["logprobs"]
    assert logprobs["tokens"] == [choice["text"]]  # the greedy token only, no echo
    (row,) = logprobs["top_logprobs"]
    assert 5 <= len(row) <= 6 and " positive" in row
    assert max(row, key=row.get) == choice["text"]
    assert logprobs["token_logprobs"] == [row[choice["text"]]]
    assert logprobs["text_offset"] == [len(prompt)]


def test_next_token_mode_through_serve_agrees_with_local(
    served: str, local: LanguageModel, shared_data: Path
) -> None:
    from promptsearch.tasks import load_task

    remote = load_model(served + "&mode=next-token")
    task = load_task("sst2", data_dir=str(shared_data), seed=13)
    examples = list(task.test)[:NEXT_TOKEN_EXAMPLES]
    agree = total = found = decided = agree_decided = 0
    # the seed prompts whose answer follows "Sentiment:", where " positive" and " negative"
    # are among the model's 5 likeliest next tokens ("It was {answer}." expects " a", " the"...)
    prompts = [p for p in task.seed_prompts if "Sentiment: {answer}" in p.template]
    assert prompts
    for prompt in prompts:
        mine = Scorer(local).score(prompt, examples, task)
        theirs = Scorer(remote).score(prompt, examples, task)
        assert theirs.forward_passes == len(examples)  # one request row per example
        for a, b in zip(mine.results, theirs.results, strict=True):
            total += 1
            agree += a.prediction == b.prediction
            here = 0
            for label, value in (b.label_logprobs or {}).items():
                local_value = (a.label_logprobs or {})[label]
                if value < local_value - 1e-3:  # a floor bounds the true value from above
                    pytest.fail(f"label {label}: remote {value} below local {local_value}")
                here += abs(value - local_value) < 1e-3
            found += here
            if here:  # a label in the top 5 outranks one outside it, whose floor is lower
                decided += 1
                agree_decided += a.prediction == b.prediction
    print(
        f"\npromptsearch serve, next-token mode, sst2: {agree}/{total} predictions agree; "
        f"{agree_decided}/{decided} where a label word is in the top 5; {found}/{2 * total} "
        "label log-probabilities found there"
    )
    assert agree_decided / decided >= MIN_AGREEMENT
    assert decided >= 0.75 * total
    assert agree / total >= 0.75  # both words outside the top 5: a tie, the first label
    other = next(p for p in task.seed_prompts if "It was {answer}." in p.template)
    with pytest.raises(ModelError, match="cannot be scored in next-token mode"):
        Scorer(remote).score(other, examples[:4], task)


def test_remote_generation_through_serve_equals_local(served: str, local: LanguageModel) -> None:
    remote = load_model(served)
    examples = tuple(
        Example(f"e{i}", {"country": c}, t)
        for i, (c, t) in enumerate([("France", "Paris"), ("Italy", "Rome"), ("Japan", "Tokyo")])
    )
    task = Task(
        name="capitals",
        kind="generation",
        input_fields=("country",),
        train=examples[:1],
        dev=examples,
        metric="exact_match",
        seed_prompts=(
            Prompt(template="Q: What is the capital of {country}?\nA: {answer}"),
            Prompt(template="The capital of {country} is {answer}"),
        ),
    )
    agree, total, worst = _agreement(local, remote, task, list(examples))
    print(
        f"\npromptsearch serve, generation: {agree}/{total} answers agree, max |d gold| {worst:.2e}"
    )
    assert agree == total
    assert worst < 1e-3


# -- llama-cpp-python ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed (pip install 'llama-cpp-python[server]'; "
    "see docs/scoring.md)",
)
def test_remote_scores_through_llama_cpp_agree_with_local(
    local: LanguageModel, shared_data: Path, tmp_path: Path
) -> None:
    from promptsearch.models.gguf import embedded_gguf_path
    from promptsearch.tasks import load_task

    port = _free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf_path())]
    command += ["--port", str(port), "--n_ctx", "2048", "--n_threads", "1"]
    log = (tmp_path / "llama.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=5) as response:
                    model_id = json.loads(response.read())["data"][0]["id"]
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (tmp_path / "llama.log").read_text()[-2000:]
                    pytest.fail(f"llama_cpp.server did not start: {tail}")
                time.sleep(0.5)
        # llama-cpp-python's server takes one prompt per request: batch=1
        remote = load_model(f"openai:{base}#model={model_id}&batch=1&concurrency=1&timeout=120")
        task = load_task("sst2", data_dir=str(shared_data), seed=13)
        try:
            agree, total, worst = _agreement(local, remote, task, list(task.test)[:SST2_EXAMPLES])
        except ModelError:
            if process.poll() is None:
                raise
            tail = (tmp_path / "llama.log").read_text()[-500:]
            pytest.fail(f"llama_cpp.server died with status {process.returncode}: {tail}")
        print(f"\nllama-cpp-python: {agree}/{total} predictions agree, max |d logprob| {worst:.2e}")
        assert agree / total >= 0.75  # Q4_1 kernels against dequantised float32 weights
    finally:
        stop(process, timeout=20)
        log.close()

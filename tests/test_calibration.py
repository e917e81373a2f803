"""Contextual calibration: the pure functions, the scorer option, the API, the study, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptsearch import Example, Prompt, Task
from promptsearch.api import evaluate, search
from promptsearch.cli import build_parser, main
from promptsearch.errors import ConfigError
from promptsearch.models.base import LanguageModel
from promptsearch.scoring.calibration import (
    CONTENT_FREE_INPUTS,
    apply_calibration,
    calibrate_label_logprobs,
    content_free_prior,
    label_distribution,
    predict_label,
)
from promptsearch.scoring.scorer import Scorer
from promptsearch.storage import open_storage
from promptsearch.testing import tiny_gpt2_lm, tiny_model

log = math.log


def logs(*probabilities: float) -> dict[str, float]:
    """``{"0": log p0, "1": log p1, ...}``."""
    return {str(i): log(p) if p > 0 else -math.inf for i, p in enumerate(probabilities)}


def probs(row: dict[str, float]) -> list[float]:
    return [math.exp(v) for v in row.values()]


# -- the pure functions ----------------------------------------------------------------------


def test_calibration_flips_the_predictions_a_biased_prompt_gets_wrong() -> None:
    # the prompt leans to label "1": content-free inputs give it 0.8 on average
    content_free = [logs(0.1, 0.9), logs(0.3, 0.7)]
    assert content_free_prior(content_free) == pytest.approx({"0": 0.2, "1": 0.8})
    raw = [logs(0.3, 0.7), logs(0.1, 0.9), logs(0.25, 0.75), logs(0.6, 0.4)]
    assert [predict_label(r) for r in raw] == ["1", "1", "1", "0"]
    calibrated = calibrate_label_logprobs(raw, content_free)
    # 0.3/0.2 = 1.5 > 0.7/0.8; 0.1/0.2 = 0.5 < 0.9/0.8; 0.25/0.2 > 0.75/0.8; 0.6/0.2 > 0.4/0.8
    assert [predict_label(r) for r in calibrated] == ["0", "1", "0", "0"]
    assert probs(calibrated[0]) == pytest.approx([1.5 / 2.375, 0.875 / 2.375])
    for row in calibrated:
        assert list(row) == ["0", "1"]
        assert sum(probs(row)) == pytest.approx(1.0)


def test_a_uniform_prior_changes_nothing() -> None:
    content_free = [logs(0.5, 0.5), logs(0.2, 0.8), logs(0.8, 0.2)]  # mean: uniform
    raw = [logs(0.3, 0.7), logs(0.9, 0.1), logs(0.5, 0.5)]
    calibrated = calibrate_label_logprobs(raw, content_free)
    assert [predict_label(r) for r in calibrated] == [predict_label(r) for r in raw]
    for before, after in zip(raw, calibrated, strict=True):
        assert after == pytest.approx(before)


def test_rows_are_normalised_before_averaging_and_dividing() -> None:
    # unnormalised label log-probabilities, as the scorer gives them (mass outside the labels)
    scaled = {"0": log(0.01), "1": log(0.03)}  # normalised: 0.25 / 0.75
    assert label_distribution(scaled) == pytest.approx({"0": 0.25, "1": 0.75})
    prior = content_free_prior([scaled, {"0": log(0.5), "1": log(0.5)}])
    assert prior == pytest.approx({"0": 0.375, "1": 0.625})  # mean of distributions
    raw = {"0": log(1e-4), "1": log(3e-4)}
    expected = apply_calibration({"0": log(0.25), "1": log(0.75)}, prior)
    assert apply_calibration(raw, prior) == pytest.approx(expected)


def test_three_labels_and_ties_go_to_the_first_label() -> None:
    content_free = [logs(0.5, 0.25, 0.25)]
    raw = [logs(0.5, 0.25, 0.25), logs(0.4, 0.4, 0.2)]
    calibrated = calibrate_label_logprobs(raw, content_free)
    assert probs(calibrated[0]) == pytest.approx([1 / 3] * 3)
    assert predict_label(calibrated[0]) == "0"  # a three-way tie
    assert predict_label(calibrated[1]) == "1"  # 0.4/0.5 < 0.4/0.25
    assert predict_label({"b": -1.0, "a": -1.0}) == "b"


def test_underflow_edge_cases() -> None:
    # a content-free probability of exactly zero: that label wins wherever it has any mass
    prior = content_free_prior([{"0": 0.0, "1": -math.inf}])
    assert prior == {"0": 1.0, "1": 0.0}
    row = apply_calibration(logs(0.99, 0.01), prior)
    assert predict_label(row) == "1" and all(math.isfinite(v) for v in row.values())
    assert predict_label(apply_calibration(logs(1.0, 0.0), prior)) == "0"
    # a row with no mass on any label counts as uniform
    uniform = apply_calibration({"0": -math.inf, "1": -math.inf}, {"0": 0.8, "1": 0.2})
    assert probs(uniform) == pytest.approx([0.2, 0.8])


@pytest.mark.parametrize(
    ("raw", "content_free", "needle"),
    [
        ([logs(0.5, 0.5)], [], "content_free is empty"),
        ([logs(0.5, 0.5)], logs(0.5, 0.5), "content_free must be a list"),
        (logs(0.5, 0.5), [logs(0.5, 0.5)], "raw must be a list"),
        ([logs(0.5, 0.5)], [logs(0.5, 0.5), {"1": -1.0, "0": -1.0}], "same labels"),
        ([{"0": -1.0, "2": -1.0}], [logs(0.5, 0.5)], "labels"),
        ([{"0": float("nan"), "1": -1.0}], [logs(0.5, 0.5)], "raw[0]['0']"),
        ([logs(0.5, 0.5)], [{"0": "x", "1": -1.0}], "content_free[0]['0']"),
        ([{}], [logs(0.5, 0.5)], "raw[0] must be a non-empty mapping"),
    ],
)
def test_bad_input_is_a_config_error_naming_it(
    raw: object, content_free: object, needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        calibrate_label_logprobs(raw, content_free)  # type: ignore[arg-type]
    assert needle in str(info.value)


finite = st.floats(min_value=-30.0, max_value=0.0)


@given(
    row=st.lists(finite, min_size=2, max_size=4),
    shift=st.floats(min_value=-20.0, max_value=20.0),
    data=st.data(),
)
def test_properties(row: list[float], shift: float, data: st.DataObject) -> None:
    labels = [str(i) for i in range(len(row))]
    raw = dict(zip(labels, row, strict=True))
    other = data.draw(st.lists(finite, min_size=len(row), max_size=len(row)))
    content_free = [dict(zip(labels, other, strict=True))]
    calibrated = calibrate_label_logprobs([raw], content_free)[0]
    assert sum(probs(calibrated)) == pytest.approx(1.0)
    # adding a constant to a row changes nothing
    moved = {k: v + shift for k, v in raw.items()}
    assert calibrate_label_logprobs([moved], content_free)[0] == pytest.approx(calibrated, abs=1e-9)
    # calibrating the content-free row by itself gives the uniform distribution
    flat = calibrate_label_logprobs(content_free, content_free)[0]
    assert probs(flat) == pytest.approx([1 / len(row)] * len(row))


# -- the scorer ------------------------------------------------------------------------------

GOOD = Prompt("Review: {sentence}\nSentiment: {answer}")
MULTI = Prompt(
    "{sentence} It was {answer}.",
    verbalizer={"0": ("terrible", "wonderfully bad"), "1": ("great", "good")},
)


REVIEWS = [
    ("a great movie", "1"),
    ("a terrible movie", "0"),
    ("the film was good and the acting was great", "1"),
    ("bad plot", "0"),
    ("I loved it", "1"),
    ("the music was awful and the ending was bad", "0"),
    ("fun", "1"),
    ("This movie is a terrible film with bad actors .", "0"),
]


def sentiment_task() -> Task:
    records = [{"sentence": s, "label": label} for s, label in REVIEWS]
    return Task.from_records(
        "tiny-sentiment",
        {"train": records[:2], "dev": records},
        input_fields=["sentence"],
        label_field="label",
        verbalizer={"0": "negative", "1": "positive"},
        seed_prompts=[GOOD, MULTI],
    )


def generation_task() -> Task:
    records = [{"question": "What is the capital of France?", "answer": "Paris"}] * 2
    return Task.from_records(
        "tiny-capitals",
        {"train": records, "dev": records},
        input_fields=["question"],
        output_field="answer",
    )


@pytest.fixture(scope="module")
def models() -> dict[str, LanguageModel]:
    return {
        "gpt2": tiny_gpt2_lm(),
        "causal": tiny_model("causal"),
        "masked": tiny_model("masked"),
        "seq2seq": tiny_model("seq2seq"),
    }


def content_free_examples(texts: tuple[str, ...] = CONTENT_FREE_INPUTS) -> list[Example]:
    return [Example(f"cf{i}", {"sentence": text}, "0") for i, text in enumerate(texts)]


@pytest.mark.parametrize("kind", ["gpt2", "causal", "masked", "seq2seq"])
@pytest.mark.parametrize("prompt", [GOOD, MULTI], ids=["one-token", "multi-word"])
def test_scorer_calibrates_as_the_pure_function_does(
    models: dict[str, LanguageModel], kind: str, prompt: Prompt
) -> None:
    task = sentiment_task()
    lm = models[kind]
    raw = Scorer(lm, batch_size=4).score(prompt, task.dev, task)
    cf = Scorer(lm, batch_size=4).score(prompt, content_free_examples(), task)
    report = Scorer(lm, batch_size=4, calibrate=True).score(prompt, task.dev, task)

    # the content-free inputs are run once per call and counted
    assert report.forward_passes == raw.forward_passes + cf.forward_passes
    assert len(report.results) == len(task.dev)
    cf_rows = [r.label_logprobs for r in cf.results]
    assert all(row is not None for row in cf_rows)
    assert report.content_free_probs == pytest.approx(content_free_prior(cf_rows))  # type: ignore[arg-type]
    raw_rows = [r.label_logprobs for r in raw.results]
    expected = calibrate_label_logprobs(raw_rows, cf_rows)  # type: ignore[arg-type]
    for plain, calibrated, want, example in zip(
        raw.results, report.results, expected, task.dev, strict=True
    ):
        assert plain.calibrated_logprobs is None
        assert calibrated.label_logprobs == pytest.approx(plain.label_logprobs)  # stay raw
        assert calibrated.calibrated_logprobs == pytest.approx(want)
        assert calibrated.prediction == predict_label(want)
        assert calibrated.correct == (calibrated.prediction == example.target)
        assert calibrated.score == float(calibrated.correct)
    assert report.value == pytest.approx(sum(r.correct for r in report.results) / len(task.dev))
    assert raw.content_free_probs is None


def test_calibration_uses_the_demonstrations_and_custom_content_free_inputs(
    models: dict[str, LanguageModel],
) -> None:
    task = sentiment_task()
    lm = models["gpt2"]
    prompt = Prompt(GOOD.template, demonstrations=task.train)
    texts = ("N/A", "nothing")
    scorer = Scorer(lm, calibrate=True, content_free_inputs=texts)
    report = scorer.score(prompt, task.dev[:3], task)
    cf = Scorer(lm).score(prompt, content_free_examples(texts), task)
    prior = content_free_prior([r.label_logprobs for r in cf.results])  # type: ignore[misc]
    assert report.content_free_probs == pytest.approx(prior)
    assert report.forward_passes == 3 + 2
    # fewer examples, same prior: per-example results do not depend on the batch (up to
    # rounding: one row runs in full, three share their common prefix's keys and values)
    one = scorer.score(prompt, task.dev[:1], task)
    assert one.results[0].calibrated_logprobs == pytest.approx(
        report.results[0].calibrated_logprobs, abs=1e-5
    )
    empty = scorer.score(prompt, [], task)
    assert empty.forward_passes == 0 and empty.content_free_probs is None


def test_fingerprint_and_settings(models: dict[str, LanguageModel]) -> None:
    lm = models["gpt2"]
    plain = Scorer(lm)
    calibrated = Scorer(lm, calibrate=True)
    other_inputs = Scorer(lm, calibrate=True, content_free_inputs=["N/A"])
    assert len({plain.fingerprint, calibrated.fingerprint, other_inputs.fingerprint}) == 3
    # off, the content-free inputs do not matter and the raw fingerprint is unchanged
    assert Scorer(lm, content_free_inputs=["x"]).fingerprint == plain.fingerprint
    assert plain.calibration is None and not plain.calibrate
    assert calibrated.calibration == {
        "method": "contextual",
        "content_free_inputs": ["N/A", "", "[MASK]"],
    }
    assert "calibrate=True" in repr(calibrated)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"calibrate": "yes"}, "calibrate must be True or False"),
        ({"calibrate": 1}, "calibrate must be True or False"),
        ({"content_free_inputs": "N/A"}, "content_free_inputs must be a list"),
        ({"content_free_inputs": []}, "content_free_inputs is empty"),
        ({"content_free_inputs": ["N/A", None]}, "strings only"),
    ],
)
def test_bad_scorer_options(
    models: dict[str, LanguageModel], options: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Scorer(models["gpt2"], **options)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_generation_task_is_a_clear_error(models: dict[str, LanguageModel]) -> None:
    task = generation_task()
    prompt = Prompt("Question: {question}\nAnswer: {answer}")
    with pytest.raises(ConfigError, match="classification tasks only"):
        Scorer(models["gpt2"], calibrate=True).score(prompt, task.dev, task)
    with pytest.raises(ConfigError, match="classification tasks only"):
        evaluate(task, prompt, model=models["gpt2"], calibrate=True)
    with pytest.raises(ConfigError, match="calibrate must be True or False"):
        evaluate(sentiment_task(), GOOD, model=models["gpt2"], calibrate="on")  # type: ignore[arg-type]


# -- the API and the study -------------------------------------------------------------------


def test_evaluate_and_search_with_calibration(
    models: dict[str, LanguageModel], tmp_path: Path
) -> None:
    task = sentiment_task()
    lm = models["gpt2"]
    report = evaluate(task, GOOD, model=lm, calibrate=True)
    assert report.content_free_probs is not None
    assert report.forward_passes == len(task.dev) + len(CONTENT_FREE_INPUTS)
    url = str(tmp_path / "calibration.db")
    raw = search(task, model=lm, searchers=["manual"], budget=2, storage=url, progress=False)
    calibrated = search(
        task,
        model=lm,
        searchers=["manual"],
        budget=2,
        storage=url,
        progress=False,
        calibrate=True,
    )
    assert raw.name == "tiny-sentiment-tiny-gpt2-0"
    assert calibrated.name == raw.name + "-calibrated"  # no clash with the raw study
    with open_storage(url) as storage:
        plain = storage.get_study(raw.name)
        study = storage.get_study(calibrated.name)
        assert plain is not None and study is not None
        assert study.scorer_fingerprint == Scorer(lm, calibrate=True).fingerprint
        assert study.scorer_fingerprint != plain.scorer_fingerprint
        assert study.config["calibration"]["method"] == "contextual"
        assert "calibration" not in plain.config
    assert len(raw.leaderboard()) == len(calibrated.leaderboard()) == 2


# -- the command line ------------------------------------------------------------------------


def test_cli_parses_calibrate() -> None:
    parser = build_parser()
    assert parser.parse_args(["run", "--task", "sst2", "--calibrate"]).calibrate is True
    assert parser.parse_args(["run", "--task", "sst2"]).calibrate is False
    args = parser.parse_args(["evaluate", "--task", "sst2", "--prompt", "x", "--calibrate"])
    assert args.calibrate is True


def test_cli_evaluate_calibrate_with_a_local_model(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lm = tiny_gpt2_lm()
    folder = tmp_path / "tiny-gpt2"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    common = [
        "evaluate", "--task", "sst2", "--data-dir", str(shared_data), "--model", str(folder),
        "--device", "cpu", "--prompt", r"Review: {sentence}\nSentiment: {answer}",
        "--verbalizer", "0=negative,1=positive", "--limit", "6", "--json",
    ]  # fmt: skip
    assert main(common) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*common, "--calibrate"]) == 0
    calibrated = json.loads(capsys.readouterr().out)
    assert plain["calibrated"] is False and calibrated["calibrated"] is True
    assert calibrated["n_examples"] == plain["n_examples"] == 6
    assert calibrated["forward_passes"] == plain["forward_passes"] + len(CONTENT_FREE_INPUTS)
    assert 0.0 <= calibrated["value"] <= 1.0

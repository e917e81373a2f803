"""A model that returns NaN or fails on one batch fails that trial, not the search.

The trial is marked failed with the reason, the searcher sees a score of None, the
search goes on, and no NaN ever lands in the database as a score.  Fast fakes first,
then a real tiny transformers model whose forward pass is sabotaged for one prompt.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import promptsearch
from promptsearch import ModelError, Prompt, Task
from promptsearch.errors import ConfigError, StorageError
from promptsearch.searchers.base import TrialResult
from promptsearch.searchers.manual import ManualSearcher
from promptsearch.storage import EvaluationRecord, Storage, open_storage
from promptsearch.study.loop import Study, example_key
from promptsearch.task import Example
from promptsearch.testing.fakes import FakeModel as Model
from promptsearch.testing.fakes import FakeReport as Report
from promptsearch.testing.fakes import FakeResult as Result

GOOD = ["Review: {text}\nSentiment: {answer}", "{text} It was {answer}."]
POISON = "Poison: {text}\nSentiment: {answer}"
EXPLODE = "Explode: {text}\nSentiment: {answer}"
LATER = ["{text} All in all, it was {answer}.", "Text: {text}\nLabel: {answer}"]

REVIEWS = [
    ("a great movie", 1),
    ("a terrible movie", 0),
    ("the film was good", 1),
    ("the film was bad", 0),
    ("i loved it", 1),
    ("i hated it", 0),
    ("the acting was great", 1),
    ("the plot was bad", 0),
    ("a good story", 1),
    ("a bad story", 0),
    ("overall the story was great", 1),
    ("the movie was boring", 0),
]


def review_task() -> Task:
    return Task.from_records(
        "failing-reviews",
        [{"text": t, "label": y} for t, y in REVIEWS],
        input_fields=["text"],
        label_field="label",
        verbalizer={0: "negative", 1: "positive"},
        dev_size=6,
        seed=0,
    )


class RecordingManual(ManualSearcher):
    """The manual searcher, keeping every result it observes."""

    name = "recording-manual"

    def __init__(self, prompts: Sequence[Prompt | str] = ()) -> None:
        super().__init__(prompts=prompts, include_seed_prompts=False)
        self.observed: list[TrialResult] = []

    def observe(self, results: Sequence[TrialResult]) -> None:
        self.observed.extend(results)


ORDER = [GOOD[0], POISON, EXPLODE, GOOD[1], *LATER]


def searcher() -> RecordingManual:
    return RecordingManual(ORDER)


def run_study(storage: Storage, scorer: Any, recorder: RecordingManual) -> Study:
    study = Study(
        "fail",
        review_task(),
        scorer,
        [recorder],
        len(ORDER),
        storage,
        candidates_per_round=2,
        progress=False,
    )
    study.run()
    return study


def trials_by_template(storage: Storage) -> dict[str, Any]:
    out = {}
    for trial in storage.trials("fail"):
        out[storage.get_prompt(trial.content_hash).body["template"]] = trial
    return out


def assert_no_nan_stored(url: str) -> None:
    path = url.removeprefix("sqlite:///")
    connection = sqlite3.connect(path)
    try:
        scores = connection.execute("SELECT dev_score FROM trials").fetchall()
        scores += connection.execute("SELECT score FROM evaluations").fetchall()
    finally:
        connection.close()
    assert all(s is None or math.isfinite(s) for (s,) in scores)


# -- fakes ---------------------------------------------------------------------------------


@dataclass
class SabotagedScorer:
    """Scores by a hash; for templates containing a marker it misbehaves as told."""

    faults: dict[str, str] = field(default_factory=dict)  # marker -> fault
    model: Model = field(default_factory=Model)

    @property
    def fingerprint(self) -> str:
        return "s" * 64

    def score(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> Report:
        fault = next((f for m, f in self.faults.items() if m in prompt.template), None)
        if fault == "raise-key":
            raise KeyError("position_ids")
        if fault == "raise-storage":
            raise StorageError("database disk image is malformed")
        results = []
        for example in examples:
            digest = hashlib.sha256((prompt.content_hash + example.id).encode()).digest()
            logprobs = {"0": -float(digest[0] % 5) - 0.5, "1": -float(digest[1] % 5) - 0.5}
            prediction = max(logprobs, key=lambda label: logprobs[label])
            score = float(prediction == example.target)
            if fault == "nan-logprobs" and example is examples[-1]:
                logprobs["1"] = math.nan
            if fault == "nan-score":
                score = math.nan
            results.append(Result(example.id, prediction, score == 1.0, score, logprobs))
        return Report(results, len(examples))


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fail.db'}"


@pytest.mark.parametrize(
    "fault, reason",
    [
        ("nan-logprobs", "ModelError: model 'fake-model' gave NaN log-probabilities (label 1)"),
        ("nan-score", "ModelError: model 'fake-model' gave a non-finite score (nan)"),
        ("raise-key", "KeyError: 'position_ids'"),
    ],
)
def test_a_faulty_trial_fails_with_its_reason_and_the_search_goes_on(
    fault: str, reason: str, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = searcher()
    with open_storage(url) as storage:
        run_study(storage, SabotagedScorer({"Poison": fault}), recorder)
        trials = trials_by_template(storage)
        assert len(trials) == len(ORDER)
        bad = trials[POISON]
        assert bad.state == "failed" and bad.dev_score is None
        assert bad.error is not None and bad.error.startswith(reason), bad.error
        assert "Poison" in bad.error or fault == "raise-key"
        others = [t for template, t in trials.items() if template != POISON]
        assert all(t.state == "complete" for t in others)
        assert later_than(trials[LATER[-1]], bad)  # the search went on after it
        seen = {r.prompt.template: r for r in recorder.observed}
        assert seen[POISON].score is None and seen[POISON].state == "failed"
        assert all(seen[t].score is not None for t in ORDER if t != POISON)
        # nothing of the failed trial reached the cache or the leaderboard
        keys = [example_key(e) for e in review_task().dev]
        assert storage.cached_evaluations("s" * 64, bad.content_hash, "dev", keys) == {}
        assert bad.content_hash not in {r.content_hash for r in storage.leaderboard("fail")}
    assert_no_nan_stored(url)
    assert "failed, the search goes on" in caplog.text


def later_than(trial: Any, other: Any) -> bool:
    return bool(trial.number > other.number)


def test_a_failed_trial_is_final_on_resume(url: str) -> None:
    with open_storage(url) as storage:
        run_study(storage, SabotagedScorer({"Poison": "nan-score"}), searcher())
        healthy = SabotagedScorer()
        run_study(storage, healthy, searcher())  # same study, a model that would work now
        assert trials_by_template(storage)[POISON].state == "failed"


def test_a_storage_error_while_scoring_stops_the_study_and_the_trial_is_retried(
    url: str,
) -> None:
    with open_storage(url) as storage:
        with pytest.raises(StorageError, match="malformed"):
            run_study(storage, SabotagedScorer({"Poison": "raise-storage"}), searcher())
        assert trials_by_template(storage)[POISON].state == "running"
        run_study(storage, SabotagedScorer(), searcher())
        trials = trials_by_template(storage)
        assert {t.state for t in trials.values()} == {"complete"}
        assert len(trials) == len(ORDER)


def test_storage_refuses_non_finite_scores(url: str) -> None:
    with open_storage(url) as storage:
        run_study(storage, SabotagedScorer(), searcher())
        with pytest.raises(ConfigError, match="finite"):
            storage.add_evaluations(
                "s" * 64, "a" * 64, "dev", [EvaluationRecord("k", "1", True, math.inf, None)]
            )
        with pytest.raises(ConfigError, match="finite"):
            storage.add_evaluations(
                "s" * 64, "a" * 64, "dev", [EvaluationRecord("k", "1", True, math.nan, None)]
            )
    assert_no_nan_stored(url)


# -- a real tiny model, sabotaged ------------------------------------------------------------


@pytest.fixture(scope="module")
def sabotaged_model() -> Any:
    """A tiny Llama whose forward gives NaN logits for batches of 'Poison' prompts and
    raises on the second batch of 'Explode' prompts (as a CUDA out-of-memory would)."""
    pytest.importorskip("torch")
    from promptsearch.testing import tiny_causal_lm

    lm = tiny_causal_lm(seed=1)
    tokenizer = lm.tokenizer
    explode_batches: list[int] = []

    def texts(kwargs: dict[str, Any]) -> list[str]:
        ids = kwargs.get("input_ids")
        return [] if ids is None else tokenizer.batch_decode(ids, skip_special_tokens=True)

    def before(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if any("Explode" in text for text in texts(kwargs)):
            explode_batches.append(1)
            if len(explode_batches) == 2:
                raise RuntimeError("CUDA out of memory (simulated) on one batch")

    def after(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> Any:
        if any("Poison" in text for text in texts(kwargs)):
            output.logits = output.logits * float("nan")
        return output

    lm.model.register_forward_pre_hook(before, with_kwargs=True)
    lm.model.register_forward_hook(after, with_kwargs=True)
    return lm


def test_real_model_nan_and_failing_batch(sabotaged_model: Any, url: str) -> None:
    from promptsearch.scoring.scorer import Scorer

    recorder = searcher()
    scorer = Scorer(sabotaged_model, batch_size=2)
    with open_storage(url) as storage:
        run_study(storage, scorer, recorder)
        trials = trials_by_template(storage)
        poison, explode = trials[POISON], trials[EXPLODE]
        assert poison.state == "failed" and "NaN log-probabilities" in (poison.error or "")
        assert "Poison" in (poison.error or "") and "float32" in (poison.error or "")
        assert explode.state == "failed"
        assert explode.error == "RuntimeError: CUDA out of memory (simulated) on one batch"
        rest = [t for template, t in trials.items() if template not in (POISON, EXPLODE)]
        assert len(rest) == len(ORDER) - 2
        assert all(t.state == "complete" and 0.0 <= (t.dev_score or 0.0) <= 1.0 for t in rest)
        seen = {r.prompt.template: r.score for r in recorder.observed}
        assert seen[POISON] is None and seen[EXPLODE] is None
    assert_no_nan_stored(url)


def test_real_model_nan_in_evaluate_is_a_clear_error(sabotaged_model: Any) -> None:
    pattern = (
        r"NaN log-probabilities \(label 0, label 1\) for example 'all-\d+' under prompt 'Poison"
    )
    with pytest.raises(ModelError, match=pattern):
        promptsearch.evaluate(review_task(), POISON, model=sabotaged_model)
    report = promptsearch.evaluate(review_task(), GOOD[0], model=sabotaged_model)
    assert math.isfinite(report.value)

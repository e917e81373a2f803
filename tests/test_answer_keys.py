"""Answer keys (``optuna:answer_keys``): templates that name the answer, ranked by the
model on content-free inputs, proposed after the seeds, counted as the task's own parts,
and a resumed study that uses them ends as an uninterrupted one."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from promptsearch import ConfigError, Prompt
from promptsearch.scoring.scorer import Scorer
from promptsearch.searchers._answer_keys import (
    ANSWER_KEYS,
    answer_key_templates,
    check_answer_keys,
    key_template,
    rank_keys,
)
from promptsearch.searchers.base import SearchContext, TrainView
from promptsearch.searchers.optuna_search import OptunaSearcher
from promptsearch.storage import open_storage
from promptsearch.study.loop import Study
from promptsearch.study.train_confirm import OwnParts
from promptsearch.testing.searchers import LEAK_SENTINEL, contract_task
from promptsearch.testing.tiny_models import tiny_model


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer(tiny_model("causal", seed=0), batch_size=8)


def _context(scorer: Scorer | None) -> SearchContext:
    return SearchContext(
        task=TrainView.from_task(contract_task()),
        rng=random.Random("keys"),
        model=None if scorer is None else scorer.model,
        scorer=scorer,
    )


def test_answer_keys_values_are_checked() -> None:
    assert check_answer_keys("auto", "o") == ANSWER_KEYS
    assert check_answer_keys(False, "o") == ()
    assert check_answer_keys(["Gist", " Gist ", "Mood"], "o") == ("Gist", "Mood")
    for bad in ("Sentiment", [], ["a:b"], ["{x}"], [""], ["two\nlines"], [3], True, None):
        with pytest.raises(ConfigError, match="answer_keys") as error:
            OptunaSearcher(answer_keys=bad)  # type: ignore[arg-type]
        assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="n_answer_keys"):
        OptunaSearcher(answer_keys="auto", n_answer_keys=0)


def test_key_templates_name_each_field_then_the_key() -> None:
    assert key_template(["sentence"], "Sentiment") == "Text: {sentence}\nSentiment: {answer}"
    assert key_template(["premise", "hypothesis_text"], "Relation") == (
        "Premise: {premise}\nHypothesis text: {hypothesis_text}\nRelation: {answer}"
    )
    view = TrainView.from_task(contract_task())
    assert answer_key_templates(view, ["Gist"]) == ["Text: {sentence}\nGist: {answer}"]
    assert len(answer_key_templates(view)) == len(ANSWER_KEYS)
    assert answer_key_templates(TrainView.from_task(contract_task("generation"))) == []


def test_keys_rank_by_the_label_words_mean_logprob_on_content_free_inputs(
    scorer: Scorer,
) -> None:
    task = contract_task()
    view = TrainView.from_task(task)
    keys = ["Gist", "Mood", "Sentiment", "Topic"]
    ranked = rank_keys(scorer, view, keys)
    assert sorted(k for k, _ in ranked) == sorted(keys)
    values = [v for _, v in ranked]
    assert values == sorted(values, reverse=True) and all(v < 0 for v in values)
    # the value is the scorer's own: the mean label log-probability on "N/A", "", "[MASK]"
    key, value = ranked[0]
    inputs = [
        replace(task.dev[0], id=f"cf{i}", inputs={"sentence": t})
        for i, t in enumerate(["N/A", "", "[MASK]"])
    ]
    prompt = Prompt(template=key_template(["sentence"], key), verbalizer=task.verbalizer)
    report = scorer.score(prompt, inputs, task)
    logprobs = [v for r in report.results for v in (r.label_logprobs or {}).values()]
    assert value == pytest.approx(sum(logprobs) / len(logprobs), abs=1e-5)
    assert rank_keys(scorer, view, keys) == ranked  # deterministic
    # the scorer's own content-free inputs, as its calibration uses them
    other = Scorer(scorer.model, batch_size=8, content_free_inputs=["nothing here"])
    one = replace(inputs[0], inputs={"sentence": "nothing here"})
    report = other.score(prompt, [one], task)
    expected = sum((report.results[0].label_logprobs or {}).values()) / len(task.labels)
    assert dict(rank_keys(other, view, keys))[key] == pytest.approx(expected, abs=1e-5)
    assert rank_keys(scorer, TrainView.from_task(contract_task("generation")), keys) == []


def test_the_best_keys_are_proposed_right_after_the_seeds(scorer: Scorer) -> None:
    task = contract_task()
    keys = ["Gist", "Mood", "Sentiment", "Topic"]
    best = [k for k, _ in rank_keys(scorer, TrainView.from_task(task), keys)[:2]]
    searcher = OptunaSearcher(answer_keys=keys, n_answer_keys=2, max_demonstrations=0)
    searcher.setup(_context(scorer))
    first = searcher.propose(len(task.seed_prompts) + 3)
    operations = [c.operation for c in first]
    n_seeds = operations.count("seed")
    assert operations[n_seeds : n_seeds + 2] == ["answer-key", "answer-key"]
    keyed = first[n_seeds : n_seeds + 2]
    assert [c.prompt.template for c in keyed] == [key_template(["sentence"], k) for k in best]
    assert all(c.prompt.verbalizer == task.verbalizer for c in keyed)
    assert all(c.prompt.template in searcher.space.templates for c in keyed)
    for candidate in first:
        assert LEAK_SENTINEL not in candidate.prompt.render(task.train[0]).prefix

    # off by default, and nothing without a scorer to rank the keys with
    for off in (OptunaSearcher(max_demonstrations=0), OptunaSearcher(answer_keys="auto")):
        off.setup(_context(scorer if off.answer_keys is False else None))
        proposed = off.propose(8)
        assert "answer-key" not in [c.operation for c in proposed]
        assert not any(t.startswith("Text: ") for t in off.space.templates)


def test_key_templates_of_the_vocabulary_are_the_task_own_parts() -> None:
    task = contract_task()
    own = OwnParts(task, None)
    seed = task.seed_prompts[0].resolve(task)
    sentiment = replace(seed, template=key_template(["sentence"], "Sentiment"), instruction="")
    assert own(sentiment)
    assert own(replace(sentiment, calibrate=True, demonstrations=(task.train[0],)))
    assert not own(replace(sentiment, template=key_template(["sentence"], "Gist")))  # a user's
    assert not own(replace(sentiment, verbalizer={"0": ("worse",), "1": ("pioneered",)}))


def test_a_resumed_study_with_answer_keys_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    def trials(folder: Path, budgets: Sequence[int]) -> list[tuple[str, str, str]]:
        folder.mkdir()
        for budget in budgets:
            study = Study(
                "keys",
                contract_task(),
                Scorer(tiny_model("causal", seed=0), batch_size=8),
                ["manual", OptunaSearcher(answer_keys="auto", max_demonstrations=1)],
                budget,
                open_storage(f"sqlite:///{folder / 'study.db'}"),
                seed=3,
                candidates_per_round=3,
                progress=False,
            )
            study.run()
        return [(t.searcher, t.operation, t.content_hash) for t in study.storage.trials("keys")]

    whole = trials(tmp_path / "whole", [12])
    assert trials(tmp_path / "resumed", [5, 12]) == whole
    assert [op for _, op, _ in whole].count("answer-key") == 2

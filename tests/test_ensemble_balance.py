"""Balanced ensembles: each member's label probabilities divided by its mean label
distribution (its prior) before the vote, so that a member sure of one label
everywhere does not outvote the others.  Unit tests of the arithmetic, the prior's
validation and identity, a real tiny model's vote, and a study whose pick, export and
held-out evaluation use the stored priors (fast: the rule scorer of test_selection)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_prompt_calibration import TEMPLATE, sentiment_task
from test_selection import SEEDS, RuleScorer

from promptsearch.cli import main
from promptsearch.errors import ConfigError
from promptsearch.evaluation.heldout import evaluate_held_out
from promptsearch.models.base import LanguageModel
from promptsearch.prompt import Prompt
from promptsearch.scoring.scorer import Scorer
from promptsearch.searchers.manual import ManualSearcher
from promptsearch.storage import open_storage
from promptsearch.study.ensemble import (
    PromptEnsemble,
    balanced,
    label_prior,
    vote_labels,
)
from promptsearch.study.loop import Study
from promptsearch.study.selection import Selection, gold_probabilities
from promptsearch.task import Example, Task
from promptsearch.testing import tiny_gpt2_lm
from promptsearch.testing.searchers import contract_task_with_dev

IO = "Input: {sentence}\nOutput: {answer}"
ONE_LINE = "Input: {sentence} Output: {answer}"
MEMBERS = (Prompt(SEEDS[0]), Prompt(SEEDS[1]))


def test_a_prior_is_the_mean_distribution_with_a_floor() -> None:
    prior = label_prior(["0", "1"], [{"0": 0.9, "1": 0.1}, {"0": 1.0, "1": 0.0}])
    assert prior == pytest.approx({"0": 0.95, "1": 0.05})
    assert label_prior(["0", "1"], [{"0": 1.0, "1": 0.0}])["1"] > 0  # never divides by 0
    with pytest.raises(ConfigError, match="needs the member's label probabilities"):
        label_prior(["0", "1"], [])


def test_balancing_turns_a_confident_members_vote_into_its_signal() -> None:
    labels = ["0", "1"]
    sure = {"0": 0.95, "1": 0.05}  # the seed prompt: "0" on every example
    good = {"0": 0.3, "1": 0.7}  # a better prompt, right that the gold label is "1"
    assert vote_labels(labels, [sure, good])[0] == "0"  # outvoted as it is
    even = balanced(sure, {"0": 0.95, "1": 0.05}, labels)
    assert even == pytest.approx({"0": 0.5, "1": 0.5})
    assert vote_labels(labels, [even, good])[0] == "1"
    # a member with an even prior votes as it is
    assert balanced(good, {"0": 0.5, "1": 0.5}, labels) == pytest.approx(good)


def test_priors_are_validated_stored_and_part_of_the_identity() -> None:
    priors = ({"0": 0.5, "1": 0.5}, {"0": 0.9, "1": 0.1})
    plain, weighed = PromptEnsemble(MEMBERS), PromptEnsemble(MEMBERS, priors)
    # an ensemble without priors keeps its hash and dict from before priors existed
    assert "priors" not in plain.to_dict()
    assert weighed.content_hash != plain.content_hash
    assert weighed.describe().startswith("ensemble of 2 (balanced): ")
    assert plain.describe().startswith("ensemble of 2: ")
    assert PromptEnsemble.from_dict(weighed.to_dict()) == weighed
    assert PromptEnsemble.from_dict(weighed.to_dict()).priors == priors
    with pytest.raises(ConfigError, match="one prior per member: 2 members, 1 priors"):
        PromptEnsemble(MEMBERS, priors[:1])
    with pytest.raises(ConfigError, match=r"priors\[1\] must map each label to a positive"):
        PromptEnsemble(MEMBERS, ({"0": 0.5, "1": 0.5}, {"0": 1.0, "1": 0.0}))
    with pytest.raises(ConfigError, match="'priors' must be a list of label distributions"):
        PromptEnsemble.from_dict({**weighed.to_dict(), "priors": "even"})
    task = contract_task_with_dev(8)
    with pytest.raises(ConfigError, match=r"priors\[0\] has no probability for label\(s\) \['1'\]"):
        PromptEnsemble(MEMBERS, ({"0": 1.0}, {"0": 0.5, "1": 0.5})).resolve(task)
    with pytest.raises(ConfigError, match=r"selection\.ensemble_balance must be true or false"):
        Selection(ensemble_balance="on")  # type: ignore[arg-type]


def test_a_balanced_ensemble_of_a_real_model_divides_each_members_probabilities() -> None:
    lm: LanguageModel = tiny_gpt2_lm()
    task = sentiment_task()
    first = Prompt(TEMPLATE)
    second = Prompt("{sentence} It was {answer}.", verbalizer={"0": "bad", "1": "good"})
    scorer = Scorer(lm, batch_size=4)
    labels = list(task.labels)
    rows = [
        [
            gold_probabilities(r.label_logprobs or {}, labels)
            for r in scorer.score(p, task.dev, task).results
        ]
        for p in (first, second)
    ]
    priors = tuple(label_prior(labels, member) for member in rows)
    report = PromptEnsemble((first, second), priors).score(scorer, task.dev, task)
    for index, row in enumerate(report.results):
        shares = [
            balanced(member[index], prior, labels)
            for member, prior in zip(rows, priors, strict=True)
        ]
        mean = {label: (shares[0][label] + shares[1][label]) / 2 for label in labels}
        assert row.prediction == max(labels, key=lambda label: (mean[label], -labels.index(label)))
        for label in labels:
            assert math.exp(row.label_logprobs[label]) == pytest.approx(mean[label])  # type: ignore[index]


def _sure_of_zero(i: int) -> tuple[bool, float]:
    # "0" with probability 0.95 on every example (dev labels alternate, "0" first)
    return i % 2 == 0, 0.95 if i % 2 == 0 else 0.05


def _wrong_on(k: int) -> Callable[[int], tuple[bool, float]]:
    def rule(i: int) -> tuple[bool, float]:
        right = i % 4 != k
        return right, 0.8 if right else 0.4

    return rule


def one_seed_task() -> Task:
    """The contract task with 16 dev examples, 12 test examples and its first seed
    prompt alone (labels alternating, "0" first)."""
    base = contract_task_with_dev(16)
    test = tuple(
        Example(f"test-{i}", {"sentence": f"test review {i}"}, str(i % 2)) for i in range(12)
    )
    return replace(base, seed_prompts=base.seed_prompts[:1], test=test)


def _study(folder: Path, balance: bool) -> Study:
    # one seed prompt, sure of "0" everywhere (the incumbent), and two formats made of
    # the task's own parts, each wrong on another quarter: their mean alone is right
    # everywhere, the seed's sure vote outweighs them on every "1"
    task = one_seed_task()
    folder.mkdir()
    return Study(
        "bal",
        task,
        RuleScorer({SEEDS[0]: _sure_of_zero, IO: _wrong_on(1), ONE_LINE: _wrong_on(3)}),
        [ManualSearcher(prompts=[SEEDS[0], IO, ONE_LINE])],
        20,
        open_storage(f"sqlite:///{folder / 'bal.db'}"),
        progress=False,
        # the seed trails both partners: own-parts keeps it in the ensemble
        selection={
            "ensemble_size": 3,
            "ensemble_members": "own-parts",
            "train_holdout": 0,
            "ensemble_balance": balance,
        },
    )


def test_a_study_balances_its_ensemble_and_its_pick_carries_the_priors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records: dict[bool, dict[str, Any]] = {}
    for balance in (False, True):
        study = _study(tmp_path / str(balance), balance)
        record = study.run().selection
        assert record is not None and record["settings"]["ensemble_balance"] is balance
        records[balance] = record
        # made again on the stored search: the same pick, nothing scored
        assert study.run().selection == {**record, "forward_passes": 0}
    rows = {
        balance: next(r for r in record["candidates"] if r["kind"] == "ensemble")
        for balance, record in records.items()
    }
    # as it is, the ensemble predicts as the sure seed prompt does, and fails
    assert rows[False]["confirm_score"] == 0.5 and not rows[False]["supported"]
    assert "priors" not in records[False]["ensemble"]["body"]
    # balanced, the seed's vote is even and its partner decides: right everywhere
    assert rows[True]["confirm_score"] == 1.0 and rows[True]["supported"]
    assert (
        rows[True]["text"] == "ensemble of 3 (balanced)" and rows[False]["text"] == "ensemble of 3"
    )
    body = records[True]["ensemble"]["body"]
    assert records[True]["pick"] == records[True]["ensemble"]["key"]
    # the priors come from the search part: the seed's (the last member) sure of "0"
    assert len(body["priors"]) == 3
    assert body["priors"][2] == pytest.approx({"0": 0.95, "1": 0.05})
    picked = PromptEnsemble.from_dict(body)
    assert picked.content_hash == records[True]["pick"]
    # exported whole, with its priors
    db = f"sqlite:///{tmp_path / 'True' / 'bal.db'}"
    assert main(["export", "--study", "bal", "--storage", db]) == 0
    assert PromptEnsemble.from_dict(json.loads(capsys.readouterr().out)["prompt"]) == picked
    # on test (never seen), the pick votes with the stored priors
    study = _study(tmp_path / "again", True)
    study.run()
    report = evaluate_held_out(study.storage, "bal", study.task, study.scorer)
    assert report.pick is not None and report.pick.kind == "ensemble"
    assert report.pick.test.estimate == 1.0  # as it is, 0.5: the seed's vote

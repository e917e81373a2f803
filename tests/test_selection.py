"""Selection that generalizes: the settings, the dev split, tie-breaks, the stored pick
and the ensemble candidate (fast: a fake scorer with known per-example answers).  The
paired tests themselves: test_challenger_tests.py."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from promptsearch.errors import ConfigError, StudyConflictError
from promptsearch.prompt import Prompt
from promptsearch.searchers.manual import ManualSearcher
from promptsearch.storage import open_storage
from promptsearch.study.ensemble import PromptEnsemble, vote_labels
from promptsearch.study.loop import Study
from promptsearch.study.selection import (
    Selection,
    split_dev,
)
from promptsearch.task import Example, Task
from promptsearch.testing.fakes import FakeModel, FakeReport, FakeResult
from promptsearch.testing.searchers import contract_task_with_dev


def _task(n_dev: int = 24) -> Task:
    return contract_task_with_dev(n_dev)


@dataclass
class RuleScorer:
    """Each prompt's answers come from a rule on its template and the example number:
    ``rules[template](i) -> (correct, gold probability)``."""

    rules: Mapping[str, object]
    model: FakeModel = field(default_factory=FakeModel)
    calls: int = 0

    @property
    def fingerprint(self) -> str:
        return "r" * 64

    def score(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> FakeReport:
        self.calls += 1
        rule = self.rules.get(prompt.template, _coin)
        results = []
        for example in examples:
            i = int(example.id.split("-")[1])
            correct, p_gold = rule(i)  # type: ignore[operator]
            other = "0" if example.target == "1" else "1"
            prediction = example.target if correct else other
            results.append(
                FakeResult(
                    example.id,
                    prediction,
                    correct,
                    float(correct),
                    label_logprobs={example.target: math.log(p_gold), other: math.log(1 - p_gold)},
                )
            )
        return FakeReport(results, len(examples))


SEEDS = (
    "Review: {sentence}\nSentiment: {answer}",
    "{sentence} It was {answer}.",
    "Review: {sentence}\nSentiment: {answer}",
)


def _study(tmp: Path, rules: Mapping[str, object], prompts: Sequence[str], **kw: object) -> Study:
    task = _task(int(kw.pop("n_dev", 24)))  # type: ignore[call-overload]
    storage = open_storage(f"sqlite:///{tmp / 'sel.db'}")
    searcher = ManualSearcher(prompts=list(prompts))
    selection = kw.pop("selection", True)
    # the rules' templates ("A {sentence} {answer}") are not made of the task's own
    # parts: the ensemble is of the best prompts of all, as before the default became
    # "own-parts" (tests/test_train_confirm.py tests that one)
    if selection is True:
        selection = {"ensemble_members": "top"}
    elif isinstance(selection, dict):
        selection = {"ensemble_members": "top", **selection}
    return Study(
        "sel",
        task,
        RuleScorer(rules),
        [searcher],
        50,
        storage,
        progress=False,
        selection=selection,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


# -- settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"confirm_fraction": 1.0}, "selection.confirm_fraction must be a number between 0"),
        ({"confirm_fraction": "half"}, "selection.confirm_fraction must be a number between 0"),
        ({"top_k": 0}, "selection.top_k must be a whole number ≥ 1"),
        ({"alpha": 0}, "selection.alpha must be a number between 0 and 1"),
        ({"ensemble_size": -1}, "selection.ensemble_size must be a whole number ≥ 0"),
        ({"tpo_k": 3}, "selection has unknown field(s) ['tpo_k']"),
        ({"procedure": "bonferroni"}, "selection.procedure must be one of sequence, fallback"),
        ({"order": "middle"}, "selection.order must be one of ensemble-first, ensemble-last"),
        ({"tests": "gold"}, "selection.tests must be one of sign+gold, sign; got 'gold'"),
        (
            {"ensemble_members": "best"},
            "selection.ensemble_members must be one of top, own-parts, own-ahead, "
            "own-no-trailing; got 'best'",
        ),
        (
            {"choose_by": "search"},
            "selection.choose_by must be one of all-dev, held-back; got 'search'",
        ),
    ],
)
def test_bad_settings_name_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Selection.coerce(fields)


def test_a_dev_split_too_small_to_hold_back_is_refused() -> None:
    with pytest.raises(ConfigError, match="too small to hold back a confirmation part"):
        Selection().check_dev(6)
    assert Selection().fits(8)


def test_a_small_confirmation_part_is_announced_as_the_search_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from promptsearch.api import choose_selection
    from promptsearch.study.selection import SMALL_CONFIRMATION

    def announced(n_dev: int, selection: bool) -> list[str]:
        folder = tmp_path / f"{n_dev}-{selection}"
        folder.mkdir()
        assert choose_selection(selection, _task(n_dev)) == (Selection() if selection else None)
        study = _study(folder, {SEEDS[0]: _coin}, [SEEDS[0]], n_dev=n_dev, selection=selection)
        caplog.clear()
        with caplog.at_level("WARNING", logger="promptsearch"):
            study.run()
        return [r.getMessage() for r in caplog.records if "held back" in r.getMessage()]

    # by default half of train is held back too where fewer than 40 dev examples are,
    # and counts towards the 40
    n_train = len(_task().train)
    held = Selection().for_dev(8).held_train_size(n_train)
    assert held == n_train // 2
    n_dev = 2 * (SMALL_CONFIRMATION - held) - 2
    assert announced(n_dev, True) == [
        f"task 'contract-sentiment': {n_dev // 2} of its {n_dev} dev examples and {held} of "
        f"its {n_train} train examples are held back to confirm the pick; so few confirm "
        "only large gains (a smaller one keeps your best seed prompt); a larger dev split "
        "(--dev-size N, dev_size=N), where the task has the data, tells smaller ones"
    ]
    assert announced(2 * (SMALL_CONFIRMATION - held), True) == []
    assert announced(8, False) == []


# -- the split ---------------------------------------------------------------------------


def test_split_is_stratified_disjoint_and_seeded() -> None:
    dev = _task(30).dev
    search, confirm = split_dev(dev, Selection(), stratify=True)
    assert len(confirm) == 15 and len(search) == 15
    assert {e.id for e in search}.isdisjoint(e.id for e in confirm)
    assert {e.id for e in search} | {e.id for e in confirm} == {e.id for e in dev}
    for part in (search, confirm):
        counts = [sum(e.target == label for e in part) for label in ("0", "1")]
        assert abs(counts[0] - counts[1]) <= 1
    again = split_dev(dev, Selection(), stratify=True)
    assert again == (search, confirm)
    other = split_dev(dev, Selection(seed=1), stratify=True)
    assert other[1] != confirm


# -- ensembles ------------------------------------------------------------------------------


def test_vote_averages_normalised_probabilities() -> None:
    label, mean = vote_labels(
        ["0", "1"], [{"0": 0.9, "1": 0.1}, {"0": 0.2, "1": 0.8}, {"0": 0.3, "1": 0.7}]
    )
    assert label == "1" and mean["1"] == pytest.approx(1.6 / 3)
    assert vote_labels(["0", "1"], [{"0": 0.5, "1": 0.5}])[0] == "0"  # ties: first label


def test_ensemble_round_trips_and_refuses_one_member() -> None:
    members = (Prompt(SEEDS[0]), Prompt(SEEDS[1]))
    ensemble = PromptEnsemble(members)
    assert PromptEnsemble.from_dict(ensemble.to_dict()) == ensemble
    assert ensemble.content_hash != members[0].content_hash
    with pytest.raises(ConfigError, match="at least 2 member prompts"):
        PromptEnsemble(members[:1])


# -- the study --------------------------------------------------------------------------------


def _coin(i: int) -> tuple[bool, float]:
    return i % 2 == 0, 0.55 if i % 2 == 0 else 0.45


def _great(i: int) -> tuple[bool, float]:
    return True, 0.9


def test_searchers_and_trials_see_only_the_search_part(tmp_path: Path) -> None:
    study = _study(
        tmp_path,
        {SEEDS[0]: _coin, "A {sentence} {answer}": _great},
        [SEEDS[0], "A {sentence} {answer}"],
    )
    result = study.run()
    trials = study.storage.trials("sel")
    assert {t.n_examples for t in trials} == {12}
    searched = {e.id for e in study.search_task.dev}
    assert searched.isdisjoint(e.id for e in study.confirm_examples)
    record = result.selection
    assert record is not None and record["n_confirm"] == 12 and record["n_search"] == 12


def test_a_challenger_with_evidence_replaces_the_seed(tmp_path: Path) -> None:
    rules = {SEEDS[0]: _coin, SEEDS[1]: _coin, "A {sentence} {answer}": _great}
    result = _study(tmp_path, rules, [*SEEDS[:2], "A {sentence} {answer}"]).run()
    best = result.best
    assert best is not None and best.replaced_seed
    assert isinstance(best.prompt, Prompt) and best.prompt.template == "A {sentence} {answer}"
    assert best.confirm_score == 1.0


def test_the_incumbent_is_the_best_seed_prompt_on_all_of_dev(tmp_path: Path) -> None:
    task = _task(24)
    _, confirm = split_dev(task.dev, Selection(), stratify=True)
    held = {int(e.id.split("-")[1]) for e in confirm}
    searched = sorted(set(range(24)) - held)
    # the first seed: right on every searched example, wrong on every held-back one
    # (12 of 24); the second: wrong on 4 searched examples only (20 of 24)
    lucky, steady = "Lucky: {sentence} {answer}", "Steady: {sentence} {answer}"
    rules = {
        lucky: lambda i: (i not in held, 0.9 if i not in held else 0.1),
        steady: lambda i: (i not in searched[:4], 0.8 if i not in searched[:4] else 0.3),
    }
    task = replace(task, seed_prompts=(Prompt(lucky), Prompt(steady)))
    storage = open_storage(f"sqlite:///{tmp_path / 'sel.db'}")
    study = Study(
        "sel",
        task,
        RuleScorer(rules),
        [ManualSearcher()],
        10,
        storage,
        progress=False,
        selection=True,
    )
    record = study.run().selection
    assert record is not None
    steady_key = Prompt(steady).resolve(task).content_hash
    assert record["incumbent"] == steady_key and record["pick"] == steady_key
    incumbent = record["candidates"][0]
    assert incumbent["search_score"] == pytest.approx(8 / 12)
    assert incumbent["pooled_score"] == pytest.approx(20 / 24)


def test_a_lucky_dev_winner_does_not_replace_the_seed(tmp_path: Path) -> None:
    rules: dict[str, object] = {SEEDS[0]: _coin}
    study = _study(tmp_path, rules, [SEEDS[0], "B {sentence} {answer}"])
    # better on the search part only: right where the seed prompt is, and on the
    # searched dev examples numbered past every train example (train and dev share
    # numbers below 16); elsewhere, on the held-back dev and train examples, the same
    lucky_on = {
        int(e.id.split("-")[1]) for e in study.search_task.dev if int(e.id.split("-")[1]) >= 16
    }
    assert any(i % 2 for i in lucky_on)

    def lucky(i: int) -> tuple[bool, float]:
        right = i % 2 == 0 or i in lucky_on
        return right, 0.6 if right else 0.4

    rules["B {sentence} {answer}"] = lucky
    result = study.run()
    best = result.best
    assert best is not None and not best.replaced_seed
    assert isinstance(best.prompt, Prompt) and best.prompt.template == SEEDS[0]
    rows = {row["key"]: row for row in result.selection["candidates"]}  # type: ignore[index]
    assert not rows[Prompt("B {sentence} {answer}").resolve(study.task).content_hash]["supported"]


def test_ties_on_dev_are_broken_by_the_gold_probability(tmp_path: Path) -> None:
    def confident(i: int) -> tuple[bool, float]:
        return _coin(i)[0], 0.8 if i % 2 == 0 else 0.4

    rules = {SEEDS[0]: _coin, "C {sentence} {answer}": confident}
    study = _study(tmp_path, rules, [SEEDS[0], "C {sentence} {answer}"], selection=False)
    study.run()
    rows = study.storage.leaderboard("sel")
    assert rows[0].dev_score == rows[1].dev_score
    assert rows[0].text.startswith("C ") and rows[0].dev_tiebreak > rows[1].dev_tiebreak  # type: ignore[operator]


def test_the_ensemble_is_a_candidate_and_can_be_the_pick(tmp_path: Path) -> None:
    # three prompts, each wrong on a different third of the examples: their vote is right
    def third(k: int):
        def rule(i: int) -> tuple[bool, float]:
            return (i % 3 != k), (0.9 if i % 3 != k else 0.4)

        return rule

    templates = ["D {sentence} {answer}", "E {sentence} {answer}", "F {sentence} {answer}"]
    rules: dict[str, object] = {SEEDS[0]: _coin}
    rules.update({t: third(k) for k, t in enumerate(templates)})
    result = _study(tmp_path, rules, [SEEDS[0], *templates], n_dev=40).run()
    record = result.selection
    assert record is not None and record["ensemble"] is not None
    ensemble_row = next(r for r in record["candidates"] if r["kind"] == "ensemble")
    assert ensemble_row["confirm_score"] == 1.0
    best = result.best
    assert best is not None and isinstance(best.prompt, PromptEnsemble)
    assert best.searcher == "ensemble" and len(best.prompt.members) == 3
    assert ensemble_row["order"] == 1
    # tested after the prompts instead: the same candidates, the ensemble last
    last = _study(tmp_path, rules, [SEEDS[0], *templates], n_dev=40,
                  selection={"order": "ensemble-last"}).run().selection  # fmt: skip
    assert last is not None
    orders = {r["kind"]: r["order"] for r in last["candidates"] if r["role"] == "challenger"}
    assert orders["ensemble"] == max(r.get("order", 0) for r in last["candidates"])


def test_resuming_gives_the_same_pick_and_other_settings_are_refused(tmp_path: Path) -> None:
    rules = {SEEDS[0]: _coin, SEEDS[1]: _coin, "A {sentence} {answer}": _great}
    prompts = [*SEEDS[:2], "A {sentence} {answer}"]
    first = _study(tmp_path, rules, prompts).run().selection
    again = _study(tmp_path, rules, prompts).run().selection
    assert first is not None and again is not None
    assert again["forward_passes"] == 0  # the confirmation scores came from the cache
    assert {**first, "forward_passes": 0} == again
    with pytest.raises(StudyConflictError, match="already exists with selection"):
        _study(tmp_path, rules, prompts, selection={"confirm_fraction": 0.25})._record()
    with pytest.raises(StudyConflictError, match="already exists with selection"):
        _study(tmp_path, rules, prompts, selection=False)._record()
    # the settings of the pick alone may change: the resumed run picks again with them
    strict = _study(tmp_path, rules, prompts, selection={"alpha": 0.01, "procedure": "holm"})
    picked = strict.run().selection
    assert picked is not None and picked["settings"]["procedure"] == "holm"
    assert picked["settings"]["alpha"] == 0.01
    fallback = _study(tmp_path, rules, prompts, selection={"procedure": "fallback"})
    picked = fallback.run().selection
    assert picked is not None and picked["settings"]["procedure"] == "fallback"
    assert picked["forward_passes"] == 0 and picked["pick"] == first["pick"]


def test_explicit_settings_must_fit_the_dev_split(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too small to hold back"):
        _study(tmp_path, {SEEDS[0]: _coin}, [SEEDS[0]], n_dev=6)


def test_replace_keeps_the_task_frozen() -> None:
    task = _task(10)
    assert replace(task, dev=task.dev[:5]).dev == task.dev[:5]


def test_the_report_shows_the_pick(tmp_path: Path) -> None:
    from promptsearch.report.page import build_report

    rules = {SEEDS[0]: _coin, SEEDS[1]: _coin, "A {sentence} {answer}": _great}
    study = _study(tmp_path, rules, [*SEEDS[:2], "A {sentence} {answer}"])
    study.run()
    page = build_report(study.storage, "sel", task=study.task)
    assert "the pick" in page and "beat the best seed prompt there" in page
    assert "held-back 1.000 on 12" in page

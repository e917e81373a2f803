"""The best seed prompt, balanced: its label probabilities divided by its mean label
distribution on the search part (a one-prompt ensemble with its prior), tested first
where the search part says it helps.  Unit tests of the one-member vote, and a study
whose pick, resume, export and held-out evaluation use the stored prior (fast: the
rule scorer of test_selection)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_ensemble_balance import one_seed_task
from test_selection import SEEDS, RuleScorer

from promptsearch.cli import main
from promptsearch.errors import ConfigError
from promptsearch.evaluation.heldout import evaluate_held_out
from promptsearch.prompt import Prompt
from promptsearch.searchers.manual import ManualSearcher
from promptsearch.storage import open_storage
from promptsearch.study.ensemble import PromptEnsemble
from promptsearch.study.loop import Study
from promptsearch.study.selection import Selection

SEED = Prompt(SEEDS[0])


def test_one_prompt_with_its_prior_is_a_balanced_prompt() -> None:
    with pytest.raises(ConfigError, match="at least 2 member prompts, or 1 with its prior"):
        PromptEnsemble((SEED,))
    one = PromptEnsemble((SEED,), ({"0": 0.8, "1": 0.2},))
    assert one.describe() == f"balanced: {SEED.describe()}"
    assert PromptEnsemble.from_dict(one.to_dict()) == one
    assert one.content_hash != SEED.content_hash
    with pytest.raises(ConfigError, match=r"selection\.balanced_seed must be true or false"):
        Selection(balanced_seed="on")  # type: ignore[arg-type]


def _leans_to_zero(i: int) -> tuple[bool, float]:
    # right on every "0" (gold probability 0.95); on every "1" wrong but less sure
    # (gold probability 0.4, against 0.05 on a "0"): divided by its lean, right everywhere
    return (True, 0.95) if i % 2 == 0 else (False, 0.4)


def _right(i: int) -> tuple[bool, float]:
    return True, 0.9


def _study(folder: Path, rule: Any, balanced_seed: bool) -> Study:
    task = one_seed_task()
    folder.mkdir()
    return Study(
        "bal",
        task,
        RuleScorer({SEEDS[0]: rule}),
        [ManualSearcher(prompts=[SEEDS[0]])],
        4,
        open_storage(f"sqlite:///{folder / 'bal.db'}"),
        progress=False,
        selection={"train_holdout": 0, "balanced_seed": balanced_seed},
    )


def test_a_study_hands_back_the_balanced_seed_prompt_with_its_prior(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    off = _study(tmp_path / "off", _leans_to_zero, False).run().selection
    assert off is not None and off["balanced_seed"] is None and not off["replaced_incumbent"]
    assert all(r["kind"] == "prompt" for r in off["candidates"])
    study = _study(tmp_path / "on", _leans_to_zero, True)
    record = study.run().selection
    assert record is not None and record["settings"]["balanced_seed"] is True
    stored = record["balanced_seed"]
    assert record["pick"] == stored["key"] and record["pick_kind"] == "balanced"
    assert stored["members"] == [record["incumbent"]]
    row = next(r for r in record["candidates"] if r["key"] == stored["key"])
    assert row["kind"] == "balanced" and row["supported"]
    assert row["text"] == f"balanced: {SEED.resolve(study.task).describe()}"
    assert row["search_score"] == 1.0 and row["confirm_score"] == 1.0
    # the prior comes from the search part: 0.95 / 0.6 for "0" on the two labels' halves
    picked = PromptEnsemble.from_dict(stored["body"])
    assert picked.content_hash == record["pick"] and len(picked.members) == 1
    assert picked.priors is not None
    assert picked.priors[0] == pytest.approx({"0": 0.775, "1": 0.225})
    # made again on the stored search: the same pick, nothing scored
    again = study.run()
    assert again.selection == {**record, "forward_passes": 0}
    best = again.best
    assert best is not None and best.searcher == "seed, balanced" and best.prompt == picked
    db = f"sqlite:///{tmp_path / 'on' / 'bal.db'}"
    assert main(["export", "--study", "bal", "--storage", db]) == 0
    assert PromptEnsemble.from_dict(json.loads(capsys.readouterr().out)["prompt"]) == picked
    # on test (never seen), the pick votes with the stored prior: the seed alone 0.5
    report = evaluate_held_out(study.storage, "bal", study.task, study.scorer)
    assert report.pick is not None and report.pick.kind == "balanced"
    assert report.pick.test.estimate == 1.0


def test_a_balanced_seed_prompt_no_better_on_the_search_part_is_not_tested(
    tmp_path: Path,
) -> None:
    record = _study(tmp_path / "even", _right, True).run().selection
    assert record is not None and record["balanced_seed"] is None
    assert all(r["kind"] != "balanced" for r in record["candidates"])
    assert record["pick"] == record["incumbent"]

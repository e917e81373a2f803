"""Train examples hidden from the searchers (``Selection.train_holdout``): the split of
train, what the searchers see, which examples test which challenger in the final pick,
and resuming (fast: the rule scorer of test_selection)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from test_selection import SEEDS, RuleScorer, _coin

from promptsearch.errors import ConfigError, StudyConflictError
from promptsearch.prompt import Prompt
from promptsearch.searchers.base import SearchContext
from promptsearch.searchers.manual import ManualSearcher
from promptsearch.storage import open_storage
from promptsearch.study.loop import Study
from promptsearch.study.selection import Selection, split_train
from promptsearch.study.train_confirm import OwnParts, TrainEvidence
from promptsearch.task import Example
from promptsearch.testing.searchers import contract_task, contract_task_with_dev

FITTED = "A {sentence} {answer}"  # not made of the task's own parts


def test_split_train_is_stratified_seeded_capped_and_in_train_order() -> None:
    train = contract_task().train  # 16 examples, 8 of each label
    seen, held = split_train(train, Selection(train_holdout=0.5), stratify=True)
    assert len(held) == 8 and Counter(e.target for e in held) == {"0": 4, "1": 4}
    assert ids(seen) | ids(held) == ids(train) and not ids(seen) & ids(held)
    assert [train.index(e) for e in held] == sorted(train.index(e) for e in held)
    assert split_train(train, Selection(train_holdout=0.5), stratify=True) == (seen, held)
    others = [split_train(train, Selection(train_holdout=0.5, seed=s), stratify=True)[1]
              for s in range(1, 6)]  # fmt: skip
    assert any(ids(other) != ids(held) for other in others)
    # confirm_train caps what is held back; 0 holds back nothing
    assert (
        len(split_train(train, Selection(train_holdout=0.5, confirm_train=3), stratify=True)[1])
        == 3
    )
    assert split_train(train, Selection(train_holdout=0), stratify=True) == (train, ())
    # the default, "auto": half where fewer than 40 dev examples are held back, else none
    assert split_train(train, Selection().for_dev(32), stratify=True) == (seen, held)
    assert split_train(train, Selection().for_dev(200), stratify=True) == (train, ())
    with pytest.raises(ConfigError, match=r"train_holdout 'auto' depends on the dev split"):
        split_train(train, Selection(), stratify=True)
    assert split_train((), Selection(train_holdout=0.5), stratify=True) == ((), ())
    # a share that rounds to all of train leaves the searchers one example
    assert len(split_train(train, Selection(train_holdout=0.99), stratify=True)[0]) == 1


def test_a_bad_train_holdout_names_the_field() -> None:
    for value in (-0.1, 1, 1.5, True, "half", "Auto"):
        with pytest.raises(
            ConfigError, match=r"selection.train_holdout must be 'auto' or a number from 0"
        ):
            Selection(train_holdout=value)


def test_held_back_train_tests_every_prompt_less_its_demonstrations() -> None:
    task = contract_task()
    seen, held = split_train(task.train, Selection(train_holdout=0.5), stratify=True)
    seed = task.seed_prompts[0].resolve(task)
    fitted = replace(seed, verbalizer={"0": ("worse",), "1": ("pioneered",)})
    evidence = TrainEvidence(OwnParts(task, None), held, seen[:3], on_dev={held[0].id})
    # an id alone is not an example key: nothing of held is dropped
    assert evidence.held == held and evidence.examples([seed, fitted]) == list(held)
    assert evidence.examples([seed]) == [*evidence.held, *seen[:3]]
    shown = replace(fitted, demonstrations=(held[1],))
    assert held[1].id not in ids(evidence.examples([shown, seed]))
    # a train example that is on dev too counts once, on dev
    dev_copy = TrainEvidence(OwnParts(task, None), held, (), on_dev={_key(held[2])})
    assert held[2].id not in ids(dev_copy.held)


def ids(examples: tuple[Example, ...] | list[Example]) -> set[str]:
    return {e.id for e in examples}


def _key(example: Example) -> str:
    from promptsearch.study.support import example_key

    return example_key(example)


class _Recording(ManualSearcher):
    seen: tuple[Example, ...] = ()

    def setup(self, context: SearchContext) -> None:
        super().setup(context)
        type(self).seen = context.task.train


def _study(folder: Path, holdout: float | str, *, name: str = "held", n_dev: int = 8) -> Study:
    # 8 dev examples, 4 held back: too few to confirm a gain on their own
    task = contract_task_with_dev(n_dev)
    rules = {SEEDS[0]: _coin, FITTED: lambda i: (True, 0.9)}
    return Study(
        name,
        task,
        RuleScorer(rules),
        [_Recording(prompts=[SEEDS[0], FITTED])],
        20,
        open_storage(f"sqlite:///{folder / 'held.db'}"),
        progress=False,
        selection={"train_holdout": holdout, "ensemble_size": 0},
    )


def test_searchers_never_see_the_held_back_train_examples_which_confirm_any_prompt(
    tmp_path: Path,
) -> None:
    study = _study(tmp_path, 0.5)
    record = study.run().selection
    assert record is not None and len(study.held_train) == 8
    assert len(_Recording.seen) == 8 and not ids(_Recording.seen) & ids(study.held_train)
    assert record["settings"]["train_holdout"] == 0.5 and record["n_held_train"] == 8
    key = Prompt(FITTED).resolve(study.task).content_hash
    row = next(r for r in record["candidates"] if r["key"] == key)
    # not made of the task's own parts, yet tested on the 8 hidden train examples too
    assert (row["n_train"], row["n_tested"]) == (8, 12)
    assert row["supported"] and record["pick"] == key
    # those 12 are what every challenger is tested on: its held-back score
    assert row["held_score"] == row["tested_score"] == 1.0
    # without the hold-out the same prompt has the 4 held-back dev examples alone
    folder = tmp_path / "off"
    folder.mkdir()
    off = _study(folder, 0.0).run().selection
    assert off is not None and off["pick"] == off["incumbent"] and off["n_held_train"] == 0
    assert len(_Recording.seen) == 16


def test_a_study_resumes_only_with_the_same_train_holdout(tmp_path: Path) -> None:
    _study(tmp_path, 0.5).run()
    with pytest.raises(StudyConflictError, match=r"resume it with --train-holdout 0.5"):
        _study(tmp_path, 0.0).run()
    # a study stored before the setting existed held back nothing: it resumes with 0
    folder = tmp_path / "legacy"
    folder.mkdir()
    _study(folder, 0.0, name="legacy").run()
    with sqlite3.connect(folder / "held.db") as db:
        (config,) = db.execute("SELECT config FROM studies WHERE name = 'legacy'").fetchone()
        config = json.loads(config)
        del config["selection"]["train_holdout"]
        db.execute("UPDATE studies SET config = ? WHERE name = 'legacy'", (json.dumps(config),))
    assert _study(folder, 0.0, name="legacy").run().selection is not None
    with pytest.raises(StudyConflictError, match=r"resume it with --train-holdout 0.0"):
        _study(folder, 0.5, name="legacy").run()


def test_auto_holds_back_half_of_train_only_where_few_dev_examples_are_held_back(
    tmp_path: Path,
) -> None:
    for n_dev, share, n_held in ((78, 0.5, 8), (80, 0.0, 0)):  # 39 and 40 held back
        folder = tmp_path / str(n_dev)
        folder.mkdir()
        study = _study(folder, "auto", n_dev=n_dev)
        assert study.selection is not None and study.selection.train_holdout == share
        record = study.run().selection
        assert record is not None and record["n_held_train"] == n_held
        # the share is what is stored: the study resumes with "auto" or the number
        assert record["settings"]["train_holdout"] == share
        assert _study(folder, "auto", n_dev=n_dev).run().selection == {
            **record,
            "forward_passes": 0,
        }
        assert _study(folder, share, n_dev=n_dev).run().selection is not None
    # a study that held back half on a large dev split (the default of sessions 33-34)
    folder = tmp_path / "before"
    folder.mkdir()
    _study(folder, 0.5, n_dev=80).run()
    with pytest.raises(StudyConflictError, match=r"resume it with --train-holdout 0.5"):
        _study(folder, "auto", n_dev=80).run()

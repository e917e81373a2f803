"""Train examples in the final pick's tests: which candidates may be tested on train
(those made of the task's own parts), which train examples (a seeded sample, less the
demonstrations shown), and what it changes in a study's pick (fast: the rule scorer of
test_selection)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from test_selection import SEEDS, RuleScorer, _coin

from promptsearch.errors import ConfigError
from promptsearch.prompt import Prompt
from promptsearch.searchers.manual import ManualSearcher
from promptsearch.storage import open_storage
from promptsearch.study.final_pick import sequence_order
from promptsearch.study.loop import Study
from promptsearch.study.selection import Challenger, Selection, decide
from promptsearch.study.train_confirm import OwnParts, train_sample
from promptsearch.testing.searchers import contract_task, contract_task_with_dev

CHAT = ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n")
IO = "Input: {sentence}\nOutput: {answer}"


def test_train_sample_is_seeded_in_train_order_and_bounded() -> None:
    train = contract_task().train
    assert train_sample(train, 0, 0) == ()
    assert train_sample(train, 100, 0) == train
    first = train_sample(train, 5, 0)
    assert len(first) == 5 and first == train_sample(train, 5, 0)
    assert [train.index(e) for e in first] == sorted(train.index(e) for e in first)
    assert any(train_sample(train, 5, s) != first for s in range(1, 6))


def test_prompts_of_the_task_own_parts_are_recognised() -> None:
    task = contract_task()
    own = OwnParts(task, CHAT)
    seed = task.seed_prompts[0].resolve(task)
    demo = task.train[3]
    made_of_own = [
        seed,
        replace(seed, demonstrations=(demo,), separator=" ", calibrate=True),
        # another seed's template with the task's words, a seed's instruction
        replace(seed, template="{sentence} It was {answer}.", instruction=""),
        replace(seed, instruction="Classify the sentiment of the review."),
        # the plain format, its one-line form, the chat form of a seed template
        replace(seed, template=IO),
        replace(seed, template="Input: {sentence} Output: {answer}"),
        replace(seed, template=f"{CHAT[0]}Review: {{sentence}}{CHAT[1]}Sentiment: {{answer}}"),
        # an instruction written from the task's label words; a seed's own words
        replace(seed, instruction="Classify the sentence as negative or positive."),
        replace(seed, verbalizer={"0": ("terrible",), "1": ("great",)}),
    ]
    assert all(own(p) for p in made_of_own)
    fitted_or_new = [
        replace(seed, verbalizer={"0": ("worse",), "1": ("pioneered",)}),  # label-words
        replace(seed, template="Review: {sentence} wonderful Atlas\nSentiment: {answer}"),
        replace(seed, instruction="Decide if the critic liked it."),  # a generator's
    ]
    assert not any(own(p) for p in fitted_or_new)
    assert not OwnParts(task, None)(made_of_own[6])  # no chat template: no chat form


def test_the_examples_of_a_pair_leave_out_both_demonstrations() -> None:
    task = contract_task()
    own = OwnParts(task, None)
    seed = task.seed_prompts[0].resolve(task)
    pool = task.train
    shown = replace(seed, demonstrations=(pool[0], pool[5]))
    other = replace(seed, template=IO, demonstrations=(pool[5], pool[9]))
    examples = own.examples(pool, [shown, other])
    assert [e.id for e in pool if e not in examples] == ["train-0", "train-5", "train-9"]
    fitted = replace(seed, verbalizer={"0": ("worse",), "1": ("pioneered",)})
    assert own.examples(pool, [seed, fitted]) == []
    assert own.examples((), [seed]) == []


def test_a_bad_confirm_train_names_the_field() -> None:
    for value in (-1, 2.5, True, "all"):
        with pytest.raises(
            ConfigError, match=r"selection.confirm_train must be a whole number ≥ 0"
        ):
            Selection(confirm_train=value)  # type: ignore[arg-type]


def _challenger(key: str, per: list[float], **kw: object) -> Challenger:
    score = sum(per) / len(per)
    return Challenger(key, "prompt", score, score, score, None, tuple(per), **kw)  # type: ignore[arg-type]


def test_each_order_is_read_off_the_search_part_and_the_example_counts() -> None:
    incumbent = replace(_challenger("seed", [1.0, 0.0]), search_score=0.75)
    ensemble = replace(_challenger("ensemble", [1.0, 1.0]), kind="ensemble", search_score=0.5)
    level = replace(_challenger("a", [1.0]), search_score=0.75)
    behind = replace(_challenger("b", [1.0] * 4), search_score=0.6)

    def keys(order: str, first: Challenger = ensemble) -> list[str]:
        return [c.key for c in sequence_order([level, behind], first, incumbent, order)]

    assert keys("ensemble-first") == ["ensemble", "a", "b"]
    assert keys("ensemble-last") == ["a", "b", "ensemble"]
    assert keys("most-examples") == ["b", "ensemble", "a"]  # tested on 4, 2, 1
    # an ensemble behind the incumbent on the search part no longer ends the sequence
    # before the prompts level with it are tested; one ahead of it still comes first
    assert keys("ahead-first") == ["a", "ensemble", "b"]
    assert keys("ahead-first", replace(ensemble, search_score=0.8)) == ["ensemble", "a", "b"]
    assert [c.key for c in sequence_order([behind], None, incumbent, "ahead-first")] == ["b"]


def test_choose_by_held_back_picks_the_best_on_the_examples_all_were_tested_on() -> None:
    incumbent = _challenger("seed", [0.0] * 8)
    # both pass; "lucky" leads on all of dev (its search part), "steady" on the held-back
    # examples every challenger is tested on
    lucky = replace(_challenger("lucky", [1.0] * 6 + [0.0] * 2), pooled_score=0.9)
    steady = replace(_challenger("steady", [1.0] * 8), pooled_score=0.8, held_score=1.0)
    assert decide(incumbent, [lucky, steady], 0.1)[0] == "lucky"
    pick, rows = decide(incumbent, [lucky, steady], 0.1, choose_by="held-back")
    assert pick == "steady"
    assert [row["held_score"] for row in rows] == [0.0, 0.75, 1.0]
    with pytest.raises(ConfigError, match="choose_by must be one of all-dev, held-back"):
        decide(incumbent, [lucky], 0.1, choose_by="search")


def test_decide_tests_a_challenger_against_the_incumbent_on_its_own_examples() -> None:
    incumbent = _challenger("seed", [1.0, 0.0, 1.0, 0.0])
    # 4 held-back examples: 2 won, none lost, not enough alone (sign p 0.25)
    alone = _challenger("new", [1.0, 1.0, 1.0, 1.0])
    pick, rows = decide(incumbent, [alone], 0.1)
    assert pick == "seed" and rows[1]["n_train"] == 0 and rows[1]["n_tested"] == 4
    # the same, tested on 8 train examples too, where the incumbent is right on half
    baseline = _challenger("seed", [1.0, 0.0, 1.0, 0.0] + [1.0, 0.0] * 4)
    widened = replace(
        _challenger("new", [1.0] * 12),
        n_train=8,
        baseline=baseline,
        confirm_score=1.0,
    )
    pick, rows = decide(incumbent, [widened], 0.1)
    assert pick == "new"
    row = rows[1]
    assert (row["wins"], row["losses"], row["n_tested"], row["n_train"]) == (6, 0, 12, 8)
    assert row["incumbent_tested_score"] == pytest.approx(0.5)
    assert row["confirm_score"] == 1.0 and row["tested_score"] == 1.0
    # worse than the incumbent over its examples: not supported, whatever else
    worse = replace(widened, tested_score=0.4)
    assert decide(incumbent, [worse], 0.1)[0] == "seed"


def _great_on_odd(i: int) -> tuple[bool, float]:
    return True, 0.9 if i % 2 else 0.6


def _study(tmp: Path, prompts: list[str], confirm_train: int) -> Study:
    # 8 dev examples, 4 held back: too few to confirm a gain on their own
    task = contract_task_with_dev(8)
    rules = {SEEDS[0]: _coin, IO: _great_on_odd, "A {sentence} {answer}": _great_on_odd}
    return Study(
        "own",
        task,
        RuleScorer(rules),
        [ManualSearcher(prompts=prompts)],
        20,
        open_storage(f"sqlite:///{tmp / 'own.db'}"),
        progress=False,
        selection={"confirm_train": confirm_train, "ensemble_size": 0, "train_holdout": 0},
    )


def test_a_prompt_of_the_task_own_parts_is_confirmed_on_train_too(tmp_path: Path) -> None:
    from promptsearch.report.page import build_report

    study = _study(tmp_path, [SEEDS[0], IO], confirm_train=200)
    result = study.run()
    record = result.selection
    assert record is not None and record["n_train"] == 16
    task = contract_task_with_dev(8)
    io_key = Prompt(IO).resolve(task).content_hash
    row = next(r for r in record["candidates"] if r["key"] == io_key)
    assert (row["n_train"], row["n_tested"]) == (16, 20)
    assert row["supported"] and record["pick"] == io_key
    assert result.best is not None and result.best.replaced_seed
    # the train examples were scored once, under their own split in the cache
    assert study.run().selection == {**record, "forward_passes": 0}
    page = build_report(study.storage, "own", task=study.task)
    assert "beat the best seed prompt there and on 16 train examples" in page


def test_without_train_or_for_other_prompts_the_held_back_part_alone_decides(
    tmp_path: Path,
) -> None:
    # the same prompt with train off, and an equally good prompt not made of own parts
    for sub, prompts, confirm_train in (
        ("off", [SEEDS[0], IO], 0),
        ("other", [SEEDS[0], "A {sentence} {answer}"], 200),
    ):
        folder = tmp_path / sub
        folder.mkdir()
        record = _study(folder, prompts, confirm_train).run().selection
        assert record is not None
        challenger = next(r for r in record["candidates"] if r["role"] == "challenger")
        assert (challenger["n_train"], challenger["n_tested"]) == (0, 4)
        assert not challenger["supported"] and record["pick"] == record["incumbent"]


FITTED = "A {sentence} {answer}"  # great everywhere, not made of the task's own parts


def _three(folder: Path, selection: dict[str, object]) -> Study:
    """The seed prompt (a coin flip), FITTED (great) and the plain format (good), on
    8 dev examples (4 held back) and 16 train examples, none held back."""

    def great(i: int) -> tuple[bool, float]:
        return True, 0.95

    folder.mkdir()
    return Study(
        "own",
        contract_task_with_dev(8),
        RuleScorer({SEEDS[0]: _coin, FITTED: great, IO: _great_on_odd}),
        [ManualSearcher(prompts=[SEEDS[0], FITTED, IO])],
        20,
        open_storage(f"sqlite:///{folder / 'own.db'}"),
        progress=False,
        selection={**selection, "train_holdout": 0},
    )


def _keys() -> dict[str, str]:
    task = contract_task_with_dev(8)
    return {t: Prompt(t).resolve(task).content_hash for t in (SEEDS[0], FITTED, IO)}


def test_most_examples_first_tests_the_train_tested_candidate_before_the_others(
    tmp_path: Path,
) -> None:
    keys = _keys()
    picks = {}
    for order in ("ensemble-first", "most-examples"):
        study = _three(tmp_path / order, {"ensemble_size": 0, "order": order})
        record = study.run().selection
        assert record is not None
        first = next(r for r in record["candidates"] if r.get("order") == 1)
        picks[order] = (first["key"], record["pick"])
    # by the search part "A" comes first, fails on the 4 held-back examples and ends
    # the sequence; tested first on its 20 examples, the plain format passes
    assert picks["ensemble-first"] == (keys[FITTED], keys[SEEDS[0]])
    assert picks["most-examples"] == (keys[IO], keys[IO])


def test_an_ensemble_of_own_parts_is_tested_on_train_too(tmp_path: Path) -> None:
    keys = _keys()
    records = {}
    for members in ("top", "own-parts"):
        study = _three(tmp_path / members, {"ensemble_size": 2, "ensemble_members": members})
        record = study.run().selection
        assert record is not None and record["settings"]["ensemble_members"] == members
        records[members] = record
        # made again on the stored search, the same pick
        assert study.run().selection == {**record, "forward_passes": 0}
    # the two best by the search part: "A" (fitted on nothing known, so not own parts)
    # and the plain format; tested on the 4 held-back examples alone
    top = records["top"]
    assert top["ensemble"]["members"] == [keys[FITTED], keys[IO]]
    row = next(r for r in top["candidates"] if r["kind"] == "ensemble")
    assert (row["n_train"], row["n_tested"]) == (0, 4)
    # the best two made of the task's own parts: the plain format and the seed prompt,
    # whose vote is right everywhere, tested on the 16 train examples too, and passes
    own = records["own-parts"]
    assert own["ensemble"]["members"] == [keys[IO], keys[SEEDS[0]]]
    row = next(r for r in own["candidates"] if r["kind"] == "ensemble")
    assert (row["n_train"], row["n_tested"]) == (16, 20)
    assert row["supported"] and own["pick"] == own["ensemble"]["key"]
    # no train example is held back from the searchers: what every challenger is
    # tested on is the held-back part of dev alone
    assert row["held_score"] == row["confirm_score"]


ONE_LINE = "Input: {sentence} Output: {answer}"


def _sure(i: int) -> tuple[bool, float]:
    return True, 0.95


def _wrong(i: int) -> tuple[bool, float]:
    return False, 0.2


def test_an_ensemble_of_own_parts_ahead_leaves_out_the_incumbent_and_those_behind(
    tmp_path: Path,
) -> None:
    task = contract_task_with_dev(8)
    # all made of the task's own parts: the seed prompt (a coin flip, the incumbent),
    # two formats right everywhere, a seed's template wrong everywhere; the study
    # scores the task's other seed prompts too (the one with an instruction: a coin flip)
    templates = [SEEDS[0], IO, ONE_LINE, SEEDS[1]]
    keys = {t: Prompt(t).resolve(task).content_hash for t in templates}
    level = task.seed_prompts[2].resolve(task).content_hash
    members = {}
    for choice in ("own-parts", "own-ahead"):
        folder = tmp_path / choice
        folder.mkdir()
        study = Study(
            "own",
            task,
            RuleScorer({SEEDS[0]: _coin, IO: _great_on_odd, ONE_LINE: _sure, SEEDS[1]: _wrong}),
            [ManualSearcher(prompts=templates)],
            20,
            open_storage(f"sqlite:///{folder / 'own.db'}"),
            progress=False,
            selection={"ensemble_size": 5, "ensemble_members": choice, "train_holdout": 0},
        )
        record = study.run().selection
        assert record is not None and record["incumbent"] == keys[SEEDS[0]]
        members[choice] = record["ensemble"]["members"]
    # own-parts: the five best, the incumbent among them and one prompt wrong everywhere
    assert {keys[SEEDS[0]], keys[IO], keys[ONE_LINE], level} < set(members["own-parts"])
    # the incumbent and the prompt behind it left out; the seed level with it stays
    assert sorted(members["own-ahead"]) == sorted([keys[IO], keys[ONE_LINE], level])
    # the incumbent right everywhere: only the seed level with it is ahead, one prompt
    # makes no ensemble
    folder = tmp_path / "alone"
    folder.mkdir()
    study = Study(
        "own",
        task,
        RuleScorer({SEEDS[0]: _sure, IO: _wrong, SEEDS[1]: _wrong}),
        [ManualSearcher(prompts=[SEEDS[0], IO])],
        20,
        open_storage(f"sqlite:///{folder / 'own.db'}"),
        progress=False,
        selection={"ensemble_size": 3, "ensemble_members": "own-ahead", "train_holdout": 0},
    )
    record = study.run().selection
    assert record is not None and record["ensemble"] is None
    assert all(row["kind"] == "prompt" for row in record["candidates"])


def test_an_ensemble_of_own_parts_leaves_out_the_incumbent_only_where_it_trails(
    tmp_path: Path,
) -> None:
    # two seed prompts: the first a coin flip (the incumbent), the other wrong everywhere
    base = contract_task_with_dev(8)
    task = replace(base, seed_prompts=base.seed_prompts[:2])
    keys = {t: Prompt(t).resolve(task).content_hash for t in (SEEDS[0], IO, ONE_LINE)}
    keys[SEEDS[1]] = task.seed_prompts[1].resolve(task).content_hash  # its own label words

    def members(folder: str, templates: list[str], choice: str) -> list[str]:
        (tmp_path / folder).mkdir()
        study = Study(
            "own",
            task,
            RuleScorer({SEEDS[0]: _coin, SEEDS[1]: _wrong, IO: _great_on_odd, ONE_LINE: _sure}),
            [ManualSearcher(prompts=templates)],
            20,
            open_storage(f"sqlite:///{tmp_path / folder / 'own.db'}"),
            progress=False,
            selection={"ensemble_size": 3, "ensemble_members": choice, "train_holdout": 0},
        )
        record = study.run().selection
        assert record is not None and record["incumbent"] == keys[SEEDS[0]]
        assert record["settings"]["ensemble_members"] == choice
        return list(record["ensemble"]["members"])

    # behind both other members: left out, and the seed prompt behind it not put in
    trailing = [SEEDS[0], IO, ONE_LINE]
    assert members("a", trailing, "own-parts") == [keys[ONE_LINE], keys[IO], keys[SEEDS[0]]]
    assert members("b", trailing, "own-no-trailing") == [keys[ONE_LINE], keys[IO]]
    # ahead of a member (the seed prompt wrong everywhere): it stays, as with own-parts
    ahead = [SEEDS[0], IO]
    kept = [keys[IO], keys[SEEDS[0]], keys[SEEDS[1]]]
    assert members("c", ahead, "own-parts") == kept
    assert members("d", ahead, "own-no-trailing") == kept

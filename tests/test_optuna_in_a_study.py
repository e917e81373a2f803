"""The ``optuna`` searcher inside a real study (tiny model, SQLite): the leaderboard a
searcher sees, pools that grow from the other searchers' best prompts, resuming, and
the mirror named after the study."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from promptsearch import Prompt
from promptsearch.scoring.scorer import Scorer
from promptsearch.searchers.base import LEADERBOARD_SIZE, Candidate, ScoredPrompt, Searcher
from promptsearch.searchers.optuna_search import OptunaSearcher
from promptsearch.storage import open_storage
from promptsearch.study.loop import Study
from promptsearch.testing.searchers import LEAK_SENTINEL, contract_task, make_context
from promptsearch.testing.tiny_models import tiny_model


class SpySearcher(Searcher):
    """Proposes nothing new after its first round; records the leaderboard it sees."""

    name = "spy"

    def __init__(self) -> None:
        self.seen: list[tuple[ScoredPrompt, ...]] = []
        self.study_names: list[str] = []

    def propose(self, n: int) -> list[Candidate]:
        self.seen.append(self.ctx.leaderboard)
        self.study_names.append(self.ctx.study_name)
        return [] if len(self.seen) > 6 else [Candidate(self.ctx.task.seed_prompts[0])]


def _tiny_study(
    tmp_path: Path, searchers: Sequence[Searcher | str], budget: int, name: str = "optuna-study"
) -> Study:
    task = contract_task()
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    scorer = Scorer(tiny_model("causal", seed=0), batch_size=8)
    return Study(
        name,
        task,
        scorer,
        searchers,
        budget,
        storage,
        seed=3,
        candidates_per_round=3,
        progress=False,
    )


def test_the_study_shows_searchers_its_best_prompts(tmp_path: Path) -> None:
    spy = SpySearcher()
    study = _tiny_study(tmp_path, ["manual", "random-edit", spy], budget=14)
    study.run()
    assert set(spy.study_names) == {"optuna-study"}
    assert spy.seen[0], "manual's seed prompts were scored before the spy's first turn"
    rows = {r.content_hash: r for r in study.storage.leaderboard("optuna-study")}
    for board in spy.seen:
        assert len(board) <= LEADERBOARD_SIZE
        scores = [row.score for row in board]
        assert scores == sorted(scores, reverse=True)
        for row in board:
            assert row.content_hash == row.prompt.content_hash
            assert rows[row.content_hash].dev_score == pytest.approx(row.score)
            assert LEAK_SENTINEL not in repr(row.prompt.to_dict())
    assert {row.searcher for row in spy.seen[-1]} >= {"manual", "random-edit"}


def test_pools_grow_from_the_other_searchers_best(tmp_path: Path) -> None:
    optuna_searcher = OptunaSearcher(max_demonstrations=1)
    study = _tiny_study(tmp_path, ["manual", "random-edit", optuna_searcher], budget=24)
    initial = OptunaSearcher(max_demonstrations=1)
    initial.setup(make_context(initial, contract_task()))
    study.run()
    storage = study.storage
    space = optuna_searcher.space
    edited = [
        Prompt.from_dict(r.body)
        for r in storage.leaderboard("optuna-study")
        if r.searcher == "random-edit" and r.operation != "seed"
    ]
    assert edited, "random-edit should have scored some edits"
    new_parts = {p.template for p in edited} - set(initial.space.templates)
    new_parts |= {p.instruction for p in edited} - set(initial.space.instructions)
    grown = (set(space.templates) - set(initial.space.templates)) | (
        set(space.instructions) - set(initial.space.instructions)
    )
    assert grown, "the pools should have taken in parts of random-edit's best prompts"
    assert grown <= new_parts | {""}
    # the other searchers' scores joined the sampler's history without a trial of its own
    own = {r.content_hash for r in storage.trials("optuna-study") if r.searcher == "optuna"}
    others = {space.prompt(point).content_hash for point, _, _ in optuna_searcher.history} - own
    assert others & {r.content_hash for r in storage.trials("optuna-study")}


def test_a_resumed_study_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    def trials(folder: Path, budgets: Sequence[int]) -> list[tuple[str, str]]:
        folder.mkdir()
        for budget in budgets:
            study = _tiny_study(folder, ["manual", "random-edit", OptunaSearcher()], budget)
            study.run()
        return [(t.searcher, t.content_hash) for t in study.storage.trials("optuna-study")]

    whole = trials(tmp_path / "whole", [15])
    assert trials(tmp_path / "resumed", [7, 15]) == whole
    assert sum(searcher == "optuna" for searcher, _ in whole) >= 4


def test_pool_from_study_off_keeps_the_pools(tmp_path: Path) -> None:
    searcher = OptunaSearcher(pool_from_study=False, max_demonstrations=0)
    study = _tiny_study(tmp_path, ["manual", "random-edit", searcher], budget=14)
    before = OptunaSearcher(max_demonstrations=0)
    before.setup(make_context(before, contract_task()))
    study.run()
    assert searcher.space.templates == before.space.templates
    assert searcher.space.instructions == before.space.instructions


def test_mirror_is_named_after_the_study(tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = OptunaSearcher(mirror_storage=url, max_demonstrations=0)
    study = _tiny_study(tmp_path, [searcher], budget=6, name="mirrored-study")
    study.run()
    mirrored = optuna.load_study(study_name="mirrored-study", storage=url)
    trials = study.storage.trials("mirrored-study")
    scores = {t.content_hash: t.dev_score for t in trials}
    assert len(mirrored.get_trials()) == len(trials) == 6
    for trial in mirrored.get_trials():
        assert trial.value == pytest.approx(scores[trial.user_attrs["content_hash"]])

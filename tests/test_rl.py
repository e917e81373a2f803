"""The ``rl`` searcher: policy, reward, learning, state and resume."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from promptsearch.errors import ConfigError
from promptsearch.prompt import Prompt
from promptsearch.scoring.scorer import Scorer
from promptsearch.searchers import make_searcher
from promptsearch.searchers._tokens.rl_policy import PromptPolicy, build_mlp, normalised_rewards
from promptsearch.searchers.rl import RLSearcher, reward_gaps
from promptsearch.storage import open_storage
from promptsearch.study.loop import Study
from promptsearch.study.state_codec import decode_state, encode_state
from promptsearch.task import Task
from promptsearch.testing.searchers import contract_task, drive, make_context
from promptsearch.testing.tiny_models import tiny_model

SMALL: dict[str, Any] = {"prompts_per_step": 4, "examples_per_step": 4, "steps_per_round": 2}


def _policy(length: int = 1, seed: int = 0) -> PromptPolicy:
    model = tiny_model("causal", seed=0)
    hidden = int(model.model.get_output_embeddings().weight.shape[1])
    return PromptPolicy(model, build_mlp(hidden, 64, seed), length)


def _action_probs(policy: PromptPolicy) -> torch.Tensor:
    _, hidden = policy.sample(1, None, greedy=True)
    with torch.no_grad():
        return policy._logits(hidden[:, 0]).softmax(dim=-1)[0]


# -- the policy --------------------------------------------------------------------------------


def test_untrained_policy_is_the_lms_own_distribution_over_words() -> None:
    policy = _policy()
    model = policy.lm.model
    ids = torch.tensor([policy.context])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1, policy.action_ids].float()
    assert torch.allclose(_action_probs(policy), logits.softmax(-1), atol=1e-5)
    words = [policy.word(a) for a in range(policy.num_actions)]
    assert all(w.isascii() and w.isalpha() for w in words)


def test_sampling_is_seeded_and_greedy_is_deterministic() -> None:
    policy = _policy(length=3)
    first, _ = policy.sample(5, torch.Generator().manual_seed(4))
    second, _ = policy.sample(5, torch.Generator().manual_seed(4))
    assert torch.equal(first, second)
    assert first.shape == (5, 3)
    greedy = [policy.sample(2, None, greedy=True)[0] for _ in range(2)]
    assert torch.equal(greedy[0], greedy[1]) and torch.equal(greedy[0][0], greedy[0][1])


def test_the_probability_of_the_paying_token_rises() -> None:
    """A synthetic reward: one token pays 1, every other token 0."""
    policy = _policy(length=1, seed=1)
    optimizer = torch.optim.Adam(policy.mlp.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    before = _action_probs(policy)
    paying = int(before.argsort(descending=True)[5])  # likely enough to be sampled now and then
    for _ in range(40):
        actions, hidden = policy.sample(8, generator)
        gaps = (actions == paying).float()  # [prompts, 1 input]
        stats = policy.update(optimizer, hidden, actions, normalised_rewards(gaps), 0.0, 1.0)
        assert stats["skipped"] == 0.0 or not bool(gaps.std() > 0)
        assert math.isfinite(stats["entropy"])
    after = _action_probs(policy)
    assert after[paying] > 0.5 > before[paying] * 5, (float(before[paying]), float(after[paying]))


def test_normalised_rewards_are_z_scores_per_input() -> None:
    gaps = torch.tensor([[1.0, 5.0, 2.0], [3.0, 5.0, 2.0], [2.0, 5.0, 2.0]])
    rewards = normalised_rewards(gaps)  # input 2 and 3: no spread, no signal
    spread = math.sqrt(2 / 3)
    assert rewards.tolist() == pytest.approx([-1 / spread / 3, 1 / spread / 3, 0.0])
    assert float(rewards.sum()) == pytest.approx(0.0, abs=1e-6)


def test_a_non_finite_reward_skips_the_update() -> None:
    policy = _policy(length=2)
    optimizer = torch.optim.Adam(policy.mlp.parameters(), lr=1e-2)
    actions, hidden = policy.sample(4, torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in policy.mlp.parameters()]
    rewards = torch.tensor([float("nan"), 1.0, -1.0, 0.0])
    stats = policy.update(optimizer, hidden, actions, rewards, 0.01, 1.0)
    assert stats["skipped"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, policy.mlp.parameters(), strict=True))


# -- reward ------------------------------------------------------------------------------------


def test_reward_is_gold_minus_best_wrong_label_logprob() -> None:
    task = contract_task()
    scorer = Scorer(tiny_model("causal", seed=0), batch_size=8)
    prompts = [p.resolve(task) for p in task.seed_prompts[:2]]
    examples = list(task.train[:5])
    gaps = reward_gaps(scorer, [prompts[0], prompts[1], prompts[0]], examples, task)
    assert gaps[0] == gaps[2]
    for prompt, row in zip(prompts, gaps, strict=False):
        report = scorer.score(prompt, examples, task)
        for result, example, gap in zip(report.results, examples, row, strict=True):
            values = dict(result.label_logprobs or {})
            gold = values.pop(example.target)
            assert gap == pytest.approx(gold - max(values.values()), abs=1e-5)
            assert (gap > 0) == (result.prediction == example.target)


class PayingScorer:
    """A fake scorer: the gold label wins by 1 when the prompt holds *word*, else loses by 1."""

    def __init__(self, word: str) -> None:
        self.word = word
        self.calls = 0

    def score(self, prompt: Prompt, examples: Sequence[Any], task: Task) -> Any:
        from types import SimpleNamespace

        self.calls += 1
        pays = self.word in re.findall(r"[A-Za-z]+", prompt.template)
        results = []
        for example in examples:
            values = {label: -2.0 for label in task.labels}
            values[example.target] = -1.0 if pays else -3.0
            results.append(SimpleNamespace(label_logprobs=values))
        return SimpleNamespace(results=results)


def test_the_searcher_learns_to_write_the_paying_word() -> None:
    task = contract_task()
    searcher = RLSearcher(prompt_length=1, learning_rate=1e-2, entropy_weight=0.0, **SMALL)
    context = make_context(searcher, task, seed=0)
    searcher.setup(context)
    policy = searcher._ensure_policy()
    before = _action_probs(policy)
    paying = int(before.argsort(descending=True)[3])
    fake = PayingScorer(policy.word(paying))
    context.scorer = fake  # type: ignore[assignment]
    for _ in range(12):
        searcher.propose(2)
    after = _action_probs(policy)
    assert after[paying] > 0.5 > before[paying] * 4
    rewards = [v for _, k, v in context.metrics.entries if k == "reward"]
    assert len(rewards) >= 24 and rewards[-1] > rewards[0]
    assert all(math.isfinite(v) for _, _, v in context.metrics.entries)


# -- parameters, setup -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"prompt_length": 0}, "prompt_length must be >= 1"),
        ({"prompts_per_step": 1}, "prompts_per_step must be >= 2"),
        ({"learning_rate": 0.0}, "learning_rate must be > 0"),
        ({"entropy_weight": -1.0}, "entropy_weight must be >= 0"),
        ({"max_grad_norm": 0.0}, "max_grad_norm must be > 0"),
        ({"template": "{sentence} [T] {answer}", "prompt_length": 3}, "make them agree"),
        ({"template": 5}, "template must be a string"),
        ({"policy_model": ""}, "policy_model"),
    ],
)
def test_parameters_are_validated_eagerly(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RLSearcher(**params)


def test_built_from_a_spec_and_template_gets_the_prompt_slots() -> None:
    searcher = make_searcher("rl:prompt_length=3,steps_per_round=1,prompts_per_step=2")
    assert isinstance(searcher, RLSearcher) and searcher.prompt_length == 3
    task = contract_task()
    searcher.setup(make_context(searcher, task))
    base = searcher._base
    assert base is not None and base.template.count("[T]") == 3
    (candidate,) = searcher.propose(1)
    assert "[T]" not in candidate.prompt.template
    assert candidate.parent == task.seed_prompts[0].resolve(task).content_hash


def test_setup_rejects_a_generation_task_and_a_masked_policy() -> None:
    searcher = RLSearcher()
    with pytest.raises(ConfigError, match="classification"):
        searcher.setup(make_context(searcher, contract_task("generation")))
    searcher = RLSearcher()
    context = make_context(searcher, contract_task())
    context.model = tiny_model("masked", seed=0)
    searcher.setup(context)
    with pytest.raises(ConfigError, match="policy needs a causal LM"):
        searcher.propose(1)


# -- state and resume --------------------------------------------------------------------------


def _hashes(history: Sequence[Sequence[Any]]) -> list[list[str]]:
    return [[c.prompt.content_hash for c in batch] for batch in history]


def test_state_dict_resumes_training_where_it_stopped() -> None:
    task = contract_task()
    whole = RLSearcher(**SMALL)
    whole.setup(make_context(whole, task, seed=5))
    uninterrupted = _hashes(drive(whole, task, rounds=4, n=2))

    first = RLSearcher(**SMALL)
    first.setup(make_context(first, task, seed=5))
    drive(first, task, rounds=2, n=2)
    saved = decode_state(encode_state(first.state_dict()))  # as the study stores it
    assert sorted(saved["learned"]["optimizer"]["state"]) == [0, 1, 2, 3]  # Adam's keys: ints
    assert isinstance(saved["rng"], tuple)
    second = RLSearcher(**SMALL)
    second.setup(make_context(second, task, seed=5))  # a resumed study sets up afresh
    second.load_state_dict(saved)
    assert second._step == 4
    # the earlier proposals come again first (the study replays them for free), then new ones
    assert _hashes(drive(second, task, rounds=4, n=2)) == uninterrupted
    assert second._step == 8
    live = whole._policy
    assert live is not None and second._policy is not None
    for a, b in zip(live.mlp.parameters(), second._policy.mlp.parameters(), strict=True):
        assert torch.equal(a, b)
    assert whole._optimizer is not None and second._optimizer is not None
    adam, resumed_adam = (
        whole._optimizer.state_dict()["state"],
        second._optimizer.state_dict()["state"],
    )
    assert adam.keys() == resumed_adam.keys()
    for key, moments in adam.items():  # the Adam moments came back and trained on alike
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(moments[name], resumed_adam[key][name]), (key, name)


def _study(folder: Path, budget: int) -> Study:
    task = contract_task()
    storage = open_storage(f"sqlite:///{folder / 'study.db'}")
    scorer = Scorer(tiny_model("causal", seed=0), batch_size=8)
    searcher = RLSearcher(**SMALL)
    return Study(
        "rl-study", task, scorer, [searcher], budget, storage, seed=2, candidates_per_round=2
    )


def test_a_stopped_and_resumed_study_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    def run(folder: Path, budgets: Sequence[int]) -> tuple[list[str], list[tuple[int, str, float]]]:
        folder.mkdir()
        for budget in budgets:
            study = _study(folder, budget)
            study.run()
        trials = [t.content_hash for t in study.storage.trials("rl-study")]
        metrics = [(m.step, m.key, m.value) for m in study.storage.metrics("rl-study", "rl")]
        return trials, metrics

    whole_trials, whole_metrics = run(tmp_path / "whole", [8])
    resumed_trials, resumed_metrics = run(tmp_path / "resumed", [4, 8])
    assert resumed_trials == whole_trials and len(whole_trials) == 8
    keys = {key for _, key, _ in whole_metrics}
    assert {"reward", "loss", "entropy", "train_accuracy", "dev_score"} <= keys
    resumed_sorted, whole_sorted = sorted(resumed_metrics), sorted(whole_metrics)
    assert [(step, key) for step, key, _ in resumed_sorted] == [
        (step, key) for step, key, _ in whole_sorted
    ]
    assert [value for _, _, value in resumed_sorted] == pytest.approx(
        [value for _, _, value in whole_sorted]
    )
    assert all(math.isfinite(value) for _, _, value in whole_metrics)

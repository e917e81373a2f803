"""The ``rl`` searcher: a policy trained on task reward writes discrete prompts
(after RLPrompt, Deng et al. 2022, "RLPrompt: Optimizing Discrete Text Prompts
with Reinforcement Learning").

The prompt is a template with ``T`` slots (``[T]`` markers, see
:mod:`promptsearch.searchers._tokens.triggers`), by default inserted after the input of the task's
first seed prompt: ``"{sentence} [T] [T] [T] [T] [T] It was {answer}."``.  A policy
(:class:`promptsearch.searchers._tokens.rl_policy.PromptPolicy`: a frozen causal LM, by default the
study's own model, with a small trainable MLP on its last hidden state) writes the
``T`` words.

**Reward.**  Every training step samples ``prompts_per_step`` prompts and scores
each with the study's scorer on the same ``examples_per_step`` train examples.  The
reward of prompt *z* on example *x* with gold label *y* is the gap
``log p(y | z, x) - max_{y' != y} log p(y' | z, x)`` between the gold label's and
the best wrong label's log-probability (positive exactly when the prompt classifies
*x* correctly).  As in RLPrompt, it is z-score normalised *per input* across the
prompts of the step (some inputs are easy for every prompt; only the differences
between prompts carry signal), and a prompt's reward is the mean over the inputs.

**Learning rule: REINFORCE with a baseline, plus entropy regularisation.**  The
loss is ``-mean_z R(z) log pi(z) - entropy_weight * H(pi)``; the per-input
z-scores have mean zero across the step's prompts, so the mean reward of the
step is the baseline.  RLPrompt uses soft Q-learning, whose strength is learning
from long sequences with sparse rewards and replaying off-policy samples; here a
prompt is a handful of tokens with one dense reward per sampled prompt, where
on-policy REINFORCE with this baseline is unbiased, has one hyper-parameter fewer
(no target network or its update rate), and its updates are bounded by gradient
clipping.  The entropy term keeps the policy from collapsing onto one prompt
before the reward has told prompts apart.

**Proposals.**  Each ``propose`` call runs ``steps_per_round`` training steps,
then proposes the greedy prompt of the current policy and the step samples with
the highest train reward, prompts not proposed before.  The study's dev scores
are the ones that count; the policy never sees dev examples.

**State.**  :meth:`state_dict` holds the MLP's weights, the optimizer's moments,
the step count, the random generators' states and the proposals made, so a
resumed study continues training where it stopped.  A resumed searcher first
proposes its earlier prompts again, in order (the study replays their stored
scores at no cost and counts them against the budget as before), then goes on
training.  Metrics logged per step:
``reward`` (mean raw gap of the step's prompts), ``reward_max``,
``train_accuracy`` (share of positive gaps), ``loss``, ``entropy`` (per token),
``grad_norm``.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.prompt import Prompt
from promptsearch.searchers._tokens.trigger_prompt import (
    EpochSampler,
    balanced_pool,
    check_marked_template,
    marked_prompt,
)
from promptsearch.searchers._tokens.triggers import MAX_TRIGGERS, count_triggers, fill_triggers
from promptsearch.searchers.base import Candidate, SearchContext, Searcher, TrialResult
from promptsearch.task import Example, Task
from promptsearch.validation import check_float, check_int, check_str

if TYPE_CHECKING:
    import torch

    from promptsearch.models.base import LanguageModel
    from promptsearch.scoring.scorer import Scorer
    from promptsearch.searchers._tokens.rl_policy import PromptPolicy

__all__ = ["RLSearcher", "reward_gaps"]

_OWNER = "RLSearcher"
_ATTEMPTS = 3  # rounds of training per propose call before giving up on new prompts
_GAP_LIMIT = 100.0  # a gap beyond this (an underflowed log-probability) is clipped


def reward_gaps(
    scorer: Scorer, prompts: Sequence[Prompt], examples: Sequence[Example], task: Task
) -> list[list[float]]:
    """``gaps[z][i]``: gold minus best wrong label log-probability of prompt *z* on
    example *i* (identical prompts scored once)."""
    memo: dict[str, list[float]] = {}
    out = []
    for prompt in prompts:
        key = prompt.content_hash
        if key not in memo:
            report = scorer.score(prompt, examples, task)
            row = []
            for result, example in zip(report.results, examples, strict=True):
                values = dict(result.label_logprobs or {})
                gold = values.pop(example.target, -math.inf)
                wrong = max(values.values(), default=-math.inf)
                gap = gold - wrong if math.isfinite(gold) or math.isfinite(wrong) else 0.0
                row.append(max(-_GAP_LIMIT, min(_GAP_LIMIT, gap)) if gap == gap else 0.0)
            memo[key] = row
        out.append(memo[key])
    return out


class RLSearcher(Searcher):
    """Prompts written by a policy trained with REINFORCE on the task's reward.

    Classification tasks only.

    Parameters
    ----------
    prompt_length:
        Tokens per generated prompt (``T``).  With a marked *template*, ``None``
        or the number of its markers; ``None`` without one: 5.
    template:
        A template with ``[T]`` markers where the prompt goes, or without (they go
        right after its last input slot).  ``None``: the seed prompt picked by
        *seed_prompt*.
    seed_prompt:
        Index of the task's seed prompt to start from when *template* is ``None``.
    prompts_per_step:
        Prompts sampled per training step (at least 2: rewards are normalised
        across them).
    examples_per_step:
        Train examples every prompt of a step is scored on.
    steps_per_round:
        Training steps before each proposal.
    learning_rate:
        Adam's learning rate for the MLP.
    entropy_weight:
        Weight of the entropy bonus (0 turns it off).
    mlp_width:
        Hidden units of the trainable MLP.
    max_grad_norm:
        Gradients are clipped to this norm.
    policy_input:
        Text the policy LM reads before writing the prompt (``""``: a start token).
    policy_model:
        Name of the policy LM (loaded with :func:`promptsearch.load_model`);
        ``None``: the study's model.
    train_examples:
        Use at most this many train examples (a seeded, label-balanced sample);
        ``None``: all.
    """

    name = "rl"
    needs_model = True
    needs_local_model = True  # the policy is the study's model unless policy_model is set
    task_kinds = ("classification",)

    def __init__(
        self,
        prompt_length: int | None = None,
        template: str | None = None,
        seed_prompt: int = 0,
        prompts_per_step: int = 8,
        examples_per_step: int = 8,
        steps_per_round: int = 8,
        learning_rate: float = 3e-4,
        entropy_weight: float = 0.01,
        mlp_width: int = 256,
        max_grad_norm: float = 1.0,
        policy_input: str = "",
        policy_model: str | None = None,
        train_examples: int | None = None,
    ) -> None:
        self.prompt_length = (
            None
            if prompt_length is None
            else check_int(
                prompt_length, "prompt_length", minimum=1, maximum=MAX_TRIGGERS, owner=_OWNER
            )
        )
        self.template = check_marked_template(template, self.prompt_length, _OWNER)
        self.seed_prompt = check_int(seed_prompt, "seed_prompt", minimum=0, owner=_OWNER)
        self.prompts_per_step = check_int(
            prompts_per_step, "prompts_per_step", minimum=2, owner=_OWNER
        )
        self.examples_per_step = check_int(
            examples_per_step, "examples_per_step", minimum=1, owner=_OWNER
        )
        self.steps_per_round = check_int(
            steps_per_round, "steps_per_round", minimum=1, owner=_OWNER
        )
        self.learning_rate = check_float(learning_rate, "learning_rate", minimum=0.0, owner=_OWNER)
        if not self.learning_rate > 0:
            raise ConfigError(f"{_OWNER}: learning_rate must be > 0; got {learning_rate!r}")
        self.entropy_weight = check_float(
            entropy_weight, "entropy_weight", minimum=0.0, owner=_OWNER
        )
        self.mlp_width = check_int(mlp_width, "mlp_width", minimum=1, owner=_OWNER)
        self.max_grad_norm = check_float(max_grad_norm, "max_grad_norm", minimum=0.0, owner=_OWNER)
        if not self.max_grad_norm > 0:
            raise ConfigError(f"{_OWNER}: max_grad_norm must be > 0; got {max_grad_norm!r}")
        self.policy_input = check_str(policy_input, "policy_input", allow_empty=True, owner=_OWNER)
        self.policy_model = (
            None if policy_model is None else check_str(policy_model, "policy_model", owner=_OWNER)
        )
        self.train_examples = (
            None
            if train_examples is None
            else check_int(train_examples, "train_examples", minimum=1, owner=_OWNER)
        )
        # learned state (saved with the study)
        self._learned: dict[str, Any] | None = None  # MLP and optimizer state, generator state
        self._step = 0
        self._proposed: dict[str, tuple[int, ...]] = {}  # in the order proposed
        self._replay: list[tuple[int, ...]] = []  # after a resume: proposals to repeat first
        self._replayed = False  # the last proposals were replayed ones
        self._rng = random.Random(0)
        self._batches = EpochSampler(0)
        # fixed after setup
        self._base: Prompt | None = None
        self._parent: str | None = None
        self._pool: list[Example] = []
        self._reward_task: Task | None = None
        self._mlp_seed = 0
        self._generator_seed = 0
        self._round: list[tuple[float, tuple[int, ...]]] = []
        # transient: rebuilt on demand (after unpickling too)
        self._policy: PromptPolicy | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._generator: torch.Generator | None = None

    # -- pickling and state ------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        self._sync_learned()
        state = dict(self.__dict__)
        state.update(_policy=None, _optimizer=None, _generator=None)
        return state

    def _sync_learned(self) -> None:
        """Copy the live MLP, optimizer and generator state into ``_learned``."""
        if self._policy is None or self._optimizer is None or self._generator is None:
            return
        self._learned = {
            "mlp": {k: v.detach().cpu().clone() for k, v in self._policy.mlp.state_dict().items()},
            "optimizer": copy.deepcopy(self._optimizer.state_dict()),
            "generator": self._generator.get_state().clone(),
        }

    def state_dict(self) -> dict[str, Any] | None:
        if self.context is None:
            return None
        self._sync_learned()
        return {
            "learned": self._learned,
            "step": self._step,
            "proposed": dict(self._proposed),
            "rng": self._rng.getstate(),
            "order": list(self._batches.order),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._learned = state["learned"]
        self._step = int(state["step"])
        self._proposed = dict(state["proposed"])
        self._replay = list(self._proposed.values())
        self._rng.setstate(state["rng"])
        self._batches.order = list(state["order"])
        self._policy = self._optimizer = self._generator = None

    # -- set-up -----------------------------------------------------------------------------

    def setup(self, context: SearchContext) -> None:
        super().setup(context)
        task = context.task  # a classification task: the base checked task_kinds
        self._base, self._parent = marked_prompt(
            task,
            self.template,
            self.prompt_length or 5,
            self.seed_prompt,
            _OWNER,
            getattr(context.model, "kind", None),
        )
        self._rng = random.Random(context.rng.randrange(2**63))
        self._pool = balanced_pool(list(task.train), self._rng, self.train_examples, _OWNER)
        self._batches = EpochSampler(len(self._pool))
        self._reward_task = Task(
            name=task.name,
            kind="classification",
            input_fields=task.input_fields,
            train=tuple(self._pool),
            dev=tuple(self._pool),
            metric=task.metric,
            labels=task.labels,
            verbalizer=task.verbalizer,
        )
        self._mlp_seed = self._rng.randrange(2**31)
        self._generator_seed = self._rng.randrange(2**63)

    def _local_model_required(self) -> bool:
        return self.policy_model is None

    def _policy_model(self) -> LanguageModel:
        if self.policy_model is not None:
            from promptsearch.models.loading import load_model

            return load_model(self.policy_model)
        model = self.ctx.model
        if model is None:  # setup() already requires one
            raise ConfigError(f"searcher {self.name!r} needs a model, but the context has none")
        if model.kind != "causal":
            raise ConfigError(
                f"{_OWNER}: the study's model {model.name!r} is a {model.kind} model; the policy "
                "needs a causal LM: pass policy_model='<name of a causal LM>'"
            )
        return model

    def _ensure_policy(self) -> PromptPolicy:
        if self._policy is not None:
            return self._policy
        import torch

        from promptsearch.searchers._tokens.rl_policy import PromptPolicy, build_mlp

        assert self._base is not None and self._base.verbalizer is not None  # set in setup
        model = self._policy_model()
        hidden = int(model.model.get_output_embeddings().weight.shape[1])
        mlp = build_mlp(hidden, self.mlp_width, self._mlp_seed)
        banned = [w for words in self._base.verbalizer.values() for w in words]
        length = count_triggers(self._base.template)
        policy = PromptPolicy(model, mlp, length, self.policy_input, banned)
        optimizer = torch.optim.Adam(mlp.parameters(), lr=self.learning_rate)
        generator = torch.Generator().manual_seed(self._generator_seed)
        if self._learned is not None:
            mlp.load_state_dict(self._learned["mlp"])
            optimizer.load_state_dict(self._learned["optimizer"])
            generator.set_state(self._learned["generator"])
        self._policy, self._optimizer, self._generator = policy, optimizer, generator
        return policy

    def _scorer(self) -> Scorer:
        scorer = self.ctx.scorer
        if scorer is None:
            from promptsearch.scoring.scorer import Scorer

            model = self.ctx.model
            assert model is not None  # setup() requires one
            scorer = self.ctx.scorer = Scorer(model)
        return scorer

    # -- training ----------------------------------------------------------------------------

    def _prompt(self, actions: Sequence[int]) -> Prompt:
        policy = self._ensure_policy()
        assert self._base is not None
        words = [policy.word(a) for a in actions]
        template = fill_triggers(self._base.template, words, policy.scheme.space_marker)
        return replace(self._base, template=template)

    def _train_step(self) -> None:
        import torch

        from promptsearch.searchers._tokens.rl_policy import normalised_rewards

        policy = self._ensure_policy()
        assert self._optimizer is not None and self._reward_task is not None
        actions, hidden = policy.sample(self.prompts_per_step, self._generator)
        rows = [tuple(int(a) for a in row) for row in actions.tolist()]
        batch = [self._pool[i] for i in self._batches.next_batch(self.examples_per_step, self._rng)]
        prompts = [self._prompt(row) for row in rows]
        gaps = torch.tensor(
            reward_gaps(self._scorer(), prompts, batch, self._reward_task), dtype=torch.float32
        )  # [prompts, examples]
        raw = gaps.mean(dim=1)
        step = self._step
        self._step += 1
        stats = policy.update(
            self._optimizer,
            hidden,
            actions,
            normalised_rewards(gaps),
            self.entropy_weight,
            self.max_grad_norm,
        )
        log = self.ctx.metrics.log
        log(step, "reward", float(raw.mean()))
        log(step, "reward_max", float(raw.max()))
        log(step, "train_accuracy", float((gaps > 0).float().mean()))
        for key, value in stats.items():
            log(step, key, value)
        self._round.extend((float(r), row) for r, row in zip(raw.tolist(), rows, strict=True))

    # -- interface ---------------------------------------------------------------------------

    def _fresh(self, n: int) -> list[Candidate]:
        policy = self._ensure_policy()
        greedy, _ = policy.sample(1, None, greedy=True)
        ordered = [tuple(int(a) for a in greedy[0].tolist())]
        ordered += [row for _, row in sorted(self._round, key=lambda item: -item[0])]
        out: list[Candidate] = []
        for actions in ordered:
            if len(out) >= n:
                break
            prompt = self._prompt(actions)
            if prompt.content_hash in self._proposed:
                continue
            self._proposed[prompt.content_hash] = actions
            out.append(Candidate(prompt, operation="rl", parent=self._parent))
        return out

    def propose(self, n: int) -> list[Candidate]:
        if n <= 0:
            return []
        self._replayed = bool(self._replay)
        if self._replay:  # a resumed study: repeat the earlier proposals (free) first
            batch, self._replay = self._replay[:n], self._replay[n:]
            return [Candidate(self._prompt(a), operation="rl", parent=self._parent) for a in batch]
        for _ in range(_ATTEMPTS):
            self._round = []
            for _ in range(self.steps_per_round):
                self._train_step()
            out = self._fresh(n)
            if out:
                return out
        return []

    def observe(self, results: Sequence[TrialResult]) -> None:
        if self._replayed:  # results of replayed proposals: seen before
            return
        for result in results:
            if result.content_hash in self._proposed and result.score is not None:
                self.ctx.metrics.log(self._step, "dev_score", float(result.score))

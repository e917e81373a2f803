"""The prompt policy of the ``rl`` searcher: a frozen causal LM with a small
trainable MLP on its last hidden state (after RLPrompt, Deng et al. 2022).

A prompt is ``T`` tokens generated one at a time.  At step *t* the frozen LM reads
the policy input and the tokens generated so far (with its key/value cache) and
gives its last hidden state ``h_t`` (after its final norm).  The trainable module
maps it to ``h_t + MLP(h_t)``, and the LM's own output embedding (frozen) turns
that into logits over the *action vocabulary*: the whole-word tokens a prompt
token may be (see :func:`promptsearch.searchers._tokens.triggers.allowed_tokens`).  The MLP's last
layer starts at zero, so the untrained policy is the LM's own next-token
distribution restricted to those words: fluent text to begin with, which training
then moves towards prompts the task model rewards.  (RLPrompt feeds the MLP's
output alone to the head, with a near-zero init, which starts from a uniform
policy; the residual form keeps the LM's prior.)

Because the LM is frozen and its input is the sampled tokens, ``h_t`` carries no
gradient: :meth:`PromptPolicy.sample` returns the hidden states with the tokens,
and :meth:`PromptPolicy.log_probs` recomputes only the MLP and the head on them
to get log-probabilities and entropies that do carry one.  A training step thus
costs one batched generation of ``T`` tokens plus a backward pass through the
MLP, and nothing through the LM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from promptsearch.errors import ConfigError
from promptsearch.models.base import LanguageModel
from promptsearch.scoring.backends.base import (
    accepted_kwargs,
    cache_argument,
    encode_text,
    output_cache,
    special_tokens,
)
from promptsearch.searchers._tokens.trigger_search import word_token_flags
from promptsearch.searchers._tokens.triggers import TokenScheme, vocabulary

__all__ = ["PromptPolicy", "build_mlp", "normalised_rewards"]


def build_mlp(hidden: int, width: int, seed: int) -> nn.Sequential:
    """``Linear(hidden, width) -> ReLU -> Linear(width, hidden)``, the last layer zero."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mlp = nn.Sequential(nn.Linear(hidden, width), nn.ReLU(), nn.Linear(width, hidden))
    last = mlp[2]
    assert isinstance(last, nn.Linear)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return mlp.float()


def normalised_rewards(gaps: torch.Tensor) -> torch.Tensor:
    """Per-prompt rewards from ``gaps[prompt, input]``: z-scores per input across the
    prompts (0 where every prompt scored the same), averaged over the inputs."""
    spread = gaps.std(dim=0, unbiased=False)
    z = (gaps - gaps.mean(dim=0)) / spread.clamp_min(1e-6)
    z = torch.where(spread > 1e-6, z, torch.zeros_like(z))
    return z.mean(dim=1)


class PromptPolicy:
    """Samples prompts of ``length`` tokens from a frozen LM plus a trainable MLP.

    Parameters
    ----------
    model:
        A causal :class:`~promptsearch.models.base.LanguageModel` (kept frozen).
    mlp:
        The trainable module, ``hidden -> hidden`` (see :func:`build_mlp`).
    length:
        Tokens per prompt.
    policy_input:
        Text the LM reads before the prompt tokens (``""``: a start token only).
    banned_words:
        Words no prompt token may spell (the label words).
    """

    def __init__(
        self,
        model: LanguageModel,
        mlp: nn.Module,
        length: int,
        policy_input: str = "",
        banned_words: Sequence[str] = (),
    ) -> None:
        if model.kind != "causal":
            raise ConfigError(
                f"the rl policy needs a causal LM; model {model.name!r} is a {model.kind} model"
            )
        self.lm = model
        self.mlp = mlp
        self.length = length
        tokenizer = model.tokenizer
        self.tokens = vocabulary(tokenizer)
        self.scheme = TokenScheme.detect(self.tokens)
        head = model.model.get_output_embeddings()
        weight = head.weight.detach()
        size = int(weight.shape[0])
        flags = word_token_flags(tokenizer, self.tokens, self.scheme, size, banned_words)
        self.action_ids = torch.tensor(
            [i for i, ok in enumerate(flags) if ok], dtype=torch.long, device=weight.device
        )
        if self.action_ids.numel() == 0:
            raise ConfigError(f"model {model.name!r}: no vocabulary token can be a prompt token")
        self.head_weight = weight[self.action_ids].float()
        bias = getattr(head, "bias", None)
        self.head_bias = None if bias is None else bias.detach()[self.action_ids].float()
        lead = list(special_tokens(tokenizer).lead)
        context = lead + encode_text(tokenizer, policy_input) if policy_input else lead
        if not context:
            start = next(
                (t for t in (tokenizer.bos_token_id, tokenizer.eos_token_id) if t is not None),
                None,
            )
            if start is None:
                raise ConfigError(
                    f"model {model.name!r} has no start token; give the rl searcher a "
                    "non-empty policy_input"
                )
            context = [start]
        self.context = context
        self.mlp.to(weight.device)

    @property
    def num_actions(self) -> int:
        return int(self.action_ids.numel())

    def word(self, action: int) -> str:
        """The word that action *action* (an index into the action vocabulary) spells."""
        token = self.tokens[int(self.action_ids[action])]
        word = self.scheme.word(token)
        return token if word is None else word

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        adapted = hidden + self.mlp(hidden)
        return nn.functional.linear(adapted, self.head_weight, self.head_bias)

    def _base(self) -> Any:
        prefix = getattr(self.lm.model, "base_model_prefix", "")
        base = getattr(self.lm.model, prefix, None) if prefix else None
        if base is None:
            raise ConfigError(
                f"model {self.lm.name!r}: cannot find its base model (attribute {prefix!r}) "
                "to read hidden states from"
            )
        return base

    @torch.no_grad()
    def sample(
        self, rows: int, generator: torch.Generator | None, greedy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """*rows* prompts: (actions ``[rows, T]``, hidden states ``[rows, T, H]``).

        ``greedy``: the most likely action at every step (no randomness used).
        """
        base = self._base()
        device = self.head_weight.device
        network = self.lm.model
        training = bool(getattr(network, "training", False))
        network.eval()
        try:
            ids = torch.tensor([self.context] * rows, dtype=torch.long, device=device)
            cache_name = cache_argument(accepted_kwargs(base)) or "past_key_values"
            output = base(input_ids=ids, use_cache=True)
            past = output_cache(output)
            hidden = output.last_hidden_state[:, -1, :].float()
            actions, states = [], []
            for _ in range(self.length):
                states.append(hidden)
                logits = self._logits(hidden)
                if greedy:
                    action = logits.argmax(dim=-1)
                else:
                    probs = logits.softmax(dim=-1)
                    action = torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0]
                    action = action.to(device)
                actions.append(action)
                token = self.action_ids[action].unsqueeze(1)
                output = base(input_ids=token, use_cache=True, **{cache_name: past})
                past = output_cache(output)
                hidden = output.last_hidden_state[:, -1, :].float()
        finally:
            if training:
                network.train()
        return torch.stack(actions, dim=1), torch.stack(states, dim=1)

    def log_probs(
        self, hidden: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per prompt: the sum over steps of log pi(action) and of the entropy (with grad)."""
        logits = self._logits(hidden)  # [rows, T, A]
        logp = logits.log_softmax(dim=-1)
        chosen = logp.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # [rows, T]
        entropy = -(logp.exp() * logp).sum(dim=-1)  # [rows, T]
        return chosen.sum(dim=1), entropy.sum(dim=1)

    def update(
        self,
        optimizer: torch.optim.Optimizer,
        hidden: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        entropy_weight: float,
        max_grad_norm: float,
    ) -> dict[str, float]:
        """One REINFORCE step: ``-mean(R * log pi) - entropy_weight * H``, clipped.

        *rewards* should have mean zero (the baseline is subtracted by the caller,
        see :func:`normalised_rewards`).  A non-finite loss or gradient skips the
        step (``skipped`` = 1) and leaves the MLP as it was.
        """
        log_probs, entropy = self.log_probs(hidden, actions)
        loss = -(rewards.to(log_probs.device) * log_probs).mean()
        loss = loss - entropy_weight * entropy.mean()
        stats = {"entropy": float(entropy.detach().mean()) / max(1, int(actions.shape[1]))}
        optimizer.zero_grad()
        if not torch.isfinite(loss):
            return {**stats, "skipped": 1.0}
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.mlp.parameters(), max_grad_norm)
        if not torch.isfinite(norm):
            optimizer.zero_grad()
            return {**stats, "skipped": 1.0}
        optimizer.step()
        return {**stats, "loss": float(loss.detach()), "grad_norm": float(norm), "skipped": 0.0}

"""The ``autoprompt`` searcher: gradient-guided trigger tokens (after AutoPrompt,
Shin et al. 2020, "AutoPrompt: Eliciting Knowledge from Language Models with
Automatically Generated Prompts").

The prompt gets a row of *trigger* tokens, written ``[T]`` in the template:
``"Review: {sentence} [T] [T] [T] [T]\\nSentiment: {answer}"``.  Every step
takes a batch of train examples, computes the gradient of the task loss (the
gold label's log-likelihood in the answer slot) with respect to the trigger
tokens' input embeddings, ranks the vocabulary for one trigger position by the
first-order estimate ``-gradient . embedding``, scores the ``top_k`` best tokens
exactly on the same batch and keeps the best one if it lowers the loss.  Positions
are visited in sweeps: every position once per sweep, in a seeded random order.
The gradient machinery lives in :mod:`promptsearch.searchers._tokens.trigger_search`.

Each ``propose`` call runs ``steps_per_round`` steps, then proposes the current
trigger sequence and the runners-up of those steps (the other candidates tried,
best loss change first), each written out as text.  The study scores that text:
the words are the trigger tokens' spellings, and re-tokenising the text gives
the same ids in the usual case, but it can differ where a tokenizer merges
across a piece boundary (see :mod:`promptsearch.searchers._tokens.triggers`).

Dev scores steer the search: after each round, when a trigger sequence proposed
earlier has a higher dev score than the current one, the search continues from
that one.  The search is exhausted after ``patience`` full sweeps in a row
without an improving token.
"""

from __future__ import annotations

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
from promptsearch.searchers._tokens.triggers import (
    MAX_TRIGGERS,
    count_triggers,
    fill_triggers,
)
from promptsearch.searchers.base import Candidate, SearchContext, Searcher, TrialResult
from promptsearch.task import Example
from promptsearch.validation import check_choice, check_int

if TYPE_CHECKING:
    from promptsearch.searchers._tokens.trigger_search import TriggerSearch

__all__ = ["DEFAULT_TRIGGERS", "AutoPromptSearcher"]

DEFAULT_TRIGGERS = 4
"""Trigger tokens inserted when neither the template nor ``num_triggers`` says."""

_OWNER = "AutoPromptSearcher"
_OBJECTIVES = ("likelihood", "cross-entropy")
_ATTEMPTS = 3  # rounds of steps per propose call before giving up on finding new prompts


def _optional_int(value: Any, name: str, minimum: int, maximum: int | None = None) -> int | None:
    if value is None:
        return None
    return check_int(value, name, minimum=minimum, maximum=maximum, owner=_OWNER)


class AutoPromptSearcher(Searcher):
    """Trigger tokens found by gradient-guided search (AutoPrompt).

    Classification tasks only, with a causal or masked model.

    Parameters
    ----------
    num_triggers:
        Trigger tokens inserted into a template without ``[T]`` markers (``None``:
        4).  With a marked *template*, ``None`` or the number of its markers.
    template:
        A template with ``[T]`` markers (``"{sentence} [T] [T] [T] It was
        {answer}."``), used with the task's verbalizer.  ``None``: the seed prompt
        picked by *seed_prompt*, with ``num_triggers`` markers inserted right after
        its last input slot before ``{answer}`` (``"Review: {sentence}\\nSentiment:
        {answer}"`` becomes ``"Review: {sentence} [T] [T] [T] [T]\\nSentiment:
        {answer}"``); a template given without markers gets them the same way.
    seed_prompt:
        Index of the task's seed prompt to start from when *template* is ``None``
        (its instruction, demonstrations and verbalizer are kept).
    top_k:
        Candidate tokens scored exactly per step.
    batch_size:
        Train examples per step (the gradient and the candidates' scores use the
        same batch).
    steps_per_round:
        Search steps before each proposal.
    init_token:
        The word every trigger starts as; it must be a single word-initial token.
    label_words:
        First choose the verbalizer with the label-word search for the template
        with the initial triggers, then search triggers for it.  ``False``: keep
        the seed prompt's (or the task's) verbalizer.
    train_examples:
        Use at most this many train examples (a seeded, label-balanced sample);
        ``None``: all.
    objective:
        ``"likelihood"``: minus the gold label's log-probability over the whole
        vocabulary (AutoPrompt's loss); ``"cross-entropy"``: normalised over the
        task's labels.
    patience:
        Full sweeps over all trigger positions without an improving token before
        the searcher reports itself exhausted.
    forward_batch_size:
        Sequences per forward pass (memory only; results do not depend on it).
    """

    name = "autoprompt"
    needs_model = True
    needs_local_model = True  # gradients through the model's input embeddings
    task_kinds = ("classification",)

    def __init__(
        self,
        num_triggers: int | None = None,
        template: str | None = None,
        seed_prompt: int = 0,
        top_k: int = 8,
        batch_size: int = 8,
        steps_per_round: int = 2,
        init_token: str = "the",
        label_words: bool = False,
        train_examples: int | None = None,
        objective: str = "likelihood",
        patience: int = 2,
        forward_batch_size: int = 32,
    ) -> None:
        self.num_triggers = _optional_int(num_triggers, "num_triggers", 1, MAX_TRIGGERS)
        self.template = check_marked_template(template, self.num_triggers, _OWNER)
        self.seed_prompt = check_int(seed_prompt, "seed_prompt", minimum=0, owner=_OWNER)
        self.top_k = check_int(top_k, "top_k", minimum=1, maximum=10_000, owner=_OWNER)
        self.batch_size = check_int(batch_size, "batch_size", minimum=1, owner=_OWNER)
        self.steps_per_round = check_int(
            steps_per_round, "steps_per_round", minimum=1, owner=_OWNER
        )
        if not isinstance(init_token, str) or not (init_token.isascii() and init_token.isalpha()):
            raise ConfigError(
                f"{_OWNER}: init_token must be one word of ASCII letters, e.g. 'the'; "
                f"got {init_token!r}"
            )
        self.init_token = init_token
        if not isinstance(label_words, bool):
            raise ConfigError(f"{_OWNER}: label_words must be True or False; got {label_words!r}")
        self.label_words = label_words
        self.train_examples = _optional_int(train_examples, "train_examples", 1)
        self.objective = check_choice(objective, "objective", _OBJECTIVES, owner=_OWNER)
        self.patience = check_int(patience, "patience", minimum=1, owner=_OWNER)
        self.forward_batch_size = check_int(
            forward_batch_size, "forward_batch_size", minimum=1, owner=_OWNER
        )
        self._engine: TriggerSearch | None = None  # transient: rebuilt after unpickling
        self._base: Prompt | None = None  # the prompt with [T] markers and its verbalizer
        self._parent: str | None = None
        self._pool: list[Example] = []
        self._batches = EpochSampler(0)
        self._positions: list[int] = []
        self._triggers: tuple[int, ...] | None = None
        self._gain_in_sweep = False
        self._dry_sweeps = 0
        self._step = 0
        self._runners_up: list[tuple[float, tuple[int, ...]]] = []
        self._proposed: dict[str, tuple[int, ...]] = {}
        self._dev: dict[tuple[int, ...], float] = {}

    # -- pickling -----------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_engine"] = None
        return state

    # -- set-up -----------------------------------------------------------------------------

    def setup(self, context: SearchContext) -> None:
        super().setup(context)
        task = context.task  # a classification task: the base checked task_kinds
        kind = getattr(context.model, "kind", None)
        if kind not in ("causal", "masked"):
            raise ConfigError(
                f"{_OWNER} needs a causal or masked LM to take gradients through; the study's "
                f"model is a {kind} model"
            )
        base, self._parent = marked_prompt(
            task,
            self.template,
            self.num_triggers or DEFAULT_TRIGGERS,
            self.seed_prompt,
            _OWNER,
            kind,
        )
        self._base = base
        self._pool = balanced_pool(list(task.train), context.rng, self.train_examples, _OWNER)
        self._batches = EpochSampler(len(self._pool))

    # -- the search --------------------------------------------------------------------------

    def _engine_for(self) -> TriggerSearch:
        if self._engine is None:
            from promptsearch.searchers._tokens.trigger_search import TriggerSearch

            model = self.ctx.model
            assert model is not None and self._base is not None  # checked in setup
            if self.label_words and self._triggers is None:
                self._base = self._choose_label_words(self._base)
            self._engine = TriggerSearch(
                model,
                self._base,
                self.ctx.task.labels,
                objective=self.objective,
                forward_batch_size=self.forward_batch_size,
            )
        if self._triggers is None:
            first = self._engine.token_id(self.init_token)
            if first is None:
                raise ConfigError(
                    f"{_OWNER}: init_token {self.init_token!r} is not a single word token that "
                    f"a trigger may take in model {self.ctx.model and self.ctx.model.name!r}; "
                    "use a common word such as 'the'"
                )
            self._triggers = (first,) * self._engine.num_triggers
        return self._engine

    def _choose_label_words(self, base: Prompt) -> Prompt:
        """*base* with the verbalizer the label-word search picks for the initial triggers."""
        from promptsearch.searchers._tokens.label_word_scores import search_label_words

        model = self.ctx.model
        assert model is not None
        words = [self.init_token] * count_triggers(base.template)
        marker_space = _space_marker(model.tokenizer)
        text = replace(base, template=fill_triggers(base.template, words, marker_space))
        choices = search_label_words(
            model,
            text,
            self._pool,
            list(self.ctx.task.labels),
            rng=random.Random(self.ctx.rng.randrange(2**32)),
        )
        if not choices:
            return base
        verbalizer = {label: list(w) for label, w in choices[0].verbalizer.items()}
        return replace(base, verbalizer=verbalizer)

    def _next_batch(self) -> list[Example]:
        picked = self._batches.next_batch(self.batch_size, self.ctx.rng)
        return [self._pool[i] for i in picked]

    def _next_position(self, count: int) -> int:
        if not self._positions:
            self._positions = list(range(count))
            self.ctx.rng.shuffle(self._positions)
        return self._positions.pop()

    def _run_step(self) -> None:
        engine = self._engine_for()
        assert self._triggers is not None
        position = self._next_position(engine.num_triggers)
        batch = engine.encode(self._next_batch())
        result = engine.step(self._triggers, position, batch, self.top_k)
        current = list(self._triggers)
        for token, loss in result.candidates:
            variant = (*current[:position], token, *current[position + 1 :])
            if token != result.chosen:
                self._runners_up.append((loss - result.loss, variant))
        if result.chosen is not None:
            current[position] = result.chosen
            self._triggers = tuple(current)
            self._gain_in_sweep = True
        log = self.ctx.metrics.log
        log(self._step, "loss", result.loss)
        if result.candidates:
            log(self._step, "best_candidate_loss", result.candidates[0][1])
        log(self._step, "improved", float(result.improved))
        self._step += 1
        if not self._positions:  # a sweep over all positions ended
            self._dry_sweeps = 0 if self._gain_in_sweep else self._dry_sweeps + 1
            self._gain_in_sweep = False

    def _exhausted(self) -> bool:
        return self._dry_sweeps >= self.patience

    # -- proposals ---------------------------------------------------------------------------------

    def _prompt(self, triggers: Sequence[int]) -> Prompt:
        engine = self._engine_for()
        assert self._base is not None
        words = [engine.word(t) for t in triggers]
        template = fill_triggers(self._base.template, words, engine.scheme.space_marker)
        return replace(self._base, template=template)

    def _fresh(self, n: int) -> list[Candidate]:
        assert self._triggers is not None
        ordered = [self._triggers] + [v for _, v in sorted(self._runners_up)]
        out: list[Candidate] = []
        for triggers in ordered:
            if len(out) >= n:
                break
            prompt = self._prompt(triggers)
            key = prompt.content_hash
            if key in self._proposed:
                continue
            self._proposed[key] = tuple(triggers)
            out.append(Candidate(prompt, operation="autoprompt", parent=self._parent))
        return out

    def propose(self, n: int) -> list[Candidate]:
        if n <= 0:
            return []
        self._engine_for()
        for _ in range(_ATTEMPTS):
            if self._exhausted():
                return []
            self._runners_up = []
            for _ in range(self.steps_per_round):
                self._run_step()
                if self._exhausted():
                    break
            out = self._fresh(n)
            if out:
                return out
        return []

    def observe(self, results: Sequence[TrialResult]) -> None:
        for result in results:
            triggers = self._proposed.get(result.content_hash)
            if triggers is not None and result.score is not None:
                self._dev[triggers] = float(result.score)
        if self._triggers is None or self._triggers not in self._dev:
            return
        order = list(self._proposed.values())
        best = max(self._dev, key=lambda t: (self._dev[t], -order.index(t)))
        if self._dev[best] > self._dev[self._triggers]:
            self._triggers = best
            self._positions = []
            self._gain_in_sweep = False


def _space_marker(tokenizer: Any) -> bool:
    from promptsearch.searchers._tokens.triggers import TokenScheme, vocabulary

    return TokenScheme.detect(vocabulary(tokenizer)).space_marker

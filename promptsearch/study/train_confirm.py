"""Train examples that can confirm a pick: more evidence for the final pick's tests.

The held-back part of a small dev split is small (16 examples of a k-shot task's 32),
and the final pick's paired tests on it pass only for large gains.  Some candidates
can be tested on more: the train examples.  Searchers that *fit* on train (the
label words of ``label-words``, the triggers of ``autoprompt``, the words of ``rl``)
made their prompts to do well there, so train tells nothing about them.  But a prompt
made of the task's own parts only was never tuned to train: its instruction, template
and label words are the user's seed prompts' (or the task's label words, the
instructions written from them, the plain ``Input:/Output:`` format, the templates
that name the answer with a word of the fixed answer-key vocabulary, the one-line and
chat forms of those templates; see
:meth:`~promptsearch.searchers._prompt_space.PromptSpace.build`), and what the search
chose among them it chose on the search part of dev.  Demonstrations are train
examples shown to the model, so they are left out of the examples it is tested on;
the separator and contextual calibration (which reads no examples) are free.

For such a candidate, and an incumbent that is such a prompt too, the tests of
:func:`~promptsearch.study.selection.decide` run on the held-back part of dev and a
seeded sample of at most ``Selection.confirm_train`` train examples, less the
demonstrations of both.  An ensemble counts when each member does.  This is
conservative: a prompt rewritten by a generator that never saw a label
(``paraphrase``) is left out too, since telling that apart needs more than the
prompt's text.

With ``Selection.train_holdout`` above 0 the study hides a share of train from the
searchers (:func:`~promptsearch.study.selection.split_train`): nothing was fitted on
those examples nor shown from them, so they join the held-back part of dev in every
challenger's tests, whatever it is made of (less any demonstration a prompt carries
that is one of them).  The sample for own-parts candidates then comes from the train
examples the searchers saw, up to ``confirm_train`` in all.  :class:`TrainEvidence`
says which train examples test which prompts.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence

from promptsearch.prompt import Prompt
from promptsearch.searchers._answer_keys import answer_key_templates
from promptsearch.searchers._prompt_space import SEPARATORS, PromptSpace
from promptsearch.searchers.base import TrainView
from promptsearch.study.support import example_key
from promptsearch.task import Example, Task

__all__ = ["OwnParts", "TrainEvidence", "train_sample"]


def train_sample(train: Sequence[Example], limit: int, seed: int) -> tuple[Example, ...]:
    """At most *limit* train examples, a sample seeded by *seed*, in train order."""
    if limit <= 0 or not train:
        return ()
    if len(train) <= limit:
        return tuple(train)
    chosen = set(random.Random(f"confirm-train:{seed}").sample(range(len(train)), limit))
    return tuple(e for i, e in enumerate(train) if i in chosen)


class OwnParts:
    """Which prompts are made of the task's own parts only (see the module docstring),
    for a model whose chat turns are *chat* (``None``: no chat template)."""

    def __init__(self, task: Task, chat: tuple[str, str] | None) -> None:
        view = TrainView.from_task(task)
        self.space = PromptSpace.build(
            view,
            instructions=(),
            templates=answer_key_templates(view),
            verbalizers=(),
            max_demonstrations=0,
            rng=random.Random(0),
            owner="selection",
            chat=chat,
            label_instructions=True,
        )
        self._known: dict[str, bool] = {}

    def __call__(self, prompt: Prompt) -> bool:
        if prompt.content_hash not in self._known:
            bare = dataclasses.replace(
                prompt, demonstrations=(), separator=SEPARATORS[0], calibrate=False
            )
            self._known[prompt.content_hash] = self.space.point(bare) is not None
        return self._known[prompt.content_hash]

    def examples(self, pool: Sequence[Example], prompts: Iterable[Prompt]) -> list[Example]:
        """The examples of *pool* that may test *prompts* side by side: none unless each
        prompt is made of the task's own parts, else the pool less their
        demonstrations."""
        prompts = list(prompts)
        if not pool or not all(self(p) for p in prompts):
            return []
        shown = {example_key(d) for p in prompts for d in p.demonstrations}
        return [e for e in pool if example_key(e) not in shown]


class TrainEvidence:
    """Which train examples test a candidate (and the incumbent beside it) in the final
    pick: the *held* train examples (hidden from the searchers) for every candidate,
    then, for candidates made of the task's own parts (*own*), the *pool* sampled from
    the train examples the searchers saw.  Examples on dev (*on_dev*, by example key)
    are left out: they count once, on dev."""

    def __init__(
        self,
        own: OwnParts,
        held: Sequence[Example],
        pool: Sequence[Example],
        on_dev: set[str],
    ) -> None:
        self.own = own
        self.held = tuple(e for e in held if example_key(e) not in on_dev)
        self.pool = tuple(e for e in pool if example_key(e) not in on_dev)

    def examples(self, prompts: Iterable[Prompt]) -> list[Example]:
        """The train examples that test *prompts* side by side, less their
        demonstrations: the held-back ones, then the pool if all are own parts."""
        prompts = list(prompts)
        shown = {example_key(d) for p in prompts for d in p.demonstrations}
        held = [e for e in self.held if example_key(e) not in shown]
        return held + self.own.examples(self.pool, prompts)

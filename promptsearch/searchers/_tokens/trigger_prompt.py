"""What the token-level searchers (``autoprompt``, ``rl``) share: the prompt whose
``[T]`` slots they fill, and the label-balanced train examples they learn from.

Both searchers put a row of ``[T]`` markers into a template (see
:mod:`promptsearch.searchers._tokens.triggers`) and fill them with vocabulary tokens; they differ in
how they choose the tokens.  Both learn from train examples only, drawn in seeded
shuffled epochs from a label-balanced pool.
"""

from __future__ import annotations

import random
from dataclasses import replace

from promptsearch.errors import ConfigError
from promptsearch.prompt import Prompt
from promptsearch.searchers._tokens.triggers import (
    TRIGGER,
    check_trigger_template,
    count_triggers,
    insert_triggers,
    triggers_before_answer,
)
from promptsearch.searchers.base import TrainView
from promptsearch.task import Example

__all__ = ["EpochSampler", "balanced_pool", "check_marked_template", "marked_prompt"]


def check_marked_template(template: object, num_triggers: int | None, owner: str) -> str | None:
    """Validate a searcher's *template* argument (``None`` or a ``[T]`` template)."""
    if template is None:
        return None
    if not isinstance(template, str):
        raise ConfigError(
            f"{owner}: template must be a string with [T] markers, e.g. "
            f"'{{sentence}} [T] [T] [T] It was {{answer}}.', or None; got {template!r}"
        )
    check_trigger_template(template, owner)
    marked = count_triggers(template)
    if marked and num_triggers is not None and num_triggers != marked:
        raise ConfigError(
            f"{owner}: num_triggers={num_triggers} but template {template!r} has "
            f"{marked} {TRIGGER} markers; leave num_triggers=None or make them agree"
        )
    return template


def marked_prompt(
    task: TrainView,
    template: str | None,
    count: int,
    seed_prompt: int,
    owner: str,
    model_kind: str | None,
) -> tuple[Prompt, str | None]:
    """The prompt with ``[T]`` markers to fill, and the content hash of its seed (if any).

    *template* (with or without markers) wins; else the task's seed prompt number
    *seed_prompt* with *count* markers after its last input slot (its instruction,
    demonstrations and verbalizer kept); else the task's input fields and answer.
    """
    parent: str | None = None
    if template is not None:
        marked = template if count_triggers(template) else insert_triggers(template, count)
        prompt = Prompt(template=marked, verbalizer=dict(task.verbalizer))
    elif not task.seed_prompts:
        fields = " ".join("{" + f + "}" for f in task.input_fields)
        prompt = Prompt(
            template=insert_triggers(fields + " {answer}", count),
            verbalizer=dict(task.verbalizer),
        )
    else:
        if seed_prompt >= len(task.seed_prompts):
            raise ConfigError(
                f"{owner}: seed_prompt={seed_prompt}, but task {task.name!r} has "
                f"{len(task.seed_prompts)} seed prompt(s); use 0..{len(task.seed_prompts) - 1}"
            )
        seed = task.seed_prompts[seed_prompt]
        if seed.verbalizer is None:
            seed = replace(seed, verbalizer=dict(task.verbalizer))
        parent = seed.content_hash
        marked = seed.template
        if not count_triggers(marked):  # a seed that marks its own triggers keeps them
            marked = insert_triggers(marked, count)
        prompt = replace(seed, template=marked)
    unknown = [f for f in prompt.fields if f not in task.input_fields]
    if unknown:
        raise ConfigError(
            f"{owner}: template {prompt.template!r} uses unknown field(s) {unknown}; the "
            f"task's input fields are {list(task.input_fields)}"
        )
    if model_kind == "causal" and not triggers_before_answer(prompt.template):
        raise ConfigError(
            f"{owner}: template {prompt.template!r} puts {TRIGGER} markers after "
            "{answer}, where a causal LM never sees them; move them before {answer}"
        )
    return prompt, parent


def balanced_pool(
    train: list[Example], rng: random.Random, limit: int | None, owner: str
) -> list[Example]:
    """The train examples to learn from: shuffled per label, interleaved by label,
    the first *limit* kept (``None``: all)."""
    by_label: dict[str, list[Example]] = {}
    for example in train:
        by_label.setdefault(example.target, []).append(example)
    for examples in by_label.values():
        rng.shuffle(examples)
    pool: list[Example] = []
    depth = max((len(v) for v in by_label.values()), default=0)
    for level in range(depth):
        for label in sorted(by_label):
            if level < len(by_label[label]):
                pool.append(by_label[label][level])
    if not pool:
        raise ConfigError(f"{owner}: the task has no train examples to learn from")
    return pool[:limit] if limit else pool


class EpochSampler:
    """Batches of distinct pool indices, in seeded shuffled epochs (picklable)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.order: list[int] = []

    def next_batch(self, batch_size: int, rng: random.Random) -> list[int]:
        wanted = min(batch_size, self.size)
        picked: list[int] = []
        while len(picked) < wanted:
            if not self.order:
                self.order = list(range(self.size))
                rng.shuffle(self.order)
            index = self.order.pop()
            if index not in picked:
                picked.append(index)
        return picked

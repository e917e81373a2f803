"""A structured prompt space for black-box optimisers such as Optuna's samplers.

A point of the space is a dict of small integers, one per parameter:

* ``instruction``: index into the instruction pool (index 0 is "no instruction");
  besides the seed prompts' instructions, on request two written from a
  classification task's own label words (:func:`task_instructions`);
* ``template``: index into the template pool;
* ``verbalizer``: index into the verbalizer pool (classification tasks only);
* ``separator``: index into :data:`SEPARATORS`, what joins instruction,
  demonstrations and query;
* ``calibrate``: 0 or 1, contextual calibration off or on (classification tasks, and
  only when the space searches it);
* ``n_demonstrations`` (0 to *max_demonstrations*) and ``demonstration_0`` ...
  ``demonstration_{k-1}``: indices into the demonstration pool, a fixed sample of
  train examples.  Every slot is always part of a point, so the space keeps one
  shape; only the first ``n_demonstrations`` slots are used (repeats dropped).

Pools only ever grow (new entries are appended), so an index, once given, names
the same instruction, template or verbalizer for the rest of the search.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.prompt import Prompt
from promptsearch.scoring.chat import chat_turns as chat_turns
from promptsearch.scoring.chat import chat_variant
from promptsearch.searchers.base import TrainView
from promptsearch.task import Example
from promptsearch.template import Template

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

__all__ = [
    "DEMO_POOL_SIZE",
    "SEPARATORS",
    "PromptSpace",
    "field_lines",
    "format_variants",
    "io_template",
    "task_instructions",
]

SEPARATORS = ("\n\n", "\n", " ")
"""The choices for what joins instruction, demonstrations and the query."""

DEMO_POOL_SIZE = 16
"""At most this many train examples make up the demonstration pool."""

Point = dict[str, int]
Verbalizer = dict[str, tuple[str, ...]]
_NEWLINES = re.compile(r"\s*\n\s*")


def _title(name: str) -> str:
    return name.replace("_", " ").strip().capitalize() or name


def field_lines(fields: Sequence[str]) -> list[str]:
    """One ``Name: {name}`` line per input field (``hypothesis_text`` is "Hypothesis
    text")."""
    return [f"{_title(name)}: {{{name}}}" for name in fields]


def io_template(fields: Sequence[str]) -> str:
    """A plain labelled format over *fields*: ``Input: {x}\\nOutput: {answer}`` for one
    field, one ``Name: {name}`` line per field and ``Answer: {answer}`` for several."""
    if len(fields) == 1:
        return f"Input: {{{fields[0]}}}\nOutput: {{answer}}"
    return "\n".join([*field_lines(fields), "Answer: {answer}"])


def task_instructions(task: TrainView) -> list[str]:
    """Instructions that name a classification task's answers, written from its
    label words (the first word of each label, in the task's label order): "Classify
    the sentence as negative or positive." and "Answer with one word: negative or
    positive."  The input is called by its field's name, or "input" for several
    fields.  Empty for other tasks.  A user's seed prompts may have no instruction at
    all; these give the search instructions to try even then."""
    if task.kind != "classification" or len(task.labels) < 2:
        return []
    words = [(task.verbalizer.get(label) or (label,))[0].strip() or label for label in task.labels]
    choices = ", ".join(words[:-1]) + f" or {words[-1]}"
    noun = task.input_fields[0].replace("_", " ").strip() if len(task.input_fields) == 1 else ""
    noun = noun or "input"
    return [f"Classify the {noun} as {choices}.", f"Answer with one word: {choices}."]


def format_variants(template: str) -> list[str]:
    """Format variants of *template* that keep its slots: the one-line form (line
    breaks become single spaces) when it has line breaks.  Empty if there is none."""
    one_line = _NEWLINES.sub(" ", template)
    return [one_line] if one_line != template else []


def _demo_pool(train: Sequence[Example], rng: random.Random, size: int) -> tuple[Example, ...]:
    """A seeded sample of at most *size* train examples, taking each target in turn so
    that a classification pool holds every label."""
    groups: dict[str, list[Example]] = {}
    for example in train:
        groups.setdefault(example.target, []).append(example)
    if len(groups) > size:  # generation: nearly every target is its own group
        return tuple(rng.sample(list(train), min(size, len(train))))
    queues = [rng.sample(members, len(members)) for _, members in sorted(groups.items())]
    pool: list[Example] = []
    while len(pool) < size and any(queues):
        for queue in queues:
            if queue and len(pool) < size:
                pool.append(queue.pop(0))
    return tuple(pool)


@dataclass
class PromptSpace:
    """The pools a point indexes into, and the map between points and prompts."""

    task: TrainView
    max_demonstrations: int
    instructions: list[str] = field(default_factory=lambda: [""])
    templates: list[str] = field(default_factory=list)
    verbalizers: list[Verbalizer | None] = field(default_factory=list)
    demonstrations: tuple[Example, ...] = ()
    calibration: bool = False
    """Whether contextual calibration on or off is a parameter (classification only)."""

    @classmethod
    def build(
        cls,
        task: TrainView,
        *,
        instructions: Sequence[str],
        templates: Sequence[str],
        verbalizers: Sequence[Mapping[str, Sequence[str]]],
        max_demonstrations: int,
        rng: random.Random,
        owner: str,
        chat: tuple[str, str] | None = None,
        calibration: bool = False,
        label_instructions: bool = False,
    ) -> PromptSpace:
        """The space for *task*: seed prompts' parts, format variants, and the extras
        given (checked against the task: a template may use only the task's input
        fields, a verbalizer must have words for every label).  *chat* (see
        :func:`chat_turns`): the seed templates also as chat exchanges.  *calibration*:
        calibration on or off is a parameter too (classification tasks only).
        *label_instructions*: the instructions of :func:`task_instructions` join the
        pool after the seed prompts' own."""
        classification = task.kind == "classification"
        space = cls(
            task=task,
            max_demonstrations=max_demonstrations,
            calibration=calibration and classification,
        )
        space.verbalizers.append(_verbalizer(task.verbalizer) if classification else None)
        seeds = list(task.seed_prompts)
        for prompt in seeds:
            space.add_instruction(prompt.instruction)
            space.add_template(prompt.template)
            if classification and prompt.verbalizer is not None:
                space.add_verbalizer(prompt.verbalizer)
        if label_instructions:
            for text in task_instructions(task):
                space.add_instruction(text)
        derived = [v for prompt in seeds for v in format_variants(prompt.template)]
        generic = io_template(task.input_fields)
        chats = [chat_variant(prompt.template, chat) for prompt in seeds if chat is not None]
        for template in [*derived, generic, *format_variants(generic), *chats]:
            if template is not None:
                space.add_template(template)
        for text in instructions:
            space.add_instruction(text)
        for template in templates:
            try:
                Template(template).check_fields(task.input_fields)
            except ConfigError as error:
                raise ConfigError(f"{owner}: templates: {error}") from None
            space.add_template(template)
        for verbalizer in verbalizers:
            if not classification:
                raise ConfigError(
                    f"{owner}: verbalizers are for classification tasks; task {task.name!r} "
                    f"is a {task.kind} task (leave verbalizers empty)"
                )
            missing = [label for label in task.labels if label not in verbalizer]
            if missing:
                raise ConfigError(
                    f"{owner}: verbalizers: {dict(verbalizer)} has no word for label(s) "
                    f"{missing}; the task's labels are {list(task.labels)}"
                )
            space.add_verbalizer(verbalizer)
        if max_demonstrations:
            space.demonstrations = _demo_pool(task.train, rng, DEMO_POOL_SIZE)
        return space

    # -- pools -------------------------------------------------------------------------

    @property
    def classification(self) -> bool:
        return self.task.kind == "classification"

    def add_instruction(self, text: str) -> None:
        text = text if text.strip() else ""
        if text not in self.instructions:
            self.instructions.append(text)

    def add_template(self, template: str) -> None:
        if template not in self.templates:
            self.templates.append(template)

    def add_verbalizer(self, verbalizer: Mapping[str, Sequence[str]]) -> None:
        words = _verbalizer(verbalizer)
        if self.classification and words not in self.verbalizers:
            self.verbalizers.append(words)

    def absorb(self, prompt: Prompt) -> None:
        """Add *prompt*'s instruction, template and verbalizer to the pools, where it
        fits the task (it uses only the task's fields; it has a word for every label)."""
        if any(name not in self.task.input_fields for name in prompt.fields):
            return
        self.add_instruction(prompt.instruction)
        self.add_template(prompt.template)
        verbalizer = prompt.verbalizer
        if verbalizer is not None and all(label in verbalizer for label in self.task.labels):
            self.add_verbalizer(verbalizer)

    # -- points ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The parameter names of a point, in a fixed order."""
        names = ["instruction", "template"]
        if self.classification:
            names.append("verbalizer")
        names.append("separator")
        if self.calibration:
            names.append("calibrate")
        if self.max_demonstrations:
            names.append("n_demonstrations")
            names.extend(f"demonstration_{i}" for i in range(self.max_demonstrations))
        return names

    def sizes(self) -> dict[str, int]:
        """How many choices each parameter has now (``n_demonstrations``: 0..k)."""
        sizes = {
            "instruction": len(self.instructions),
            "template": len(self.templates),
            "verbalizer": len(self.verbalizers),
            "separator": len(SEPARATORS),
            "calibrate": 2,
            "n_demonstrations": self.max_demonstrations + 1,
        }
        demos = max(len(self.demonstrations), 1)
        return {name: sizes.get(name, demos) for name in self.names()}

    def distributions(self, *, ordinal: bool = False) -> dict[str, BaseDistribution]:
        """Optuna distributions over the current pools.  Pool indices are categorical
        (an instruction's index says nothing about its neighbours), except with
        *ordinal*, where every parameter is an integer range: the form that a
        persistent Optuna storage accepts while the pools grow."""
        from optuna.distributions import CategoricalDistribution, IntDistribution

        out: dict[str, BaseDistribution] = {}
        for name, size in self.sizes().items():
            if ordinal or name == "n_demonstrations":
                out[name] = IntDistribution(0, size - 1)
            else:
                out[name] = CategoricalDistribution(list(range(size)))
        return out

    def demo_indices(self, point: Mapping[str, int]) -> list[int]:
        """The demonstration pool indices a point uses, in order, without repeats."""
        picks: list[int] = []
        for i in range(point.get("n_demonstrations", 0)):
            index = point[f"demonstration_{i}"]
            if index not in picks:
                picks.append(index)
        return picks

    def prompt(self, point: Mapping[str, int]) -> Prompt:
        """The prompt at *point* (verbalizer explicit, so it is already resolved)."""
        demos = tuple(self.demonstrations[i] for i in self.demo_indices(point))
        return Prompt(
            template=self.templates[point["template"]],
            instruction=self.instructions[point["instruction"]],
            verbalizer=self.verbalizers[point["verbalizer"]] if self.classification else None,
            demonstrations=demos,
            separator=SEPARATORS[point["separator"]],
            calibrate=self.calibration and bool(point.get("calibrate", 0)),
        )

    def describe(self, point: Mapping[str, int]) -> dict[str, Any]:
        """The texts a point stands for, as plain data (for Optuna user attributes)."""
        out: dict[str, Any] = {
            "instruction": self.instructions[point["instruction"]],
            "template": self.templates[point["template"]],
            "separator": SEPARATORS[point["separator"]],
            "demonstrations": [self.demonstrations[i].id for i in self.demo_indices(point)],
        }
        if self.calibration:
            out["calibrate"] = bool(point.get("calibrate", 0))
        verbalizer = self.verbalizers[point["verbalizer"]] if self.classification else None
        if verbalizer is not None:
            out["verbalizer"] = "/".join(verbalizer[label][0] for label in self.task.labels)
        return out

    def point(self, prompt: Prompt) -> Point | None:
        """The point whose prompt is *prompt* (after :meth:`absorb`), or ``None`` when
        the space cannot express it (demonstrations outside the pool, too many, an
        unusual separator, or calibration where the space does not search it)."""
        instruction = prompt.instruction if prompt.instruction.strip() else ""
        if instruction not in self.instructions or prompt.template not in self.templates:
            return None
        if prompt.separator not in SEPARATORS:
            return None
        if prompt.calibrate and not self.calibration:
            return None
        point: Point = {
            "instruction": self.instructions.index(instruction),
            "template": self.templates.index(prompt.template),
            "separator": SEPARATORS.index(prompt.separator),
        }
        if self.classification:
            verbalizer = _verbalizer(prompt.verbalizer or self.task.verbalizer)
            if verbalizer not in self.verbalizers:
                return None
            point["verbalizer"] = self.verbalizers.index(verbalizer)
        if self.calibration:
            point["calibrate"] = int(prompt.calibrate)
        demos = list(prompt.demonstrations)
        if len(demos) > self.max_demonstrations or len({d.id for d in demos}) != len(demos):
            return None
        if any(d not in self.demonstrations for d in demos):
            return None
        if self.max_demonstrations:
            point["n_demonstrations"] = len(demos)
            for i in range(self.max_demonstrations):
                point[f"demonstration_{i}"] = (
                    self.demonstrations.index(demos[i]) if i < len(demos) else 0
                )
        return point


def _verbalizer(verbalizer: Mapping[str, Sequence[str]]) -> Verbalizer:
    return {str(label): tuple(words) for label, words in verbalizer.items()}

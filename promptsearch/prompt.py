"""The prompt: an immutable value that renders examples into model input.

A prompt is an optional instruction, optional demonstrations (solved examples from
the train split), and a template with ``{field}`` slots and one ``{answer}`` slot,
plus a verbalizer for classification tasks.  Rendered, it reads::

    <instruction>

    <demonstration 1, answer filled in>

    <demonstration 2, answer filled in>

    <template for the query, up to the answer slot>

Two prompts that render identically have the same :attr:`Prompt.content_hash`.

A classification prompt may also ask to be scored with contextual calibration
(``calibrate=True``, see :mod:`promptsearch.scoring.calibration`): the scorer then
divides out the prompt's lean on content-free inputs.  It is part of the prompt's
identity (its hash and its dict form) only when on, so a prompt without it keeps the
hash it always had.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError, TemplateError
from promptsearch.example import Example, normalize_verbalizer
from promptsearch.hashing import content_hash
from promptsearch.template import Template

if TYPE_CHECKING:
    from promptsearch.task import Task

__all__ = ["Prompt", "RenderedPrompt"]

DEFAULT_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class RenderedPrompt:
    """The text before the answer slot (``prefix``) and after it (``suffix``)."""

    prefix: str
    suffix: str

    def with_answer(self, answer: str) -> str:
        return self.prefix + answer + self.suffix


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class Prompt:
    """A candidate prompt.

    Parameters
    ----------
    template:
        Text with ``{field}`` slots for the task's input fields and one ``{answer}``.
    instruction:
        Optional text placed before everything else.
    verbalizer:
        ``{label: word or [words]}`` for classification; ``None`` uses the task's.
    demonstrations:
        Solved examples (from the train split) rendered before the query.
    separator:
        What joins instruction, demonstrations and query.
    calibrate:
        Score this prompt with contextual calibration (classification tasks only).  A
        scorer built with ``calibrate=True`` calibrates every prompt anyway.
    """

    template: str
    instruction: str = ""
    # given as {label: word or [words]}; stored normalised as {str label: (words, ...)}
    verbalizer: Mapping[Any, Any] | None = None
    demonstrations: tuple[Example, ...] = ()
    separator: str = DEFAULT_SEPARATOR
    calibrate: bool = False
    _parsed: Template = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_parsed", Template(self.template))
        if not isinstance(self.instruction, str):
            raise ConfigError(
                f"instruction must be a string; got {type(self.instruction).__name__}"
            )
        if not isinstance(self.calibrate, bool):
            raise ConfigError(f"calibrate must be True or False; got {self.calibrate!r}")
        if self.verbalizer is not None:
            object.__setattr__(self, "verbalizer", normalize_verbalizer(self.verbalizer))
        if not isinstance(self.demonstrations, tuple):
            object.__setattr__(self, "demonstrations", tuple(self.demonstrations))
        for demo in self.demonstrations:
            if not isinstance(demo, Example):
                raise ConfigError(
                    f"demonstrations must be Example objects; got {type(demo).__name__}"
                )
            missing = [f for f in self._parsed.fields if f not in demo.inputs]
            if missing:
                raise TemplateError(
                    f"demonstration {demo.id!r} lacks field(s) {missing} used by template "
                    f"{self.template!r}"
                )

    # -- identity ---------------------------------------------------------------------

    @property
    def fields(self) -> tuple[str, ...]:
        return self._parsed.fields

    def canonical(self) -> dict[str, Any]:
        """What identifies the prompt: its rendering skeleton, its verbalizer, and
        ``calibrate`` when on (absent when off, so older hashes stay as they were)."""
        blocks = []
        if self.instruction.strip():
            blocks.append(_escape(self.instruction))
        blocks.extend(_escape(self._render_demo(d)) for d in self.demonstrations)
        blocks.append(self._parsed.skeleton())
        verbalizer = (
            None
            if self.verbalizer is None
            else {k: list(v) for k, v in sorted(self.verbalizer.items())}
        )
        out: dict[str, Any] = {"text": self.separator.join(blocks), "verbalizer": verbalizer}
        if self.calibrate:
            out["calibrate"] = True
        return out

    @property
    def content_hash(self) -> str:
        return content_hash(self.canonical())

    # -- rendering ------------------------------------------------------------------------

    def answer_text(self, target: str) -> str:
        """The words that stand for *target* (the label's first verbalizer word)."""
        if self.verbalizer is not None and target in self.verbalizer:
            return self.verbalizer[target][0]
        return target

    def _render_demo(self, demo: Example) -> str:
        return self._parsed.render(demo.inputs, self.answer_text(demo.target))

    def head(self) -> str:
        """The fixed text before the query: instruction and demonstrations, joined."""
        blocks = []
        if self.instruction.strip():
            blocks.append(self.instruction)
        blocks.extend(self._render_demo(d) for d in self.demonstrations)
        return "".join(block + self.separator for block in blocks)

    def render(self, example: Example | Mapping[str, str]) -> RenderedPrompt:
        """Render *example* (an :class:`Example` or a mapping of input fields)."""
        inputs = example.inputs if isinstance(example, Example) else example
        before, after = self._parsed.split(inputs)
        return RenderedPrompt(prefix=self.head() + before, suffix=after)

    # -- task binding -------------------------------------------------------------------

    def resolve(self, task: Task) -> Prompt:
        """Check the prompt against *task* and fill in the task's verbalizer if none."""
        self._parsed.check_fields(task.input_fields)
        if task.kind == "generation":
            if self.calibrate:
                raise ConfigError(
                    f"calibrate=True applies to classification prompts only; task "
                    f"{task.name!r} is a generation task: leave calibrate off for its prompts"
                )
            return self
        verbalizer = self.verbalizer if self.verbalizer is not None else task.verbalizer
        missing = [label for label in task.labels if label not in verbalizer]
        if missing:
            raise ConfigError(
                f"prompt verbalizer {dict(verbalizer)} has no word for label(s) {missing}; "
                f"the task's labels are {list(task.labels)}"
            )
        if self.verbalizer is not None:
            return self
        return Prompt(
            template=self.template,
            instruction=self.instruction,
            verbalizer=verbalizer,
            demonstrations=self.demonstrations,
            separator=self.separator,
            calibrate=self.calibrate,
        )

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The prompt as JSON-able data (``calibrate`` only when on)."""
        out: dict[str, Any] = {
            "template": self.template,
            "instruction": self.instruction,
            "verbalizer": None
            if self.verbalizer is None
            else {k: list(v) for k, v in self.verbalizer.items()},
            "demonstrations": [
                {"id": d.id, "inputs": dict(d.inputs), "target": d.target}
                for d in self.demonstrations
            ],
            "separator": self.separator,
        }
        if self.calibrate:
            out["calibrate"] = True
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prompt:
        if not isinstance(data, Mapping) or "template" not in data:
            raise ConfigError(
                f"a prompt must be a mapping with at least a 'template' key; got {data!r}"
            )
        known = {
            "template",
            "instruction",
            "verbalizer",
            "demonstrations",
            "separator",
            "calibrate",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"prompt has unknown key(s) {unknown}; allowed keys are {sorted(known)}"
            )
        demos: Sequence[Mapping[str, Any]] = data.get("demonstrations") or ()
        return cls(
            template=data["template"],
            instruction=data.get("instruction") or "",
            verbalizer=data.get("verbalizer"),
            demonstrations=tuple(
                Example(id=str(d.get("id", i)), inputs=dict(d["inputs"]), target=str(d["target"]))
                for i, d in enumerate(demos)
            ),
            separator=data.get("separator", DEFAULT_SEPARATOR),
            calibrate=data.get("calibrate", False),
        )

    def describe(self, width: int | None = None) -> str:
        """A one-line human-readable form for tables, cut to *width* characters (the
        last one an ellipsis) when given."""
        parts = []
        if self.instruction.strip():
            parts.append(self.instruction.strip())
        if self.demonstrations:
            parts.append(f"[{len(self.demonstrations)} demos]")
        parts.append(self.template)
        text = " ".join(parts).replace("\n", "\\n")
        if self.verbalizer:
            words = "/".join(v[0] for v in self.verbalizer.values())
            text += f"  ⟨{words}⟩"
        if self.calibrate:
            text += "  [calibrated]"
        if width is not None and len(text) > width:
            text = text[: max(width - 1, 0)] + "…"
        return text

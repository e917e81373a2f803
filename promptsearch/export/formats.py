"""One prompt in the formats other tools read: JSON, text, chat messages, DSPy.

- ``json``: the structured prompt (:meth:`Prompt.to_dict`, or an ensemble's members)
  with what is known about it.
- ``text``: the whole prompt as one :meth:`str.format` template: instruction and
  demonstrations written out, ``{field}`` for each input field, ``{answer}`` where
  the answer goes, literal braces doubled.  ``Prompt(template=text)`` renders exactly
  as the prompt did and has the same content hash (with the same verbalizer).
- ``messages``: an OpenAI-style chat: the instruction as the system message, each
  demonstration as a user turn and an assistant turn (its answer), and a last user
  turn that is a :meth:`str.format` template with ``{field}`` slots.  A prompt scored
  as chat turns (``--chat-template``) is written as it was scored instead: one user
  turn (instruction, demonstrations and input lines) and ``assistant_prefix``, the
  text the assistant's turn began with before the answer (``"Sentiment: "``).
- ``dspy``: the JSON that ``dspy.Predict(signature).load(path)`` reads (the state
  ``Predict.save`` writes, DSPy 2.6 to 3.4): instructions, one entry per signature
  field (inputs in the template's order, then ``answer``), the demonstrations.

The last three hold one prompt: an ensemble is refused (export one member, or JSON).
The task's label words fill in for a prompt that has none of its own, so every format
carries them (text: see :func:`label_words_line`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.prompt import Prompt
from promptsearch.template import ANSWER, Literal, Template

if TYPE_CHECKING:
    from promptsearch.scoring.chat import ChatFormat
    from promptsearch.study.ensemble import PromptEnsemble

__all__ = [
    "DSPY_VERSIONS",
    "FORMATS",
    "dspy_signature",
    "dspy_state",
    "export_prompt",
    "label_words",
    "label_words_line",
    "prompt_messages",
    "prompt_text",
    "with_label_words",
]

FORMATS = ("json", "text", "messages", "dspy")
"""What ``export --format`` takes; all but ``json`` hold one prompt."""

DSPY_VERSIONS = "2.6 to 3.4"
"""The DSPy releases whose ``Predict.save``/``load`` JSON layout the ``dspy`` format
follows (read from their sources: 2.6.0 and 3.4.1)."""


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def with_label_words(prompt: Prompt, verbalizer: Mapping[str, Any] | None) -> Prompt:
    """*prompt* with *verbalizer* (the task's label words) when it has none of its own."""
    if prompt.verbalizer is not None or not verbalizer:
        return prompt
    return Prompt(
        template=prompt.template,
        instruction=prompt.instruction,
        verbalizer=verbalizer,
        demonstrations=prompt.demonstrations,
        separator=prompt.separator,
    )


def label_words(prompt: Prompt) -> dict[str, list[str]] | None:
    """``{label: [words]}``: the first word is what stands in the answer slot."""
    if prompt.verbalizer is None:
        return None
    return {label: list(words) for label, words in prompt.verbalizer.items()}


def label_words_line(prompt: Prompt) -> str | None:
    """``label words: 0=negative, 1=positive|good`` (None without label words): what the
    command line shows next to the ``text`` format, which has no room for them."""
    words = label_words(prompt)
    if not words:
        return None
    pairs = ", ".join(f"{label}={'|'.join(w)}" for label, w in words.items())
    return f"label words: {pairs} (the first word of a label fills {{{ANSWER}}})"


# -- text and messages -----------------------------------------------------------------------


def prompt_text(prompt: Prompt) -> str:
    """The prompt as one :meth:`str.format` template (see the module docstring).

    It is the prompt's rendering skeleton, the text its content hash is taken over."""
    return str(prompt.canonical()["text"])


def _query_template(template: Template) -> str:
    """The template before its answer slot, with ``{field}`` slots kept and literal
    braces doubled."""
    out: list[str] = []
    for part in template.parts:
        if isinstance(part, Literal):
            out.append(_escape(part.text))
        elif part.name == ANSWER:
            break
        else:
            out.append("{" + part.name + "}")
    return "".join(out)


def prompt_messages(prompt: Prompt) -> list[dict[str, str]]:
    """The prompt as chat messages (``role``/``content``).

    The system message is the instruction (none without one).  A demonstration is a
    user turn, the template up to the answer slot, and an assistant turn, the answer
    and the template's text after the slot.  The last user turn is the query as a
    :meth:`str.format` template; the earlier turns are plain text.  User turns lose
    trailing white space (the answer is a turn of its own)."""
    template = Template(prompt.template)
    messages: list[dict[str, str]] = []
    if prompt.instruction.strip():
        messages.append({"role": "system", "content": prompt.instruction})
    for demo in prompt.demonstrations:
        before, after = template.split(demo.inputs)
        messages.append({"role": "user", "content": before.rstrip()})
        messages.append({"role": "assistant", "content": prompt.answer_text(demo.target) + after})
    messages.append({"role": "user", "content": _query_template(template).rstrip()})
    return messages


# -- DSPy --------------------------------------------------------------------------------------


_PUNCTUATION = ".,;:!?)]}>-–—"


def _default_prefix(name: str) -> str:
    return " ".join(word.capitalize() for word in name.split("_") if word) + ":"


def _prefixes(template: Template) -> dict[str, str]:
    """Each slot's label: the template's text on the same line just before the slot's
    first use, less the end of the previous sentence (``Review:`` in ``{topic}.
    Review: {sentence}``), else the field name (``Sentence:``)."""
    out: dict[str, str] = {}
    previous = ""
    for part in template.parts:
        if isinstance(part, Literal):
            previous = part.text
            continue
        if part.name not in out:
            label = previous.rsplit("\n", 1)[-1].strip().lstrip(_PUNCTUATION).strip()
            out[part.name] = label or _default_prefix(part.name)
        previous = ""
    return out


def dspy_signature(prompt: Prompt) -> str:
    """The DSPy signature the exported state fits: ``"sentence -> answer"``."""
    return f"{', '.join(prompt.fields)} -> {ANSWER}"


def dspy_state(prompt: Prompt, about: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The state ``dspy.Predict(dspy_signature(prompt)).load(path)`` reads.

    ``signature.instructions`` is the instruction (DSPy's own default sentence when
    the prompt has none); ``signature.fields`` has, in the signature's order, a prefix
    (the template's label for the slot) and a description (``${name}``: none, as DSPy
    writes it; for the answer of a classification prompt, the words it may be); the
    demonstrations are ``{field: text, "answer": answer}``.  ``metadata`` has the
    empty ``dependency_versions`` DSPy's ``load`` looks up (so it warns of no version
    mismatch) and, under ``promptsearch``, the signature, the label words, the
    structured prompt and *about* (where it came from)."""
    template = Template(prompt.template)
    prefixes = _prefixes(template)
    inputs = prompt.fields
    instructions = prompt.instruction.strip() or (
        f"Given the fields {', '.join(f'`{name}`' for name in inputs)}, "
        f"produce the fields `{ANSWER}`."
    )
    fields = [{"prefix": prefixes[name], "description": f"${{{name}}}"} for name in inputs]
    words = label_words(prompt)
    answer_description = (
        f"${{{ANSWER}}}" if not words else "one of: " + ", ".join(w[0] for w in words.values())
    )
    fields.append({"prefix": prefixes[ANSWER], "description": answer_description})
    demos = [
        {**{name: demo.inputs[name] for name in inputs}, ANSWER: prompt.answer_text(demo.target)}
        for demo in prompt.demonstrations
    ]
    return {
        "traces": [],
        "train": [],
        "demos": demos,
        "signature": {"instructions": instructions, "fields": fields},
        "lm": None,
        "metadata": {
            "dependency_versions": {},
            "promptsearch": {
                "signature": dspy_signature(prompt),
                "label_words": words,
                "prompt": prompt.to_dict(),
                **dict(about or {}),
            },
        },
    }


# -- one entry point -----------------------------------------------------------------------------


def _members(prompt: Prompt | PromptEnsemble) -> tuple[Prompt, ...] | None:
    """None for a prompt, the members of an ensemble; anything else is refused."""
    if isinstance(prompt, Prompt):
        return None
    from promptsearch.study.ensemble import PromptEnsemble

    if isinstance(prompt, PromptEnsemble):
        return prompt.members
    raise ConfigError(f"export: expected a Prompt or a PromptEnsemble; got {type(prompt).__name__}")


def export_prompt(
    prompt: Prompt | PromptEnsemble,
    format: str = "json",
    *,
    about: Mapping[str, Any] | None = None,
    verbalizer: Mapping[str, Any] | None = None,
    chat: ChatFormat | None = None,
) -> str:
    """*prompt* written in *format* (one of :data:`FORMATS`), as the text of a file.

    *about* (JSON-able facts: its hash, scores, study, ...) goes into ``json``,
    ``messages`` and ``dspy``; *verbalizer* (the task's label words) fills in for a
    prompt without its own.  ``text`` is the template exactly (no final newline); the
    others are indented JSON ending in a newline.  *chat*: the chat format the prompt
    was scored in (a study run with ``--chat-template`` on): ``text`` is then the
    whole exchange the model read, turn markers included, and ``messages`` one user
    turn with the ``assistant_prefix`` the answer followed (see the module docstring)."""
    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}; got {format!r}")
    facts = dict(about or {})
    members = _members(prompt)
    if format == "json":
        words: Any = (
            label_words(with_label_words(prompt, verbalizer))
            if isinstance(prompt, Prompt)
            else [label_words(with_label_words(m, verbalizer)) for m in members or ()]
        )
        return _dumps({"prompt": prompt.to_dict(), **facts, "label_words": words})
    if not isinstance(prompt, Prompt):
        count = len(members or ())
        raise ConfigError(
            f"--format {format} holds one prompt, and this is an ensemble of {count}: "
            f"add --member N (1 to {count}) to export one member, or use --format json "
            "for the whole ensemble"
        )
    single = with_label_words(prompt, verbalizer)
    if format == "text":
        return prompt_text(single if chat is None else chat.apply(single))
    if format == "messages":
        if chat is None:
            messages, prefix = prompt_messages(single), ""
        else:
            user, prefix = chat.exchange(single)
            messages = [{"role": "user", "content": user}]
        return _dumps(
            {
                "messages": messages,
                "assistant_prefix": prefix,
                "fields": list(single.fields),
                "label_words": label_words(single),
                "source": facts,
            }
        )
    return _dumps(dspy_state(single, about=facts))


def _dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

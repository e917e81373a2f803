"""Prompts as chat turns: how a model's chat template opens a user turn and hands over
to the assistant, and prompts rewritten as one such exchange.

With ``chat_template`` on (``promptsearch run --chat-template on``, ``Scorer(...,
chat_template="on")``), every prompt is scored as one exchange of the model's own
chat template: the instruction, the demonstrations and the query's input lines are
the user's turn; the template's line with the answer slot (``Sentiment: {answer}``)
opens the assistant's turn, so the answer is scored as the first words the assistant
says.  A template on one line splits after its last input slot (``{sentence} It was
{answer}.`` gives the user ``{sentence}`` and the assistant ``It was {answer}.``); a
template with no input slot before the answer puts all of its text before the slot in
the user's turn.  For SmolLM2 the rendering of ``Review: {sentence}\\nSentiment:
{answer}`` reads::

    <|im_start|>user
    Review: a great movie.<|im_end|>
    <|im_start|>assistant
    Sentiment: positive

The turn markers are read off the tokenizer's ``apply_chat_template`` rendering of a
two-exchange conversation (:func:`chat_turns`), so a default system prompt that the
template puts before the first turn is left out, and the text starts with the user
turn's marker.  When the tokenizer itself starts every text with that marker's first
token (SmolLM2's starts every text with ``<|im_start|>``), the rendering leaves it
out, so it is not there twice.

A prompt whose own text already hands over to the assistant (such as the chat-format
templates of the ``optuna`` searcher) is scored as it is, never wrapped twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.prompt import Prompt

if TYPE_CHECKING:
    from promptsearch.models.base import LanguageModel

__all__ = [
    "CHAT_TEMPLATE_SETTINGS",
    "ChatFormat",
    "chat_split",
    "chat_turns",
    "chat_variant",
    "check_chat_template",
    "resolve_chat_template",
    "study_chat_format",
]

CHAT_TEMPLATE_SETTINGS = ("auto", "on", "off")
"""``chat_template`` values: ``on`` (the model must have a chat template), ``off``
(plain text, the default), ``auto`` (on where the model has a chat template)."""


def check_chat_template(value: object) -> str:
    """*value* as one of :data:`CHAT_TEMPLATE_SETTINGS` (``True``/``False`` mean on/off)."""
    if value is True or value is False:
        return "on" if value else "off"
    if isinstance(value, str) and value in CHAT_TEMPLATE_SETTINGS:
        return value
    raise ConfigError(f"chat_template must be 'auto', 'on' or 'off' (or True/False); got {value!r}")


def chat_turns(tokenizer: Any) -> tuple[str, str] | None:
    """How the tokenizer's chat template opens a user turn and hands over to the
    assistant: ``(user_open, assistant_open)``, read off a two-exchange rendering (so a
    default system prompt before the first turn is left out).  ``None`` when the
    tokenizer has no chat template or it renders in a way this cannot read."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    marks = ["\x00u1\x00", "\x00a1\x00", "\x00u2\x00", "\x00a2\x00"]
    messages = [
        {"role": role, "content": mark}
        for role, mark in zip(["user", "assistant"] * 2, marks, strict=True)
    ]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # a template that refuses these messages: no chat format
        return None
    if not isinstance(text, str) or any(text.count(mark) != 1 for mark in marks):
        return None
    at = [text.index(mark) for mark in marks]
    if at != sorted(at):
        return None
    assistant_open = text[at[0] + len(marks[0]) : at[1]]
    between = text[at[1] + len(marks[1]) : at[2]]
    end_of_turn = text[at[3] + len(marks[3]) :]
    user_open = (
        between[len(end_of_turn) :] if end_of_turn and between.startswith(end_of_turn) else between
    )
    if not user_open.strip() or not assistant_open.strip():
        return None
    return user_open, assistant_open


def _masked(template: str) -> str:
    """*template* with its escaped braces hidden (same length), so that slot braces
    are the only ``{`` and ``}`` left (read left to right, as templates parse)."""
    out: list[str] = []
    i = 0
    while i < len(template):
        if template.startswith("{{", i) or template.startswith("}}", i):
            out.append("\x01\x01" if template[i] == "{" else "\x02\x02")
            i += 2
        elif template[i] == "{" and (close := template.find("}", i + 1)) > 0:
            out.append(template[i : close + 1])
            i = close + 1
        else:
            out.append(template[i])
            i += 1
    return "".join(out)


def chat_split(template: str) -> tuple[str, str] | None:
    """*template* split into the user's part and the assistant's, both template
    sources: the lines before the answer slot's line, and that line on (``("Review:
    {sentence}", "Sentiment: {answer}")``).  A one-line template splits after its last
    input slot.  ``None`` if it cannot be split so."""
    masked = _masked(template)
    answer = masked.find("{answer}")
    if answer < 0:
        return None
    line_start = masked.rfind("\n", 0, answer)
    if line_start > 0:
        user, assistant = template[:line_start].rstrip(), template[line_start + 1 :].lstrip()
    else:
        last_slot = masked.rfind("}", 0, answer)
        if last_slot < 0:
            return None
        user, assistant = template[: last_slot + 1], template[last_slot + 1 :].strip()
    if not user.strip() or "{answer}" not in _masked(assistant):
        return None
    return user, assistant


def chat_variant(template: str, turns: tuple[str, str]) -> str | None:
    """*template* as one chat exchange: the input lines as the user's turn, the line
    with the answer slot as the start of the assistant's (``<|im_start|>user\\nReview:
    {sentence}<|im_end|>\\n<|im_start|>assistant\\nSentiment: {answer}``).  A one-line
    template splits after its last input slot.  ``None`` if it cannot be split so."""
    parts = chat_split(template)
    if parts is None:
        return None
    user_open, assistant_open = (_brace(t) for t in turns)
    return f"{user_open}{parts[0]}{assistant_open}{parts[1]}"


def _brace(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class ChatFormat:
    """A model's chat turns, and prompts rewritten as one exchange of them.

    ``user_open``/``assistant_open``: see :func:`chat_turns`.  ``lead``: the text of
    the special tokens the tokenizer puts before every text; a rendering that starts
    with it leaves it out (the tokenizer adds it back as a token).
    """

    user_open: str
    assistant_open: str
    lead: str = ""

    @classmethod
    def of(cls, model: LanguageModel) -> ChatFormat | None:
        """The chat format of *model*'s tokenizer, or ``None`` when it has none."""
        tokenizer: Any = getattr(model, "tokenizer", None)
        turns = chat_turns(tokenizer)
        if turns is None:
            return None
        from promptsearch.scoring.backends.base import special_tokens

        lead_ids = list(special_tokens(tokenizer).lead)
        lead = ""
        if lead_ids:
            lead = tokenizer.decode(
                lead_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
            )
        return cls(turns[0], turns[1], lead if isinstance(lead, str) else "")

    def to_dict(self) -> dict[str, str]:
        return {
            "user_open": self.user_open,
            "assistant_open": self.assistant_open,
            "lead": self.lead,
        }

    @classmethod
    def from_dict(cls, data: object, *, owner: str) -> ChatFormat:
        """The format :meth:`to_dict` wrote (as a study stores it); *owner* names the
        record in the error."""
        keys = ("user_open", "assistant_open", "lead")
        if not (
            isinstance(data, Mapping)
            and set(data) == set(keys)
            and all(isinstance(data[k], str) for k in keys)
        ):
            raise ConfigError(
                f"{owner} records a chat template this promptsearch cannot read ({data!r}); "
                "use the promptsearch version that ran it"
            )
        return cls(data["user_open"], data["assistant_open"], data["lead"])

    def is_chat(self, prompt: Prompt) -> bool:
        """Whether *prompt*'s own text already hands over to the assistant."""
        return self.assistant_open.strip() in prompt.head() + prompt.template

    def apply(self, prompt: Prompt) -> Prompt:
        """*prompt* as one exchange (see the module docstring): an equal prompt whose
        template holds the turn markers, the instruction and the rendered
        demonstrations.  A prompt already in chat format comes back as it is."""
        if self.is_chat(prompt):
            return prompt
        template = prompt.template
        parts = chat_split(template)
        if parts is None:  # no line or input slot to split at: the answer opens the turn
            at = _masked(template).find("{answer}")
            parts = (template[:at].rstrip(), template[at:])
        user, assistant = parts
        text = (
            _brace(self.user_open)
            + _brace(prompt.head())
            + user
            + _brace(self.assistant_open)
            + assistant
        )
        return Prompt(template=text, verbalizer=prompt.verbalizer)

    def exchange(self, prompt: Prompt) -> tuple[str, str]:
        """*prompt* as the turns of :meth:`apply`: the user's turn, a template source
        with the input slots (instruction, demonstrations and input lines; literal
        braces doubled), and the plain text the assistant's turn starts with before
        the answer (``("Review: {sentence}", "Sentiment: ")``).  The turn markers are
        left out; text after the answer slot is not part of either."""
        text = str(self.apply(prompt).canonical()["text"])
        answer = _masked(text).find("{answer}")
        user_open, assistant_open = _brace(self.user_open), _brace(self.assistant_open)
        cut = text.rfind(assistant_open, 0, answer)
        if cut < 0:  # cannot happen for a prompt apply() wrapped; a chat prompt of its own
            raise ConfigError(
                f"prompt {prompt.describe(width=40)!r} does not hand over to the assistant "
                "before its answer slot, so it cannot be written as chat turns; use "
                "--format text or json"
            )
        user = text[:cut].replace(user_open, "", 1)
        prefix = text[cut + len(assistant_open) : answer]
        return user, prefix.replace("{{", "{").replace("}}", "}")

    def scored(self, prompt: Prompt) -> Prompt:
        """:meth:`apply`, less a leading :attr:`lead` (the tokenizer adds it as a
        token): the prompt the scorer renders."""
        wrapped = self.apply(prompt)
        lead = _brace(self.lead)
        if not lead or wrapped.head() or not wrapped.template.startswith(lead):
            return wrapped
        return Prompt(
            template=wrapped.template[len(lead) :],
            instruction=wrapped.instruction,
            verbalizer=wrapped.verbalizer,
            separator=wrapped.separator,
        )


def resolve_chat_template(
    model: LanguageModel, setting: str | bool | ChatFormat
) -> ChatFormat | None:
    """The chat format *setting* asks for with *model*: ``None`` for off (and for
    ``auto`` on a model without a chat template); ``on`` without one is a
    :class:`ConfigError` that names the option and the fix."""
    if isinstance(setting, ChatFormat):
        return setting
    choice = check_chat_template(setting)
    if choice == "off":
        return None
    found = ChatFormat.of(model)
    if found is None and choice == "on":
        raise ConfigError(
            f"--chat-template on (chat_template='on'): model {model.name!r} has no chat "
            "template to render prompts with (or one this cannot read); use off, or auto "
            "to render as chat turns only with models that have one"
        )
    return found


def study_chat_format(config: Mapping[str, Any], *, owner: str) -> ChatFormat | None:
    """The chat format a study's *config* records (``None``: it scored plain text).
    ``study_chat_format(record.config, owner=...).apply(prompt)`` is the prompt as the
    study's model saw it, e.g. for an export."""
    stored = config.get("chat_template")
    return None if stored is None else ChatFormat.from_dict(stored, owner=owner)

"""Answer keys: plain templates that name what the answer is, ranked by the model.

A plain format such as ``Input: {sentence}\\nOutput: {answer}`` says nothing about what
kind of answer comes next, and on a small model that costs more than any instruction:
with the task's own label words (negative/positive), the embedded
SmolLM2-135M-Instruct scored 0.50 on SST-2's k-shot train and dev examples with
``Input:``/``Output:`` and 0.81 with ``Text: {sentence}\\nSentiment: {answer}``
(docs/benchmarks.md, session 38).  The word before the answer slot, the *answer key*,
tells the model which of its meanings the label words have.

:data:`ANSWER_KEYS` is a fixed vocabulary of names that datasets give their answer
fields.  The model ranks them for a task without seeing a single example: for each key
it scores the task's label words after ``{key}:`` on the scorer's content-free inputs
(those of contextual calibration: ``"N/A"``, ``""``, ``"[MASK]"`` by default), and a
key ranks by the mean log-probability of the label words there, over labels and
inputs (the geometric mean of their probabilities), so a key ranks high only where
every label word is a likely value of it.  No train, dev or test example is read, so
a template with a key from this vocabulary is made of the task's own parts (it is
tested on train examples too in the final pick, see
:mod:`promptsearch.study.train_confirm`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from promptsearch.errors import ConfigError
from promptsearch.example import Example
from promptsearch.prompt import Prompt
from promptsearch.searchers._prompt_space import field_lines
from promptsearch.searchers.base import TrainView
from promptsearch.task import Task

if TYPE_CHECKING:
    from promptsearch.scoring.scorer import Scorer

__all__ = ["ANSWER_KEYS", "answer_key_templates", "check_answer_keys", "key_template", "rank_keys"]

_log = logging.getLogger("promptsearch")

ANSWER_KEYS: tuple[str, ...] = (
    "Answer",
    "Label",
    "Class",
    "Category",
    "Type",
    "Sentiment",
    "Topic",
    "Emotion",
    "Opinion",
    "Polarity",
    "Tone",
    "Rating",
    "Verdict",
    "Subject",
    "Intent",
    "Stance",
    "Domain",
    "Relation",
    "Language",
    "Style",
)
"""Names that datasets commonly give their answer fields; the ``"auto"`` vocabulary."""


def check_answer_keys(value: object, owner: str) -> tuple[str, ...]:
    """*value* as a tuple of keys: ``"auto"`` is :data:`ANSWER_KEYS`, ``False`` none,
    else a list of one-line words without braces or colons."""
    if value is False:
        return ()
    if value == "auto":
        return ANSWER_KEYS
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ConfigError(
            f"{owner}: answer_keys must be 'auto', False or a non-empty list of words such "
            f"as ['Sentiment', 'Topic']; got {value!r}"
        )
    keys: list[str] = []
    for key in value:
        if not isinstance(key, str) or not key.strip() or any(c in key for c in "{}:\n"):
            raise ConfigError(
                f"{owner}: each of answer_keys must be a non-empty word without braces, "
                f"colons or line breaks, e.g. 'Sentiment'; got {key!r}"
            )
        if key.strip() not in keys:
            keys.append(key.strip())
    return tuple(keys)


def key_template(fields: Sequence[str], key: str) -> str:
    """``Text: {x}\\n{key}: {answer}`` for one input field; for several, one
    ``Name: {name}`` line per field before the key's line."""
    lines = [f"Text: {{{fields[0]}}}"] if len(fields) == 1 else field_lines(fields)
    return "\n".join([*lines, f"{key}: {{answer}}"])


def answer_key_templates(task: TrainView, keys: Sequence[str] = ANSWER_KEYS) -> list[str]:
    """The key templates of *keys* for a classification *task* (none for other tasks)."""
    if task.kind != "classification":
        return []
    return [key_template(task.input_fields, key) for key in keys]


def rank_keys(scorer: Scorer, task: TrainView, keys: Sequence[str]) -> list[tuple[str, float]]:
    """*keys* with their score for *task*, best first (ties keep the order given): the
    mean log-probability of the task's label words after the key, over the labels and
    the scorer's content-free inputs.  Empty for tasks other than classification."""
    if task.kind != "classification" or not keys:
        return []
    inputs = tuple(
        Example(f"content-free-{i}", dict.fromkeys(task.input_fields, text), target=task.labels[0])
        for i, text in enumerate(scorer.content_free_inputs)
    )
    scoring_task = Task(
        name=task.name,
        kind="classification",
        input_fields=task.input_fields,
        train=task.train or inputs,
        dev=inputs,
        metric=task.metric,
        labels=task.labels,
        verbalizer=dict(task.verbalizer),
    )
    ranked: list[tuple[str, float]] = []
    for key in keys:
        prompt = Prompt(template=key_template(task.input_fields, key), verbalizer=task.verbalizer)
        report = scorer.score(prompt, inputs, scoring_task)
        values = [v for r in report.results for v in (r.label_logprobs or {}).values()]
        ranked.append((key, sum(values) / len(values) if values else float("-inf")))
    order = sorted(range(len(ranked)), key=lambda i: (-ranked[i][1], i))
    out = [ranked[i] for i in order]
    _log.debug("answer keys for %s: %s", task.name, ", ".join(f"{k} {v:.2f}" for k, v in out))
    return out

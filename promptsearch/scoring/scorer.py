"""Scoring a prompt on a task's examples with a language model.

:class:`Scorer` renders every example with the prompt, asks the model how likely each label's
verbalizer word(s) are in the answer slot (classification) or generates an answer greedily
(generation), and returns a :class:`ScoreReport` with the task metric and one
:class:`ExampleResult` per example.

Classification: a label's log-probability is the log-sum-exp over its verbalizer words, each
word scored in full (the sum of its tokens' log-probabilities); the prediction is the label with
the highest one (ties: the first label).

Generation: ``gold_logprob`` is the log-likelihood of the gold target in the answer slot, and
with ``generate=True`` (the default) the prediction is the greedy answer (up to
``max_new_tokens`` tokens, first line only for causal LMs) scored with the task metric. With
``generate=False`` nothing is generated: every prediction is ``""`` and the report ranks by
likelihood instead, with metric ``"gold_logprob"``, each example's score its gold log-likelihood
and the value their mean.

Inputs longer than the model's context are cut from the end of the example's input field values
(never the template, instruction, demonstrations or answer); such examples are marked
``truncated``. A model that gives NaN log-probabilities raises
:class:`~promptsearch.errors.ModelError` naming the example, instead of a score.

Contextual calibration (``calibrate=True``, classification only; Zhao et al. 2021, see
:mod:`promptsearch.scoring.calibration`): each ``score()`` call also scores the prompt on the
content-free inputs (each string of ``content_free_inputs`` in every input field), once per call
and counted in ``forward_passes``. ``label_logprobs`` stay the raw ones;
``calibrated_logprobs``, the prediction, the score and the metric come from the raw ones divided
by the content-free label distribution. A prompt built with ``calibrate=True``
(:attr:`promptsearch.prompt.Prompt.calibrate`) is scored so by any scorer: calibration is on for
a prompt when the scorer or the prompt says so. The scorer's own setting is part of its
fingerprint; the prompt's is part of its content hash, so cached scores of the two never mix.

With ``chat_template="on"`` each prompt is scored as one exchange of the model's chat template
(see :mod:`promptsearch.scoring.chat`).

Importing this module does not import torch; the model code loads on first use.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from promptsearch.errors import ConfigError, DataError
from promptsearch.hashing import content_hash
from promptsearch.metrics import aggregate, example_score
from promptsearch.models.base import LanguageModel
from promptsearch.prompt import Prompt
from promptsearch.scoring.batching import BatchSize
from promptsearch.scoring.calibration import (
    CONTENT_FREE_INPUTS,
    apply_calibration,
    check_content_free_inputs,
    content_free_prior,
    predict_label,
)
from promptsearch.scoring.chat import ChatFormat, resolve_chat_template
from promptsearch.scoring.finite import check_finite_results
from promptsearch.task import Example, Task

if TYPE_CHECKING:
    from promptsearch.scoring.backends.base import Backend, Encoded

__all__ = ["GOLD_LOGPROB", "SCORER_VERSION", "ExampleResult", "ScoreReport", "Scorer"]

SCORER_VERSION = 1
"""Bumped whenever a change to the scoring method changes results (part of fingerprints)."""

GOLD_LOGPROB = "gold_logprob"
"""Report metric of generation tasks scored with ``generate=False``."""


@dataclass(frozen=True)
class ExampleResult:
    """How one example fared under one prompt.

    ``prediction``: the predicted label (classification) or generated text
    (generation).  ``score``: the per-example metric value.  ``label_logprobs``:
    classification only, the log-probability of each label.  ``gold_logprob``:
    generation only, the log-likelihood of the gold output given the prompt.
    ``truncated``: the input fields had to be cut to fit the model's context.
    ``calibrated_logprobs``: with contextual calibration only, the label
    log-probabilities after calibration (normalised over the labels); the prediction
    is their argmax, while ``label_logprobs`` stay raw.
    """

    example_id: str
    prediction: str
    correct: bool
    score: float
    label_logprobs: dict[str, float] | None
    gold_logprob: float | None
    truncated: bool
    calibrated_logprobs: dict[str, float] | None = None


@dataclass
class ScoreReport:
    """The result of scoring one prompt on a set of examples.

    ``value`` is the task-level metric; ``forward_passes`` counts the sequences run
    through the model (a generated sequence counts once, content-free inputs count
    too); ``seconds`` is wall time.  ``content_free_probs``: with contextual
    calibration only, ``p_cf``, the mean label distribution of the content-free inputs.
    ``chat``: the prompt was scored as a chat exchange (``chat_template``).
    """

    metric: str
    value: float
    results: list[ExampleResult]
    forward_passes: int
    seconds: float
    n_truncated: int
    content_free_probs: dict[str, float] | None = None
    chat: bool = False

    @property
    def examples_per_second(self) -> float:
        """Throughput of this scoring call."""
        return len(self.results) / self.seconds if self.seconds > 0 else float("inf")


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer (1 or more); got {value!r}")
    return value


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


class Scorer:
    """Scores prompts with one model.

    Parameters
    ----------
    model:
        A :class:`~promptsearch.models.base.LanguageModel` from ``load_model``/``wrap_model``.
    batch_size:
        Sequences per forward pass (does not change results), or ``"auto"``: start
        large and halve on out-of-memory, keeping the size that worked (see
        :mod:`promptsearch.scoring.batching`).
    max_new_tokens:
        Longest generated answer for generation tasks.
    generate:
        Generate answers for generation tasks; ``False`` ranks by gold likelihood only.
    calibrate:
        Contextual calibration of every prompt of classification tasks (see the module
        docstring); scoring a generation task with it raises :class:`ConfigError`.
        Without it, only prompts with ``calibrate=True`` are calibrated.
    content_free_inputs:
        The content-free strings calibration shows the prompt, each in every input
        field (default ``("N/A", "", "[MASK]")``).
    share_prefix:
        Causal LMs only: run the token ids that all examples start with (instruction,
        demonstrations, template text) once and share their keys and values (see
        :mod:`promptsearch.scoring.backends.prefix_cache`); results equal the plain path up
        to rounding.
    chat_template:
        ``"off"`` (plain text), ``"on"`` or ``"auto"`` (on where the model has one):
        prompts as chat exchanges (see :mod:`promptsearch.scoring.chat`).
    """

    def __init__(
        self,
        model: LanguageModel,
        *,
        batch_size: int | str = 16,
        max_new_tokens: int = 24,
        generate: bool = True,
        calibrate: bool = False,
        content_free_inputs: Sequence[str] = CONTENT_FREE_INPUTS,
        share_prefix: bool = True,
        chat_template: str | bool | ChatFormat = "off",
    ) -> None:
        if not isinstance(model, LanguageModel):
            kind = type(model).__name__
            raise ConfigError(f"model must be a LanguageModel from load_model(); got {kind}")
        self.model = model
        """The model that scores (read it; build a new Scorer for another model)."""
        self._sizer = BatchSize(batch_size, device_type=model.device.type)
        self._max_new_tokens = _positive_int("max_new_tokens", max_new_tokens)
        if self._max_new_tokens >= model.max_length:
            raise ConfigError(
                f"max_new_tokens must be below the model's context of {model.max_length} "
                f"tokens; got {max_new_tokens}"
            )
        if not isinstance(generate, bool):
            raise ConfigError(f"generate must be True or False; got {generate!r}")
        self._generate = generate
        if not isinstance(calibrate, bool):
            raise ConfigError(f"calibrate must be True or False; got {calibrate!r}")
        self._calibrate = calibrate
        self._content_free = check_content_free_inputs(content_free_inputs)
        if not isinstance(share_prefix, bool):
            raise ConfigError(f"share_prefix must be True or False; got {share_prefix!r}")
        self._share_prefix = share_prefix
        self._chat = resolve_chat_template(model, chat_template)
        self._backend: Backend | None = None
        self._backend_model: LanguageModel | None = None

    @property
    def batch_size(self) -> int:
        """Rows per forward pass (with ``"auto"``: the size in use now)."""
        return self._sizer.size

    @property
    def auto_batch_size(self) -> bool:
        return self._sizer.auto

    @property
    def share_prefix(self) -> bool:
        return self._share_prefix

    @property
    def max_new_tokens(self) -> int:
        return self._max_new_tokens

    @property
    def generate(self) -> bool:
        return self._generate

    @property
    def calibrate(self) -> bool:
        return self._calibrate

    @property
    def content_free_inputs(self) -> tuple[str, ...]:
        return self._content_free

    @property
    def chat(self) -> ChatFormat | None:
        """The chat turns prompts are scored in, or ``None`` when they are plain text."""
        return self._chat

    @property
    def calibration(self) -> dict[str, object] | None:
        """The calibration settings (JSON-able), or ``None`` when calibration is off."""
        if not self._calibrate:
            return None
        return {"method": "contextual", "content_free_inputs": list(self._content_free)}

    @property
    def fingerprint(self) -> str:
        """Identifies the scores this scorer gives: the model and result-changing settings."""
        settings: dict[str, object] = {
            "model": self.model.fingerprint,
            "max_length": self.model.max_length,
            "max_new_tokens": self._max_new_tokens,
            "generate": self._generate,
            "version": SCORER_VERSION,
        }
        if self._calibrate:  # absent when off, so raw fingerprints stay as they were
            settings["calibration"] = self.calibration
        if self._chat is not None:  # likewise absent when prompts are plain text
            settings["chat_template"] = self._chat.to_dict()
        return content_hash(settings)

    def __repr__(self) -> str:
        return (
            f"Scorer(model={self.model.name!r}, "
            f"batch_size={'auto' if self._sizer.auto else self._sizer.size!r}, "
            f"max_new_tokens={self._max_new_tokens}, generate={self._generate}, "
            f"calibrate={self._calibrate}, chat_template={'on' if self._chat else 'off'!r})"
        )

    # -- scoring ---------------------------------------------------------------------------

    def _get_backend(self) -> Backend:
        if self._backend is None or self._backend_model is not self.model:
            from promptsearch.scoring.backends import make_backend

            self._backend = make_backend(self.model, self._sizer, share_prefix=self._share_prefix)
            self._backend_model = self.model
        return self._backend

    def _fit(
        self, backend: Backend, prompt: Prompt, example: Example, words: Sequence[str], budget: int
    ) -> tuple[Encoded, bool]:
        """Encode *example*, cutting its input fields from the end until it fits."""
        from promptsearch.scoring.backends.base import encode_text

        limit = self.model.max_length
        values = dict(example.inputs)
        encoded = backend.encode(prompt.render(values), words, budget)
        if encoded.length <= limit:
            return encoded, False
        tokenizer = self.model.tokenizer
        while encoded.length > limit:
            counts = {name: len(encode_text(tokenizer, values[name])) for name in prompt.fields}
            longest = max(prompt.fields, key=lambda name: counts[name], default=None)
            if longest is None or counts[longest] == 0:
                extra = f" plus max_new_tokens={budget} to generate" if budget else ""
                raise DataError(
                    f"prompt {prompt.describe(width=120)!r} needs {encoded.length} tokens{extra} "
                    f"for example {example.id!r} even with its input fields emptied, more than the "
                    f"{limit}-token context of model {self.model.name!r}; shorten the "
                    "instruction or template, use fewer demonstrations, or use a model with "
                    "a longer context"
                )
            ids = encode_text(tokenizer, values[longest])
            keep = max(0, len(ids) - (encoded.length - limit))
            text = values[longest]
            shorter = (
                tokenizer.decode(
                    ids[:keep], skip_special_tokens=True, clean_up_tokenization_spaces=False
                )
                if keep
                else ""
            )
            values[longest] = shorter if len(shorter) < len(text) else text[:-1]
            encoded = backend.encode(prompt.render(values), words, budget)
        return encoded, True

    def score(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> ScoreReport:
        """Score *prompt* on *examples* of *task*."""
        if not isinstance(prompt, Prompt):
            raise ConfigError(f"prompt must be a Prompt; got {type(prompt).__name__}")
        if not isinstance(task, Task):
            raise ConfigError(f"task must be a Task; got {type(task).__name__}")
        examples = list(examples)
        for example in examples:
            if not isinstance(example, Example):
                raise ConfigError(
                    "examples must be Example objects (e.g. task.dev); got "
                    f"{type(example).__name__}"
                )
        if task.kind == "generation" and self._calibrate:
            raise ConfigError(
                f"calibrate=True applies to classification tasks only; task {task.name!r} is a "
                "generation task; score it with a Scorer built with calibrate=False"
            )
        if task.kind == "generation" and self.model.kind == "masked":
            raise ConfigError(
                f"task {task.name!r} is a generation task, which model {self.model.name!r} (a "
                "masked LM) cannot do; use a causal or seq2seq model"
            )
        started = time.perf_counter()
        prompt = prompt.resolve(task)
        if self._chat is not None:
            prompt = self._chat.scored(prompt)
        if not examples:
            likelihood = task.kind == "generation" and not self._generate
            metric = GOLD_LOGPROB if likelihood else task.metric
            seconds = time.perf_counter() - started
            return ScoreReport(metric, 0.0, [], 0, seconds, 0, chat=self._chat is not None)

        import torch

        network = self.model.model
        was_training = bool(getattr(network, "training", False))
        network.eval()
        prior: dict[str, float] | None = None
        try:
            with torch.inference_mode():
                if task.kind == "classification":
                    results, passes = self._classify(prompt, examples, task)
                    if self._calibrate or prompt.calibrate:
                        results, prior, extra = self._calibrated(prompt, task, examples, results)
                        passes += extra
                else:
                    results, passes = self._generation(prompt, examples, task)
        finally:
            if was_training:
                network.train()
        check_finite_results(
            results, prompt=prompt.describe(), model=self.model.name, infinite_scores=True
        )
        if task.kind == "generation" and not self._generate:
            metric = GOLD_LOGPROB
            value = sum(r.score for r in results) / len(results)
        else:
            metric = task.metric
            value = aggregate(
                metric,
                [r.score for r in results],
                [r.prediction for r in results],
                [e.target for e in examples],
            )
        return ScoreReport(
            metric=metric,
            value=value,
            results=results,
            forward_passes=passes,
            seconds=time.perf_counter() - started,
            n_truncated=sum(r.truncated for r in results),
            content_free_probs=prior,
            chat=self._chat is not None,
        )

    def _content_free_logprobs(
        self, prompt: Prompt, task: Task
    ) -> tuple[list[dict[str, float]], int]:
        """Raw label log-probabilities of the resolved *prompt* on each content-free input."""
        inputs = [
            Example(f"content-free-{i}", dict.fromkeys(task.input_fields, text), target="")
            for i, text in enumerate(self._content_free)
        ]
        results, passes = self._classify(prompt, inputs, task)
        logprobs = [r.label_logprobs for r in results]
        return [row for row in logprobs if row is not None], passes

    def _calibrated(
        self, prompt: Prompt, task: Task, examples: list[Example], results: list[ExampleResult]
    ) -> tuple[list[ExampleResult], dict[str, float], int]:
        """*results* with calibrated predictions; also p_cf and the content-free passes."""
        content_free, passes = self._content_free_logprobs(prompt, task)
        prior = content_free_prior(content_free)
        out = []
        for example, result in zip(examples, results, strict=True):
            values = apply_calibration(result.label_logprobs or {}, prior)
            prediction = predict_label(values)
            target = example.target
            out.append(
                dataclasses.replace(
                    result,
                    prediction=prediction,
                    correct=prediction == target,
                    score=example_score(task.metric, prediction, [target]),
                    calibrated_logprobs=values,
                )
            )
        return out, prior, passes

    def _classify(
        self, prompt: Prompt, examples: list[Example], task: Task
    ) -> tuple[list[ExampleResult], int]:
        backend = self._get_backend()
        verbalizer = prompt.verbalizer or task.verbalizer
        labels = list(task.labels)
        words = [word for label in labels for word in verbalizer[label]]
        owners = [label for label in labels for _ in verbalizer[label]]
        fitted = [self._fit(backend, prompt, e, words, 0) for e in examples]
        logprobs, passes = backend.logprobs([encoded for encoded, _ in fitted])
        results = []
        for example, (_, truncated), values in zip(examples, fitted, logprobs, strict=True):
            pairs = list(zip(values, owners, strict=True))
            per_label = {
                label: _logsumexp([v for v, owner in pairs if owner == label]) for label in labels
            }
            prediction = labels[0]
            for label in labels[1:]:
                if per_label[label] > per_label[prediction]:
                    prediction = label
            results.append(
                ExampleResult(
                    example_id=example.id,
                    prediction=prediction,
                    correct=prediction == example.target,
                    score=example_score(task.metric, prediction, [example.target]),
                    label_logprobs=per_label,
                    gold_logprob=None,
                    truncated=truncated,
                )
            )
        return results, passes

    def _generation(
        self, prompt: Prompt, examples: list[Example], task: Task
    ) -> tuple[list[ExampleResult], int]:
        backend = self._get_backend()
        budget = self._max_new_tokens if self._generate and self.model.kind == "causal" else 0
        fitted = [self._fit(backend, prompt, e, [e.target], budget) for e in examples]
        items = [encoded for encoded, _ in fitted]
        logprobs, passes = backend.logprobs(items)
        texts = [""] * len(items)
        if self._generate:
            texts, generated = backend.generate(items, self._max_new_tokens)
            passes += generated
        results = []
        rows = zip(examples, fitted, logprobs, texts, strict=True)
        for example, (_, truncated), values, text in rows:
            gold = values[0]
            if self._generate:
                score = example_score(task.metric, text, example.answers)
                correct = score >= 1.0
            else:
                score, correct = gold, False
            results.append(
                ExampleResult(
                    example_id=example.id,
                    prediction=text,
                    correct=correct,
                    score=score,
                    label_logprobs=None,
                    gold_logprob=gold,
                    truncated=truncated,
                )
            )
        return results, passes

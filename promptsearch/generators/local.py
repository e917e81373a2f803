"""Text generation with a local transformers model (causal or seq2seq):
:class:`LocalGenerator`, the backend ``local`` and ``local:NAME`` specs name.

It takes a :class:`~promptsearch.models.base.LanguageModel`, or a name loaded on
first use.  Importing this module does not import torch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from promptsearch.errors import ConfigError, ModelError
from promptsearch.generators.base import TextGenerator, cut_at_stop
from promptsearch.models.base import LanguageModel
from promptsearch.validation import check_int

__all__ = ["LocalGenerator"]

_log = logging.getLogger("promptsearch")


class LocalGenerator(TextGenerator):
    """Generation with a local transformers model (causal or seq2seq).

    Parameters
    ----------
    model:
        A :class:`~promptsearch.models.base.LanguageModel` (used as is), or a name for
        :func:`~promptsearch.models.loading.load_model` (``None``: the embedded model),
        loaded on the first :meth:`generate` call.  Masked LMs cannot generate.
    batch_size:
        How many prompts run through the model together.
    """

    def __init__(self, model: LanguageModel | str | None = None, *, batch_size: int = 8) -> None:
        if model is not None and not isinstance(model, (LanguageModel, str)):
            raise ConfigError(
                "LocalGenerator: model must be a LanguageModel, a model name for load_model, "
                f"or None for the embedded model; got {type(model).__name__}"
            )
        if isinstance(model, str) and not model.strip():
            raise ConfigError(
                "LocalGenerator: model must be a non-empty model name (or None for the "
                "embedded model); got ''"
            )
        if isinstance(model, LanguageModel):
            _check_kind(model)
        self.model = model
        self.batch_size = check_int(
            batch_size, "batch_size", minimum=1, maximum=1024, owner="LocalGenerator"
        )
        self._loaded: LanguageModel | None = model if isinstance(model, LanguageModel) else None

    def __repr__(self) -> str:
        name = self.model.name if isinstance(self.model, LanguageModel) else self.model
        return f"LocalGenerator(model={name!r}, batch_size={self.batch_size})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if not isinstance(self.model, LanguageModel):
            state["_loaded"] = None  # loaded from a name: reload on demand
        return state

    @property
    def language_model(self) -> LanguageModel:
        """The model, loaded on first use when given by name."""
        if self._loaded is None:
            from promptsearch.models.loading import load_model

            loaded = load_model(self.model if isinstance(self.model, str) else None)
            _check_kind(loaded)
            self._loaded = loaded
        return self._loaded

    def _generate(
        self,
        prompts: list[str],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        chat: bool,
        stop: tuple[str, ...],
    ) -> list[list[str]]:
        import torch

        lm = self.language_model
        sample = temperature > 0
        draws = n if sample else 1  # greedy gives the same text every time
        stops = _stop_strings(lm, stop) if stop else None
        out: list[list[str]] = []
        with torch.random.fork_rng(devices=_fork_devices(lm)), torch.inference_mode():
            torch.manual_seed(seed)
            for start in range(0, len(prompts), self.batch_size):
                chunk = prompts[start : start + self.batch_size]
                texts = self._run(lm, chunk, draws, max_new_tokens, temperature, top_p, chat, stops)
                texts = [cut_at_stop(t, stop) for t in texts]
                for i in range(len(chunk)):
                    got = texts[i * draws : (i + 1) * draws]
                    out.append(got if sample else got * n)
        return out

    # -- internals ---------------------------------------------------------------------------

    def _encode(self, lm: LanguageModel, prompt: str, chat: bool, room: int) -> list[int]:
        tokenizer = lm.tokenizer
        if chat and getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            ids = list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        else:
            ids = list(tokenizer(prompt, verbose=False)["input_ids"])
        if not ids:
            bos = getattr(tokenizer, "bos_token_id", None)
            ids = [bos if bos is not None else tokenizer.pad_token_id]
        return ids[-room:]  # keep the end, where the request and the answer cue are

    def _run(
        self,
        lm: LanguageModel,
        prompts: list[str],
        draws: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        chat: bool,
        stops: Any,
    ) -> list[str]:
        import torch

        tokenizer = lm.tokenizer
        room = max(lm.max_length - max_new_tokens, 1) if lm.kind == "causal" else lm.max_length
        encoded = [self._encode(lm, p, chat, room) for p in prompts]
        width = max(len(ids) for ids in encoded)
        pad = tokenizer.pad_token_id
        left = lm.kind == "causal"  # decoder-only models continue from the right edge
        rows, masks = [], []
        for ids in encoded:
            fill = [pad] * (width - len(ids))
            rows.append(fill + ids if left else ids + fill)
            ones, zeros = [1] * len(ids), [0] * len(fill)
            masks.append(zeros + ones if left else ones + zeros)
        input_ids = torch.tensor(rows, dtype=torch.long, device=lm.device)
        attention = torch.tensor(masks, dtype=torch.long, device=lm.device)
        options: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "num_return_sequences": draws,
            "pad_token_id": pad,
            "do_sample": temperature > 0,
        }
        if temperature > 0:
            options.update(temperature=temperature, top_p=top_p, top_k=0)
        else:
            options.update(temperature=None, top_p=None, top_k=None)
        eos = _eos_ids(lm)
        if eos:
            options["eos_token_id"] = eos
        if stops is not None:
            # the new text: after the prompts (left-padded), or after the decoder's start token
            options["stopping_criteria"] = _generated_part_only(
                stops, width if left else 1, tokenizer.all_special_ids
            )
        try:
            output = lm.model.generate(input_ids=input_ids, attention_mask=attention, **options)
        except (RuntimeError, ValueError) as error:
            raise ModelError(f"model {lm.name!r} failed to generate text: {error}") from error
        new = output[:, width:] if left else output
        return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]


def _stop_strings(lm: LanguageModel, stop: Sequence[str]) -> Any:
    """transformers' :class:`~transformers.StopStringCriteria` for *stop*.

    It matches the stop strings against the token strings of the vocabulary (a
    string may span several tokens and end inside one) and stops a sequence at the
    step where one first appears.  Building it walks the whole vocabulary once per
    tokenizer and set of stop strings; transformers caches the result.  ``None`` when
    the vocabulary cannot end any of the strings (then nothing stops early).
    """
    from transformers import StopStringCriteria

    try:
        return StopStringCriteria(lm.tokenizer, list(stop))
    except ValueError as error:  # no token of the vocabulary can end any of the strings
        _log.debug("no early stop at %r for model %r: %s", list(stop), lm.name, error)
        return None  # generate to max_new_tokens; cut_at_stop still cuts the text


def _generated_part_only(criterion: Any, start: int, special_ids: Sequence[int]) -> Any:
    """Stopping criteria that apply *criterion* to the new text only.

    *criterion* sees the tokens after column *start*: with left padding the prompts
    fill the first *start* columns of every row, and a stop string that began in the
    prompt and ended in the first new token would otherwise stop a sequence whose new
    text holds no stop string (so that :func:`cut_at_stop` would cut nothing).  It
    sees no special token either: those are replaced by an id past the vocabulary,
    which :class:`~transformers.StopStringCriteria` matches with nothing, as the
    decoded text (``skip_special_tokens=True``) holds none of them.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _NewText(StoppingCriteria):
        # the signature transformers calls; the extra keywords are its own
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            new = input_ids[:, start:]
            if special_ids:
                special = torch.isin(new, torch.tensor(list(special_ids), device=new.device))
                new = new.masked_fill(special, torch.iinfo(new.dtype).max)
            done: torch.Tensor = criterion(new, scores, **kwargs)
            return done

    return StoppingCriteriaList([_NewText()])


def _check_kind(lm: LanguageModel) -> None:
    if lm.kind not in ("causal", "seq2seq"):
        raise ConfigError(
            f"LocalGenerator: model {lm.name!r} is a {lm.kind} language model, which cannot "
            "generate text; use a causal (decoder-only) or seq2seq model"
        )


def _eos_ids(lm: LanguageModel) -> list[int]:
    ids: list[int] = []
    config = getattr(lm.model, "generation_config", None)
    configured = getattr(config, "eos_token_id", None)
    for value in configured if isinstance(configured, list) else [configured]:
        if isinstance(value, int):
            ids.append(value)
    token = getattr(lm.tokenizer, "eos_token_id", None)
    if isinstance(token, int) and token not in ids:
        ids.append(token)
    return ids


def _fork_devices(lm: LanguageModel) -> list[int]:
    """CUDA device indices whose random state :meth:`LocalGenerator.generate` must restore."""
    return [lm.device.index or 0] if lm.device.type == "cuda" else []

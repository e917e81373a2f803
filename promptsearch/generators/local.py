"""Text generation with a local transformers model (causal or seq2seq):
:class:`LocalGenerator`, the backend ``local`` and ``local:NAME`` specs name.

It takes a :class:`~promptsearch.models.base.LanguageModel`, or a name loaded on
first use.  Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from promptsearch.errors import ConfigError, ModelError
from promptsearch.generators.base import (
    TextGenerator,
    check_generate_args,
    cut_at_stop,
)
from promptsearch.models.base import LanguageModel
from promptsearch.validation import check_int

__all__ = ["LocalGenerator"]


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

    def generate(
        self,
        prompts: Sequence[str],
        *,
        n: int = 1,
        max_new_tokens: int = 64,
        temperature: float = 0.8,
        top_p: float = 0.95,
        seed: int = 0,
        chat: bool = True,
        stop: Sequence[str] = (),
    ) -> list[list[str]]:
        items = check_generate_args(
            prompts,
            n=n,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            chat=chat,
            stop=stop,
            owner="LocalGenerator.generate",
        )
        if not items:
            return []
        import torch

        lm = self.language_model
        sample = temperature > 0
        draws = n if sample else 1  # greedy gives the same text every time
        out: list[list[str]] = []
        with torch.random.fork_rng(devices=_fork_devices(lm)), torch.inference_mode():
            torch.manual_seed(seed)
            for start in range(0, len(items), self.batch_size):
                chunk = items[start : start + self.batch_size]
                texts = self._run(lm, chunk, draws, max_new_tokens, temperature, top_p, chat, stop)
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
        stop: Sequence[str],
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
        if stop:
            options["stopping_criteria"] = _stop_criteria(tokenizer, width if left else 0, stop)
        try:
            output = lm.model.generate(input_ids=input_ids, attention_mask=attention, **options)
        except (RuntimeError, ValueError) as error:
            raise ModelError(f"model {lm.name!r} failed to generate text: {error}") from error
        new = output[:, width:] if left else output
        return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]


def _stop_criteria(tokenizer: Any, start: int, stop: Sequence[str]) -> Any:
    """Stopping criteria that end each sequence once its new text holds a stop string.

    Each step decodes only a short window ending at the newest token: a stop string
    first appears at the step its last character is generated, and every token holds
    at least one character (or a piece of one), so the window needs at most as many
    tokens as the longest stop string has characters, plus one.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    window = max(len(s) for s in stop) + 1

    class _StopStrings(StoppingCriteria):
        # the signature transformers calls; the extra keywords are its, and unused
        def __call__(self, input_ids: torch.Tensor, scores: Any, **_: Any) -> torch.Tensor:
            first = max(start, input_ids.shape[1] - window)
            texts = tokenizer.batch_decode(input_ids[:, first:], skip_special_tokens=True)
            done = [any(marker in text for marker in stop) for text in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_StopStrings()])


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

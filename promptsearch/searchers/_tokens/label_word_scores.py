"""Log-probabilities of every vocabulary token in a prompt's answer slot, and the
label-word search built on them.

The answer slot is read the way the scorer reads it (see
:mod:`promptsearch.scoring.backends.base`): the prompt's prefix loses its trailing whitespace,
and a verbalizer word is scored as that whitespace plus the word.  For a token
*v* whose word ``w`` encodes, with that whitespace, as ``lead + [v]`` (``lead`` is
usually empty: ``" great"`` is the single token ``Ġgreat``; after a newline it may
be the newline token), :func:`vocab_logprobs` gives exactly the log-probability
the :class:`~promptsearch.scoring.scorer.Scorer` gives the word ``w``.

Memory stays bounded by ``batch_size x vocab``: a causal model computes its head
only on the last ``len(lead) + 1`` positions (``logits_to_keep``, or the base
model's hidden states and the output embeddings); a masked model runs its base
model and applies the head only at the mask positions (a model that is not a base
model plus one head module falls back to full logits, one sequence at a time); a
seq2seq model's decoder sees only the answer positions.

torch is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import random
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.models.base import LanguageModel
from promptsearch.prompt import Prompt
from promptsearch.searchers._tokens.label_selection import LabelWordChoice, select_label_words
from promptsearch.task import Example
from promptsearch.validation import check_int

if TYPE_CHECKING:
    import torch

    from promptsearch.scoring.backends.base import Backend, Encoded

__all__ = [
    "LabelWordChoice",
    "VocabTable",
    "answer_space",
    "candidate_logprobs",
    "search_label_words",
    "vocab_candidates",
    "vocab_logprobs",
]


@dataclass(frozen=True)
class VocabTable:
    """The vocabulary tokens that can stand alone as a label word after ``space``.

    ``words[k]`` (as a verbalizer writes it, without leading whitespace) encodes,
    after ``space``, as ``lead + (ids[k],)``.
    """

    space: str
    lead: tuple[int, ...]
    ids: tuple[int, ...]
    words: tuple[str, ...]


_TABLES: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], VocabTable]] = (
    weakref.WeakKeyDictionary()
)


def _encode_many(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def vocab_candidates(tokenizer: Any, space: str = " ", *, min_length: int = 2) -> VocabTable:
    """Whole-word tokens usable as label words after *space*.

    A token qualifies when it is not a special token, its text (leading whitespace
    removed) is ASCII letters only and at least *min_length* long, and *space* plus
    that text encodes back to the token itself, after the same *lead* tokens as the
    majority of such words (so ``Ġgreat`` qualifies for BPE, ``great`` but not
    ``##ing`` for WordPiece, ``▁great`` for SentencePiece).
    """
    min_length = check_int(min_length, "min_length", minimum=1)
    try:
        cache = _TABLES.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced: no cache
        cache = {}
    key = (space, min_length)
    if key in cache:
        return cache[key]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    size = len(tokenizer)
    texts = tokenizer.batch_decode(
        [[i] for i in range(size)], skip_special_tokens=False, clean_up_tokenization_spaces=False
    )
    ids: list[int] = []
    words: list[str] = []
    for i, text in enumerate(texts):
        word = text.strip()
        if i in special or len(word) < min_length or not (word.isascii() and word.isalpha()):
            continue
        ids.append(i)
        words.append(word)
    encoded = _encode_many(tokenizer, [space + w for w in words])
    leads = Counter(tuple(e[:-1]) for e, i in zip(encoded, ids, strict=True) if e and e[-1] == i)
    lead: tuple[int, ...] = min(leads, key=lambda k: (-leads[k], len(k), k)) if leads else ()
    keep = [k for k, (e, i) in enumerate(zip(encoded, ids, strict=True)) if e == [*lead, i]]
    table = VocabTable(
        space=space,
        lead=lead,
        ids=tuple(ids[k] for k in keep),
        words=tuple(words[k] for k in keep),
    )
    cache[key] = table
    return table


def answer_space(prompt: Prompt, examples: Sequence[Example]) -> str:
    """The whitespace before the answer slot (the most common one over *examples*)."""
    from promptsearch.scoring.backends.base import split_trailing_space

    spaces = Counter(split_trailing_space(prompt.render(e).prefix)[1] for e in examples)
    return min(spaces, key=lambda s: (-spaces[s], s)) if spaces else ""


# -- encoding and running ---------------------------------------------------------------------


def _check_inputs(
    model: LanguageModel, prompt: Prompt, examples: Sequence[Example], batch_size: int
) -> list[Example]:
    if not isinstance(model, LanguageModel):
        raise ConfigError(
            "model must be a LanguageModel from promptsearch.load_model() or "
            f"promptsearch.models.wrap_model(); got {type(model).__name__}"
        )
    if not isinstance(prompt, Prompt):
        raise ConfigError(f"prompt must be a Prompt; got {type(prompt).__name__}")
    check_int(batch_size, "batch_size", minimum=1)
    out = list(examples)
    if not out:
        raise ConfigError("label-word search needs at least one example; got none")
    for example in out:
        if not isinstance(example, Example):
            raise ConfigError(f"examples must be Example objects; got {type(example).__name__}")
    return out


def _fit_all(
    model: LanguageModel, prompt: Prompt, examples: list[Example], words: Sequence[str], size: int
) -> tuple[Backend, list[Encoded]]:
    """The scorer's back-end and each example encoded as the scorer encodes it."""
    from promptsearch.scoring.backends import make_backend
    from promptsearch.scoring.scorer import Scorer

    backend = make_backend(model, size)
    scorer = Scorer(model, batch_size=size, max_new_tokens=1)
    return backend, [scorer._fit(backend, prompt, e, words, 0)[0] for e in examples]


class _Eval:
    """Eval mode and ``torch.inference_mode`` for the duration, restoring training mode."""

    def __init__(self, network: Any) -> None:
        self.network = network
        self.was_training = bool(getattr(network, "training", False))

    def __enter__(self) -> None:
        import torch

        self.network.eval()
        self.inference = torch.inference_mode()
        self.inference.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.inference.__exit__(None, None, None)
        if self.was_training:
            self.network.train()


def _head_split(network: Any) -> tuple[Any, Any] | None:
    """(base model, LM head) when the model is a base model plus one head module."""
    prefix = getattr(network, "base_model_prefix", "")
    base = getattr(network, prefix, None) if prefix else None
    if base is None or base is network:
        return None
    heads = [module for name, module in network.named_children() if name != prefix]
    return (base, heads[0]) if len(heads) == 1 else None


def _causal_logits(lm: LanguageModel, items: list[Encoded], lead: Sequence[int], size: int) -> Any:
    from promptsearch.scoring.backends.base import accepted_kwargs, left_pad

    network = lm.model
    accepted = accepted_kwargs(network)
    keep_name = next((n for n in ("logits_to_keep", "num_logits_to_keep") if n in accepted), None)
    keep = len(lead) + 1
    pad_id = lm.tokenizer.pad_token_id
    for start in range(0, len(items), size):
        rows = [item.context + list(lead) for item in items[start : start + size]]
        ids, mask, positions = left_pad(rows, pad_id, lm.device)
        arguments: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if keep_name is not None:
            if "position_ids" in accepted:
                arguments["position_ids"] = positions
            if "use_cache" in accepted:
                arguments["use_cache"] = False
            arguments[keep_name] = keep
            yield network(**arguments).logits[:, -keep:, :]
            continue
        # no logits_to_keep: the base model's hidden states, the head on the kept positions
        prefix = getattr(network, "base_model_prefix", "")
        base = getattr(network, prefix, None) if prefix else None
        head = network.get_output_embeddings()
        if base is None or head is None:
            raise ConfigError(
                f"model {lm.name!r} takes no logits_to_keep and has no separate base model "
                "and output embeddings, so its vocabulary scores cannot be computed at the "
                "answer position alone; give label-word candidates instead"
            )
        base_accepted = accepted_kwargs(base)
        if "position_ids" in base_accepted:
            arguments["position_ids"] = positions
        hidden = base(**arguments)[0][:, -keep:, :]
        yield head(hidden)


def _masked_logits(lm: LanguageModel, items: list[Encoded], lead: Sequence[int], size: int) -> Any:
    import torch

    from promptsearch.scoring.backends.base import right_pad

    network = lm.model
    mask_id = lm.tokenizer.mask_token_id
    count = len(lead) + 1
    split = _head_split(network)
    step = size if split is not None else 1  # no head split: full logits, one row at a time
    for start in range(0, len(items), step):
        chosen = items[start : start + step]
        rows = [item.context + [mask_id] * count + item.right for item in chosen]
        ids, mask = right_pad(rows, lm.tokenizer.pad_token_id, lm.device)
        row_at = torch.arange(len(chosen), device=ids.device).repeat_interleave(count)
        col_at = torch.tensor(
            [len(item.context) + k for item in chosen for k in range(count)], device=ids.device
        )
        if split is not None:
            base, head = split
            hidden = base(input_ids=ids, attention_mask=mask)[0]
            logits = head(hidden[row_at, col_at])
        else:
            logits = network(input_ids=ids, attention_mask=mask).logits[row_at, col_at]
        yield logits.reshape(len(chosen), count, -1)


def _seq2seq_logits(lm: LanguageModel, items: list[Encoded], lead: Sequence[int], size: int) -> Any:
    import torch

    from promptsearch.scoring.backends.base import right_pad

    network = lm.model
    pad_id = lm.tokenizer.pad_token_id
    start_id = getattr(network.config, "decoder_start_token_id", None)
    start_id = pad_id if start_id is None else start_id
    count = len(lead) + 1
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(tuple(item.answer_prefix), []).append(i)
    out: dict[int, Any] = {}
    for prefix, members in groups.items():
        for begin in range(0, len(members), size):
            chosen = members[begin : begin + size]
            ids, mask = right_pad([items[i].context for i in chosen], pad_id, lm.device)
            decoder = torch.tensor(
                [[start_id, *prefix, *lead]] * len(chosen), dtype=torch.long, device=lm.device
            )
            logits = network(
                input_ids=ids, attention_mask=mask, decoder_input_ids=decoder, use_cache=False
            ).logits[:, -count:, :]
            for b, i in enumerate(chosen):
                out[i] = logits[b]
    for start in range(0, len(items), size):
        yield torch.stack([out[i] for i in range(start, min(start + size, len(items)))])


def _slot_logprobs(
    lm: LanguageModel, items: list[Encoded], lead: Sequence[int], size: int
) -> torch.Tensor:
    import torch

    runner = {"causal": _causal_logits, "masked": _masked_logits, "seq2seq": _seq2seq_logits}
    blocks = []
    lead_ids = torch.tensor(list(lead), dtype=torch.long)
    for logits in runner[lm.kind](lm, items, lead, size):
        logprobs = logits.float().log_softmax(dim=-1).cpu()  # (b, len(lead) + 1, vocab)
        row = logprobs[:, -1, :]
        if len(lead):
            steps = torch.arange(len(lead))
            row = row + logprobs[:, steps, lead_ids].sum(dim=-1, keepdim=True)
        blocks.append(row)
    return torch.cat(blocks)


def vocab_logprobs(
    model: LanguageModel,
    prompt: Prompt,
    examples: Sequence[Example],
    *,
    batch_size: int = 16,
    min_length: int = 2,
) -> tuple[torch.Tensor, VocabTable]:
    """``(n_examples, vocab)`` log-probabilities of every token in the answer slot.

    Entry ``[i, v]`` is the log-probability of the word that *v* stands for (its
    ``lead`` tokens included) in example *i*'s answer slot; for the tokens in the
    returned :class:`VocabTable` it equals the scorer's log-probability of that
    word.  The prompt is rendered as the scorer renders it (demonstrations use the
    prompt's own verbalizer words); long inputs are cut the same way.
    """
    rows = _check_inputs(model, prompt, examples, batch_size)
    table = vocab_candidates(model.tokenizer, answer_space(prompt, rows), min_length=min_length)
    if not table.ids:
        raise ConfigError(
            f"no vocabulary token of model {model.name!r} can stand alone as a label word "
            f"after {table.space!r} (the text before the answer slot of {prompt.template!r}); "
            "give candidate words instead"
        )
    backend, items = _fit_all(model, prompt, rows, [table.words[0]], batch_size)
    del backend
    with _Eval(model.model):
        matrix = _slot_logprobs(model, items, table.lead, batch_size)
    return matrix, table


def candidate_logprobs(
    model: LanguageModel,
    prompt: Prompt,
    examples: Sequence[Example],
    words: Sequence[str],
    *,
    batch_size: int = 16,
) -> torch.Tensor:
    """``(n_examples, len(words))`` log-probabilities of given words, exactly as scored.

    Every token of a multi-token word counts (the scorer's own back-end computes
    them), so this costs more forward passes than :func:`vocab_logprobs` when some
    words are several tokens long.
    """
    import torch

    rows = _check_inputs(model, prompt, examples, batch_size)
    backend, items = _fit_all(model, prompt, rows, list(words), batch_size)
    with _Eval(model.model):
        values, _ = backend.logprobs(items)
    return torch.tensor(values, dtype=torch.float32)


def _check_candidates(candidates: Sequence[str]) -> list[str]:
    if isinstance(candidates, str):
        raise ConfigError(f"candidates must be a list of words, not one string; got {candidates!r}")
    out: list[str] = []
    for word in candidates:
        if not isinstance(word, str) or not word.strip():
            raise ConfigError(f"candidates must be non-empty words; got {word!r}")
        if word.strip() not in out:
            out.append(word.strip())
    return out


def search_label_words(
    model: LanguageModel,
    prompt: Prompt,
    examples: Sequence[Example],
    labels: Sequence[str],
    *,
    top_per_class: int = 10,
    max_combinations: int = 2000,
    candidates: Sequence[str] | None = None,
    batch_size: int = 16,
    rng: random.Random | None = None,
    near_labels: int | None = None,
    anchors: Sequence[str] = (),
    folds: int = 1,
) -> list[LabelWordChoice]:
    """Label words for *prompt*'s template that best separate *labels* on *examples*.

    Scores every candidate word in the answer slot of every example (the whole
    usable vocabulary, see :func:`vocab_candidates`, or the given *candidates*,
    scored exactly with all their tokens), keeps ``top_per_class`` words per label
    by likelihood ratio, and ranks one-word-per-label verbalizers by train accuracy
    and margin (see :mod:`promptsearch.searchers._tokens.label_selection`).  Returns every
    verbalizer evaluated, best first; words are written as a verbalizer expects
    them (no leading space: the scorer adds the template's).

    With *near_labels* set and no *candidates*, the vocabulary is narrowed to the
    *near_labels* words nearest to each of the *anchors* (label names and the label
    words in use) by input embedding; see
    :func:`promptsearch.searchers._tokens.nearby.nearby_columns`.  Without anchors,
    or when fewer words than labels are left, the whole vocabulary stays.

    With *folds* above 1 the words are cross-fitted: chosen on some of *examples*
    and ranked on the others (see :mod:`promptsearch.searchers._tokens.label_selection`).
    """
    top_per_class = check_int(top_per_class, "top_per_class", minimum=1)
    max_combinations = check_int(max_combinations, "max_combinations", minimum=1)
    if near_labels is not None:
        check_int(near_labels, "near_labels", minimum=1)
    rows = _check_inputs(model, prompt, examples, batch_size)
    labels = [str(label) for label in labels]
    if candidates is None:
        matrix, table = vocab_logprobs(model, prompt, rows, batch_size=batch_size)
        columns = list(range(len(table.ids)))
        if near_labels is not None:
            from promptsearch.searchers._tokens.nearby import nearby_columns

            nearby = nearby_columns(model, table, anchors, near_labels)
            if len(nearby) >= len(labels):
                columns = nearby
        words: Sequence[str] = [table.words[k] for k in columns]
        scores = matrix[:, [table.ids[k] for k in columns]]
    else:
        words = _check_candidates(candidates)
        scores = candidate_logprobs(model, prompt, rows, words, batch_size=batch_size)
    return select_label_words(
        scores,
        words,
        [e.target for e in rows],
        labels,
        top_per_class=top_per_class,
        max_combinations=max_combinations,
        rng=rng,
        folds=folds,
    )

"""Tiny randomly-initialised language models for tests (no download, built in well under a second).

The tokenizer is a byte-level BPE trained in memory on :data:`TINY_CORPUS`, so common
words such as ``" great"`` or ``" positive"`` are single tokens, while rare words
(``" wonderfully"``) split into several.  The models are seeded, so the same
``seed`` always gives the same weights and scores.
"""

from __future__ import annotations

import functools
from typing import Any

from promptsearch.errors import ConfigError
from promptsearch.models.base import MODEL_KINDS, LanguageModel, wrap_model

__all__ = [
    "CHATML_TEMPLATE",
    "SPECIAL_TOKENS",
    "TINY_CORPUS",
    "tiny_causal_lm",
    "tiny_chat_lm",
    "tiny_masked_lm",
    "tiny_model",
    "tiny_seq2seq_lm",
    "tiny_tokenizer",
]

TINY_CORPUS = (
    "It was great. It was terrible. It was good. It was bad.",
    "Review: a great movie.\nSentiment: positive",
    "Review: a terrible movie.\nSentiment: negative",
    "Review: the film was good and the acting was great.\nSentiment: positive",
    "Review: the plot was bad and the review is negative.\nSentiment: negative",
    "This movie is a great film with good actors and a good story.",
    "This movie is a terrible film with bad actors and a bad story.",
    "The sentiment of the review is positive. The sentiment of the review is negative.",
    "I loved it. I hated it. The music was fine, the ending was awful.",
    "Question: What is the capital of France?\nAnswer: Paris",
    "Question: What is the capital of Italy?\nAnswer: Rome",
    "Input: cat\nOutput: cats\nInput: dog\nOutput: dogs",
    "The color of the sky is blue. The grass is green. Yes or no? yes. no.",
    "Overall the story was great, the camera work was good, and I would watch it again.",
    "Sentence: the movie was boring.\nLabel: bad\nSentence: the movie was fun.\nLabel: good",
    "World, Sports, Business, Science and Technology news about the game and the market.",
)
"""The built-in training text of :func:`tiny_tokenizer`."""

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<mask>", "<extra_id_0>", "<extra_id_1>")
"""Special tokens, with ids 0.. in this order."""

_VOCAB_SIZE = 600
_MAX_LENGTH = 256


@functools.lru_cache(maxsize=1)
def _trained_tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(TINY_CORPUS) * 8, trainer)
    result: str = tokenizer.to_str()
    return result


def tiny_tokenizer(kind: str = "causal") -> Any:
    """A fresh ``PreTrainedTokenizerFast`` over the tiny byte-level BPE vocabulary.

    *kind* sets the special tokens added around a text: none for ``"causal"``,
    ``<s> ... </s>`` for ``"masked"`` (BERT style), a final ``</s>`` for ``"seq2seq"``
    (T5 style).  pad, unk, bos, eos and mask tokens are always set, and the sentinels
    ``<extra_id_0>``/``<extra_id_1>`` are registered as special tokens.
    """
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    _check(kind)
    backend = Tokenizer.from_str(_trained_tokenizer_json())
    ids = {token: backend.token_to_id(token) for token in SPECIAL_TOKENS}
    if kind == "masked":
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>",
            pair="<s> $A </s> $B </s>",
            special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])],
        )
    elif kind == "seq2seq":
        backend.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", ids["</s>"])]
        )
    options: dict[str, Any] = {}
    if kind == "masked":
        options.update(cls_token="<s>", sep_token="</s>")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        mask_token="<mask>",
        additional_special_tokens=["<extra_id_0>", "<extra_id_1>"],
        model_max_length=_MAX_LENGTH,
        **options,
    )


def _check(kind: str) -> None:
    if kind not in MODEL_KINDS:
        raise ConfigError(f"kind must be one of {list(MODEL_KINDS)}; got {kind!r}")


def _seeded(seed: int, build: Any) -> Any:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    return model.float().eval()


def _tiny_llama(tokenizer: Any, bos_token_id: int) -> Any:
    """A 2-layer Llama (hidden size 32, 2 heads, grouped KV) over *tokenizer*'s vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=_MAX_LENGTH,
        initializer_range=0.3,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def tiny_causal_lm(seed: int = 0) -> LanguageModel:
    """A 2-layer Llama (hidden size 32, 2 heads, grouped KV) over the tiny vocabulary."""
    tokenizer = tiny_tokenizer("causal")
    model = _seeded(seed, lambda: _tiny_llama(tokenizer, tokenizer.bos_token_id))
    return wrap_model(model, tokenizer, name=f"tiny-causal-{seed}", kind="causal")


CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a tiny model.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The chat template of :func:`tiny_chat_lm`: ChatML with a default system prompt, as
the embedded SmolLM2's."""


def tiny_chat_lm(seed: int = 0) -> LanguageModel:
    """:func:`tiny_causal_lm` with a chat template (:data:`CHATML_TEMPLATE`), its
    ``<|im_start|>`` and ``<|im_end|>`` special tokens, and ``<|im_start|>`` put before
    every text as a BOS token (so the scorer's lead handling is exercised; the embedded
    SmolLM2's tokenizer, converted by transformers 5.24, adds none)."""
    from tokenizers import processors

    tokenizer = tiny_tokenizer("causal")
    tokenizer.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A",
        pair="<|im_start|> $A $B",
        special_tokens=[("<|im_start|>", start)],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    model = _seeded(seed, lambda: _tiny_llama(tokenizer, start))
    return wrap_model(model, tokenizer, name=f"tiny-chat-{seed}", kind="causal")


def tiny_gpt2_lm(seed: int = 0) -> LanguageModel:
    """A 2-layer GPT-2: absolute position embeddings, so wrong positions under padding show."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tiny_tokenizer("causal")
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=256,
        initializer_range=0.3,
    )
    model = _seeded(seed, lambda: GPT2LMHeadModel(config))
    return wrap_model(model, tokenizer, name=f"tiny-gpt2-{seed}", kind="causal")


def tiny_masked_lm(seed: int = 0) -> LanguageModel:
    """A 2-layer BERT masked LM (hidden size 32, 2 heads) over the tiny vocabulary."""
    from transformers import BertConfig, BertForMaskedLM

    tokenizer = tiny_tokenizer("masked")
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=_MAX_LENGTH,
        initializer_range=0.3,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = _seeded(seed, lambda: BertForMaskedLM(config))
    return wrap_model(model, tokenizer, name=f"tiny-masked-{seed}", kind="masked")


def tiny_seq2seq_lm(seed: int = 0) -> LanguageModel:
    """A 2+2-layer T5 (d_model 32, 2 heads) over the tiny vocabulary."""
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = tiny_tokenizer("seq2seq")
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        initializer_factor=3.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config.decoder_start_token_id = tokenizer.pad_token_id
    model = _seeded(seed, lambda: T5ForConditionalGeneration(config))
    return wrap_model(model, tokenizer, name=f"tiny-seq2seq-{seed}", kind="seq2seq")


def tiny_model(kind: str = "causal", seed: int = 0) -> LanguageModel:
    """A tiny seeded model of *kind* (``"causal"``, ``"masked"`` or ``"seq2seq"``)."""
    _check(kind)
    builders = {"causal": tiny_causal_lm, "masked": tiny_masked_lm, "seq2seq": tiny_seq2seq_lm}
    return builders[kind](seed)

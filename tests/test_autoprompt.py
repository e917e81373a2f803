"""The ``autoprompt`` searcher and its gradient machinery, on tiny models."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from promptsearch.errors import ConfigError
from promptsearch.models.base import LanguageModel, wrap_model
from promptsearch.prompt import Prompt
from promptsearch.scoring.scorer import Scorer
from promptsearch.searchers import get_searcher_class, make_searcher
from promptsearch.searchers._tokens.trigger_search import StepResult, TriggerSearch
from promptsearch.searchers._tokens.triggers import (
    TokenScheme,
    allowed_tokens,
    fill_triggers,
    insert_triggers,
)
from promptsearch.searchers.autoprompt import AutoPromptSearcher
from promptsearch.searchers.base import TrialResult
from promptsearch.testing import tiny_gpt2_lm, tiny_model
from promptsearch.testing.searchers import contract_task, make_context

VERBALIZER = {"0": "negative", "1": "positive"}


def engine_for(lm: LanguageModel, template: str, **options: Any) -> TriggerSearch:
    prompt = Prompt(template=template, verbalizer=VERBALIZER)
    return TriggerSearch(lm, prompt, ["0", "1"], **options)


def train_batch(engine: TriggerSearch, count: int = 8) -> Any:
    train = contract_task().train
    # both labels: the first half of the train split is positive, the second negative
    picked = [*train[: count // 2], *train[len(train) - count // 2 :]]
    return engine.encode(picked)


# -- the gradient step -------------------------------------------------------------------


@pytest.mark.parametrize("build", [tiny_model, tiny_gpt2_lm], ids=["llama", "gpt2"])
def test_one_trigger_step_lowers_the_loss_on_its_batch(build: Any) -> None:
    engine = engine_for(build(), "{sentence} [T] It was {answer}.")
    batch = train_batch(engine)
    the = engine.token_id("the")
    assert the is not None
    start = [the]
    before = engine.loss(start, batch)
    result = engine.step(start, 0, batch, top_k=20)
    assert result.chosen is not None and result.chosen != start[0]
    after = engine.loss([result.chosen], batch)  # computed afresh, not taken from the step
    assert after < before
    assert math.isclose(after, result.candidates[0][1], rel_tol=1e-5)
    assert math.isclose(before, result.loss, rel_tol=1e-5)
    losses = [loss for _, loss in result.candidates]
    assert losses == sorted(losses)


def test_first_order_scores_are_minus_gradient_dot_embeddings() -> None:
    lm = tiny_model("causal")
    template = "Review: {sentence} [T]\nSentiment: {answer}"
    engine = engine_for(lm, template)
    examples = [contract_task().train[0], contract_task().train[-1]]  # labels "1" and "0"
    the = engine.token_id("the")
    assert the is not None
    _, gradient = engine.gradient([the], engine.encode(examples))
    scores = engine.first_order(gradient[0])

    # by hand: tokenize the rendered text as the scorer would, one example at a time
    text_prompt = Prompt(template=fill_triggers(template, ["the"], True), verbalizer=VERBALIZER)
    model, tokenizer = lm.model, lm.tokenizer
    weight = model.get_input_embeddings().weight.detach()
    total = torch.zeros(weight.shape[1])
    for example in examples:
        prefix = text_prompt.render(example).prefix
        ids = tokenizer(prefix.rstrip(), add_special_tokens=False)["input_ids"]
        position = ids.index(the)
        embeds = weight[torch.tensor(ids)].clone().requires_grad_(True)
        logprobs = model(inputs_embeds=embeds[None]).logits[0, -1].log_softmax(-1)
        gold = tokenizer(" " + VERBALIZER[example.target], add_special_tokens=False)["input_ids"]
        (-logprobs[gold[0]] / len(examples)).backward()
        assert embeds.grad is not None
        total += embeds.grad[position]
    expected = -(weight @ total)
    assert torch.allclose(scores, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_trigger_loss_matches_the_scorer_on_the_rendered_text(kind: str) -> None:
    lm = tiny_model(kind)
    template = "Review: {sentence} [T] [T]\nSentiment: {answer}"
    engine = engine_for(lm, template)
    task = contract_task()
    examples = list(task.train[:3]) + list(task.train[-3:])
    triggers = [engine.token_id("the"), engine.token_id("movie")]
    assert None not in triggers
    loss = engine.loss(triggers, engine.encode(examples))  # type: ignore[arg-type]
    words = [engine.word(t) for t in triggers]  # type: ignore[arg-type]
    prompt = Prompt(
        template=fill_triggers(template, words, engine.scheme.space_marker), verbalizer=VERBALIZER
    )
    report = Scorer(lm).score(prompt, examples, task)
    total = 0.0
    for r, e in zip(report.results, examples, strict=True):
        assert r.label_logprobs is not None
        total += r.label_logprobs[e.target]
    expected = -total / len(examples)
    assert math.isclose(loss, expected, rel_tol=1e-4)


def test_cross_entropy_objective_is_normalised_over_labels() -> None:
    template = "{sentence} [T] It was {answer}."
    plain = engine_for(tiny_model(), template)
    normalised = engine_for(tiny_model(), template, objective="cross-entropy")
    batch = train_batch(plain)
    the = plain.token_id("the")
    assert the is not None
    # -log p(gold) + log sum_labels p(label): positive, and below the plain likelihood loss
    assert 0 < normalised.loss([the], batch) < plain.loss([the], batch)
    result = normalised.step([the], 0, batch, top_k=10)
    assert result.chosen is None or normalised.loss([result.chosen], batch) < result.loss


def test_masked_lm_step_lowers_the_loss() -> None:
    engine = engine_for(tiny_model("masked"), "{sentence} [T] [T] It was {answer}.")
    batch = train_batch(engine)
    the = engine.token_id("the")
    assert the is not None
    start = [the] * 2
    result = engine.step(start, 1, batch, top_k=20)
    assert result.chosen is not None
    assert engine.loss([start[0], result.chosen], batch) < engine.loss(start, batch)


def test_bfloat16_takes_the_same_path() -> None:
    tiny = tiny_model("causal")
    lm = wrap_model(tiny.model.to(torch.bfloat16), tiny.tokenizer, name="tiny-bf16")
    engine = engine_for(lm, "{sentence} [T] It was {answer}.")
    batch = train_batch(engine)
    _, gradient = engine.gradient([engine.token_id("the")], batch)  # type: ignore[list-item]
    assert gradient.dtype == torch.float32 and torch.isfinite(gradient).all()
    result = engine.step([engine.token_id("the")], 0, batch, top_k=8)  # type: ignore[list-item]
    assert all(math.isfinite(loss) for _, loss in result.candidates)


# -- memory: no [batch, sequence, vocabulary] logits -----------------------------------------


def _forbid_sequence_logits(module: torch.nn.Module, longest: int) -> Any:
    def hook(_module: Any, args: tuple[Any, ...]) -> None:
        hidden = args[0]
        if hidden.dim() == 3 and hidden.shape[1] > longest:
            raise AssertionError(f"head called on {tuple(hidden.shape)}: full-sequence logits")

    return module.register_forward_pre_hook(hook)


def test_causal_head_runs_only_at_answer_positions() -> None:
    lm = tiny_model("causal")
    engine = engine_for(lm, "Review: {sentence} [T] [T]\nSentiment: {answer}")
    batch = train_batch(engine)
    triggers = [engine.token_id("the")] * 2
    handle = _forbid_sequence_logits(lm.model.lm_head, longest=1)
    try:
        engine.step(triggers, 0, batch, top_k=5)  # type: ignore[arg-type]
    finally:
        handle.remove()
    # the fallback without logits_to_keep: base model, then the head on gathered rows
    engine._keep_arg = None
    engine.loss(triggers, batch)  # type: ignore[arg-type]  # the one-off check of base + head
    assert engine._split is not None
    handle = _forbid_sequence_logits(lm.model.lm_head, longest=0)
    try:
        engine.step(triggers, 1, batch, top_k=5)  # type: ignore[arg-type]
    finally:
        handle.remove()


def test_causal_fallback_gives_the_same_losses() -> None:
    engine = engine_for(tiny_model("causal"), "Review: {sentence} [T]\nSentiment: {answer}")
    batch = train_batch(engine)
    the = engine.token_id("the")
    assert the is not None
    kept = engine.loss([the], batch)
    engine._keep_arg = None
    assert math.isclose(engine.loss([the], batch), kept, rel_tol=1e-5)


def test_masked_head_runs_only_at_mask_positions() -> None:
    lm = tiny_model("masked")
    engine = engine_for(lm, "{sentence} [T] It was {answer}.")
    batch = train_batch(engine)
    the = engine.token_id("the")
    assert the is not None
    engine.loss([the], batch)  # the one-off check of base + head against the full model
    assert engine._split is not None
    handle = _forbid_sequence_logits(lm.model.cls, longest=0)
    try:
        engine.step([the], 0, batch, top_k=5)
    finally:
        handle.remove()


# -- token filters -----------------------------------------------------------------------------


def test_filters_on_a_byte_level_vocabulary() -> None:
    tokens = ["<pad>", "Ġthe", "ing", "Ġcafé", "Ġ123", "ĠPositive", "ĠGreat", "Ġ", "Ġa-b", "Ġx"]
    scheme = TokenScheme.detect(tokens)
    assert scheme.marker == "Ġ" and scheme.space_marker
    allowed = allowed_tokens(tokens, scheme, specials={0}, label_words=["positive"], banned_ids=[9])
    kept = [t for t, ok in zip(tokens, allowed, strict=True) if ok]
    assert kept == ["Ġthe", "ĠGreat"]


def test_filters_on_a_wordpiece_vocabulary() -> None:
    tokens = ["[CLS]", "[unused0]", "the", "##ing", "café", "good", "great", "2"]
    scheme = TokenScheme.detect(tokens)
    assert scheme.marker == "" and not scheme.space_marker
    allowed = allowed_tokens(tokens, scheme, specials={0}, label_words=["good"])
    assert [t for t, ok in zip(tokens, allowed, strict=True) if ok] == ["the", "great"]


def test_engine_filters_specials_pieces_and_label_words() -> None:
    lm = tiny_model("causal")
    engine = engine_for(lm, "{sentence} [T] It was {answer}.")
    allowed = [i for i, ok in enumerate(engine.allowed.tolist()) if ok]
    assert allowed
    specials = set(lm.tokenizer.all_special_ids)
    for index in allowed:
        token = engine.tokens[index]
        assert index not in specials
        assert token.startswith("Ġ") and token[1:].isascii() and token[1:].isalpha()
        assert token[1:].lower() not in ("negative", "positive")
    for word in ("negative", "positive"):
        assert lm.tokenizer.convert_tokens_to_ids("Ġ" + word) not in allowed
    # the candidates of a step come from the allowed set only
    batch = train_batch(engine)
    result = engine.step([engine.token_id("the")], 0, batch, top_k=50)  # type: ignore[list-item]
    assert {token for token, _ in result.candidates} <= set(allowed)


# -- templates -----------------------------------------------------------------------------


def test_trigger_insertion_between_input_and_answer() -> None:
    assert (
        insert_triggers("Review: {sentence}\nSentiment: {answer}", 4)
        == "Review: {sentence} [T] [T] [T] [T]\nSentiment: {answer}"
    )
    assert (
        insert_triggers("{sentence} It was {answer}.", 2) == "{sentence} [T] [T] It was {answer}."
    )
    assert insert_triggers("{answer} News: {sentence}", 2) == "[T] [T] {answer} News: {sentence}"
    assert insert_triggers("{{x}} {a} and {b}: {answer}", 1) == "{{x}} {a} and {b} [T]: {answer}"


def test_filling_triggers_keeps_one_space_per_word() -> None:
    template = "{sentence} [T] [T]\nA: {answer}"
    assert fill_triggers(template, ["so", "very"], True) == "{sentence} so very\nA: {answer}"
    assert fill_triggers(template, ["so", "very"], False) == "{sentence} so very\nA: {answer}"
    assert fill_triggers("Q:\n[T] {x} {answer}", ["so"], True) == "Q:\n so {x} {answer}"
    with pytest.raises(ConfigError, match="2 trigger markers"):
        fill_triggers(template, ["so"], True)


# -- the searcher ------------------------------------------------------------------------------


def setup_searcher(searcher: AutoPromptSearcher, seed: int = 0) -> AutoPromptSearcher:
    searcher.setup(make_context(searcher, contract_task(), seed=seed))
    return searcher


def test_registered_and_built_from_a_spec() -> None:
    assert get_searcher_class("autoprompt") is AutoPromptSearcher
    searcher = make_searcher("autoprompt:num_triggers=2,top_k=3,label_words=false")
    assert isinstance(searcher, AutoPromptSearcher)
    assert (searcher.num_triggers, searcher.top_k, searcher.label_words) == (2, 3, False)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"num_triggers": 0}, "num_triggers must be >= 1; got 0"),
        ({"num_triggers": "4"}, "num_triggers must be an integer; got '4'"),
        ({"template": "{sentence} [T]"}, "is not a valid template"),
        ({"template": 5}, "template must be a string"),
        ({"template": "{sentence} [T] [T] {answer}", "num_triggers": 3}, "has 2 \\[T\\] markers"),
        ({"top_k": 0}, "top_k must be >= 1; got 0"),
        ({"batch_size": -2}, "batch_size must be >= 1"),
        ({"steps_per_round": 1.5}, "steps_per_round must be an integer"),
        ({"init_token": "the end"}, "init_token must be one word of ASCII letters"),
        ({"label_words": "yes"}, "label_words must be True or False; got 'yes'"),
        ({"train_examples": 0}, "train_examples must be >= 1"),
        ({"objective": "hinge"}, "objective must be one of \\['likelihood', 'cross-entropy'\\]"),
        ({"patience": 0}, "patience must be >= 1"),
        ({"seed_prompt": -1}, "seed_prompt must be >= 0"),
    ],
)
def test_parameters_are_validated_eagerly(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AutoPromptSearcher(**params)


def test_setup_rejects_what_it_cannot_search() -> None:
    generation = AutoPromptSearcher()
    with pytest.raises(ConfigError, match="classification"):
        generation.setup(make_context(generation, contract_task("generation")))
    late = AutoPromptSearcher(template="{sentence} It was {answer}. [T]")
    with pytest.raises(ConfigError, match="after"):
        setup_searcher(late)
    unknown = AutoPromptSearcher(template="{review} [T] {answer}")
    with pytest.raises(ConfigError, match="unknown field"):
        setup_searcher(unknown)
    far = AutoPromptSearcher(seed_prompt=7)
    with pytest.raises(ConfigError, match="seed_prompt=7"):
        setup_searcher(far)
    seq2seq = AutoPromptSearcher()
    context = make_context(seq2seq, contract_task())
    context.model = tiny_model("seq2seq")
    with pytest.raises(ConfigError, match="causal or masked"):
        seq2seq.setup(context)
    odd = setup_searcher(AutoPromptSearcher(init_token="zzzzqx"))
    with pytest.raises(ConfigError, match="init_token 'zzzzqx'"):
        odd.propose(1)


def test_proposals_are_trigger_prompts_of_the_seed() -> None:
    searcher = setup_searcher(AutoPromptSearcher(num_triggers=3, top_k=5, batch_size=4))
    proposals = searcher.propose(3)
    assert 1 <= len(proposals) <= 3
    seed = contract_task().seed_prompts[0].resolve(contract_task())
    for candidate in proposals:
        assert candidate.operation == "autoprompt"
        assert candidate.parent == seed.content_hash
        template = candidate.prompt.template
        assert "[T]" not in template
        assert template.startswith("Review: {sentence} ") and template.endswith(
            "\nSentiment: {answer}"
        )
        assert len(template.split("\n")[0].split()) == 2 + 3
        assert candidate.prompt.verbalizer == seed.verbalizer
    assert len({c.prompt.content_hash for c in proposals}) == len(proposals)


def test_given_template_and_masked_model() -> None:
    searcher = AutoPromptSearcher(template="{sentence} [T] [T] It was {answer}.", top_k=4)
    context = make_context(searcher, contract_task())
    context.model = tiny_model("masked")
    searcher.setup(context)
    proposals = searcher.propose(2)
    assert proposals and proposals[0].parent is None
    assert all(c.prompt.template.endswith(" It was {answer}.") for c in proposals)


def test_observe_restarts_from_the_best_dev_scored_triggers() -> None:
    searcher = setup_searcher(AutoPromptSearcher(num_triggers=2, top_k=4, batch_size=4))
    proposals = searcher.propose(4)
    assert len(proposals) >= 2
    task = contract_task()
    scores = [0.1] + [0.2] * (len(proposals) - 2) + [0.9]  # the last runner-up wins on dev
    results = [
        TrialResult(
            prompt=c.prompt,
            content_hash=c.prompt.resolve(task).content_hash,
            score=s,
            state="complete",
            n_examples=4,
            searcher="autoprompt",
            operation=c.operation,
        )
        for c, s in zip(proposals, scores, strict=True)
    ]
    searcher.observe(results)
    assert searcher._prompt(searcher._triggers).content_hash == results[-1].content_hash  # type: ignore[arg-type]


def test_exhausted_after_sweeps_without_improvement(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_gain(self: TriggerSearch, triggers: Any, position: int, batch: Any, top_k: int) -> Any:
        return StepResult(position, 1.0, (), None)

    monkeypatch.setattr(TriggerSearch, "step", no_gain)
    searcher = setup_searcher(AutoPromptSearcher(num_triggers=2, patience=1, steps_per_round=1))
    first = searcher.propose(2)
    assert len(first) == 1  # the initial triggers, as nothing improved
    assert searcher.propose(2) == []  # one full sweep over both positions without a gain


def test_label_words_first_then_triggers(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptsearch.searchers._tokens import label_word_scores as _vocab_scoring
    from promptsearch.searchers._tokens.label_selection import LabelWordChoice

    seen: dict[str, Any] = {}

    def fake(model: Any, prompt: Prompt, examples: Any, labels: Any, **options: Any) -> Any:
        seen["template"] = prompt.template
        seen["labels"] = list(labels)
        return [LabelWordChoice({"0": ["bad"], "1": ["good"]}, 1.0, 0.5)]

    monkeypatch.setattr(_vocab_scoring, "search_label_words", fake)
    searcher = setup_searcher(AutoPromptSearcher(num_triggers=2, label_words=True, top_k=30))
    proposals = searcher.propose(3)
    assert seen == {
        "template": "Review: {sentence} the the\nSentiment: {answer}",
        "labels": ["0", "1"],
    }
    for candidate in proposals:
        assert candidate.prompt.verbalizer == {"0": ("bad",), "1": ("good",)}
        words = candidate.prompt.template.split("\n")[0].split()[2:]
        assert "good" not in words and "bad" not in words


def test_label_words_with_the_real_search() -> None:
    searcher = setup_searcher(AutoPromptSearcher(num_triggers=2, label_words=True, top_k=4))
    proposals = searcher.propose(2)
    assert proposals
    verbalizer = proposals[0].prompt.verbalizer
    assert verbalizer is not None and set(verbalizer) == {"0", "1"}

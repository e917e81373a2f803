"""Label-word (verbalizer) search: vocabulary scoring, the search, words near the labels,
the searcher.  The choice of words from a score matrix: test_label_selection.py."""

from __future__ import annotations

import dataclasses
import inspect
import random
from typing import Any

import pytest
import torch

from promptsearch.errors import ConfigError, TemplateError
from promptsearch.prompt import Prompt
from promptsearch.scoring.scorer import Scorer
from promptsearch.searchers import get_searcher_class, make_searcher
from promptsearch.searchers._tokens.label_word_scores import (
    LabelWordChoice,
    answer_space,
    candidate_logprobs,
    search_label_words,
    vocab_candidates,
    vocab_logprobs,
)
from promptsearch.searchers._tokens.nearby import nearby_columns
from promptsearch.searchers.label_words import LabelWordsSearcher, label_anchors
from promptsearch.testing import tiny_gpt2_lm, tiny_model
from promptsearch.testing.searchers import contract_task, make_context

TEMPLATES = [
    "Review: {sentence}\nSentiment: {answer}",
    "{sentence} It was {answer}.",
    "Review: {sentence}\nSentiment:\n{answer}",  # a newline before the answer: a lead token
    "{answer} News: {sentence}",
]


@pytest.fixture(scope="module")
def task() -> Any:
    return contract_task()


@pytest.fixture(scope="module", params=["causal", "masked", "gpt2", "seq2seq"])
def lm(request: pytest.FixtureRequest) -> Any:
    if request.param == "gpt2":
        return tiny_gpt2_lm(seed=1)
    return tiny_model(request.param, seed=1)


# -- vocabulary scoring agrees with the scorer ---------------------------------------------------


@pytest.mark.parametrize("template", TEMPLATES)
def test_vocab_logprobs_match_scorer(lm: Any, task: Any, template: str) -> None:
    prompt = Prompt(template=template)
    matrix, table = vocab_logprobs(lm, prompt, task.train, batch_size=5)
    assert matrix.shape == (len(task.train), lm.model.get_output_embeddings().weight.shape[0])
    assert len(table.ids) > 20
    index = {w: k for k, w in enumerate(table.words)}
    pairs = [(table.words[0], table.words[1]), (table.words[3], table.words[-1])]
    if "great" in index:  # after a space: real words are single tokens
        pairs.append(("great", "terrible"))
    scorer = Scorer(lm, batch_size=3)
    tolerance = 1e-3 if lm.kind == "seq2seq" else 1e-4  # T5 padding differs by batch
    for first, second in pairs:
        verbalized = Prompt(template=template, verbalizer={"0": first, "1": second})
        report = scorer.score(verbalized, task.train, task)
        for i, result in enumerate(report.results):
            assert result.label_logprobs is not None
            for label, word in (("0", first), ("1", second)):
                ours = matrix[i, table.ids[index[word]]].item()
                assert ours == pytest.approx(result.label_logprobs[label], abs=tolerance)


def test_vocab_candidates_are_whole_words(task: Any) -> None:
    tokenizer = tiny_model("causal").tokenizer
    table = vocab_candidates(tokenizer, " ")
    assert table.lead == ()
    assert "great" in table.words and "positive" in table.words
    special = set(tokenizer.all_special_ids)
    for token_id, word in zip(table.ids, table.words, strict=True):
        assert token_id not in special
        assert word.isascii() and word.isalpha() and len(word) >= 2
        assert tokenizer.convert_ids_to_tokens(token_id).startswith("Ġ")
        assert tokenizer(" " + word, add_special_tokens=False)["input_ids"] == [token_id]
    longer = vocab_candidates(tokenizer, " ", min_length=5)
    assert set(longer.words) == {w for w in table.words if len(w) >= 5}
    after_newline = vocab_candidates(tokenizer, "\n")
    assert after_newline.lead == tuple(tokenizer("\n", add_special_tokens=False)["input_ids"])


def test_vocab_candidates_wordpiece() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    for word in ["good", "bad", "great", "##ly", "##ing", "a", "42", "it"]:
        vocab[word] = len(vocab)
    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", mask_token="[MASK]"
    )
    table = vocab_candidates(tokenizer, " ")
    assert sorted(table.words) == ["bad", "good", "great", "it"]
    assert table.lead == ()


def test_candidate_logprobs_score_multi_token_words_exactly(task: Any) -> None:
    lm = tiny_model("causal", seed=2)
    words = ["great", "wonderfully", "terrible"]
    assert len(lm.tokenizer(" wonderfully", add_special_tokens=False)["input_ids"]) > 1
    prompt = Prompt(template="{sentence} It was {answer}.")
    values = candidate_logprobs(lm, prompt, task.train, words, batch_size=4)
    report = Scorer(lm).score(
        Prompt(template=prompt.template, verbalizer={"0": "wonderfully", "1": "great"}),
        task.train,
        task,
    )
    for i, result in enumerate(report.results):
        assert result.label_logprobs is not None
        assert values[i, 1].item() == pytest.approx(result.label_logprobs["0"], abs=1e-4)
        assert values[i, 0].item() == pytest.approx(result.label_logprobs["1"], abs=1e-4)


# -- bounded memory -----------------------------------------------------------------------------


def _forbid_wide_head(head: Any, widest: int) -> Any:
    def check(_module: Any, inputs: tuple[Any, ...]) -> None:
        hidden = inputs[0]
        if hidden.dim() == 3 and hidden.shape[1] > widest:
            raise AssertionError(f"LM head applied to {hidden.shape[1]} positions per row")
        if hidden.dim() > 3:
            raise AssertionError("LM head applied to an unexpected shape")

    return head.register_forward_pre_hook(check)


def test_causal_head_runs_on_answer_positions_only(task: Any) -> None:
    lm = tiny_model("causal", seed=3)
    handle = _forbid_wide_head(lm.model.get_output_embeddings(), widest=1)
    try:
        matrix, _ = vocab_logprobs(lm, Prompt(template=TEMPLATES[0]), task.train)
    finally:
        handle.remove()
    handle = _forbid_wide_head(lm.model.get_output_embeddings(), widest=2)
    try:  # after a newline: the newline token's position too
        lead_matrix, table = vocab_logprobs(lm, Prompt(template=TEMPLATES[2]), task.train)
    finally:
        handle.remove()
    assert table.lead and matrix.isfinite().all() and lead_matrix.isfinite().all()
    with pytest.raises(AssertionError, match="positions per row"):
        handle = _forbid_wide_head(lm.model.get_output_embeddings(), widest=1)
        try:  # the hook does catch a full-sequence call
            lm.model(input_ids=torch.tensor([[10, 11, 12]]))
        finally:
            handle.remove()


def test_causal_without_logits_to_keep_uses_base_model(
    task: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = tiny_model("causal", seed=4)
    prompt = Prompt(template=TEMPLATES[0])
    expected, _ = vocab_logprobs(lm, prompt, task.train)

    def without_keep(model: Any) -> set[str]:
        names = set(inspect.signature(model.forward).parameters)
        return names - {"logits_to_keep", "num_logits_to_keep"}

    monkeypatch.setattr("promptsearch.scoring.backends.base.accepted_kwargs", without_keep)

    def no_full_call(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the full model was called")

    monkeypatch.setattr(lm.model, "forward", no_full_call)
    handle = _forbid_wide_head(lm.model.get_output_embeddings(), widest=1)
    try:
        got, _ = vocab_logprobs(lm, prompt, task.train)
    finally:
        handle.remove()
    assert torch.allclose(got, expected, atol=1e-5)


def test_masked_head_runs_on_mask_positions_only(
    task: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = tiny_model("masked", seed=3)
    prompt = Prompt(template=TEMPLATES[1])
    expected, _ = vocab_logprobs(lm, prompt, task.train)

    def no_full_call(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the full model was called")

    monkeypatch.setattr(lm.model, "forward", no_full_call)
    head = next(m for name, m in lm.model.named_children() if name != lm.model.base_model_prefix)
    handle = _forbid_wide_head(head, widest=0)  # only (positions, hidden) inputs
    try:
        got, _ = vocab_logprobs(lm, prompt, task.train)
    finally:
        handle.remove()
    assert torch.allclose(got, expected, atol=1e-5)


# -- the search ---------------------------------------------------------------------------------


def test_search_accuracy_matches_scorer(task: Any) -> None:
    lm = tiny_model("causal", seed=6)
    prompt = Prompt(template=TEMPLATES[1])
    choices = search_label_words(
        lm, prompt, task.train, task.labels, top_per_class=4, rng=random.Random(0)
    )
    assert len(choices) == 16
    scorer = Scorer(lm)
    for choice in choices[:4]:
        report = scorer.score(
            Prompt(template=prompt.template, verbalizer=choice.verbalizer), task.train, task
        )
        assert report.value == pytest.approx(choice.train_accuracy)
    assert choices[0].train_accuracy >= choices[-1].train_accuracy


def test_search_with_candidate_words(task: Any) -> None:
    lm = tiny_model("masked", seed=6)
    words = ["great", "terrible", "good", "bad", "wonderfully", "great"]
    choices = search_label_words(
        lm, Prompt(template=TEMPLATES[0]), task.train, task.labels, candidates=words
    )
    used = {w for c in choices for ws in c.verbalizer.values() for w in ws}
    assert used <= set(words)
    assert all(set(c.verbalizer) == {"0", "1"} for c in choices)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"labels": ["0"]}, "at least two labels"),
        ({"labels": ["0", "1", "2"]}, "none of label"),
        ({"labels": ["0", "0"]}, "distinct"),
        ({"top_per_class": 0}, "top_per_class must be >= 1"),
        ({"max_combinations": "many"}, "max_combinations must be an integer"),
        ({"candidates": "great"}, "not one string"),
        ({"candidates": ["great", " "]}, "non-empty words"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"near_labels": 0}, "near_labels must be >= 1"),
        ({"folds": 0}, "folds must be >= 1"),
    ],
)
def test_search_label_words_errors(task: Any, arguments: dict[str, Any], message: str) -> None:
    lm = tiny_model("causal")
    call: dict[str, Any] = {"labels": list(task.labels), **arguments}
    labels = call.pop("labels")
    with pytest.raises(ConfigError, match=message):
        search_label_words(lm, Prompt(template=TEMPLATES[0]), task.train, labels, **call)


# -- label words near the label names -------------------------------------------------------------


def _cosine_top(lm: Any, table: Any, word: str, count: int) -> set[int]:
    weight = lm.model.get_input_embeddings().weight.detach().float()
    ids = lm.tokenizer(table.space + word, add_special_tokens=False)["input_ids"]
    target = torch.nn.functional.normalize(weight[ids].mean(dim=0), dim=0)
    words = torch.nn.functional.normalize(weight[list(table.ids)], dim=1)
    return set(torch.topk(words @ target, count).indices.tolist())


def test_nearby_columns_are_the_nearest_words_of_every_anchor() -> None:
    lm = tiny_model("causal", seed=2)
    table = vocab_candidates(lm.tokenizer, " ")
    first, second = table.words[5], table.words[40]
    assert nearby_columns(lm, table, [first], 1) == [5]  # a word is its own nearest
    near = nearby_columns(lm, table, [first, second, first], 4)
    assert near == sorted(_cosine_top(lm, table, first, 4) | _cosine_top(lm, table, second, 4))
    assert {5, 40} <= set(near)
    assert nearby_columns(lm, table, ["0", "1", " "], 4) == []  # no letter: no anchor


def test_nearby_columns_need_input_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    lm = tiny_model("causal", seed=2)
    table = vocab_candidates(lm.tokenizer, " ")
    monkeypatch.setattr(lm.model, "get_input_embeddings", lambda: None)
    with pytest.raises(ConfigError, match=r"no input embeddings.*near_labels=None"):
        nearby_columns(lm, table, ["great"], 3)
    with pytest.raises(ConfigError, match="near_labels must be >= 1"):
        nearby_columns(lm, table, ["great"], 0)


def test_search_near_labels_keeps_to_the_nearby_words(task: Any) -> None:
    lm = tiny_model("causal", seed=6)
    prompt = Prompt(template=TEMPLATES[1])
    table = vocab_candidates(lm.tokenizer, " ")
    anchors = ["great", "terrible"]
    allowed = {table.words[k] for k in nearby_columns(lm, table, anchors, 5)}
    choices = search_label_words(
        lm, prompt, task.train, task.labels, near_labels=5, anchors=anchors, rng=random.Random(0)
    )
    used = {w for c in choices for ws in c.verbalizer.values() for w in ws}
    assert used <= allowed and len(used) >= 2
    everywhere = search_label_words(
        lm, prompt, task.train, task.labels, near_labels=5, anchors=["0"], rng=random.Random(0)
    )  # no usable anchor: the whole vocabulary, as without near_labels
    assert everywhere == search_label_words(
        lm, prompt, task.train, task.labels, rng=random.Random(0)
    )


def test_searcher_near_labels_anchors_on_labels_and_label_words(task: Any) -> None:
    searcher = LabelWordsSearcher(top_per_class=2, num_candidates=2, near_labels=4)
    context = make_context(searcher, task, seed=1)
    searcher.setup(context)
    lm = context.model
    assert lm is not None
    proposals = searcher.propose(100)
    assert proposals
    parents = {p.resolve(task).content_hash: p.resolve(task) for p in task.seed_prompts}
    for candidate in proposals:
        parent = parents[str(candidate.parent)]
        anchors = label_anchors(task, parent)
        assert {"negative", "positive"} <= set(anchors)  # the task's label words
        assert set((parent.verbalizer or {}).get("1", ())) <= set(anchors)
        space = answer_space(candidate.prompt, task.train)
        near = vocab_candidates(lm.tokenizer, space)
        allowed = {near.words[k] for k in nearby_columns(lm, near, anchors, 4)}
        words = {w for ws in (candidate.prompt.verbalizer or {}).values() for w in ws}
        assert words and words <= allowed


# -- the searcher -------------------------------------------------------------------------------


def test_registered() -> None:
    assert get_searcher_class("label-words") is LabelWordsSearcher
    searcher = make_searcher("label-words:top_per_class=3,num_candidates=2,candidates=good+bad")
    assert isinstance(searcher, LabelWordsSearcher)
    assert searcher.top_per_class == 3 and searcher.candidates == ("good", "bad")
    assert searcher.near_labels is None and searcher.folds == 1
    assert make_searcher("label-words:folds=2").folds == 2  # type: ignore[attr-defined]
    for spec, near in (("near_labels=30", 30), ("near_labels=null", None)):
        nearby = make_searcher(f"label-words:{spec}")
        assert isinstance(nearby, LabelWordsSearcher) and nearby.near_labels == near


def test_searcher_proposes_label_words_for_each_seed(task: Any) -> None:
    searcher = LabelWordsSearcher(top_per_class=3, num_candidates=2)
    context = make_context(searcher, task, seed=1)
    searcher.setup(context)
    proposals = searcher.propose(100)
    seeds = {p.resolve(task).content_hash: p for p in task.seed_prompts}
    assert len(proposals) == 6  # 3 seed prompts x 2
    parents = [c.parent for c in proposals]
    assert set(parents) == set(seeds)
    assert len(set(parents[:3])) == 3  # the best of each seed prompt comes first
    for candidate in proposals:
        assert candidate.operation == "label-words"
        assert candidate.prompt.template == seeds[candidate.parent].template
        assert candidate.prompt.verbalizer is not None
        assert set(candidate.prompt.verbalizer) == {"0", "1"}
    assert searcher.propose(3) == []
    assert any(key == "train_accuracy" for _, key, _ in context.metrics.drain())


def test_searcher_skips_seed_prompts_that_render_alike(task: Any) -> None:
    template = "Review: {sentence}\nSentiment: {answer}"
    twins = (Prompt(template=template), Prompt(template=template, verbalizer={"0": "a", "1": "b"}))
    searcher = LabelWordsSearcher(top_per_class=2, num_candidates=4)
    searcher.setup(make_context(searcher, dataclasses.replace(task, seed_prompts=twins)))
    proposals = searcher.propose(10)
    assert len(proposals) == 4
    assert {c.parent for c in proposals} == {twins[0].resolve(task).content_hash}


def test_searcher_with_template_and_sampled_train(task: Any) -> None:
    searcher = LabelWordsSearcher(
        template="{sentence} Overall it was {answer}.", num_candidates=3, train_examples=6
    )
    searcher.setup(make_context(searcher, task))
    assert len(searcher._sample()) == 6
    assert sorted(e.target for e in searcher._sample()) == ["0"] * 3 + ["1"] * 3
    proposals = searcher.propose(2) + searcher.propose(5)
    assert len(proposals) == 3
    assert all(c.prompt.template == "{sentence} Overall it was {answer}." for c in proposals)
    assert all(c.parent is None for c in proposals)


def test_searcher_needs_a_classification_task() -> None:
    searcher = LabelWordsSearcher()
    generation = contract_task("generation")
    with pytest.raises(ConfigError, match="classification task"):
        searcher.setup(make_context(searcher, generation))


def test_searcher_template_must_fit_the_task(task: Any) -> None:
    searcher = LabelWordsSearcher(template="{review} is {answer}")
    with pytest.raises(TemplateError):
        searcher.setup(make_context(searcher, task))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"template": "no answer slot"}, "answer"),
        ({"template": 3}, "template must be None"),
        ({"top_per_class": 0}, "top_per_class must be >= 1; got 0"),
        ({"top_per_class": 2.5}, "top_per_class must be an integer; got 2.5"),
        ({"max_combinations": -1}, "max_combinations must be >= 1; got -1"),
        ({"num_candidates": 0}, "num_candidates must be >= 1; got 0"),
        ({"train_examples": 1}, "train_examples must be >= 2; got 1"),
        ({"candidates": []}, "non-empty list of words"),
        ({"candidates": ["good", ""]}, "non-empty words"),
        ({"near_labels": 0}, "near_labels must be >= 1; got 0"),
        ({"near_labels": "many"}, "near_labels must be an integer; got 'many'"),
        ({"folds": 0}, "folds must be >= 1; got 0"),
        ({"folds": 11}, "folds must be <= 10; got 11"),
    ],
)
def test_searcher_param_errors(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LabelWordsSearcher(**arguments)


def test_searcher_cross_fits_when_asked(task: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from promptsearch.searchers._tokens import label_word_scores

    real = label_word_scores.search_label_words
    seen: list[tuple[int, list[LabelWordChoice]]] = []

    def recording(*args: Any, **kwargs: Any) -> list[LabelWordChoice]:
        choices = real(*args, **kwargs)
        seen.append((kwargs["folds"], choices))
        return choices

    monkeypatch.setattr(label_word_scores, "search_label_words", recording)
    searcher = LabelWordsSearcher(top_per_class=3, num_candidates=2, folds=2)
    searcher.setup(make_context(searcher, task, seed=1))
    proposals = searcher.propose(100)
    assert seen and all(folds == 2 for folds, _ in seen)
    # what is proposed is each base prompt's best cross-fitted verbalizers, in their order
    first = [{k: tuple(v) for k, v in choices[0].verbalizer.items()} for _, choices in seen]
    assert [c.prompt.verbalizer for c in proposals[: len(first)]] == first
    assert searcher.summary["prompt0.train_accuracy"] == seen[0][1][0].train_accuracy

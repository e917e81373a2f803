from __future__ import annotations

import pickle

import pytest

from promptsearch import ConfigError, DataError, Example, Prompt, Task, TemplateError
from promptsearch.metrics import aggregate, example_score


def records(n: int = 20) -> list[dict[str, object]]:
    return [{"text": f"sample {i}", "label": i % 2} for i in range(n)]


def toy_task(**overrides: object) -> Task:
    options: dict[str, object] = dict(
        input_fields=["text"],
        label_field="label",
        verbalizer={0: "bad", 1: "good"},
        seed_prompts=["{text} It was {answer}."],
    )
    options.update(overrides)
    return Task.from_records("toy", records(), **options)  # type: ignore[arg-type]


def test_from_records_splits_with_seed() -> None:
    a, b, c = toy_task(seed=1), toy_task(seed=1), toy_task(seed=2)
    assert (len(a.train), len(a.dev), len(a.test)) == (16, 4, 0)
    assert [e.id for e in a.dev] == [e.id for e in b.dev]
    assert [e.id for e in a.dev] != [e.id for e in c.dev]
    assert a.labels == ("0", "1") and a.verbalizer == {"0": ("bad",), "1": ("good",)}


def test_given_splits_are_kept() -> None:
    task = Task.from_records(
        "given",
        {"train": records(6), "dev": records(4), "test": records(2)},
        input_fields=["text"],
        label_field="label",
        verbalizer={0: "bad", 1: "good"},
    )
    assert (len(task.train), len(task.dev), len(task.test)) == (6, 4, 2)


def test_generation_task_with_alternatives() -> None:
    rows = [{"q": f"w{i}", "a": [f"w{i}s", f"w{i}es"]} for i in range(10)]
    task = Task.from_records("gen", rows, input_fields=["q"], output_field="a", dev_size=2)
    assert task.kind == "generation" and task.metric == "exact_match"
    assert task.dev[0].answers[1].endswith("es")


@pytest.mark.parametrize(
    "overrides, error, fragment",
    [
        (
            {"verbalizer": {0: "bad"}},
            ConfigError,
            r"label\(s\) \['1'\] are missing from the verbalizer",
        ),
        ({"verbalizer": None}, ConfigError, "needs verbalizer="),
        ({"label_field": None}, ConfigError, "exactly one of label_field"),
        ({"input_fields": ["nope"]}, DataError, r"field\(s\) \['nope'\] missing"),
        ({"metric": "bleu"}, ConfigError, "metric 'bleu' is unknown"),
        ({"metric": "exact_match"}, ConfigError, "does not apply to a classification task"),
        ({"dev_size": 25}, DataError, "cannot give 25 dev"),
    ],
)
def test_bad_task_input(
    overrides: dict[str, object], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        toy_task(**overrides)


def test_empty_split_is_an_error() -> None:
    with pytest.raises(DataError, match="the dev split is empty"):
        Task(
            name="t",
            kind="generation",
            input_fields=("x",),
            metric="exact_match",
            train=(Example("a", {"x": "1"}, "1"),),
            dev=(),
        )


def test_prompt_render_with_instruction_and_demos() -> None:
    task = toy_task()
    demo = task.train[0]
    prompt = Prompt(
        template="{text} It was {answer}.", instruction="Rate it.", demonstrations=(demo,)
    ).resolve(task)
    rendered = prompt.render(task.dev[0])
    word = task.verbalizer[demo.target][0]
    assert rendered.prefix == (
        f"Rate it.\n\n{demo.inputs['text']} It was {word}.\n\n{task.dev[0].inputs['text']} It was "
    )
    assert rendered.suffix == "."


def test_identical_renderings_hash_identically() -> None:
    a = Prompt(template="B {text} {answer}", instruction="A")
    b = Prompt(template="A\n\nB {text} {answer}")
    c = Prompt(template="A\n\nB {text} {answer}", verbalizer={"0": "x", "1": "y"})
    assert a.content_hash == b.content_hash != c.content_hash
    assert (
        Prompt(template="{{x}} {text} {answer}").content_hash
        != Prompt(template="{text} {text} {answer}").content_hash
    )


def test_prompt_round_trips_and_pickles() -> None:
    task = toy_task()
    prompt = Prompt(
        template="{text} = {answer}",
        instruction="hi",
        verbalizer={0: ["no", "nope"], 1: "yes"},
        demonstrations=task.train[:2],
    )
    again = Prompt.from_dict(prompt.to_dict())
    assert again == prompt and again.content_hash == prompt.content_hash
    assert pickle.loads(pickle.dumps(prompt)) == prompt


def test_prompt_errors() -> None:
    task = toy_task()
    with pytest.raises(TemplateError, match="unknown field"):
        Prompt(template="{sentence} {answer}").resolve(task)
    with pytest.raises(ConfigError, match=r"no word for label\(s\) \['1'\]"):
        Prompt(template="{text} {answer}", verbalizer={"0": "bad"}).resolve(task)
    with pytest.raises(ConfigError, match="unknown key"):
        Prompt.from_dict({"template": "{text} {answer}", "instructoin": "x"})


def test_metrics() -> None:
    assert example_score("exact_match", " Paris ", ["paris"]) == 1.0
    assert example_score("token_f1", "the big cat", ["big cat sat"]) == pytest.approx(0.8)
    assert example_score("contains", "I think it is Paris.", ["paris"]) == 1.0
    assert example_score("precision_at_1", "France\nGermany", ["France"]) == 1.0
    assert aggregate("accuracy", [1.0, 0.0, 1.0, 1.0], [], []) == 0.75
    assert aggregate("macro_f1", [], ["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(
        (2 / 3 + 0.8) / 2
    )

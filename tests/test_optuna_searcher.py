"""The ``optuna`` searcher driven alone: its prompt space, learning, the mirror, its
parameters.  Inside a real study: test_optuna_in_a_study.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from promptsearch import ConfigError, Prompt, Task
from promptsearch.searchers import make_searcher
from promptsearch.searchers._prompt_space import (
    SEPARATORS,
    format_variants,
    io_template,
    task_instructions,
)
from promptsearch.searchers.base import (
    Candidate,
    TrialResult,
)
from promptsearch.searchers.optuna_search import OptunaSearcher
from promptsearch.task import Example
from promptsearch.template import Template
from promptsearch.testing.searchers import (
    LEAK_SENTINEL,
    contract_task,
    drive,
    make_context,
    synthetic_score,
)


def _setup(searcher: OptunaSearcher, task: Task, seed: int = 0) -> OptunaSearcher:
    searcher.setup(make_context(searcher, task, seed=seed))
    return searcher


def _result(candidate: Candidate, score: float | None, state: str = "complete") -> TrialResult:
    prompt = candidate.prompt
    return TrialResult(
        prompt=prompt,
        content_hash=prompt.content_hash,
        score=score,
        state=state,
        n_examples=4,
        searcher="optuna",
        operation=candidate.operation,
    )


def pair_task() -> Task:
    """A two-field task (premise, hypothesis) with one seed template on two lines."""
    rows = [
        ({"premise": f"p{i}", "hypothesis": f"h{i}"}, "yes" if i % 2 else "no") for i in range(8)
    ]
    examples = tuple(Example(f"e{i}", inputs, target) for i, (inputs, target) in enumerate(rows))
    return Task(
        name="pairs",
        kind="classification",
        input_fields=("premise", "hypothesis"),
        train=examples[:6],
        dev=examples[6:],
        labels=("no", "yes"),
        verbalizer={"no": ("No",), "yes": ("Yes",)},
        seed_prompts=(Prompt(template="{premise}\nQuestion: {hypothesis}? {answer}"),),
    )


# -- the space ------------------------------------------------------------------------------


def test_format_variants_and_io_template() -> None:
    assert format_variants("Review: {sentence}\nSentiment: {answer}") == [
        "Review: {sentence} Sentiment: {answer}"
    ]
    assert format_variants("{sentence} It was {answer}.") == []
    assert io_template(["sentence"]) == "Input: {sentence}\nOutput: {answer}"
    assert io_template(["premise", "hypothesis"]) == (
        "Premise: {premise}\nHypothesis: {hypothesis}\nAnswer: {answer}"
    )


@pytest.mark.parametrize("make_task", [contract_task, pair_task], ids=["one-field", "two-fields"])
def test_templates_keep_the_task_fields_and_one_answer(make_task: Any) -> None:
    task = make_task()
    searcher = _setup(
        OptunaSearcher(templates=[f"Text: {{{task.input_fields[0]}}}\nLabel: {{answer}}"]), task
    )
    templates = searcher.space.templates
    seeds = [p.template for p in task.seed_prompts]
    assert templates[: len(set(seeds))] == list(dict.fromkeys(seeds))  # seed templates first
    assert len(templates) == len(set(templates))
    for template in templates:
        parsed = Template(template)  # exactly one {answer}, or this raises
        assert set(parsed.fields) <= set(task.input_fields)
    for seed in seeds:  # the one-line variants keep every field of their seed template
        for variant in format_variants(seed):
            assert variant in templates
            assert set(Template(variant).fields) == set(Template(seed).fields)
    assert io_template(task.input_fields) in templates
    for batch in drive(searcher, task, rounds=4, n=4):
        for candidate in batch:
            assert candidate.prompt.template in templates
            candidate.prompt.resolve(task)


def test_demonstrations_come_from_train_only() -> None:
    task = contract_task()
    searcher = _setup(OptunaSearcher(sampler="random", max_demonstrations=3), task)
    pool = searcher.space.demonstrations
    assert pool and all(d in task.train for d in pool)
    assert {d.target for d in pool} == set(task.labels)  # the pool holds every label
    seen = 0
    for batch in drive(searcher, task, rounds=8, n=4):
        for candidate in batch:
            demos = candidate.prompt.demonstrations
            assert len(demos) <= 3
            assert all(d in task.train for d in demos)
            assert LEAK_SENTINEL not in repr(candidate.prompt.to_dict())
            seen += bool(demos)
    assert seen, "some prompt should carry demonstrations"


def test_no_demonstrations_when_max_is_zero() -> None:
    task = contract_task()
    searcher = _setup(OptunaSearcher(sampler="random", max_demonstrations=0), task)
    assert "n_demonstrations" not in searcher.space.names()
    for batch in drive(searcher, task, rounds=4, n=4):
        assert all(not c.prompt.demonstrations for c in batch)


def test_verbalizers_come_from_the_pool() -> None:
    task = contract_task()
    extra = {"0": "awful", "1": "lovely"}
    searcher = _setup(OptunaSearcher(sampler="random", verbalizers=[extra]), task)
    pool = searcher.space.verbalizers
    assert pool[0] == dict(task.verbalizer)  # the task's own words first
    assert {"0": ("terrible",), "1": ("great",)} in pool  # a seed prompt's
    assert {"0": ("awful",), "1": ("lovely",)} in pool
    used = set()
    for batch in drive(searcher, task, rounds=8, n=4):
        for candidate in batch:
            assert candidate.prompt.verbalizer in pool
            assert candidate.prompt.verbalizer is not None
            used.add(candidate.prompt.verbalizer["1"][0])
    assert "lovely" in used


def test_label_instructions_name_the_task_words() -> None:
    task = contract_task()
    bare = replace(task, seed_prompts=tuple(p for p in task.seed_prompts if not p.instruction))
    on = OptunaSearcher(sampler="random", max_demonstrations=0, label_instructions=True)
    searcher = _setup(on, bare)
    words = " or ".join(task.verbalizer[label][0] for label in task.labels)
    written = [f"Classify the sentence as {words}.", f"Answer with one word: {words}."]
    assert searcher.space.instructions == ["", *written]  # none, then the label instructions
    used = {c.prompt.instruction for batch in drive(searcher, bare, rounds=8, n=4) for c in batch}
    assert set(written) <= used  # the sampler proposes them
    off = _setup(OptunaSearcher(), bare)  # the default: the seed prompts' instructions only
    assert off.space.instructions == [""]


def test_task_instructions_for_other_tasks() -> None:
    from promptsearch.searchers.base import TrainView

    assert task_instructions(TrainView.from_task(pair_task())) == [
        "Classify the input as No or Yes.",  # several fields: "input"
        "Answer with one word: No or Yes.",
    ]
    topics = replace(
        TrainView.from_task(pair_task()),
        input_fields=("news_story",),
        labels=("a", "b", "c"),
        verbalizer={"a": ("World",), "b": ("Sports",), "c": ("Business",)},
    )
    first = task_instructions(topics)[0]
    assert first == "Classify the news story as World, Sports or Business."
    assert task_instructions(TrainView.from_task(contract_task("generation"))) == []


def test_generation_tasks_have_no_verbalizer() -> None:
    task = contract_task("generation")
    searcher = _setup(OptunaSearcher(), task)
    assert "verbalizer" not in searcher.space.names()
    for batch in drive(searcher, task, rounds=2, n=3):
        assert all(c.prompt.verbalizer is None for c in batch)


def test_seed_prompts_come_first() -> None:
    task = contract_task()
    searcher = _setup(OptunaSearcher(), task)
    first = searcher.propose(len(task.seed_prompts))
    expected = {p.resolve(task).content_hash for p in task.seed_prompts}
    assert {c.prompt.content_hash for c in first} == expected
    assert {c.operation for c in first} == {"seed"}


@pytest.mark.parametrize(("calibrate", "size"), [(False, 4), ("auto", 8)])
def test_duplicates_cost_nothing_and_a_small_space_runs_dry(
    calibrate: str | bool, size: int
) -> None:
    task = contract_task()
    seeds = tuple(p for p in task.seed_prompts if not p.instruction)
    small = replace(task, seed_prompts=seeds[:1])
    # pool: 1 instruction (none), 4 templates, 1 verbalizer;
    # separators are inert; calibration on or off doubles the space when searched
    searcher = _setup(OptunaSearcher(max_demonstrations=0, calibrate=calibrate), small)
    assert len(searcher.space.templates) == 4
    proposed: list[Prompt] = []
    for _ in range(10):
        batch = searcher.propose(3)
        if not batch:
            break
        proposed.extend(c.prompt for c in batch)
        searcher.observe([_result(c, synthetic_score(c.prompt)) for c in batch])
    hashes = [p.content_hash for p in proposed]
    assert len(hashes) == len(set(hashes)) == size, "each distinct prompt exactly once"
    assert sum(p.calibrate for p in proposed) == size - 4
    assert searcher.propose(3) == []  # exhausted: every point maps to a scored prompt


def test_failed_and_pruned_results_are_told() -> None:
    task = contract_task()
    searcher = _setup(OptunaSearcher(sampler="random"), task)
    batch = searcher.propose(3)
    searcher.observe(
        [
            _result(batch[0], None, "failed"),
            _result(batch[1], None, "pruned"),
            _result(batch[2], 0.5),
        ]
    )
    states = [state for _, state, _ in searcher.history]
    assert states == ["fail", "pruned", "complete"]
    assert searcher.propose(4)  # the sampler takes failed and pruned trials in its stride


# -- learning ---------------------------------------------------------------------------------

INSTRUCTIONS = [f"Instruction number {i}." for i in range(4)]
VERBALIZERS = [{"0": f"bad{i}", "1": f"good{i}"} for i in range(3)]


def _pays(prompt: Prompt) -> tuple[bool, bool]:
    verbalizer = prompt.verbalizer or {}
    return prompt.instruction == INSTRUCTIONS[2], verbalizer.get("1") == ("good1",)


def _objective(prompt: Prompt) -> float:
    """Pays for one instruction and one verbalizer, most for both together."""
    instruction, words = _pays(prompt)
    return 0.2 + 0.3 * instruction + 0.3 * words + 0.2 * (instruction and words)


def _hits(sampler: str, seed: int, rounds: int = 15, n: int = 4) -> tuple[int, int, int]:
    task = contract_task()
    searcher = OptunaSearcher(
        sampler=sampler, instructions=INSTRUCTIONS, verbalizers=VERBALIZERS, max_demonstrations=0
    )
    _setup(searcher, task, seed=seed)
    hits = total = 0
    for _ in range(rounds):
        batch = searcher.propose(n)
        hits += sum(all(_pays(c.prompt)) for c in batch)
        total += len(batch)
        searcher.observe([_result(c, _objective(c.prompt)) for c in batch])
    combinations = len(searcher.space.instructions) * len(searcher.space.verbalizers)
    return hits, total, combinations


def test_tpe_learns_the_paying_combination() -> None:
    tpe = [_hits("tpe", seed) for seed in range(3)]
    random_ = [_hits("random", seed) for seed in range(3)]
    hits, total, combinations = (sum(t[0] for t in tpe), sum(t[1] for t in tpe), tpe[0][2])
    chance = total / combinations
    assert total == 3 * 15 * 4
    assert hits >= 3 * chance, f"TPE proposed the paying pair {hits} times; chance is {chance:.1f}"
    assert hits > 2 * sum(r[0] for r in random_)


def test_reproducible_and_picklable_mid_run() -> None:
    import pickle

    task = contract_task()
    a = _setup(OptunaSearcher(), task, seed=5)
    b = _setup(OptunaSearcher(), task, seed=5)
    for _ in range(3):
        batch_a, batch_b = a.propose(4), b.propose(4)
        assert [c.prompt.content_hash for c in batch_a] == [c.prompt.content_hash for c in batch_b]
        a.observe([_result(c, _objective(c.prompt)) for c in batch_a])
        b.observe([_result(c, _objective(c.prompt)) for c in batch_b])
    clone = pickle.loads(pickle.dumps(a))
    assert [c.prompt.content_hash for c in clone.propose(4)] == [
        c.prompt.content_hash for c in a.propose(4)
    ]


# -- the mirror -----------------------------------------------------------------------------


def test_mirror_storage_gets_the_trials(tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    task = contract_task()
    searcher = _setup(OptunaSearcher(mirror_storage=url, mirror_study="mirror"), task, seed=1)
    history = drive(searcher, task, rounds=3, n=3)
    proposed = {c.prompt.content_hash: synthetic_score(c.prompt) for b in history for c in b}
    mirrored = optuna.load_study(study_name="mirror", storage=url)
    trials = mirrored.get_trials()
    assert len(trials) == len(proposed) == 9
    for trial in trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.value == pytest.approx(proposed[trial.user_attrs["content_hash"]])
        assert set(trial.params) == set(searcher.space.names())
        assert trial.user_attrs["template"] in searcher.space.templates
    assert mirrored.user_attrs["promptsearch_task"] == task.name
    # a replay (a resumed study) adds no copies
    again = _setup(OptunaSearcher(mirror_storage=url, mirror_study="mirror"), task, seed=1)
    drive(again, task, rounds=3, n=3)
    assert len(optuna.load_study(study_name="mirror", storage=url).get_trials()) == 9


def test_unreachable_mirror_fails_at_setup(tmp_path: Path) -> None:
    from promptsearch.errors import StorageError

    url = f"sqlite:///{tmp_path / 'no-such-folder' / 'optuna.db'}"
    with pytest.raises(StorageError, match="mirror storage"):
        _setup(OptunaSearcher(mirror_storage=url), contract_task())


# -- parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sampler": "cmaes"}, r"sampler must be one of \['tpe', 'random', 'qmc'\]; got 'cmaes'"),
        ({"instructions": "Be brief."}, "instructions must be a list of strings"),
        ({"instructions": ["ok", 3]}, "each of instructions must be a string; got 3"),
        ({"templates": ["no answer slot {sentence}"]}, "templates: .*answer"),
        ({"verbalizers": {"0": "bad"}}, "verbalizers must be a list of mappings"),
        ({"verbalizers": [{"0": ""}]}, r"verbalizers\[0\]"),
        ({"max_demonstrations": -1}, "max_demonstrations must be >= 0; got -1"),
        ({"max_demonstrations": 17}, "max_demonstrations must be <= 16; got 17"),
        ({"max_demonstrations": 2.5}, "max_demonstrations must be an integer"),
        ({"pool_from_study": "yes"}, "pool_from_study must be True or False; got 'yes'"),
        ({"label_instructions": 1}, "label_instructions must be True or False; got 1"),
        ({"n_startup_trials": -3}, "n_startup_trials must be >= 0"),
        ({"mirror_storage": "optuna.db"}, "mirror_storage must be an Optuna storage URL"),
        ({"mirror_study": ""}, "mirror_study must be a non-empty string"),
    ],
)
def test_bad_parameters_are_refused_eagerly(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OptunaSearcher(**params)


def test_extras_that_do_not_fit_the_task_are_refused_at_setup() -> None:
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['review'\]"):
        _setup(OptunaSearcher(templates=["{review} {answer}"]), contract_task())
    with pytest.raises(ConfigError, match=r"no word for label\(s\) \['1'\]"):
        _setup(OptunaSearcher(verbalizers=[{"0": "bad"}]), contract_task())
    with pytest.raises(ConfigError, match="verbalizers are for classification tasks"):
        _setup(OptunaSearcher(verbalizers=[{"0": "bad"}]), contract_task("generation"))


def test_spec_string_and_registry() -> None:
    searcher = make_searcher("optuna:sampler=random,max_demonstrations=2,pool_from_study=false")
    assert isinstance(searcher, OptunaSearcher)
    assert (searcher.sampler, searcher.max_demonstrations, searcher.pool_from_study) == (
        "random",
        2,
        False,
    )
    assert searcher.label_instructions is False
    labelled = make_searcher("optuna:label_instructions=true")
    assert isinstance(labelled, OptunaSearcher) and labelled.label_instructions is True
    mirrored = make_searcher("optuna:mirror_storage=sqlite:///optuna.db,mirror_study=s1")
    assert isinstance(mirrored, OptunaSearcher)
    assert (mirrored.mirror_storage, mirrored.mirror_study) == ("sqlite:///optuna.db", "s1")
    assert SEPARATORS[0] == "\n\n"  # the Prompt default comes first

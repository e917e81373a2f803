"""T-REx fact relations (LAMA, Petroni et al. 2019; training facts as released with LPAQA).

Layout under the data folder: ``trex/<relation>.jsonl``, JSON lines with
``sub_label`` and ``obj_label`` (``sub_uri``/``obj_uri`` are ignored).  Each relation
is a generation task ``trex:<relation>`` with input field ``subject`` and the object
label as target, scored by precision@1.

Facts that share a subject label are merged into one example whose alternatives
are the other objects (all are true of that subject, and the model sees only the
label), so no subject appears in two splits with different answers.

Splits, shuffled with the seed: train 200 and dev 100 examples (at most a quarter
and an eighth of the relation, for small files), test the rest.  ``train_size``,
``dev_size`` and ``test_limit`` change them.

Seed prompts: LAMA's manual template for the relation (``[X]`` -> ``{subject}``,
``[Y]`` -> ``{answer}``, the tokenised `` .`` -> ``.``; text after the answer
slot becomes the suffix), plus a question-style prompt written for causal LMs.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from promptsearch.errors import ConfigError, DataError
from promptsearch.prompt import Prompt
from promptsearch.task import Example, Task
from promptsearch.tasks._common import TaskInfo, data_missing, no_data_dir, take
from promptsearch.tasks.loaders import read_records

__all__ = ["FAMILY", "PREFIX", "RELATIONS", "info", "lama_template", "load"]

FAMILY = "trex"
PREFIX = "trex:"
FOLDER = "trex"
DEFAULT_TRAIN = 200
DEFAULT_DEV = 100
_RELATION = re.compile(r"^P\d+$")

# relation -> (description, LAMA manual template, question prompt)
RELATIONS: dict[str, tuple[str, str, str]] = {
    "P17": ("country", "[X] is located in [Y] .", "In which country is {subject}?"),
    "P19": ("place of birth", "[X] was born in [Y] .", "Where was {subject} born?"),
    "P27": (
        "country of citizenship",
        "[X] is [Y] citizen .",
        "Which country is {subject} a citizen of?",
    ),
    "P30": ("continent", "[X] is located in [Y] .", "On which continent is {subject}?"),
    "P36": ("capital", "The capital of [X] is [Y] .", "What is the capital of {subject}?"),
    "P37": (
        "official language",
        "The official language of [X] is [Y] .",
        "What is the official language of {subject}?",
    ),
    "P101": (
        "field of work",
        "[X] works in the field of [Y] .",
        "In which field does {subject} work?",
    ),
    "P103": (
        "native language",
        "The native language of [X] is [Y] .",
        "What is the native language of {subject}?",
    ),
    "P106": ("occupation", "[X] is a [Y] by profession .", "What is the occupation of {subject}?"),
    "P140": (
        "religion",
        "[X] is affiliated with the [Y] religion .",
        "Which religion is {subject} affiliated with?",
    ),
    "P1412": (
        "languages spoken, written or signed",
        "[X] used to communicate in [Y] .",
        "Which language does {subject} communicate in?",
    ),
    "P176": ("manufacturer", "[X] is produced by [Y] .", "Which company produces {subject}?"),
}
"""The 12 relations of the shared data; other ``trex/P*.jsonl`` files are listed as found."""


def lama_template(template: str) -> str:
    """Convert a LAMA template (``[X] was born in [Y] .``) to a promptsearch template."""
    text = template.replace("{", "{{").replace("}", "}}")
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    return text.replace("[X]", "{subject}").replace("[Y]", "{answer}")


def _prompts(relation: str) -> tuple[Prompt, ...]:
    if relation not in RELATIONS:
        return (Prompt(template="Subject: {subject}\nObject: {answer}"),)
    _, lama, question = RELATIONS[relation]
    return (
        Prompt(template=lama_template(lama)),
        Prompt(template=f"Q: {question}\nA: {{answer}}"),
    )


def _sort_key(relation: str) -> tuple[int, str]:
    return (int(relation[1:]), relation) if _RELATION.match(relation) else (1 << 30, relation)


def _found(data_dir: Path | None) -> list[str]:
    if data_dir is None or not (data_dir / FOLDER).is_dir():
        return []
    return [p.stem for p in (data_dir / FOLDER).iterdir() if p.name.endswith(".jsonl")]


def info(data_dir: Path | None) -> list[TaskInfo]:
    """All known and found relations (directory listing only)."""
    found = set(_found(data_dir))
    out = []
    for relation in sorted(found | set(RELATIONS), key=_sort_key):
        where = (
            str(data_dir / FOLDER / f"{relation}.jsonl")
            if data_dir is not None
            else f"<data dir>/{FOLDER}/{relation}.jsonl"
        )
        label = RELATIONS[relation][0] if relation in RELATIONS else "Wikidata relation"
        description = f"T-REx {relation} ({label}): predict the object of a fact"
        out.append(TaskInfo(PREFIX + relation, FAMILY, description, relation in found, where))
    return out


def _examples(path: Path) -> list[Example]:
    groups: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for index, record in enumerate(read_records(path)):
        subject, obj = record.get("sub_label"), record.get("obj_label")
        if not (isinstance(subject, str) and isinstance(obj, str)) or not (
            subject.strip() and obj.strip()
        ):
            raise DataError(
                f"{path}, line {index + 1}: expected non-empty string fields 'sub_label' and "
                f"'obj_label'; it has {sorted(record)}"
            )
        subject, obj = subject.strip(), obj.strip()
        objects = groups.setdefault(subject, [])
        first_line.setdefault(subject, index + 1)
        if obj not in objects:
            objects.append(obj)
    return [
        Example(
            id=f"line-{first_line[subject]}",
            inputs={"subject": subject},
            target=objects[0],
            alternatives=tuple(objects[1:]),
        )
        for subject, objects in groups.items()
    ]


def load(
    name: str,
    data_dir: Path | None,
    *,
    seed: int,
    train_size: int | None,
    dev_size: int | None,
    test_limit: int | None,
) -> Task:
    """Load ``trex:<relation>``; see the module docstring for the splits."""
    relation = name[len(PREFIX) :]
    if data_dir is None:
        raise no_data_dir(name, f"{FOLDER}/{relation}.jsonl")
    path = data_dir / FOLDER / f"{relation}.jsonl"
    if not path.is_file():
        raise data_missing(name, path, data_dir)
    examples = _examples(path)
    total = len(examples)
    n_train = train_size if train_size is not None else min(DEFAULT_TRAIN, max(1, total // 4))
    n_dev = dev_size if dev_size is not None else min(DEFAULT_DEV, max(1, total // 8))
    if n_train + n_dev >= total:
        raise ConfigError(
            f"task {name!r}: {total} subjects in {path} cannot give {n_train} train and "
            f"{n_dev} dev examples and leave a test split; lower train_size/dev_size"
        )
    order = list(range(total))
    random.Random(seed).shuffle(order)
    train = [examples[i] for i in sorted(order[:n_train])]
    dev = [examples[i] for i in sorted(order[n_train : n_train + n_dev])]
    test = [examples[i] for i in sorted(order[n_train + n_dev :])]
    label = RELATIONS[relation][0] if relation in RELATIONS else "Wikidata relation"
    return Task(
        name=name,
        kind="generation",
        input_fields=("subject",),
        train=tuple(train),
        dev=tuple(dev),
        test=tuple(take(test, test_limit, seed)),
        metric="precision_at_1",
        seed_prompts=_prompts(relation),
        description=f"T-REx {relation} ({label}): given a subject, name the object",
    )

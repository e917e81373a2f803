"""Few-shot text classification in the LM-BFF / RLPrompt 16-shot format.

Layout under the data folder (``kshot/`` is the shared layout; ``16-shot/`` as in
RLPrompt's repository and ``k-shot/`` as in LM-BFF's are accepted too)::

    kshot/<dir>/16-<seed>/train.tsv     16 examples per class
    kshot/<dir>/16-<seed>/dev.tsv       16 examples per class
    kshot/<dir>/test.tsv                the full test set, shared by all seeds
    kshot/<dir>/16-<seed>/test.tsv      (used instead when present, as in RLPrompt)

TSV files have a header ``sentence<TAB>label`` (``text`` is accepted for the text
column) and integer labels.  LM-BFF's headerless ``train.csv`` (``label,sentence``)
files are read when no ``.tsv`` is there.

The seed picks the split folder (13, 21, 42, 87, 100 in the published data).  Label
words follow LM-BFF (Gao et al. 2021) and RLPrompt (Deng et al. 2022); the default
verbalizer of the sentiment tasks is ``negative``/``positive`` and some seed prompts
carry their own (e.g. LM-BFF's ``terrible``/``great``).  The metric is accuracy for
every task, for comparability with those papers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptsearch.errors import ConfigError, DataError
from promptsearch.prompt import Prompt
from promptsearch.task import Example, Task
from promptsearch.tasks._common import (
    TaskInfo,
    data_missing,
    no_data_dir,
    stratified_sample,
)
from promptsearch.tasks.loaders import read_records

__all__ = ["FAMILY", "SEEDS", "SPECS", "info", "load", "sentiment_prompts", "words"]

FAMILY = "kshot"
SEEDS = (13, 21, 42, 87, 100)
ROOTS = ("kshot", "16-shot", "k-shot")
TEST_SAMPLE_SEED = 0  # test_limit subsamples the shared test set the same way for every seed
_SEED_DIR = re.compile(r"^16-(\d+)$")


def words(*label_words: str) -> dict[str, tuple[str, ...]]:
    """A verbalizer for labels "0", "1", ... in order: ``words("bad", "good")``."""
    return {str(index): (word,) for index, word in enumerate(label_words)}


SENTIMENT = words("negative", "positive")


def sentiment_prompts(text: str = "Review", noun: str = "movie review") -> tuple[Prompt, ...]:
    """Manual seed prompts for binary sentiment (label 0 negative, 1 positive)."""
    template = f"{text}: {{sentence}}\nSentiment: {{answer}}"
    return (
        Prompt(template=template),
        Prompt(template="{sentence} It was {answer}.", verbalizer=words("terrible", "great")),
        Prompt(
            instruction=f"Classify the sentiment of the {noun} as positive or negative.",
            template=template,
        ),
        Prompt(template="{sentence} All in all, it was {answer}.", verbalizer=words("bad", "good")),
    )


def _sst5_prompts() -> tuple[Prompt, ...]:
    return (
        Prompt(template="{sentence} It was {answer}."),
        Prompt(template="Review: {sentence}\nRating: {answer}"),
        Prompt(
            instruction="Rate the movie review as terrible, bad, okay, good or great.",
            template="Review: {sentence}\nRating: {answer}",
        ),
    )


def _subj_prompts() -> tuple[Prompt, ...]:
    return (
        Prompt(template="{sentence} This is {answer}."),
        Prompt(template="Sentence: {sentence}\nSubjective or objective: {answer}"),
        Prompt(
            instruction="Decide whether the sentence is a subjective opinion or an objective "
            "statement of fact.",
            template="Sentence: {sentence}\nAnswer: {answer}",
        ),
    )


def _trec_prompts() -> tuple[Prompt, ...]:
    return (
        Prompt(template="{answer}: {sentence}"),
        Prompt(template="Question: {sentence}\nAnswer type: {answer}"),
        Prompt(
            instruction="Classify the question by the kind of answer it asks for: a "
            "description, an entity, an abbreviation, a person, a location or a number.",
            template="Question: {sentence}\nAnswer type: {answer}",
            verbalizer=words(
                "description", "entity", "abbreviation", "person", "location", "number"
            ),
        ),
    )


def _agnews_prompts() -> tuple[Prompt, ...]:
    return (
        Prompt(template="Article: {sentence}\nTopic: {answer}"),
        Prompt(
            template="{sentence} This topic is about {answer}.",
            verbalizer=words("politics", "sports", "business", "technology"),
        ),
        Prompt(
            instruction="Classify the news article into one of these topics: World, Sports, "
            "Business, Technology.",
            template="Article: {sentence}\nTopic: {answer}",
        ),
        Prompt(
            template="{answer} News: {sentence}",
            verbalizer=words("World", "Sports", "Business", "Tech"),
        ),
    )


@dataclass(frozen=True)
class KShotSpec:
    """One k-shot task: where its files live, its labels and seed prompts."""

    name: str
    dirs: tuple[str, ...]  # folder names tried in order under kshot/
    description: str
    verbalizer: Mapping[str, tuple[str, ...]]
    prompts: tuple[Prompt, ...]


SPECS: dict[str, KShotSpec] = {
    spec.name: spec
    for spec in (
        KShotSpec(
            "sst2",
            ("sst-2", "SST-2", "sst2"),
            "SST-2 movie-review sentiment, 2 classes",
            SENTIMENT,
            sentiment_prompts(),
        ),
        KShotSpec(
            "mr",
            ("mr", "MR"),
            "MR movie-review sentiment, 2 classes",
            SENTIMENT,
            sentiment_prompts(),
        ),
        KShotSpec(
            "cr",
            ("cr", "CR"),
            "CR customer-review sentiment, 2 classes",
            SENTIMENT,
            sentiment_prompts(noun="product review"),
        ),
        KShotSpec(
            "mpqa",
            ("mpqa", "MPQA"),
            "MPQA opinion-phrase polarity, 2 classes",
            SENTIMENT,
            sentiment_prompts(text="Phrase", noun="phrase"),
        ),
        KShotSpec(
            "yelp",
            ("yelp-2", "yelp_polarity", "yelp"),
            "Yelp review polarity, 2 classes",
            SENTIMENT,
            sentiment_prompts(noun="business review"),
        ),
        KShotSpec(
            "sst5",
            ("sst-5", "SST-5", "sst5"),
            "SST-5 fine-grained sentiment, 5 classes",
            words("terrible", "bad", "okay", "good", "great"),
            _sst5_prompts(),
        ),
        KShotSpec(
            "subj",
            ("subj", "SUBJ"),
            "SUBJ subjective vs objective sentences, 2 classes",
            words("subjective", "objective"),
            _subj_prompts(),
        ),
        KShotSpec(
            "trec",
            ("trec", "TREC"),
            "TREC question type, 6 classes",
            words("Description", "Entity", "Expression", "Human", "Location", "Number"),
            _trec_prompts(),
        ),
        KShotSpec(
            "agnews",
            ("agnews", "ag_news", "AGNews"),
            "AG News topic, 4 classes",
            words("World", "Sports", "Business", "Technology"),
            _agnews_prompts(),
        ),
    )
}


def _task_dir(spec: KShotSpec, data_dir: Path) -> Path | None:
    for root in ROOTS:
        for name in spec.dirs:
            path = data_dir / root / name
            if path.is_dir():
                return path
    return None


def info(data_dir: Path | None) -> list[TaskInfo]:
    """The k-shot tasks and whether their folders exist (directory checks only)."""
    out = []
    for spec in SPECS.values():
        found = _task_dir(spec, data_dir) if data_dir is not None else None
        if found is not None:
            where = str(found)
        elif data_dir is not None:
            where = str(data_dir / ROOTS[0] / spec.dirs[0])
        else:
            where = f"<data dir>/{ROOTS[0]}/{spec.dirs[0]}"
        out.append(TaskInfo(spec.name, FAMILY, spec.description, found is not None, where))
    return out


def _split_file(folder: Path, split: str) -> Path | None:
    for extension in (".tsv", ".csv"):
        path = folder / f"{split}{extension}"
        if path.is_file():
            return path
    return None


def _read_split(spec: KShotSpec, path: Path, split: str) -> list[Example]:
    if path.suffix == ".csv":  # LM-BFF: headerless label,sentence
        records: list[dict[str, Any]] = read_records(path, columns=("label", "sentence"))
    else:
        records = read_records(path)
    columns = records[0].keys()
    text_field = next((c for c in ("sentence", "text") if c in columns), None)
    if text_field is None or "label" not in columns:
        raise DataError(
            f"{path}: expected columns 'sentence' (or 'text') and 'label'; it has "
            f"{sorted(columns)}; fix the header line"
        )
    examples = []
    for index, record in enumerate(records):
        label = str(record["label"]).strip()
        if label not in spec.verbalizer:
            raise DataError(
                f"{path}, record {index + 1}: label {label!r} is not one of task "
                f"{spec.name!r}'s labels {list(spec.verbalizer)}; check that the file is "
                f"the {spec.name} data"
            )
        examples.append(
            Example(id=f"{split}-{index}", inputs={"sentence": record[text_field]}, target=label)
        )
    return examples


def _seed_dir(spec: KShotSpec, task_dir: Path, seed: int) -> Path:
    folder = task_dir / f"16-{seed}"
    if folder.is_dir():
        return folder
    found = sorted(
        int(m.group(1)) for p in task_dir.iterdir() if (m := _SEED_DIR.match(p.name)) and p.is_dir()
    )
    if not found:
        raise DataError(
            f"task {spec.name!r}: {task_dir} has no 16-<seed> split folders (e.g. {folder}); "
            "it should hold the 16-shot splits"
        )
    raise ConfigError(
        f"task {spec.name!r}: seed={seed} has no split folder {folder.name} in {task_dir}; "
        f"choose one of the seeds found there: {', '.join(map(str, found))}"
    )


def load(
    name: str,
    data_dir: Path | None,
    *,
    seed: int,
    train_size: int | None,
    dev_size: int | None,
    test_limit: int | None,
) -> Task:
    """Load k-shot task *name* for split seed *seed*.

    *train_size*, *dev_size* and *test_limit* cap the splits (a label-stratified
    seeded subset); the published 16-shot splits are used whole by default.  A
    *dev_size* above the split's size is refused: these tasks have no more dev data.
    """
    spec = SPECS[name]
    if data_dir is None:
        raise no_data_dir(name, f"{ROOTS[0]}/{spec.dirs[0]}/16-<seed>/{{train,dev}}.tsv")
    task_dir = _task_dir(spec, data_dir)
    if task_dir is None:
        raise data_missing(name, data_dir / ROOTS[0] / spec.dirs[0], data_dir)
    folder = _seed_dir(spec, task_dir, seed)
    splits: dict[str, list[Example]] = {}
    for split in ("train", "dev", "test"):
        path = _split_file(folder, split)
        if path is None and split == "test":
            path = _split_file(task_dir, split)
        if path is None:
            expected = (task_dir if split == "test" else folder) / f"{split}.tsv"
            raise data_missing(name, expected, data_dir)
        splits[split] = _read_split(spec, path, split)
    if dev_size is not None and dev_size > len(splits["dev"]):
        raise ConfigError(
            f"task {name!r}: dev_size={dev_size}, but the 16-shot split 16-{seed} has "
            f"{len(splits['dev'])} dev examples; choose dev_size <= {len(splits['dev'])}"
        )
    return Task(
        name=name,
        kind="classification",
        input_fields=("sentence",),
        train=tuple(stratified_sample(splits["train"], train_size, seed)),
        dev=tuple(stratified_sample(splits["dev"], dev_size, seed)),
        test=tuple(stratified_sample(splits["test"], test_limit, TEST_SAMPLE_SEED)),
        metric="accuracy",
        labels=tuple(spec.verbalizer),
        verbalizer=dict(spec.verbalizer),
        seed_prompts=spec.prompts,
        description=f"{spec.description} (16-shot split 16-{seed})",
    )

"""Label-word benchmark: do words near the label names fit dev better than any word?

    python benchmarks/label_words.py --data-dir ../shared/data \\
        [--tasks sst2,mr,agnews,rotten-tomatoes] [--seeds 13] [--near 30] [--top 5]

For each task x seed and two base prompts (the task's first seed prompt, and the
quality benchmark's weak one, ``{sentence} It was {answer}.`` with terrible/great
where the task has two labels), the ``label-words`` search runs twice on the same
train sample (the first 64 of a seeded shuffle): over the whole vocabulary, and with
``near_labels=--near`` (anchors: the label names, the task's and the prompt's label
words, as the searcher uses them).  The ``--top`` verbalizers each finds, best train
fit first (what the searcher proposes first), are scored on the seed's dev split.
Test data is not read: this decides a default, which is picked by dev.

Prints one Markdown row per task, seed, base prompt and setting: the words, train
accuracy and dev accuracy of each of the top verbalizers, and their mean dev accuracy.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import replace

from quality import weak_prompt  # benchmarks/ is not a package
from searchers import machine

from promptsearch import load_model, load_task
from promptsearch.scoring.scorer import Scorer
from promptsearch.searchers._tokens.label_word_scores import search_label_words
from promptsearch.searchers.label_words import label_anchors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,mr,agnews,rotten-tomatoes")
    parser.add_argument("--seeds", default="13")
    parser.add_argument("--near", type=int, default=30, help="near_labels of the second run")
    parser.add_argument("--top", type=int, default=5, help="verbalizers scored on dev")
    parser.add_argument("--train-examples", type=int, default=64)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    model = load_model()
    scorer = Scorer(model, batch_size=16)
    print(f"machine: {machine()}")
    print(f"model {model.name}; train sample {args.train_examples}; top {args.top} by train fit\n")
    print("| task | seed | base prompt | near_labels | verbalizers (train / dev) | mean dev | s |")
    print("|---|---:|---|---:|---|---:|---:|")
    for name in args.tasks.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            task = load_task(name, data_dir=args.data_dir, seed=seed)
            train = list(task.split("train"))
            random.Random(seed).shuffle(train)
            train = train[: args.train_examples]
            dev = list(task.split("dev"))
            for arm, seed_prompt in (("seed", task.seed_prompts[0]), ("weak", weak_prompt(task))):
                base = seed_prompt.resolve(task)  # the task's label words where it has none
                for near in (None, args.near):
                    start = time.perf_counter()
                    choices = search_label_words(
                        model,
                        base,
                        train,
                        task.labels,
                        near_labels=near,
                        anchors=label_anchors(task, base),
                        rng=random.Random(seed),
                    )[: args.top]
                    cells, devs = [], []
                    for choice in choices:
                        prompt = replace(base, verbalizer=choice.verbalizer)
                        report = scorer.score(prompt, dev, task)
                        devs.append(report.value)
                        words = "/".join(w[0] for w in choice.verbalizer.values())
                        cells.append(f"{words} {choice.train_accuracy:.2f}/{report.value:.2f}")
                    print(
                        f"| {name} | {seed} | {arm} | {near or 'all'} | {'; '.join(cells)} | "
                        f"{statistics.mean(devs):.3f} | {time.perf_counter() - start:.0f} |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

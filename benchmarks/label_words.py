"""Label-word benchmark: which label-word settings find words that fit dev better?

    python benchmarks/label_words.py --data-dir ../shared/data \\
        [--tasks sst2,mr,agnews,rotten-tomatoes] [--seeds 13] [--settings all,near=30] \\
        [--top 5]

For each task x seed and two base prompts (the task's first seed prompt, and the
quality benchmark's weak one, ``{sentence} It was {answer}.`` with terrible/great
where the task has two labels), the ``label-words`` search runs once per setting on
the same train sample (the first 64 of a seeded shuffle).  Settings: ``all`` (the
whole vocabulary, as shipped), ``near=N`` (``near_labels=N``; anchors: the label
names, the task's and the prompt's label words, as the searcher uses them),
``folds=K`` (cross-fitted: words chosen on some folds of the sample, ranked on the
others).  The ``--top`` verbalizers each finds, best train fit first (what the
searcher proposes first), are scored on the seed's dev split.  Test data is not
read: this decides a default, which is picked by dev.

Prints one Markdown row per task, seed, base prompt and setting: the words, train
accuracy and dev accuracy of each of the top verbalizers, their mean dev accuracy,
the first one's dev accuracy and the seconds taken; then, per setting, the means
over all rows.
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
    parser.add_argument(
        "--settings", default="all,near=30", help="comma-separated: all, near=N, folds=K"
    )
    parser.add_argument("--top", type=int, default=5, help="verbalizers scored on dev")
    parser.add_argument("--train-examples", type=int, default=64)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    model = load_model()
    scorer = Scorer(model, batch_size=16)
    print(f"machine: {machine()}")
    print(f"model {model.name}; train sample {args.train_examples}; top {args.top} by train fit\n")
    settings = [_setting(text) for text in args.settings.split(",")]
    print(
        "| task | seed | base prompt | setting | verbalizers (train / dev) | mean dev | first | s |"
    )
    print("|---|---:|---|---|---|---:|---:|---:|")
    means: dict[str, list[float]] = {label: [] for label, _, _ in settings}
    firsts: dict[str, list[float]] = {label: [] for label, _, _ in settings}
    for name in args.tasks.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            task = load_task(name, data_dir=args.data_dir, seed=seed)
            train = list(task.split("train"))
            random.Random(seed).shuffle(train)
            train = train[: args.train_examples]
            dev = list(task.split("dev"))
            for arm, seed_prompt in (("seed", task.seed_prompts[0]), ("weak", weak_prompt(task))):
                base = seed_prompt.resolve(task)  # the task's label words where it has none
                for label, near, folds in settings:
                    start = time.perf_counter()
                    choices = search_label_words(
                        model,
                        base,
                        train,
                        task.labels,
                        anchors=label_anchors(task, base),
                        rng=random.Random(seed),
                        near_labels=near,
                        folds=folds,
                    )[: args.top]
                    cells, devs = [], []
                    for choice in choices:
                        prompt = replace(base, verbalizer=choice.verbalizer)
                        report = scorer.score(prompt, dev, task)
                        devs.append(report.value)
                        words = "/".join(w[0] for w in choice.verbalizer.values())
                        cells.append(f"{words} {choice.train_accuracy:.2f}/{report.value:.2f}")
                    means[label].append(statistics.mean(devs))
                    firsts[label].append(devs[0])
                    print(
                        f"| {name} | {seed} | {arm} | {label} | {'; '.join(cells)} | "
                        f"{statistics.mean(devs):.3f} | {devs[0]:.3f} | "
                        f"{time.perf_counter() - start:.0f} |",
                        flush=True,
                    )
    print("\n| setting | rows | mean dev of the top | mean dev of the first |")
    print("|---|---:|---:|---:|")
    for label, _, _ in settings:
        print(
            f"| {label} | {len(means[label])} | {statistics.mean(means[label]):.3f} | "
            f"{statistics.mean(firsts[label]):.3f} |"
        )
    if len(settings) > 1:
        first = settings[0][0]
        for label, _, _ in settings[1:]:
            pairs = list(zip(means[label], means[first], strict=True))
            print(
                f"\n{label} against {first}: higher in {sum(a > b for a, b in pairs)} rows, "
                f"lower in {sum(a < b for a, b in pairs)}, equal in "
                f"{sum(a == b for a, b in pairs)}"
            )
    return 0


def _setting(text: str) -> tuple[str, int | None, int]:
    """``all``, ``near=N`` or ``folds=K`` as a label, ``near_labels`` and ``folds``."""
    name, _, value = text.strip().partition("=")
    if name == "all" and not value:
        return "all", None, 1
    if name not in ("near", "folds") or not value.isdigit() or int(value) < 1:
        raise SystemExit(f"--settings: {text!r} is not all, near=N or folds=K (N, K >= 1)")
    if name == "near":
        return text.strip(), int(value), 1
    return text.strip(), None, int(value)


if __name__ == "__main__":
    raise SystemExit(main())

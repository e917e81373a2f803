"""Contextual calibration benchmark: raw vs calibrated accuracy of the manual prompts.

    OMP_NUM_THREADS=1 python benchmarks/calibration.py --data-dir ../shared/data \\
        [--tasks sst2,agnews] [--seeds 13,42,100] [--test-limit 500] [--demos 0]

For each task x seed, every seed prompt of the task (the manual prompts, the
``manual`` searcher's baselines) is scored ONCE with a calibrating scorer, on the
seed's k-shot dev split and on a seeded random sample of ``--test-limit`` test
examples.  Each scoring call also runs the content-free inputs, once per call.
The raw accuracy comes from the argmax of the raw label log-probabilities that
call returns; the calibrated accuracy comes from its calibrated predictions.  So
the two numbers come from the same forward passes.

Identical work is done once.  The same prompt on the same examples gives the
same numbers, and with ``--demos 0`` the seed prompts are zero-shot and every
seed shares one test file, so the test scores do not change with the seed (std
0).  ``--demos K`` puts K demonstrations from each seed's train split into every
prompt: Zhao et al.'s few-shot setting, where the test score depends on the seed.

Prints one Markdown row per prompt (mean ± std over seeds), then a per-task
summary.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from promptsearch import Prompt, load_model, load_task
from promptsearch.metrics import aggregate, example_score
from promptsearch.scoring.calibration import predict_label
from promptsearch.scoring.scorer import Scorer
from promptsearch.study.loop import example_key
from promptsearch.task import Example, Task

SHORT = 70


@dataclass(frozen=True)
class Outcome:
    """Raw and calibrated metric of one prompt on one set of examples."""

    raw: float
    calibrated: float
    prior: dict[str, float]
    n: int


@dataclass
class Row:
    """One prompt of one task, over seeds."""

    task: str
    text: str
    words: str
    labels: tuple[str, ...]
    dev: list[Outcome]
    test: list[Outcome]


class Bench:
    """Scores prompts with one calibrating scorer, never the same work twice."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.memo: dict[tuple[str, str, tuple[str, ...]], Outcome] = {}
        self.forward_passes = 0
        self.calls = 0

    def score(self, prompt: Prompt, examples: list[Example], task: Task) -> Outcome:
        key = (task.name, prompt.content_hash, tuple(example_key(e) for e in examples))
        if key in self.memo:
            return self.memo[key]
        report = self.scorer.score(prompt, examples, task)
        self.forward_passes += report.forward_passes
        self.calls += 1
        targets = [e.target for e in examples]
        raw_predictions = [predict_label(r.label_logprobs or {}) for r in report.results]
        pairs = zip(raw_predictions, targets, strict=True)
        raw_scores = [example_score(task.metric, p, [t]) for p, t in pairs]
        outcome = Outcome(
            raw=aggregate(task.metric, raw_scores, raw_predictions, targets),
            calibrated=report.value,
            prior=dict(report.content_free_probs or {}),
            n=len(examples),
        )
        self.memo[key] = outcome
        return outcome


def machine() -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.platform()}; {cpu}; {os.cpu_count()} CPUs; torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads; Python {platform.python_version()}"
    )


def test_sample(task: Task, limit: int, sample_seed: int) -> list[Example]:
    examples = list(task.split("test"))
    if 0 < limit < len(examples):
        examples = random.Random(sample_seed).sample(examples, limit)
    return examples


def with_demos(prompt: Prompt, task: Task, demos: int, seed: int) -> Prompt:
    """*prompt* with *demos* demonstrations drawn (seeded) from the train split."""
    if demos <= 0:
        return prompt
    drawn = random.Random(f"demos:{seed}").sample(list(task.train), demos)
    return Prompt(
        template=prompt.template,
        instruction=prompt.instruction,
        verbalizer=prompt.verbalizer,
        demonstrations=tuple(drawn),
        separator=prompt.separator,
    )


def describe(prompt: Prompt) -> str:
    text = (prompt.instruction + " " if prompt.instruction else "") + prompt.template
    text = text if len(text) <= SHORT else text[: SHORT - 1] + "…"
    return "`" + text.replace("\n", "\\n").replace("|", "\\|").replace("`", "'") + "`"


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def delta(outcomes: list[Outcome]) -> str:
    return f"{statistics.mean(o.calibrated - o.raw for o in outcomes):+.3f}"


def prior_text(row: Row) -> str:
    outcomes = row.dev + row.test
    means = [statistics.mean(o.prior.get(label, 0.0) for o in outcomes) for label in row.labels]
    return "/".join(f"{m:.2f}" for m in means)


def print_rows(rows: list[Row]) -> None:
    print(
        "| task | prompt | label words | p_cf | test raw | test calibrated | Δ test | "
        "dev raw | dev calibrated | Δ dev |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.task} | {row.text} | {row.words} | {prior_text(row)} | "
            f"{mean_std([o.raw for o in row.test])} | "
            f"{mean_std([o.calibrated for o in row.test])} | {delta(row.test)} | "
            f"{mean_std([o.raw for o in row.dev])} | "
            f"{mean_std([o.calibrated for o in row.dev])} | {delta(row.dev)} |"
        )


def print_summary(rows: list[Row]) -> None:
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        groups[row.task].append(row)
    print(
        "\n| task | prompts | mean test raw | mean test calibrated | prompts better / worse "
        "on test | mean dev raw | mean dev calibrated |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for task, group in groups.items():
        test = [o for row in group for o in row.test]
        dev = [o for row in group for o in row.dev]
        shifts = [statistics.mean(o.calibrated - o.raw for o in row.test) for row in group]
        better = sum(s > 0 for s in shifts)
        worse = sum(s < 0 for s in shifts)
        print(
            f"| {task} | {len(group)} | {statistics.mean(o.raw for o in test):.3f} | "
            f"{statistics.mean(o.calibrated for o in test):.3f} | {better} / {worse} | "
            f"{statistics.mean(o.raw for o in dev):.3f} | "
            f"{statistics.mean(o.calibrated for o in dev):.3f} |"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,agnews", help="comma-separated task names")
    parser.add_argument("--seeds", default="13,42,100", help="k-shot split seeds")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--test-limit", type=int, default=500, help="0: the whole test split")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the test sample")
    parser.add_argument("--demos", type=int, default=0, help="train demonstrations per prompt")
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--batch-size", type=int, default=16)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    started = time.monotonic()
    model = load_model(args.model)
    bench = Bench(Scorer(model, batch_size=args.batch_size, calibrate=True))
    print(f"machine: {machine()}")
    print(
        f"model {model.name} ({model.dtype}, {model.device}); seeds {args.seeds}; test: random "
        f"{args.test_limit or 'all'} (sample seed {args.sample_seed}); {args.demos} "
        f"demonstrations per prompt; content-free inputs "
        f"{list(bench.scorer.content_free_inputs)}\n"
    )
    rows: dict[tuple[str, int], Row] = {}
    for name in names:
        for seed in seeds:
            task = load_task(name, data_dir=args.data_dir, seed=seed)
            test = test_sample(task, args.test_limit, args.sample_seed)
            for index, seed_prompt in enumerate(task.seed_prompts):
                prompt = with_demos(seed_prompt.resolve(task), task, args.demos, seed)
                verbalizer = prompt.verbalizer or {}
                row = rows.setdefault(
                    (name, index),
                    Row(
                        task=name,
                        text=describe(prompt),
                        words="/".join(verbalizer[label][0] for label in task.labels),
                        labels=task.labels,
                        dev=[],
                        test=[],
                    ),
                )
                row.dev.append(bench.score(prompt, list(task.dev), task))
                row.test.append(bench.score(prompt, test, task))
                print(
                    f"[{(time.monotonic() - started) / 60:5.1f} min] {name} seed {seed} prompt "
                    f"{index}: test {row.test[-1].raw:.3f} -> {row.test[-1].calibrated:.3f}",
                    file=sys.stderr,
                    flush=True,
                )
    print_rows(list(rows.values()))
    print_summary(list(rows.values()))
    minutes = (time.monotonic() - started) / 60
    print(
        f"\n{bench.calls} scoring calls, {bench.forward_passes} forward passes, "
        f"{minutes:.1f} min in all"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Chat-template benchmark: the seed prompts scored as plain text and as chat turns.

    OMP_NUM_THREADS=1 python benchmarks/chat_template.py --data-dir ../shared/data \\
        [--tasks sst2,agnews] [--seed 13] [--test-limit 300] [--model NAME]

For each task, every seed prompt (the ``manual`` searcher's baselines) is scored with
two scorers over the same model: ``chat_template="off"`` (plain text, the default)
and ``"on"`` (the prompt as a user turn of the model's chat template, the answer
opening the assistant's turn; see ``promptsearch/scoring/chat.py``), on the k-shot
seed's dev split and on a seeded random sample of ``--test-limit`` test examples.
Prints one Markdown row per prompt, then the mean per task.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from promptsearch import Prompt, load_model, load_task
from promptsearch.scoring.scorer import Scorer
from promptsearch.task import Example, Task

SHORT = 60


def test_sample(task: Task, limit: int) -> list[Example]:
    examples = list(task.split("test"))
    if 0 < limit < len(examples):
        examples = random.Random(f"chat-benchmark:{task.name}").sample(examples, limit)
    return examples


def describe(prompt: Prompt) -> str:
    text = (prompt.instruction + " " if prompt.instruction else "") + prompt.template
    text = text if len(text) <= SHORT else text[: SHORT - 1] + "…"
    return "`" + text.replace("\n", "\\n").replace("|", "\\|").replace("`", "'") + "`"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,agnews", help="comma-separated task names")
    parser.add_argument("--seed", type=int, default=13, help="k-shot seed of dev (default 13)")
    parser.add_argument("--test-limit", type=int, default=300, help="test examples (0: all)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default=None, help="default: the embedded SmolLM2")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    model = load_model(args.model, device="cpu")
    scorers = {
        setting: Scorer(model, batch_size=args.batch_size, chat_template=setting)
        for setting in ("off", "on")
    }
    passes = 0
    means: dict[str, dict[str, list[float]]] = {}
    print("| task | prompt | test plain | test chat | Δ test | dev plain | dev chat | Δ dev |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in args.tasks.split(","):
        task = load_task(name, data_dir=args.data_dir, seed=args.seed)
        splits = {"test": test_sample(task, args.test_limit), "dev": list(task.dev)}
        for prompt in task.seed_prompts:
            values: dict[str, float] = {}
            for split, examples in splits.items():
                for setting, scorer in scorers.items():
                    report = scorer.score(prompt, examples, task)
                    passes += report.forward_passes
                    values[f"{split} {setting}"] = report.value
                    means.setdefault(name, {}).setdefault(f"{split} {setting}", []).append(
                        report.value
                    )
            print(
                f"| {name} | {describe(prompt)} | {values['test off']:.3f} | "
                f"{values['test on']:.3f} | {values['test on'] - values['test off']:+.3f} | "
                f"{values['dev off']:.3f} | {values['dev on']:.3f} | "
                f"{values['dev on'] - values['dev off']:+.3f} |",
                flush=True,
            )
    print("\n| task | mean test plain | mean test chat | mean dev plain | mean dev chat |")
    print("|---|---:|---:|---:|---:|")
    for name, columns in means.items():
        cells = [statistics.mean(columns[c]) for c in ("test off", "test on", "dev off", "dev on")]
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    print(
        f"\n{passes} forward passes, {time.perf_counter() - started:.0f} s, model {model.name}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

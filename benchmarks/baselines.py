"""Manual-prompt baselines: each built-in seed prompt scored on a test split.

    python benchmarks/baselines.py --data-dir ../shared/data --limit 500

Scores a seeded random sample of the test split (MR's test file is sorted by
label, so its first rows would be one class only).  Prints a Markdown table
(task, prompt, label words, test accuracy): the numbers a search has to beat.
"""

from __future__ import annotations

import argparse
import random
import sys

from promptsearch import load_model, load_task
from promptsearch.scoring.scorer import Scorer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tasks", default="sst2,mr,agnews,rotten-tomatoes")
    parser.add_argument(
        "--limit",
        type=int,
        default=500,
        help="random sample of N test examples (0: the whole split)",
    )
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    model = load_model(args.model)
    scorer = Scorer(model, batch_size=args.batch_size)
    print(
        f"model {model.name} on {model.device} ({model.dtype}); "
        f"a random {args.limit} test examples (sample seed {args.sample_seed})\n"
    )
    print("| task | prompt | label words | test accuracy | n |")
    print("|---|---|---|---:|---:|")
    for name in args.tasks.split(","):
        task = load_task(name, data_dir=args.data_dir)
        examples = list(task.test)
        if 0 < args.limit < len(examples):
            examples = random.Random(args.sample_seed).sample(examples, args.limit)
        for prompt in task.seed_prompts:
            resolved = prompt.resolve(task)
            report = scorer.score(resolved, examples, task)
            words = "/".join(v[0] for v in (resolved.verbalizer or {}).values())
            text = (resolved.instruction + " " if resolved.instruction else "") + resolved.template
            text = text.replace("\n", "\\n").replace("|", "\\|")
            print(f"| {name} | `{text}` | {words} | {report.value:.3f} | {len(examples)} |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

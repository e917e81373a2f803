"""APE benchmark: induced instructions against the human ones on instruction induction.

    python benchmarks/ape.py --data-dir ../shared/data [--tasks antonyms,sum] \\
        [--budget 10] [--dev-size 12] [--test-limit 30] [--max-new-tokens 16] \\
        [--searcher "ape:num_prompts=12"] [--seed 0] [--sample-seed 0]

For each ``ii:<task>`` (all 18 by default), the ``induce/`` pool is split into train
(the demonstrations APE may show its generator) and dev (``--dev-size`` examples,
fewer for the two small pools, where the study scores the candidates); ``execute/``
is held out.  A study with searchers ``["ape"]`` spends ``--budget`` evaluations,
the generator being the scoring model itself (the embedded SmolLM2-135M-Instruct
unless ``--model``).  Then the best APE instruction by dev score, and every human
annotation, are scored on the same seeded sample of ``--test-limit`` execute examples.

Prints one Markdown row per task as it finishes: the best human annotation's execute
score (best *on execute*: an upper bound for the humans, since no dev selection
picks it) and text, the best APE instruction's dev and execute scores and text, then
the number of tasks where APE matches or beats that human score.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from promptsearch import Prompt, load_model, load_task
from promptsearch.scoring.scorer import Scorer
from promptsearch.searchers import make_searcher
from promptsearch.storage import open_storage
from promptsearch.study.loop import Study
from promptsearch.task import Example, Task
from promptsearch.tasks.instruction_induction import DESCRIPTIONS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from searchers import machine  # benchmarks/ is not a package

TEXT = 70


@dataclass
class Row:
    task: str
    metric: str
    n_humans: int
    human: float
    human_text: str
    ape_dev: float
    ape: float
    ape_text: str
    evaluations: int
    generated: int
    kept: int
    minutes: float

    @property
    def wins(self) -> bool:
        return self.ape >= self.human


def cell(text: str) -> str:
    text = " ".join(text.split())
    text = text if len(text) <= TEXT else text[: TEXT - 1] + "…"
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def execute_sample(task: Task, limit: int, sample_seed: int) -> list[Example]:
    examples = list(task.split("test"))
    if 0 < limit < len(examples):
        examples = random.Random(sample_seed).sample(examples, limit)
    return examples


def run_task(name: str, scorer: Scorer, args: argparse.Namespace, folder: Path) -> Row:
    started = time.monotonic()
    task = load_task(f"ii:{name}", data_dir=args.data_dir, seed=args.seed)
    if len(task.dev) > args.dev_size:  # the default dev is a third of the pool, at most 50
        task = load_task(
            f"ii:{name}", data_dir=args.data_dir, seed=args.seed, dev_size=args.dev_size
        )
    examples = execute_sample(task, args.test_limit, args.sample_seed)
    humans = [(scorer.score(p, examples, task).value, p) for p in task.seed_prompts]
    human_score, human = max(humans, key=lambda item: item[0])
    study_name = f"ape-{name}"
    storage = open_storage(f"sqlite:///{folder / (study_name + '.db')}")
    Study(
        study_name,
        task,
        scorer,
        [make_searcher(args.searcher)],
        args.budget,
        storage,
        seed=args.seed,
        candidates_per_round=args.candidates_per_round,
        progress=False,
    ).run()
    rows = storage.leaderboard(study_name)
    metrics = storage.metrics(study_name, "ape")
    generated = int(sum(m.value for m in metrics if m.key == "generated"))
    kept = int(sum(m.value for m in metrics if m.key == "kept"))
    if rows:
        best = Prompt.from_dict(rows[0].body)
        ape_dev, ape_text = rows[0].dev_score, best.instruction
        ape_score = scorer.score(best, examples, task).value
    else:  # the generator wrote nothing usable
        ape_dev, ape_text, ape_score = float("nan"), "(none)", 0.0
    return Row(
        task=name,
        metric=task.metric,
        n_humans=len(humans),
        human=human_score,
        human_text=human.instruction,
        ape_dev=ape_dev,
        ape=ape_score,
        ape_text=ape_text,
        evaluations=len(rows),
        generated=generated,
        kept=kept,
        minutes=(time.monotonic() - started) / 60,
    )


def row_text(row: Row) -> str:
    mark = "yes" if row.wins else "no"
    return (
        f"| {row.task} | {row.metric} | {row.n_humans} | {row.human:.2f} | "
        f"{cell(row.human_text)} | {row.ape_dev:.2f} | {row.ape:.2f} | {cell(row.ape_text)} | "
        f"{mark} | {row.evaluations} | {row.kept}/{row.generated} | {row.minutes:.1f} |"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tasks", default=",".join(sorted(DESCRIPTIONS)))
    parser.add_argument("--searcher", default="ape", help="searcher spec, e.g. ape:top_k=2")
    parser.add_argument("--budget", type=int, default=10, help="APE evaluations per task")
    parser.add_argument("--candidates-per-round", type=int, default=4)
    parser.add_argument("--dev-size", type=int, default=12, help="dev examples from induce/")
    parser.add_argument("--test-limit", type=int, default=30, help="execute sample; 0: all")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="scorer output limit")
    parser.add_argument("--seed", type=int, default=0, help="split and study seed")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the execute sample")
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--batch-size", type=int, default=16)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [t.strip().removeprefix("ii:") for t in args.tasks.split(",") if t.strip()]
    make_searcher(args.searcher)  # fail now on a bad spec
    model = load_model(args.model)
    scorer = Scorer(model, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    print(f"machine: {machine()}")
    print(
        f"model {model.name} ({model.dtype}, {model.device}), also the generator; searcher "
        f"{args.searcher!r}; budget {args.budget} evaluations per task on {args.dev_size} dev "
        f"examples from induce/; execute: random {args.test_limit or 'all'} (sample seed "
        f"{args.sample_seed}); scorer max_new_tokens {args.max_new_tokens}; seed {args.seed}\n"
    )
    print(
        "| task | metric | humans | best human (execute) | human instruction | APE dev | "
        "APE execute | APE instruction | APE >= human | evals | kept/generated | min |"
    )
    print("|---|---|---:|---:|---|---:|---:|---|---|---:|---:|---:|")
    sys.stdout.flush()
    rows: list[Row] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="promptsearch-ape-") as tmp:
        for name in names:
            row = run_task(name, scorer, args, Path(tmp))
            rows.append(row)
            print(row_text(row))
            sys.stdout.flush()
    wins = sum(r.wins for r in rows)
    ties = sum(r.ape == r.human for r in rows)
    print(
        f"\nAPE matches or beats the best human annotation on {wins} of {len(rows)} tasks "
        f"({ties} of them ties); mean execute score: humans "
        f"{sum(r.human for r in rows) / max(len(rows), 1):.3f}, APE "
        f"{sum(r.ape for r in rows) / max(len(rows), 1):.3f}; "
        f"{(time.monotonic() - started) / 60:.1f} min in all"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

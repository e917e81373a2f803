"""Scorer speed: a plain transformers loop, the project's scorer, and lm-evaluation-harness.

    python benchmarks/scorer_speed.py --data-dir ../shared/data [--sst2 200] [--agnews 100]

    # with lm-evaluation-harness, from a throwaway venv that reuses this torch:
    python -m venv --system-site-packages /tmp/lmeval && /tmp/lmeval/bin/pip install lm-eval
    /tmp/lmeval/bin/python benchmarks/scorer_speed.py --data-dir ../shared/data

One run scores the same prompts on the same examples with every method:

- **(a) plain loop**: one example at a time, ``model(input_ids).logits`` (the
  logits of every position), the label log-probabilities read from it.
- **(b) the scorer**: :class:`promptsearch.scoring.scorer.Scorer` with its defaults, once
  with ``share_prefix=False`` (batching and the answer-position head only) and
  once as shipped (plus the shared prefix cache), and once more on a bfloat16 copy
  of the model (``--no-bf16`` skips it).
- **(c) lm-evaluation-harness**: ``HFLM(...).loglikelihood`` on (context,
  continuation) pairs, at the same batch size, if ``import lm_eval`` works; else
  the row says why.

The prompts are the sst2 and agnews seed prompts plus an sst2 prompt with an
instruction and four demonstrations (two per label, from the train split); the
examples a seeded random sample of each test split.  Methods are interleaved:
each repeat runs every method on every prompt, in a rotated order, and a method's
time is its median over repeats, so a change in machine load hits all of them.

Printed: examples/s, the ratio to the plain loop, how often the predictions agree
with the plain loop's, and the model FLOP/s reached, against this machine's
measured matmul FLOP/s (the best of several timed square matmuls, in the same
dtype).  FLOPs count 2 x non-embedding parameters per token position run (padding
included where known) plus 2 x hidden x vocabulary per position the LM head runs
at; attention-score FLOPs (a few per cent at these lengths) are left out.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from promptsearch import Prompt, load_model, load_task
from promptsearch.models.base import LanguageModel
from promptsearch.scoring.scorer import Scorer
from promptsearch.task import Example, Task


@dataclass
class Case:
    """One prompt of one task on its sample of test examples."""

    name: str
    task: Task
    prompt: Prompt
    examples: list[Example]


@dataclass
class Outcome:
    """What one method gave on one case: predictions, label log-probs, FLOPs run."""

    predictions: list[str]
    logprobs: list[dict[str, float]]
    flops: float


@dataclass
class Method:
    name: str
    dtype: torch.dtype
    run: Callable[[Case], Outcome]
    seconds: dict[str, list[float]] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)


# -- the prompts and examples ------------------------------------------------------------------


def build_cases(data_dir: str | None, n_sst2: int, n_agnews: int, seed: int) -> list[Case]:
    cases = []
    for name, count in (("sst2", n_sst2), ("agnews", n_agnews)):
        if count <= 0:
            continue
        task = load_task(name, data_dir=data_dir)
        examples = random.Random(seed).sample(list(task.test), min(count, len(task.test)))
        prompts = [p.resolve(task) for p in task.seed_prompts]
        if name == "sst2":
            by_label = {
                label: [e for e in task.train if e.target == label] for label in task.labels
            }
            demos = [by_label[label][k] for k in range(2) for label in task.labels]
            base = task.seed_prompts[2]  # the one with an instruction
            prompts.append(
                Prompt(
                    base.template, instruction=base.instruction, demonstrations=tuple(demos)
                ).resolve(task)
            )
        for k, prompt in enumerate(prompts):
            label = f"{name} #{k}" + (
                f" ({len(prompt.demonstrations)} demos)" if prompt.demonstrations else ""
            )
            cases.append(Case(label, task, prompt, examples))
    return cases


def argmax_label(labels: tuple[str, ...], values: dict[str, float]) -> str:
    best = labels[0]
    for label in labels[1:]:
        if values[label] > values[best]:
            best = label
    return best


def logsumexp(values: list[float]) -> float:
    top = max(values)
    return top if top == -math.inf else top + math.log(sum(math.exp(v - top) for v in values))


# -- (a) the plain loop ------------------------------------------------------------------------


def plain_loop(lm: LanguageModel, n_body: int) -> Callable[[Case], Outcome]:
    """One example at a time, full logits, label log-probs read from them."""
    tokenizer, model = lm.tokenizer, lm.model
    hidden, vocab = model.config.hidden_size, model.config.vocab_size
    start = next(t for t in (tokenizer.bos_token_id, tokenizer.eos_token_id) if t is not None)

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False).input_ids) if text else []

    def run(case: Case) -> Outcome:
        predictions, logprobs, tokens = [], [], 0
        verbalizer = case.prompt.verbalizer or {}
        for example in case.examples:
            prefix = case.prompt.render(example).prefix
            context_text = prefix.rstrip()
            space = prefix[len(context_text) :]
            context = ids(context_text) or [start]
            answers = {
                label: [ids(space + w) for w in verbalizer[label]] for label in case.task.labels
            }
            values: dict[str, float] = {}
            if all(len(a) == 1 for words in answers.values() for a in words):
                with torch.inference_mode():
                    logits = model(torch.tensor([context])).logits[0, -1]
                row = logits.float().log_softmax(-1)
                tokens += len(context)
                for label, words in answers.items():
                    values[label] = logsumexp([row[a[0]].item() for a in words])
            else:
                for label, words in answers.items():
                    scores = []
                    for answer in words:
                        sequence = context + answer[:-1]
                        with torch.inference_mode():
                            logits = model(torch.tensor([sequence])).logits[0]
                        rows = logits.float().log_softmax(-1)
                        tokens += len(sequence)
                        first = len(context) - 1
                        scores.append(sum(rows[first + k, t].item() for k, t in enumerate(answer)))
                    values[label] = logsumexp(scores)
            predictions.append(argmax_label(case.task.labels, values))
            logprobs.append(values)
        flops = 2.0 * tokens * (n_body + hidden * vocab)
        return Outcome(predictions, logprobs, flops)

    return run


# -- (b) the scorer ----------------------------------------------------------------------------


def project_scorer(
    lm: LanguageModel, n_body: int, batch_size: int | str, share_prefix: bool
) -> Callable[[Case], Outcome]:
    scorer = Scorer(lm, batch_size=batch_size, share_prefix=share_prefix)
    hidden, vocab = lm.model.config.hidden_size, lm.model.config.vocab_size

    def run(case: Case) -> Outcome:
        backend: Any = scorer._get_backend()
        before = backend.tokens_run
        report = scorer.score(case.prompt, case.examples, case.task)
        positions = backend.tokens_run - before
        heads = report.forward_passes + (1 if backend.last_shared[1] else 0)
        flops = 2.0 * positions * n_body + 2.0 * heads * hidden * vocab
        return Outcome(
            [r.prediction for r in report.results],
            [dict(r.label_logprobs or {}) for r in report.results],
            flops,
        )

    return run


# -- (c) lm-evaluation-harness -----------------------------------------------------------------


def lm_eval_method(
    lm: LanguageModel, n_body: int, batch_size: int
) -> tuple[Callable[[Case], Outcome] | None, str]:
    try:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except Exception as error:  # not installed, or broken: say why and go on
        return None, f"lm-eval not importable ({type(error).__name__}: {error})"
    import lm_eval

    harness = HFLM(
        pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=batch_size, device=str(lm.device)
    )
    hidden, vocab = lm.model.config.hidden_size, lm.model.config.vocab_size

    def run(case: Case) -> Outcome:
        verbalizer = case.prompt.verbalizer or {}
        requests: list[Any] = []
        owners: list[tuple[int, str]] = []
        for i, example in enumerate(case.examples):
            prefix = case.prompt.render(example).prefix
            context = prefix.rstrip()
            for label in case.task.labels:
                for word in verbalizer[label]:
                    arguments = (context, prefix[len(context) :] + word)
                    requests.append(Instance("loglikelihood", {}, arguments, len(requests)))
                    owners.append((i, label))
        answers = harness.loglikelihood(requests, disable_tqdm=True)
        collected: list[dict[str, list[float]]] = [{} for _ in case.examples]
        for (i, label), (value, _) in zip(owners, answers, strict=True):
            collected[i].setdefault(label, []).append(float(value))
        logprobs = [{k: logsumexp(v) for k, v in row.items()} for row in collected]
        # The harness runs a context once for all continuations that share it and its
        # sequence minus the last token ("group_by contexts"): count each such run once.
        runs = {
            tuple(lm.tokenizer(c + w).input_ids[:-1]) for c, w in (r.arguments for r in requests)
        }
        tokens = sum(len(run) for run in runs)
        return Outcome(
            [argmax_label(case.task.labels, row) for row in logprobs],
            logprobs,
            2.0 * tokens * (n_body + hidden * vocab),  # real tokens only: padding not counted
        )

    return run, f"lm-eval {getattr(lm_eval, '__version__', '?')}"


# -- measuring ---------------------------------------------------------------------------------


def matmul_flops(dtype: torch.dtype, size: int = 2048, seconds: float = 1.5) -> float:
    """This machine's matmul FLOP/s in *dtype*: the best of several timed square matmuls."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2.0 * size**3 / (time.perf_counter() - started))
    return best


def body_parameters(lm: LanguageModel) -> int:
    """Parameters used as matmul weights per token: all but the token embedding and LM head."""
    skip = {id(lm.model.get_input_embeddings().weight)}
    head = lm.model.get_output_embeddings()
    if head is not None:
        skip.add(id(head.weight))
    return sum(p.numel() for p in lm.model.parameters() if id(p) not in skip)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--sst2", type=int, default=200, help="sst2 test examples")
    parser.add_argument("--agnews", type=int, default=100, help="agnews test examples")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 scorer")
    parser.add_argument("--no-lm-eval", action="store_true", help="skip lm-evaluation-harness")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain loop (a)")
    parser.add_argument("--progress", action="store_true", help="print a line per prompt")
    args = parser.parse_args()

    cases = build_cases(args.data_dir, args.sst2, args.agnews, args.sample_seed)
    lm = load_model()
    n_body = body_parameters(lm)
    methods = []
    if not args.no_plain:
        methods.append(Method("(a) plain loop, fp32", torch.float32, plain_loop(lm, n_body)))
    methods.append(
        Method(
            "(b) scorer, no prefix sharing, fp32",
            torch.float32,
            project_scorer(lm, n_body, args.batch_size, share_prefix=False),
        )
    )
    methods.append(
        Method(
            "(b) scorer, fp32 (default)",
            torch.float32,
            project_scorer(lm, n_body, args.batch_size, True),
        )
    )
    if not args.no_bf16:
        bf16 = load_model(dtype="bfloat16")
        methods.append(
            Method(
                "(b) scorer, bf16",
                torch.bfloat16,
                project_scorer(bf16, n_body, args.batch_size, True),
            )
        )
    harness_note = "skipped (--no-lm-eval)"
    if not args.no_lm_eval:
        harness, harness_note = lm_eval_method(lm, n_body, args.batch_size)
        if harness is not None:
            methods.append(Method(f"(c) {harness_note}, fp32", torch.float32, harness))

    n_examples = sum(len(c.examples) for c in cases)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; load average at start {load_average()}"
    )
    print(
        f"model: {lm.name} ({n_body / 1e6:.1f}M non-embedding parameters); {len(cases)} prompts, "
        f"{n_examples} prompt x example pairs; batch size {args.batch_size}; {args.repeats} repeats"
    )
    print(f"lm-evaluation-harness: {harness_note}")
    for method in methods:  # warm-up: first calls initialise kernels and caches
        small = Case(cases[-1].name, cases[-1].task, cases[-1].prompt, cases[-1].examples[:4])
        method.run(small)

    peaks: dict[torch.dtype, float] = {}
    for repeat in range(args.repeats):
        for dtype in {m.dtype for m in methods}:
            peaks[dtype] = max(peaks.get(dtype, 0.0), matmul_flops(dtype))
        for k, case in enumerate(cases):  # every method on one prompt, then the next
            shift = (repeat + k) % len(methods)
            for method in methods[shift:] + methods[:shift]:
                started = time.perf_counter()
                outcome = method.run(case)
                method.seconds.setdefault(case.name, []).append(time.perf_counter() - started)
                method.outcomes[case.name] = outcome
            if args.progress:
                print(f"    {case.name}: done; load average {load_average()}", flush=True)
        print(
            f"  repeat {repeat + 1}/{args.repeats} done; load average {load_average()}", flush=True
        )

    reference = methods[0]
    print()
    ref = "the first row" if args.no_plain else "(a)"
    print(
        f"| method | examples/s | x first row | same predictions as {ref} "
        f"| max abs. log-prob diff vs {ref} | model GFLOP/s | share of matmul peak |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    base_rate = 0.0
    for method in methods:
        seconds = sum(statistics.median(method.seconds[c.name]) for c in cases)
        rate = n_examples / seconds
        base_rate = base_rate or rate
        same = sum(
            a == b
            for c in cases
            for a, b in zip(
                method.outcomes[c.name].predictions,
                reference.outcomes[c.name].predictions,
                strict=True,
            )
        )
        diff = max(
            abs(x[k] - y[k])
            for c in cases
            for x, y in zip(
                method.outcomes[c.name].logprobs, reference.outcomes[c.name].logprobs, strict=True
            )
            for k in x
        )
        flops = sum(method.outcomes[c.name].flops for c in cases) / seconds
        share = flops / peaks[method.dtype]
        print(
            f"| {method.name} | {rate:.1f} | {rate / base_rate:.2f} | {same}/{n_examples} "
            f"| {diff:.1e} | {flops / 1e9:.0f} | {share:.0%} |"
        )
    print()
    print(
        "matmul peak measured: "
        + ", ".join(
            f"{str(d).replace('torch.', '')} {p / 1e9:.0f} GFLOP/s" for d, p in peaks.items()
        )
    )
    print()
    print("| prompt | " + " | ".join(m.name for m in methods) + " |")
    print("|---|" + "---:|" * len(methods))
    for case in cases:
        rates = [len(case.examples) / statistics.median(m.seconds[case.name]) for m in methods]
        print(f"| {case.name} | " + " | ".join(f"{r:.1f}/s" for r in rates) + " |")
    print(f"\nload average at end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

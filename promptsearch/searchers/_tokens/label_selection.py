"""Choosing label words from a matrix of answer-slot log-probabilities.

After LM-BFF's automatic label-word selection (Gao et al. 2021, "Making Pre-trained
Language Models Better Few-shot Learners").  The input is ``scores[i, w]``, the
log-probability of candidate word *w* in the answer slot of train example *i*.

1. **Per-class candidates.**  For each class *c*, only words among the ``pool``
   most likely ones for *c* (highest mean log-probability over the examples of
   class *c*; LM-BFF's pruning, which keeps out rare tokens that separate 16
   examples by chance) are eligible.  An eligible word's likelihood ratio is its
   mean log-probability over the examples of class *c* minus the mean, over the
   *other* classes, of each such class's mean (a macro average, so a large class
   does not dominate).  Every word is owned by the class where its eligible ratio
   is highest, and each class keeps its ``top_per_class`` owned words, best ratio
   first (topped up with the best eligible, then other, words no class kept, if it
   owns too few).  The lists are disjoint, so no verbalizer uses one word for two classes.
2. **Combinations.**  A verbalizer takes one word per class.  Since the scores are
   already known, the train accuracy of any combination costs no forward pass:
   an example is predicted as the class whose word scores highest (ties go to the
   first label, as in the scorer).  When the product of the list sizes is at most
   ``max_combinations`` every combination is evaluated; otherwise the all-best
   combination plus seeded random samples (``max_combinations`` in all), then a
   greedy per-class improvement of the best one found.
3. **Ranking.**  Combinations are ranked by train accuracy, then by mean margin
   (the gold class's word log-probability minus the best other class's).

**Cross-fitting** (``folds`` above 1).  Ranked on the examples its words were chosen
on, a verbalizer's train accuracy says how well odd words separate a few examples,
not how well they will do on new ones (on k-shot SST-2, words at 0.94 on train
scored 0.6 to 0.8 on dev).  With ``folds`` = *K* the examples are split into *K*
class-stratified folds (the *j*-th example of each class goes to fold *j* mod *K*).
For each fold, steps 1 and 2 run with the candidate words chosen on the *other*
folds and the combinations scored on this one.  Every combination found is then
scored on every fold whose candidate lists hold all of its words, and ranked by its
accuracy (then margin) over those folds' examples: each word was chosen without
the examples it is judged on.  A combination of words that the folds chose
independently is judged on more examples.

torch is imported inside the functions.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from promptsearch.errors import ConfigError
from promptsearch.validation import check_int

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_POOL",
    "MAX_FOLDS",
    "LabelWordChoice",
    "class_candidates",
    "evaluate_combinations",
    "select_label_words",
]

_CHUNK = 4096  # combinations evaluated at once
DEFAULT_POOL = 1000  # eligible words per class, by likelihood
_GREEDY_ROUNDS = 8
MAX_FOLDS = 10
"""The most folds cross-fitting takes (each must hold an example of every label)."""


@dataclass(frozen=True)
class LabelWordChoice:
    """One verbalizer found by the search: ``{label: [word]}`` with its train fit.

    ``train_accuracy``: the share of the train examples it classifies correctly.
    ``margin``: mean over those examples of the gold label's word log-probability
    minus the highest other label's.
    """

    verbalizer: dict[str, list[str]]
    train_accuracy: float
    margin: float


def _class_index(example_labels: Sequence[str], labels: Sequence[str]) -> list[int]:
    if len(labels) < 2:
        raise ConfigError(
            f"label-word search needs at least two labels to separate; got {list(labels)}"
        )
    if len(set(labels)) != len(labels):
        raise ConfigError(f"labels must be distinct; got {list(labels)}")
    position = {label: k for k, label in enumerate(labels)}
    unknown = sorted({t for t in example_labels if t not in position})
    if unknown:
        raise ConfigError(f"example label(s) {unknown} are not among the labels {list(labels)}")
    out = [position[t] for t in example_labels]
    missing = [label for label in labels if position[label] not in set(out)]
    if missing:
        raise ConfigError(
            f"label-word search needs train examples of every label; none of label(s) "
            f"{missing} among the {len(out)} examples given"
        )
    return out


def class_candidates(
    scores: torch.Tensor,
    classes: Sequence[int],
    n_classes: int,
    top_per_class: int,
    pool: int | None = DEFAULT_POOL,
) -> list[list[int]]:
    """Column indices of each class's candidate words, best likelihood ratio first.

    *classes* gives each row's class index; see the module docstring for the pool
    and the ratio.  ``pool=None`` ranks every word by ratio alone.
    """
    import torch

    target = torch.tensor(list(classes), dtype=torch.long)
    means = torch.stack([scores[target == c].mean(dim=0) for c in range(n_classes)])  # (C, W)
    means = torch.nan_to_num(means, nan=-math.inf, neginf=-1e30)
    others = (means.sum(dim=0, keepdim=True) - means) / (n_classes - 1)
    ratio = means - others  # (C, W)
    width = scores.shape[1]
    eligible = torch.ones((n_classes, width), dtype=torch.bool)
    if pool is not None and pool < width:
        eligible[:] = False
        top = torch.topk(means, pool, dim=1).indices  # (C, pool): most likely words per class
        eligible.scatter_(1, top, True)
    ranked = torch.where(eligible, ratio, torch.tensor(-math.inf))
    owner = ranked.argmax(dim=0)  # (W,)
    columns = torch.arange(width)
    lists: list[list[int]] = []
    taken: set[int] = set()
    for c in range(n_classes):
        owned = columns[(owner == c) & eligible[c]]
        order = owned[torch.argsort(-ratio[c, owned], stable=True)]
        chosen = [int(w) for w in order[:top_per_class].tolist()]
        lists.append(chosen)
        taken.update(chosen)
    for c in range(n_classes):  # top up classes that own too few words
        by_ratio = torch.argsort(-ratio[c], stable=True)
        order = torch.cat([by_ratio[eligible[c, by_ratio]], by_ratio[~eligible[c, by_ratio]]])
        for w in order.tolist():
            if len(lists[c]) >= top_per_class:
                break
            if int(w) not in taken:
                lists[c].append(int(w))
                taken.add(int(w))
    return lists


def evaluate_combinations(
    scores: torch.Tensor, classes: Sequence[int], combos: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train accuracy and mean margin of each combination.

    *combos* is ``(M, C)``: a column index of *scores* per class.  Returns two
    ``(M,)`` tensors.  Predictions take the first class among ties.
    """
    import torch

    target = torch.tensor(list(classes), dtype=torch.long)
    accuracies, margins = [], []
    for start in range(0, combos.shape[0], _CHUNK):
        chunk = combos[start : start + _CHUNK]  # (m, C)
        values = scores[:, chunk]  # (n, m, C)
        predicted = values.argmax(dim=-1)  # first maximum on ties
        accuracies.append((predicted == target[:, None]).float().mean(dim=0))
        index = target[:, None, None].expand(-1, chunk.shape[0], 1)
        gold = values.gather(-1, index).squeeze(-1)  # (n, m)
        rivals = values.scatter(-1, index, -math.inf).max(dim=-1).values
        margins.append((gold - rivals).mean(dim=0))
    return torch.cat(accuracies), torch.cat(margins)


def _combinations(sizes: list[int], limit: int, rng: random.Random) -> list[tuple[int, ...]]:
    if math.prod(sizes) <= limit:
        return list(itertools.product(*(range(s) for s in sizes)))
    picked: dict[tuple[int, ...], None] = {tuple(0 for _ in sizes): None}
    attempts = 0
    while len(picked) < limit and attempts < 20 * limit:
        picked.setdefault(tuple(rng.randrange(s) for s in sizes), None)
        attempts += 1
    return list(picked)


def _ranked(results: dict[tuple[int, ...], tuple[float, float]]) -> list[tuple[int, ...]]:
    """The keys of *results* (accuracy, margin), best accuracy, then margin, first."""
    return sorted(results, key=lambda p: (-results[p][0], -results[p][1], p))


def _search(
    lists: list[list[int]],
    scores: torch.Tensor,
    classes: Sequence[int],
    max_combinations: int,
    rng: random.Random,
) -> dict[tuple[int, ...], tuple[float, float]]:
    """Step 2: accuracy and margin on *scores* of the combinations of *lists* tried,
    keyed by each class's position in its list."""
    import torch

    sizes = [len(x) for x in lists]
    table = torch.tensor(
        [[x[k] if k < len(x) else x[-1] for k in range(max(sizes))] for x in lists],
        dtype=torch.long,
    )  # (C, K): per-class candidate columns, padded
    rows = torch.arange(len(lists))
    results: dict[tuple[int, ...], tuple[float, float]] = {}

    def run(picks: list[tuple[int, ...]]) -> None:
        fresh = [p for p in picks if p not in results]
        if not fresh:
            return
        combos = table[rows, torch.tensor(fresh, dtype=torch.long)]  # (M, C) columns
        accuracy, margin = evaluate_combinations(scores, classes, combos)
        for pick, a, m in zip(fresh, accuracy.tolist(), margin.tolist(), strict=True):
            results[pick] = (a, m)

    def best() -> tuple[int, ...]:
        return min(results, key=lambda p: (-results[p][0], -results[p][1], p))

    run(_combinations(sizes, max_combinations, rng))
    if math.prod(sizes) > max_combinations:  # greedy per-class improvement
        for _ in range(_GREEDY_ROUNDS):
            start = best()
            for c, size in enumerate(sizes):
                current = best()
                run([(*current[:c], k, *current[c + 1 :]) for k in range(size)])
            if best() == start:
                break
    return results


def _cross_fitted(
    scores: torch.Tensor,
    words: Sequence[str],
    classes: Sequence[int],
    labels: Sequence[str],
    top_per_class: int,
    max_combinations: int,
    rng: random.Random | None,
    pool: int | None,
    folds: int,
) -> list[LabelWordChoice]:
    """``select_label_words`` with the words chosen and judged on different folds."""
    import torch

    rng = rng or random.Random(0)
    fold_of: list[int] = []
    counts: Counter[int] = Counter()
    for c in classes:  # the j-th example of each class goes to fold j mod folds
        fold_of.append(counts[c] % folds)
        counts[c] += 1
    members = [[i for i, f in enumerate(fold_of) if f == k] for k in range(folds)]
    chosen: list[list[set[int]]] = []  # per fold, per class: the words chosen without it
    found: dict[tuple[int, ...], None] = {}  # combinations as word columns, in order found
    for k in range(folds):
        fit = [i for i, f in enumerate(fold_of) if f != k]
        lists = class_candidates(
            scores[fit], [classes[i] for i in fit], len(labels), top_per_class, pool
        )
        chosen.append([set(x) for x in lists])
        results = _search(
            lists, scores[members[k]], [classes[i] for i in members[k]], max_combinations, rng
        )
        for pick in _ranked(results):
            found.setdefault(tuple(lists[c][j] for c, j in enumerate(pick)), None)
    totals = {combo: [0.0, 0.0, 0] for combo in found}  # correct, margin sum, examples
    for k in range(folds):
        held = [c for c in found if all(w in chosen[k][i] for i, w in enumerate(c))]
        if not held:
            continue
        rows = members[k]
        accuracy, margin = evaluate_combinations(
            scores[rows], [classes[i] for i in rows], torch.tensor(held, dtype=torch.long)
        )
        for combo, a, m in zip(held, accuracy.tolist(), margin.tolist(), strict=True):
            total = totals[combo]
            total[0] += a * len(rows)
            total[1] += m * len(rows)
            total[2] += len(rows)
    ranked = sorted(
        found, key=lambda c: (-totals[c][0] / totals[c][2], -totals[c][1] / totals[c][2], c)
    )
    return [
        LabelWordChoice(
            verbalizer={label: [words[w]] for label, w in zip(labels, combo, strict=True)},
            train_accuracy=totals[combo][0] / totals[combo][2],
            margin=totals[combo][1] / totals[combo][2],
        )
        for combo in ranked
    ]


def select_label_words(
    scores: torch.Tensor,
    words: Sequence[str],
    example_labels: Sequence[str],
    labels: Sequence[str],
    *,
    top_per_class: int = 10,
    max_combinations: int = 2000,
    rng: random.Random | None = None,
    pool: int | None = DEFAULT_POOL,
    folds: int = 1,
) -> list[LabelWordChoice]:
    """Verbalizers (one word per label) ranked by train accuracy, then margin.

    *scores* is ``(n_examples, n_words)``: the log-probability of ``words[w]`` in
    the answer slot of example *i*, whose label is ``example_labels[i]``.  With
    *folds* above 1 the words are cross-fitted (see the module docstring) and
    ``train_accuracy`` is measured on examples the words were not chosen on; a label
    with fewer than *folds* examples lowers *folds* to its count (1: no cross-fitting).
    """
    import torch

    top_per_class = check_int(top_per_class, "top_per_class", minimum=1)
    max_combinations = check_int(max_combinations, "max_combinations", minimum=1)
    folds = check_int(folds, "folds", minimum=1, maximum=MAX_FOLDS)
    if pool is not None:
        pool = check_int(pool, "pool", minimum=1)
    classes = _class_index(example_labels, labels)
    scores = torch.as_tensor(scores, dtype=torch.float32).cpu()
    if scores.ndim != 2 or scores.shape != (len(classes), len(words)):
        raise ConfigError(
            f"scores must have shape (examples, words) = ({len(classes)}, {len(words)}); "
            f"got {tuple(scores.shape)}"
        )
    if len(words) < len(labels):
        raise ConfigError(
            f"label-word search needs at least one candidate word per label: "
            f"{len(labels)} labels but {len(words)} candidate word(s)"
        )
    folds = min(folds, *Counter(classes).values())
    if folds > 1:
        return _cross_fitted(
            scores, words, classes, labels, top_per_class, max_combinations, rng, pool, folds
        )
    lists = class_candidates(scores, classes, len(labels), top_per_class, pool)
    results = _search(lists, scores, classes, max_combinations, rng or random.Random(0))
    ranked = _ranked(results)
    return [
        LabelWordChoice(
            verbalizer={
                label: [words[lists[c][k]]]
                for c, (label, k) in enumerate(zip(labels, p, strict=True))
            },
            train_accuracy=results[p][0],
            margin=results[p][1],
        )
        for p in ranked
    ]

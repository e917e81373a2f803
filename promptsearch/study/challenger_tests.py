"""The paired tests of the final pick: each challenger against the incumbent.

A challenger is a candidate of the pick with its per-example results on the examples
it is tested on (:class:`Challenger`); :func:`decide` tests each one against the
incumbent with two one-sided paired tests (the sign test of the per-example metric
and the Wilcoxon signed-rank test of the gold probabilities), corrects for their
number with a fixed sequence, the fallback procedure or Holm's procedure, and names
the pick.  How the
candidates and their examples are gathered from a study is
:mod:`promptsearch.study.final_pick`; the settings are
:class:`promptsearch.study.selection.Selection`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from promptsearch.errors import ConfigError

__all__ = [
    "PROCEDURES",
    "TESTS",
    "Challenger",
    "challenger_p_value",
    "decide",
    "fallback_levels",
    "fallback_weights",
    "holm",
    "paired_gold_test",
    "pooled_rank",
    "sign_test",
]

PROCEDURES = ("sequence", "fallback", "holm")
"""How the paired tests of the challengers are corrected for their number."""

TESTS = ("sign+gold", "sign")
"""Which paired tests a challenger may pass: the sign test of the per-example metric or
the Wilcoxon test of the gold probabilities, the smaller p-value doubled
(``"sign+gold"``); or the sign test alone, undoubled (``"sign"``): only more examples
right counts, not more confidence in the gold answers."""


CHOOSE_BY = ("all-dev", "held-back")
"""How the pick is made among the supported challengers: the best on all of dev
(``"all-dev"``; the search part the searchers ranked them on included), or the best on
the examples every challenger is tested on, the held-back part of dev and the held-back
train examples (``"held-back"``), ties broken by all of dev."""


def _check_tests(tests: str) -> None:
    if tests not in TESTS:
        raise ConfigError(f"tests must be one of {', '.join(TESTS)}; got {tests!r}")


def fallback_weights(n: int) -> list[float]:
    """The fallback procedure's shares of ``alpha``: half for the first challenger of
    the fixed order, the other half split evenly among the rest (all of it for a
    lone challenger)."""
    if n <= 1:
        return [1.0] * n
    return [0.5] + [0.5 / (n - 1)] * (n - 1)


def fallback_levels(p_values: Sequence[float], alpha: float) -> list[float]:
    """The level each hypothesis is tested at by the fallback procedure (Wiens 2003),
    in the order given: hypothesis *i* gets its own share of *alpha*
    (:func:`fallback_weights`) plus the level of hypothesis *i - 1* when that one was
    rejected.  Unlike the fixed sequence, a hypothesis that is not rejected does not
    end the testing; the family-wise error is held at *alpha* all the same.  A
    p-value of 1 or more is never rejected (a challenger worse than the incumbent)."""
    levels: list[float] = []
    carried = 0.0
    for p, weight in zip(p_values, fallback_weights(len(p_values)), strict=True):
        level = alpha * weight + carried
        levels.append(level)
        carried = level if p <= level and p < 1.0 else 0.0
    return levels


def paired_gold_test(challenger: Sequence[float], incumbent: Sequence[float]) -> float:
    """One-sided p-value that the challenger is no surer of the gold answers than the
    incumbent: the Wilcoxon signed-rank test of the per-example differences (ties
    dropped; ``scipy.stats.wilcoxon``).  1.0 when every difference is zero."""
    diffs = [c - i for c, i in zip(challenger, incumbent, strict=True)]
    if not any(abs(d) > 1e-12 for d in diffs):
        return 1.0
    from scipy.stats import wilcoxon

    return float(wilcoxon(diffs, zero_method="wilcox", alternative="greater").pvalue)


def sign_test(wins: int, losses: int) -> float:
    """One-sided p-value that a challenger with *wins* and *losses* (examples it got
    better and worse than the incumbent; ties dropped) is no better."""
    if wins + losses == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    m = len(p_values)
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class Challenger:
    """A candidate of the final pick, with its scores on both parts of dev.

    ``confirm_score``: its metric on the held-back part of dev.  ``per_example``: its
    per-example metric on the examples it is tested on, in the same order as the
    incumbent's: the held-back part, followed by ``n_train`` train examples where it
    is tested on train too (see :mod:`promptsearch.study.train_confirm`);
    ``per_example_gold``: how sure it is of each gold answer there
    (:func:`~promptsearch.study.selection.gold_values`), or ``None`` when the scores
    lack label probabilities.
    With train examples, ``tested_score`` is its metric on all the examples it is
    tested on and ``baseline`` the incumbent on the same examples; ``held_score`` its
    metric on the held-back part and the held-back train examples, those every
    challenger is tested on (``None``: the held-back part alone).
    """

    key: str
    kind: str  # "prompt", "ensemble" or "balanced" (the best seed prompt balanced)
    search_score: float
    confirm_score: float
    pooled_score: float
    pooled_tiebreak: float | None
    per_example: tuple[float, ...]
    per_example_gold: tuple[float, ...] | None = None
    n_train: int = 0
    tested_score: float | None = None
    baseline: Challenger | None = None
    held_score: float | None = None

    @property
    def score_tested(self) -> float:
        """Its metric on the examples it is tested on."""
        return self.confirm_score if self.tested_score is None else self.tested_score

    @property
    def score_held(self) -> float:
        """Its metric on the examples every challenger is tested on."""
        return self.confirm_score if self.held_score is None else self.held_score

    def against(self, incumbent: Challenger) -> Challenger:
        """The incumbent on this challenger's examples: *incumbent* itself, or
        ``baseline`` where train examples join the held-back part."""
        return incumbent if self.baseline is None else self.baseline


def challenger_p_value(
    challenger: Challenger, incumbent: Challenger, tests: str = "sign+gold"
) -> tuple[int, int, float, float | None, float]:
    """(wins, losses, sign-test p, gold-test p or ``None``, the challenger's p-value):
    the one-sided paired tests of *challenger* against *incumbent* on the examples it
    is tested on (:meth:`Challenger.against`), and the smaller of the two p-values
    doubled (Bonferroni over the two tests; the sign test's alone where the scores
    carry no probabilities, or where *tests* is ``"sign"``: see :data:`TESTS`)."""
    _check_tests(tests)
    incumbent = challenger.against(incumbent)
    diffs = [c - i for c, i in zip(challenger.per_example, incumbent.per_example, strict=True)]
    wins = sum(d > 0 for d in diffs)
    losses = sum(d < 0 for d in diffs)
    p_sign = sign_test(wins, losses)
    p_gold = None
    if (
        tests == "sign+gold"
        and challenger.per_example_gold is not None
        and incumbent.per_example_gold is not None
    ):
        p_gold = paired_gold_test(challenger.per_example_gold, incumbent.per_example_gold)
    p = p_sign if p_gold is None else min(1.0, 2 * min(p_sign, p_gold))
    return wins, losses, p_sign, p_gold, p


def decide(
    incumbent: Challenger,
    challengers: Sequence[Challenger],
    alpha: float,
    procedure: str = "sequence",
    tests: str = "sign+gold",
    choose_by: str = "all-dev",
) -> tuple[str, list[dict[str, Any]]]:
    """The key of the pick and one JSON row per candidate (incumbent first).

    A challenger is *supported* when it is at least as good as the incumbent on the
    metric over the examples it is tested on (the confirmation part, and train
    examples where :attr:`Challenger.baseline` is set) and one of two one-sided paired
    tests says it is better there: the sign test of the per-example metric
    (:func:`sign_test`), and, where the scores carry probabilities, the Wilcoxon
    signed-rank test of the per-example gold probabilities (:func:`paired_gold_test`).
    Each catches gains the other misses (a confident prompt against a coin flip; a
    surer one that flips few answers), so both count (:func:`challenger_p_value`);
    with *tests* ``"sign"`` the sign test alone does (:data:`TESTS`).

    *procedure* holds the family-wise error over the challengers at *alpha*:
    ``"sequence"`` tests them in the order given (which must not depend on the
    confirmation part) and stops at the first one not supported: the adjusted p-value
    of each is the largest raw one up to it; ``"fallback"`` tests them in that order
    too, each at its own share of *alpha* plus the level of the one before where that
    one passed (:func:`fallback_levels`), so that one failure does not end the
    testing: the adjusted p-value of each is its raw one scaled by *alpha* over its
    level; ``"holm"`` runs Holm's correction over every test of every challenger (two
    per challenger where both apply).  Of the supported, the best on all of dev wins,
    or with *choose_by* ``"held-back"`` the best on the examples every challenger is
    tested on (:data:`CHOOSE_BY`).
    """
    if procedure not in PROCEDURES:
        raise ConfigError(f"procedure must be one of {', '.join(PROCEDURES)}; got {procedure!r}")
    if choose_by not in CHOOSE_BY:
        raise ConfigError(f"choose_by must be one of {', '.join(CHOOSE_BY)}; got {choose_by!r}")
    _check_tests(tests)
    results = [challenger_p_value(challenger, incumbent, tests) for challenger in challengers]
    adjusted: list[float] = []
    if procedure == "holm":
        flat = [p for _, _, p_sign, p_gold, _ in results for p in (p_sign, p_gold) if p is not None]
        by_test = iter(holm(flat))
        for _, _, _, p_gold, _ in results:
            q_sign = next(by_test)
            q_gold = next(by_test) if p_gold is not None else None
            adjusted.append(min(q_sign, 1.0 if q_gold is None else q_gold))
    elif procedure == "fallback":
        # a challenger worse on the examples it is tested on is not supported
        raw = [
            1.0 if _worse(challenger, incumbent) else p
            for challenger, (*_, p) in zip(challengers, results, strict=True)
        ]
        levels = fallback_levels(raw, alpha)
        adjusted = [min(1.0, p * alpha / level) for p, level in zip(raw, levels, strict=True)]
    else:
        running = 0.0
        for challenger, (*_, p) in zip(challengers, results, strict=True):
            # a challenger worse on the examples it is tested on is not supported,
            # whatever its p-value: the sequence stops there
            worse = _worse(challenger, incumbent)
            running = max(running, 1.0 if worse else p)
            adjusted.append(running)
    rows = [_row(incumbent, role="incumbent")]
    eligible = []
    for order, (challenger, (wins, losses, p_sign, p_gold, _), q) in enumerate(
        zip(challengers, results, adjusted, strict=True), start=1
    ):
        supported = q <= alpha and not _worse(challenger, incumbent)
        rows.append(
            _row(
                challenger,
                role="challenger",
                order=order,
                n_tested=len(challenger.per_example),
                n_train=challenger.n_train,
                tested_score=challenger.score_tested,
                incumbent_tested_score=challenger.against(incumbent).score_tested,
                wins=wins,
                losses=losses,
                test="wilcoxon-gold" if p_gold is not None and p_gold < p_sign else "sign",
                p_value=p_sign if p_gold is None else min(p_sign, p_gold),
                p_sign=p_sign,
                p_gold=p_gold,
                adjusted_p=q,
                supported=supported,
            )
        )
        if supported:
            eligible.append(challenger)
    if not eligible:
        return incumbent.key, rows
    if choose_by == "held-back":
        return max(eligible, key=lambda c: (c.score_held, *pooled_rank(c))).key, rows
    return max(eligible, key=pooled_rank).key, rows


def _worse(challenger: Challenger, incumbent: Challenger) -> bool:
    """Whether *challenger* scores below the incumbent on the examples it is tested on."""
    return challenger.score_tested < challenger.against(incumbent).score_tested


def pooled_rank(challenger: Challenger) -> tuple[float, float]:
    """How a candidate ranks on all of dev: its metric, ties broken by its mean gold
    probability (a candidate without one last among equals)."""
    tie = challenger.pooled_tiebreak
    return challenger.pooled_score, -math.inf if tie is None else tie


def _row(challenger: Challenger, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "key": challenger.key,
        "kind": challenger.kind,
        "search_score": challenger.search_score,
        "confirm_score": challenger.confirm_score,
        "pooled_score": challenger.pooled_score,
        "pooled_tiebreak": challenger.pooled_tiebreak,
        "held_score": challenger.score_held,
    }
    row.update(extra)
    return row

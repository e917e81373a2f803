"""`run`'s options for the final pick (``--no-selection``, ``--confirm-fraction``,
``--confirm-train``, ``--train-holdout`` and the ``--selection-*`` options; see
docs/selection.md), and the selection they give."""

from __future__ import annotations

import argparse
from typing import Any

from promptsearch.cli.values import train_holdout
from promptsearch.errors import ConfigError

__all__ = ["add_selection", "selection_of"]


def add_selection(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--no-selection",
        action="store_true",
        help="hand back the top of the leaderboard instead of a pick confirmed on held-back "
        "dev examples (see docs/selection.md)",
    )
    run.add_argument(
        "--confirm-fraction",
        type=float,
        default=None,
        help="share of dev held back to confirm the pick (default 0.5)",
    )
    run.add_argument(
        "--confirm-train",
        type=int,
        default=None,
        metavar="N",
        help="at most N train examples join the held-back ones in the tests of a candidate "
        "made of the task's own parts, where nothing was fitted on train (default 200; 0: "
        "none; see docs/selection.md)",
    )
    run.add_argument(
        "--train-holdout",
        type=train_holdout,
        default=None,
        metavar="F|auto",
        help="share of train hidden from the searchers (at most --confirm-train examples); "
        "those join the held-back dev examples in every challenger's tests (default auto: "
        "0.5 where fewer than 40 dev examples are held back, else 0; 0: none; see "
        "docs/selection.md)",
    )
    run.add_argument(
        "--selection-order",
        choices=("ensemble-first", "ensemble-last", "most-examples", "ahead-first"),
        default=None,
        help="the order in which the 'sequence' procedure tests the challengers: the "
        "ensemble of the best prompts before the single prompts or after them, those "
        "tested on the most examples first, or those at least as good as the best seed "
        "prompt on the searched part of dev first (default ensemble-first)",
    )
    run.add_argument(
        "--selection-alpha",
        type=float,
        default=None,
        help="family-wise level of the paired tests a challenger must pass to replace the "
        "best seed prompt (default 0.1)",
    )
    run.add_argument(
        "--selection-procedure",
        choices=("sequence", "fallback", "holm"),
        default=None,
        help="how the tests of several challengers are corrected: 'sequence' tests them "
        "in a fixed order and stops at the first without evidence (default), 'fallback' "
        "tests them in that order with a share of alpha each and goes on past a failure, "
        "'holm' corrects over all of them",
    )
    run.add_argument(
        "--selection-tests",
        choices=("sign+gold", "sign"),
        default=None,
        help="the paired tests a challenger may pass: the sign test alone (default sign: "
        "only more examples right counts), or the sign test of the metric or the Wilcoxon "
        "test of the gold-label probabilities (sign+gold)",
    )
    run.add_argument(
        "--selection-ensemble",
        choices=("own-parts", "top", "own-ahead", "own-no-trailing"),
        default=None,
        help="which prompts make the ensemble challenger: the best of those made of the "
        "task's own parts only, which train examples can test too, your best seed prompt "
        "left out where it is behind all the others (default own-no-trailing) or always "
        "kept (own-parts), the best of all by the searched dev examples (top), or the "
        "best of the task's own parts at least as good as your best seed prompt there, "
        "that one left out (own-ahead)",
    )
    run.add_argument(
        "--selection-ensemble-balance",
        choices=("off", "on"),
        default=None,
        help="divide each ensemble member's label probabilities by its mean label "
        "distribution on the searched dev examples before averaging, so that a member "
        "sure of one label everywhere does not outvote the others (default on)",
    )
    run.add_argument(
        "--selection-balanced-seed",
        choices=("off", "on"),
        default=None,
        help="test first your best seed prompt balanced (its label probabilities divided "
        "by its mean label distribution on the searched dev examples) where that scores "
        "higher there (default off)",
    )
    run.add_argument(
        "--selection-choose-by",
        choices=("all-dev", "held-back"),
        default=None,
        help="how the pick is made among the challengers with evidence: the best on all "
        "of dev (default all-dev), or on the held-back examples every challenger is "
        "tested on (held-back)",
    )


def _on_off(text: str | None) -> bool | None:
    return None if text is None else text == "on"


def selection_of(args: argparse.Namespace) -> Any:
    """The selection of `run`'s options: True (the defaults where dev allows), False, or
    the settings given."""
    given = {
        "confirm_fraction": args.confirm_fraction,
        "confirm_train": args.confirm_train,
        "train_holdout": args.train_holdout,
        "order": args.selection_order,
        "alpha": args.selection_alpha,
        "procedure": args.selection_procedure,
        "tests": args.selection_tests,
        "ensemble_members": args.selection_ensemble,
        "choose_by": args.selection_choose_by,
        "ensemble_balance": _on_off(args.selection_ensemble_balance),
        "balanced_seed": _on_off(args.selection_balanced_seed),
    }
    chosen = {k: v for k, v in given.items() if v is not None}
    if args.no_selection:
        if chosen:
            raise ConfigError(
                "--no-selection turns selection off; drop --confirm-fraction, "
                "--confirm-train, --train-holdout, --selection-order, --selection-alpha, "
                "--selection-procedure, --selection-tests, --selection-ensemble, "
                "--selection-ensemble-balance, --selection-balanced-seed and "
                "--selection-choose-by, or drop "
                "--no-selection"
            )
        return False
    if not chosen:
        return True
    from promptsearch.study.selection import Selection

    return Selection(**chosen)

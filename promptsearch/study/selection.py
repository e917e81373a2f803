"""Selection that generalizes: how a study picks the prompt it hands back.

With a small dev split the top of a leaderboard is mostly luck: one example of 32 is
3.1 points, many candidates tie, and the best of forty is inflated by ten points or
more.  A study with selection on (:class:`Selection`) therefore works in three steps.

1. **Two parts of dev.**  Dev is split once, stratified by label and seeded, into a
   *search* part and a *confirmation* part (``confirm_fraction`` of it).  Searchers'
   feedback, racing and the leaderboard's ``dev_score`` use the search part only;
   nothing the searchers see depends on the confirmation part.  A share of train
   (``train_holdout``: by default half where the held-back part of dev is small,
   none where it has 40 examples or more) is held back the same way
   (:func:`split_train`): the searchers never see it, and it joins the confirmation
   part in every challenger's tests (:mod:`promptsearch.study.train_confirm`).
2. **Ties broken by a continuous score.**  Trials with the same dev score are ordered
   by ``dev_tiebreak``: the mean normalised probability of the gold label
   (classification; calibrated when the scorer or the prompt calibrates) or the mean gold
   log-likelihood (generation).  An accuracy tie between a confident and a
   coin-flip prompt goes to the confident one.
3. **A pick that needs evidence.**  At the end of a run the study scores on the
   confirmation part the incumbent (the best seed prompt on all of dev), the
   ``top_k`` best other candidates and, for classification, the ensemble of the
   ``ensemble_size`` best (see :mod:`promptsearch.study.ensemble`; by default the best
   made of the task's own parts, a trailing incumbent left out).  A challenger is
   supported when, on the confirmation part, it is at least as good as the
   incumbent on the task metric and a one-sided paired test says it is better (a
   candidate made of the task's own parts only, with nothing fitted on train, is
   tested on up to ``confirm_train`` train examples too, see
   :mod:`promptsearch.study.train_confirm`): the
   sign test of the per-example metric (``scipy.stats.binomtest``) or the Wilcoxon
   signed-rank test of the per-example gold probabilities (``scipy.stats.wilcoxon``),
   the smaller p-value doubled (Bonferroni over the two) with ``tests="sign+gold"``;
   by default (``tests="sign"``) the sign test alone, undoubled.  The family-wise error over
   all challengers is held at ``alpha`` by ``procedure``: ``"sequence"`` (the
   default) tests them one after another in an order fixed before the confirmation
   part is looked at (the ensemble, then the others by their rank on the search
   part) and stops at the first that is not supported, so the first challenger is
   tested at the full ``alpha``; ``"fallback"`` tests them in the same order, the
   first at half of ``alpha`` and each of the others at an even share of the rest plus
   the level of the one before it where that one passed, so that a failure does not end
   the testing; ``"holm"`` runs Holm's correction over every test of every
   challenger.  Of the supported, the one with the best score on all of dev wins (with
   ``choose_by="held-back"``: on the held-back examples every challenger is tested
   on, which the searchers never ranked anything by); if none is, the incumbent
   stays: the tool never hands back a prompt it has no evidence for.

The paired tests and the pick among the challengers live in
:mod:`promptsearch.study.challenger_tests`, what a stored result says about the gold
answer in :mod:`promptsearch.study.gold` (both re-exported here).

The confirmation score of the pick is an estimate of what to expect on new data
that the search never tuned to: the leaderboard, ``final`` and the report show it
next to the raw dev score.  The selection is stored with the study as JSON
(``studies.selection``), so ``final``, ``report`` and ``export`` rebuild it without
scoring again.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.study.challenger_tests import (
    CHOOSE_BY,
    PROCEDURES,
    TESTS,
    Challenger,
    challenger_p_value,
    decide,
    holm,
    paired_gold_test,
    pooled_rank,
    sign_test,
)
from promptsearch.study.gold import (
    gold_probabilities,
    gold_values,
    record_distribution,
    tiebreak,
)
from promptsearch.task import Example

if TYPE_CHECKING:
    pass

__all__ = [
    "AUTO_TRAIN_HOLDOUT",
    "CHOOSE_BY",
    "ENSEMBLE_MEMBERS",
    "LEGACY_SPLIT",
    "ORDERS",
    "PROCEDURES",
    "SELECTION_VERSION",
    "SMALL_CONFIRMATION",
    "SPLIT_FIELDS",
    "TESTS",
    "Challenger",
    "Selection",
    "challenger_p_value",
    "decide",
    "gold_probabilities",
    "gold_values",
    "holm",
    "paired_gold_test",
    "pooled_rank",
    "record_distribution",
    "sign_test",
    "split_dev",
    "split_train",
    "tiebreak",
]

SELECTION_VERSION = 9
"""Bumped when the stored selection record changes shape (2: ``settings`` carries
``procedure``; a record without it was made by ``"holm"``; 3: ``settings`` carries
``confirm_train`` and each challenger's row the examples it was tested on,
``n_tested`` and ``n_train``; 4: ``settings`` carries ``train_holdout`` and the record
``n_held_train``, the held-back train examples every challenger was tested on; 5:
``settings`` carries ``tests``; a record without it was made with ``"sign+gold"``; 6:
``settings`` carries ``ensemble_members``; a record without it was made with
``"top"``; 7: ``settings`` carries ``choose_by`` and each candidate's row its
``held_score``; a record without them was made with ``"all-dev"``; 8: ``settings``
carries ``ensemble_balance``; a record without it was made with ``False``; 9:
``settings`` carries ``balanced_seed`` and the record ``balanced_seed``, the balanced
best seed prompt where it was a challenger, and ``pick_kind`` may be ``"balanced"``; a
record without them was made with ``False``)."""

_FIELDS = (
    "confirm_fraction",
    "top_k",
    "alpha",
    "ensemble_size",
    "seed",
    "procedure",
    "confirm_train",
    "order",
    "train_holdout",
    "tests",
    "ensemble_members",
    "choose_by",
    "ensemble_balance",
    "balanced_seed",
)

ENSEMBLE_MEMBERS = ("top", "own-parts", "own-ahead", "own-no-trailing")
"""Which prompts make the ensemble challenger: the ``ensemble_size`` best by the search
part (``"top"``), the best among those made of the task's own parts only
(``"own-parts"``, see :mod:`promptsearch.study.train_confirm`), which the train
examples can test too, the best among those made of the task's own parts that are
at least as good as the incumbent on the search part, the incumbent left out
(``"own-ahead"``), or the best made of the task's own parts with the incumbent left
out where it is among them and behind every other one on the search part
(``"own-no-trailing"``)."""

ORDERS = ("ensemble-first", "ensemble-last", "most-examples", "ahead-first")
"""The ``"sequence"`` procedure's testing order: the ensemble, then the prompts by
their rank on the search part; the prompts, then the ensemble; the candidates
tested on the most examples first (train examples count; see
:mod:`promptsearch.study.train_confirm`); or those at least as good as the incumbent
on the search part first, the others after them (an ensemble of weak members, which
would end the sequence where it fails, is then tested last), each group in the
``"ensemble-first"`` order.  Each is fixed before the confirmation part is looked
at (:func:`promptsearch.study.final_pick.sequence_order`)."""

SMALL_CONFIRMATION = 40
"""Below this many held-back dev examples, only large gains can pass the tests (with
16, the sign test needs 5 examples won and none lost); ``search`` and ``run`` say so."""

AUTO_TRAIN_HOLDOUT = 0.5
"""The share of train ``train_holdout="auto"`` (the default) hides from the searchers
where the held-back part of dev has fewer than :data:`SMALL_CONFIRMATION` examples;
where it has more, none (:meth:`Selection.for_dev`)."""

SPLIT_FIELDS = ("confirm_fraction", "seed", "train_holdout")
"""The settings that decide which examples are held back; the others only steer the
final pick, which a resumed run makes again."""

LEGACY_SPLIT = {"train_holdout": 0.0}
"""What a study stored before a split setting existed ran with (it held back no train
examples)."""


@dataclass(frozen=True)
class Selection:
    """Settings of the final pick; see the module docstring.

    Parameters
    ----------
    confirm_fraction:
        Share of dev held back for confirmation (0 < f < 1).
    top_k:
        How many of the best non-seed candidates (by the search part) are confirmed.
    alpha:
        Family-wise level of the paired tests against the incumbent.
    ensemble_size:
        Members of the ensemble candidate (classification); 0 or 1: no ensemble.
    seed:
        Seeds the split of dev.
    procedure:
        ``"sequence"`` (fixed-sequence testing, the default), ``"fallback"`` (the
        fallback procedure) or ``"holm"``; see the module docstring.
    confirm_train:
        At most this many train examples (a seeded sample) join the held-back part in
        the tests of a candidate made of the task's own parts only, where nothing was
        fitted on train (:mod:`promptsearch.study.train_confirm`); 0: none.
    order:
        The ``"sequence"`` procedure's testing order, one of :data:`ORDERS`.
    train_holdout:
        Share of train hidden from the searchers (0 ≤ f < 1; stratified by label,
        seeded; at most ``confirm_train`` examples, never all of train).  No searcher
        fits on, or shows as a demonstration, a held-back train example, so these join
        the held-back part of dev in *every* challenger's tests, whatever it was made
        of; 0: none held back.  ``"auto"`` (the default since session 35): 0.5
        (:data:`AUTO_TRAIN_HOLDOUT`) where the held-back part of dev has fewer than
        :data:`SMALL_CONFIRMATION` examples, 0 where it has more, so that a large dev
        split does not cost the searchers half of train; a study makes it a number
        (:meth:`for_dev`) before anything is split or stored.  0.5 in sessions 33-34,
        0 before.
    tests:
        Which paired tests a challenger may pass, one of :data:`TESTS`:
        ``"sign"`` (the sign test of the per-example metric alone; the default since
        session 33) or ``"sign+gold"`` (the sign test or the Wilcoxon test of the
        gold probabilities, the smaller p-value doubled; the default before).
    ensemble_members:
        Which prompts make the ensemble, one of :data:`ENSEMBLE_MEMBERS`: the
        ``ensemble_size`` best by the search part made of the task's own parts only,
        with the incumbent left out where it is behind every other one of them on the
        search part (``"own-no-trailing"``, the default since session 36: an ensemble
        of a poor, confident incumbent and better prompts predicts as the incumbent
        does), the same with the incumbent always kept (``"own-parts"``, the default
        in sessions 33-35), so that the ensemble is tested on train examples as well
        as the held-back ones, the best of all (``"top"``, the ensemble before), or
        the best of the task's own parts at least as good as the incumbent on the
        search part, the incumbent left out (``"own-ahead"``).
    choose_by:
        How the pick is made among the supported challengers, one of
        :data:`CHOOSE_BY`: the best on all of dev (``"all-dev"``, the default) or on
        the held-back examples every challenger is tested on (``"held-back"``).
    ensemble_balance:
        Whether each ensemble member's label probabilities are divided by its mean
        label distribution on the search part before the mean is taken (``True``, the
        default since session 36; the priors are stored with the ensemble and used
        wherever it is scored), so that a member sure of one label everywhere (a poor
        seed prompt, say) does not outvote the others; ``False`` (before) averages
        them as they are.
    balanced_seed:
        Whether the best seed prompt, balanced (its label probabilities divided by its
        mean label distribution on the search part, a one-prompt
        :class:`~promptsearch.study.ensemble.PromptEnsemble`), is a challenger
        (classification): where it is ahead of the seed prompt on the search part it
        is tested first, before the ensemble.  Off by default: in session 37's
        benchmark it failed where it was tested first more often than it passed, and
        ended the sequence before challengers that pass.
    """

    confirm_fraction: float = 0.5
    top_k: int = 3
    alpha: float = 0.1
    ensemble_size: int = 3
    seed: int = 0
    procedure: str = "sequence"
    confirm_train: int = 200
    order: str = "ensemble-first"
    train_holdout: float | str = "auto"
    tests: str = "sign"
    ensemble_members: str = "own-no-trailing"
    choose_by: str = "all-dev"
    ensemble_balance: bool = True
    balanced_seed: bool = False

    MIN_PART = 4
    """Each part of dev needs at least this many examples."""

    def __post_init__(self) -> None:
        fraction = self.confirm_fraction
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, int | float)
            or not 0 < fraction < 1
        ):
            raise ConfigError(
                f"selection.confirm_fraction must be a number between 0 and 1 (exclusive), "
                f"e.g. 0.5; got {fraction!r}"
            )
        holdout = self.train_holdout
        if holdout != "auto" and (
            isinstance(holdout, bool)
            or not isinstance(holdout, int | float)
            or not 0 <= holdout < 1
        ):
            raise ConfigError(
                f"selection.train_holdout must be 'auto' or a number from 0 (inclusive) "
                f"to 1 (exclusive), e.g. 0.5; got {holdout!r}"
            )
        for name, low in (("top_k", 1), ("ensemble_size", 0), ("confirm_train", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"selection.{name} must be a whole number ≥ {low}; got {value!r}")
        alpha = self.alpha
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
            raise ConfigError(
                f"selection.alpha must be a number between 0 and 1 (exclusive), e.g. 0.1; "
                f"got {alpha!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"selection.seed must be a whole number; got {self.seed!r}")
        if self.order not in ORDERS:
            raise ConfigError(
                f"selection.order must be one of {', '.join(ORDERS)}; got {self.order!r}"
            )
        if self.procedure not in PROCEDURES:
            raise ConfigError(
                f"selection.procedure must be one of {', '.join(PROCEDURES)}; "
                f"got {self.procedure!r}"
            )
        if self.tests not in TESTS:
            raise ConfigError(
                f"selection.tests must be one of {', '.join(TESTS)}; got {self.tests!r}"
            )
        if self.choose_by not in CHOOSE_BY:
            raise ConfigError(
                f"selection.choose_by must be one of {', '.join(CHOOSE_BY)}; got {self.choose_by!r}"
            )
        for flag in ("ensemble_balance", "balanced_seed"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(
                    f"selection.{flag} must be true or false; got {getattr(self, flag)!r}"
                )
        if self.ensemble_members not in ENSEMBLE_MEMBERS:
            raise ConfigError(
                f"selection.ensemble_members must be one of {', '.join(ENSEMBLE_MEMBERS)}; "
                f"got {self.ensemble_members!r}"
            )

    @classmethod
    def coerce(cls, value: Selection | Mapping[str, Any] | bool | None) -> Selection | None:
        """A :class:`Selection` from itself, a mapping of its fields, ``True`` (the
        defaults) or ``False``/``None`` (off)."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, Selection):
            return value
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(_FIELDS))
            if unknown:
                raise ConfigError(
                    f"selection has unknown field(s) {unknown}; known fields are {list(_FIELDS)}"
                )
            return cls(**dict(value))
        raise ConfigError(
            "selection must be True, False, a Selection or a mapping of its fields "
            f"{list(_FIELDS)}; got {type(value).__name__}"
        )

    def fits(self, n_dev: int) -> bool:
        """Whether a dev split of *n_dev* examples leaves both parts big enough."""
        confirm = self.confirm_size(n_dev)
        return confirm >= self.MIN_PART and n_dev - confirm >= self.MIN_PART

    def check_dev(self, n_dev: int) -> None:
        """Raise :class:`ConfigError` unless dev is large enough to split."""
        if not self.fits(n_dev):
            raise ConfigError(
                f"selection: a dev split of {n_dev} examples is too small to hold back a "
                f"confirmation part of {self.confirm_fraction:g} with at least "
                f"{self.MIN_PART} examples on each side; use a larger dev split "
                "(--dev-size) or turn selection off (--no-selection)"
            )

    def confirm_size(self, n_dev: int) -> int:
        return round(n_dev * self.confirm_fraction)

    def for_dev(self, n_dev: int) -> Selection:
        """These settings for a dev split of *n_dev* examples: ``train_holdout="auto"``
        made the share it stands for (:data:`AUTO_TRAIN_HOLDOUT` where the held-back
        part of dev has fewer than :data:`SMALL_CONFIRMATION` examples, else 0); other
        settings unchanged."""
        if self.train_holdout != "auto":
            return self
        small = self.confirm_size(n_dev) < SMALL_CONFIRMATION
        return replace(self, train_holdout=AUTO_TRAIN_HOLDOUT if small else 0.0)

    def held_train_size(self, n_train: int) -> int:
        """How many of *n_train* train examples are hidden from the searchers: the
        ``train_holdout`` share, at most ``confirm_train``, never all of them."""
        holdout = self.train_holdout
        if isinstance(holdout, str):
            raise ConfigError(
                "selection.train_holdout 'auto' depends on the dev split; make it a number "
                "with Selection.for_dev(n_dev) first"
            )
        return max(0, min(round(n_train * holdout), self.confirm_train, n_train - 1))

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}


def split_dev(
    dev: Sequence[Example], selection: Selection, *, stratify: bool
) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """(search part, confirmation part) of *dev*, each in dev order.

    With *stratify* each target keeps its share in both parts (within one example);
    the split depends only on the examples, their order and ``selection.seed``.
    """
    selection.check_dev(len(dev))
    return _stratified_split(
        dev,
        selection.confirm_size(len(dev)),
        random.Random(f"selection-split:{selection.seed}"),
        stratify=stratify,
    )


def split_train(
    train: Sequence[Example], selection: Selection, *, stratify: bool
) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """(the train examples the searchers see, the held-back ones), each in train order:
    ``selection.held_train_size`` held back, like :func:`split_dev` otherwise."""
    return _stratified_split(
        train,
        selection.held_train_size(len(train)),
        random.Random(f"selection-train-split:{selection.seed}"),
        stratify=stratify,
    )


def _stratified_split(
    examples: Sequence[Example], wanted: int, rng: random.Random, *, stratify: bool
) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """(the rest, *wanted* examples drawn with *rng*), each in the given order; with
    *stratify* each target keeps its share in both (within one example)."""
    if wanted <= 0 or not examples:
        return tuple(examples), ()
    groups: dict[str, list[int]] = {}
    for index, example in enumerate(examples):
        groups.setdefault(example.target if stratify else "", []).append(index)
    # each group's exact share, rounded so that the sizes add up to *wanted*
    shares = {key: len(members) * wanted / len(examples) for key, members in groups.items()}
    counts = {key: math.floor(share) for key, share in shares.items()}
    leftover = wanted - sum(counts.values())
    for key in sorted(groups, key=lambda k: (-(shares[k] - counts[k]), k))[:leftover]:
        counts[key] += 1
    drawn: set[int] = set()
    for key in sorted(groups):
        members = list(groups[key])
        rng.shuffle(members)
        drawn.update(members[: counts[key]])
    rest = tuple(e for i, e in enumerate(examples) if i not in drawn)
    held = tuple(e for i, e in enumerate(examples) if i in drawn)
    return rest, held

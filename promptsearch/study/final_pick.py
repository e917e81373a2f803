"""The study's final pick: scoring the candidates on the confirmation part of dev,
testing them against the incumbent, and storing the decision.

The statistics and settings live in :mod:`promptsearch.study.selection`; this module runs
them against a study's storage and scorer.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.metrics import aggregate
from promptsearch.prompt import Prompt
from promptsearch.scoring.chat import chat_turns
from promptsearch.study.cached_scoring import score_with_cache
from promptsearch.study.challenger_tests import Challenger, decide, pooled_rank
from promptsearch.study.ensemble import PromptEnsemble, records_prior, vote_records
from promptsearch.study.selection import (
    SELECTION_VERSION,
    Selection,
    gold_values,
    tiebreak,
)
from promptsearch.study.support import example_key
from promptsearch.study.train_confirm import OwnParts, TrainEvidence, train_sample
from promptsearch.task import Example, Task

if TYPE_CHECKING:
    from promptsearch.storage import EvaluationRecord
    from promptsearch.study.loop import Study

__all__ = ["select_final"]

logger = logging.getLogger(__name__)


class _Scores:
    """Per-example records of prompts on the study's dev examples, by example key, from
    the cache or scored now (and cached at once), with the forward passes spent."""

    def __init__(self, study: Study) -> None:
        self.study = study
        self.forward_passes = 0

    def records(
        self, prompt: Prompt, examples: Sequence[Example], split: str = "dev"
    ) -> dict[str, EvaluationRecord]:
        study = self.study
        found, spent = score_with_cache(
            study.storage, study.scorer, study.task, prompt, prompt.content_hash, split, examples
        )
        self.forward_passes += spent
        return {r.example_key: r for r in found}


def _metric(
    task: Task, examples: Sequence[Example], scores: Sequence[float], predictions: Sequence[str]
) -> float:
    return aggregate(task.metric, scores, predictions, [e.target for e in examples])


def _challenger(
    task: Task,
    key: str,
    kind: str,
    search: Sequence[Example],
    confirm: Sequence[Example],
    rows: Mapping[str, tuple[float, str]],
) -> Challenger:
    """A challenger from its per-example (score, prediction) by example key."""

    def part(examples: Sequence[Example]) -> tuple[list[float], list[str]]:
        pairs = [rows[example_key(e)] for e in examples]
        return [s for s, _ in pairs], [p for _, p in pairs]

    s_scores, s_preds = part(search)
    c_scores, c_preds = part(confirm)
    everything = [*search, *confirm]
    return Challenger(
        key=key,
        kind=kind,
        search_score=_metric(task, search, s_scores, s_preds),
        confirm_score=_metric(task, confirm, c_scores, c_preds),
        pooled_score=_metric(task, everything, s_scores + c_scores, s_preds + c_preds),
        pooled_tiebreak=None,
        per_example=tuple(c_scores),
    )


Row = tuple[float, str, float | None]
"""One example's (metric score, prediction, gold value or ``None``) under a candidate."""


def _with_train(
    task: Task,
    challenger: Challenger,
    incumbent: Challenger,
    confirm: Sequence[Example],
    extra: Sequence[Example],
    rows: Mapping[str, Row],
    incumbent_rows: Mapping[str, Row],
    held: Collection[str] = (),
) -> Challenger:
    """*challenger* tested on the held-back part *confirm* and the train examples
    *extra* too, against *incumbent* on the same examples.  *rows*, *incumbent_rows*:
    per example key of both parts, what each candidate made of it; *held*: the keys of
    the held-back train examples, which with *confirm* every challenger is tested on."""
    if not extra:
        return challenger
    examples = [*confirm, *extra]
    keys = [example_key(e) for e in examples]
    # what every challenger is tested on: the held-back part and held-back train
    common = [*confirm, *(e for e, k in zip(examples, keys, strict=True) if k in held)]
    common_keys = [*keys[: len(confirm)], *(k for k in keys[len(confirm) :] if k in held)]

    def extend(base: Challenger, by: Mapping[str, Row]) -> Challenger:
        golds = [by[k][2] for k in keys]
        gold = None
        if base.per_example_gold is not None and all(g is not None for g in golds):
            gold = tuple(float(g) for g in golds if g is not None)
        scores = [by[k][0] for k in keys]
        return dataclasses.replace(
            base,
            per_example=tuple(scores),
            per_example_gold=gold,
            n_train=len(extra),
            tested_score=_metric(task, examples, scores, [by[k][1] for k in keys]),
            held_score=_metric(
                task, common, [by[k][0] for k in common_keys], [by[k][1] for k in common_keys]
            )
            if len(common) > len(confirm)
            else None,
        )

    return dataclasses.replace(extend(challenger, rows), baseline=extend(incumbent, incumbent_rows))


class _Candidates:
    """What the final pick reads of a study: its seed prompts and leaderboard, every
    candidate's per-example records on both parts of dev (from the cache or scored
    now), and the train examples that may test each one."""

    def __init__(self, study: Study) -> None:
        selection = study.selection
        if selection is None:
            raise ConfigError("select_final needs a study with selection on")
        self.study = study
        self.selection = selection
        self.task = task = study.task
        self.search, self.confirm = study.search_task.dev, study.confirm_examples
        self.everything = [*self.search, *self.confirm]
        self.keys = [example_key(e) for e in self.everything]
        self.scores = _Scores(study)
        self.seeds: dict[str, Prompt] = {}
        for prompt in task.seed_prompts:
            try:
                resolved = prompt.resolve(task)
            except ConfigError:
                continue
            self.seeds.setdefault(resolved.content_hash, resolved)
        self.board = study.storage.leaderboard(study.name)
        self.prompts: dict[str, Prompt] = dict(self.seeds)
        for row in self.board:
            self.prompts.setdefault(row.content_hash, Prompt.from_dict(row.body))
        self._records: dict[tuple[str, bool], dict[str, EvaluationRecord]] = {}
        # train examples join the held-back part: those hidden from the searchers for
        # every candidate, a sample of the others for candidates made of the task's own
        # parts (a train example that is also a dev example counts once, on dev)
        held = study.held_train
        self.evidence = TrainEvidence(
            OwnParts(
                task, chat_turns(getattr(getattr(study.scorer, "model", None), "tokenizer", None))
            ),
            held,
            train_sample(
                study.search_task.train, selection.confirm_train - len(held), selection.seed
            ),
            set(self.keys),
        )
        self.held_keys = {example_key(e) for e in self.evidence.held}

    def records_of(self, key: str, *, confirmed: bool = True) -> dict[str, EvaluationRecord]:
        """The prompt's records on the search part, and on the held-back part too."""
        if (key, confirmed) not in self._records:
            if confirmed:
                self._records[key, True] = {
                    **self.records_of(key, confirmed=False),
                    **self.scores.records(self.prompts[key], self.confirm),
                }
            else:
                self._records[key, False] = self.scores.records(self.prompts[key], self.search)
        return self._records[key, confirmed]

    def challenger(self, key: str) -> Challenger:
        """The prompt *key* as a challenger on both parts of dev."""
        task, search, part = self.task, self.search, self.records_of(key)
        challenger = _challenger(
            task,
            key,
            "prompt",
            search,
            self.confirm,
            {k: (r.score, r.prediction) for k, r in part.items()},
        )
        gold = gold_values(task.kind, task.labels, self.confirm, part, self.keys[len(search) :])
        return dataclasses.replace(
            challenger,
            pooled_tiebreak=tiebreak(task.kind, task.labels, self.everything, part, self.keys),
            per_example_gold=None if gold is None else tuple(gold),
        )

    def rows_of(
        self, records_by_key: Mapping[str, EvaluationRecord], examples: Sequence[Example]
    ) -> dict[str, Row]:
        task = self.task
        keys_here = [example_key(e) for e in examples]
        gold = gold_values(task.kind, task.labels, examples, records_by_key, keys_here)
        return {
            k: (
                records_by_key[k].score,
                records_by_key[k].prediction,
                None if gold is None else gold[i],
            )
            for i, k in enumerate(keys_here)
        }

    def train_records(self, key: str, extra: Sequence[Example]) -> dict[str, EvaluationRecord]:
        return self.scores.records(self.prompts[key], extra, split="train")

    def on_train(self, key: str, extra: Sequence[Example]) -> dict[str, Row]:
        """The prompt's rows on the held-back part and the train examples *extra*."""
        both = {**self.records_of(key), **self.train_records(key, extra)}
        return self.rows_of(both, [*self.confirm, *extra])

    def tested(self, challenger: Challenger, incumbent: Challenger) -> Challenger:
        """*challenger* tested on the train examples it may be tested on too."""
        extra = self.evidence.examples([self.prompts[challenger.key], self.prompts[incumbent.key]])
        if not extra:
            return challenger
        return _with_train(
            self.task,
            challenger,
            incumbent,
            self.confirm,
            extra,
            self.on_train(challenger.key, extra),
            self.on_train(incumbent.key, extra),
            self.held_keys,
        )

    def ensemble(
        self,
        members: Sequence[str],
        incumbent: Challenger,
        *,
        balance: bool,
        kind: str = "ensemble",
    ) -> tuple[Challenger, PromptEnsemble] | None:
        """The ensemble of *members* (balanced with *balance*; one member: a balanced
        prompt) as a challenger of *kind*, or ``None`` where the scorer gives no label
        probabilities."""
        task, search, confirm, keys = self.task, self.search, self.confirm, self.keys
        records = [self.records_of(k) for k in members]
        try:
            priors = None
            if balance:  # from the search part alone
                labels = list(task.labels)
                priors = tuple(records_prior(labels, r, keys[: len(search)]) for r in records)
            ensemble = PromptEnsemble(tuple(self.prompts[k] for k in members), priors)
            voted = vote_records(task, self.everything, keys, records, priors)
        except ConfigError as error:  # a scorer that gives no label probabilities
            logger.warning("study %r: no ensemble candidate: %s", self.study.name, error)
            return None
        if not voted:
            return None
        rows = {
            k: (score, prediction) for k, (prediction, score, _) in zip(keys, voted, strict=True)
        }
        challenger = _challenger(task, ensemble.content_hash, kind, search, confirm, rows)
        gold = [p for _, _, p in voted]
        challenger = dataclasses.replace(
            challenger,
            pooled_tiebreak=sum(gold) / len(gold),
            per_example_gold=tuple(gold[len(search) :]),
        )
        extra = self.evidence.examples([*ensemble.members, self.prompts[incumbent.key]])
        if extra:
            extra_keys = [example_key(e) for e in extra]
            on_extra = vote_records(
                task,
                extra,
                extra_keys,
                [self.train_records(k, extra) for k in members],
                ensemble.priors,
            )
            both = {
                k: (score, prediction, p)
                for k, (prediction, score, p) in zip(
                    [*keys[len(search) :], *extra_keys],
                    [*voted[len(search) :], *on_extra],
                    strict=True,
                )
            }
            challenger = _with_train(
                task,
                challenger,
                incumbent,
                confirm,
                extra,
                both,
                self.on_train(incumbent.key, extra),
                self.held_keys,
            )
        return challenger, ensemble


def sequence_order(
    singles: Sequence[Challenger],
    ensemble: Challenger | None,
    incumbent: Challenger,
    order: str,
) -> list[Challenger]:
    """The challengers in the order the ``"sequence"`` procedure tests them
    (:data:`~promptsearch.study.selection.ORDERS`); *singles* come best on the search
    part first.  Every order reads what is known before the held-back part is looked
    at: the search part's scores and how many examples each is tested on."""
    ordered = [*singles, ensemble] if order == "ensemble-last" else [ensemble, *singles]
    challengers = [c for c in ordered if c is not None]
    if order == "most-examples":
        challengers.sort(key=lambda c: -len(c.per_example))
    elif order == "ahead-first":  # behind the incumbent on the search part: tested last
        challengers.sort(key=lambda c: c.search_score < incumbent.search_score)
    return challengers


def _members(found: _Candidates, selection: Selection, incumbent: Challenger) -> list[str]:
    """The ensemble's members, best on the search part first: of all prompts on the
    leaderboard (seed prompts included), of those made of the task's own parts, or of
    those made of the task's own parts at least as good as the incumbent on the search
    part, the incumbent left out (``"own-ahead"``: a weak incumbent whose confident
    probabilities outvote its partners makes an ensemble that predicts as it does), or
    of those made of the task's own parts, the incumbent left out (and no other put
    in its place) where it is among them and behind every other one on the search
    part (``"own-no-trailing"``: an incumbent ahead of a member still lends the
    ensemble its votes)."""
    rows = found.board
    if selection.ensemble_members != "top":
        own = found.evidence.own
        rows = [row for row in rows if own(found.prompts[row.content_hash])]
    if selection.ensemble_members == "own-ahead":
        rows = [
            row
            for row in rows
            if row.content_hash != incumbent.key and row.dev_score >= incumbent.search_score
        ]
    elif selection.ensemble_members == "own-no-trailing":
        first = rows[: selection.ensemble_size]
        others = [row for row in first if row.content_hash != incumbent.key]
        if len(others) < len(first) and all(
            row.dev_score > incumbent.search_score for row in others
        ):
            rows = others
    return [row.content_hash for row in rows][: selection.ensemble_size]


def _vote_record(vote: PromptEnsemble, members: Sequence[str]) -> dict[str, Any]:
    """How the record stores an ensemble or a balanced prompt: its key, its members'
    keys and its dict form."""
    return {"key": vote.content_hash, "members": list(members), "body": vote.to_dict()}


def select_final(study: Study) -> dict[str, Any]:
    """Make the study's final pick, store it with the study and return the record."""
    found = _Candidates(study)
    selection, task, seeds, board = found.selection, found.task, found.seeds, found.board
    if not seeds and not board:
        logger.warning("study %r: nothing to pick from (no seed prompt, no trial)", study.name)
        return {}
    # the incumbent: the best seed prompt on all of dev, as the user would pick it without
    # promptsearch.  Chosen on the confirmation part too, its score there is biased up,
    # which makes the challengers' tests against it stricter, never looser; chosen on
    # the search part alone it could be a seed the user would not have picked, handed
    # back with no challenger involved
    candidates = {key: found.challenger(key) for key in seeds}
    incumbent_key = (
        max(seeds, key=lambda k: pooled_rank(candidates[k])) if seeds else board[0].content_hash
    )
    incumbent = candidates.get(incumbent_key) or found.challenger(incumbent_key)
    top = [row.content_hash for row in board if row.content_hash not in seeds][: selection.top_k]
    # the order the "sequence" procedure tests them in is fixed before the confirmation
    # part is looked at (sequence_order): the single prompts by the search part
    singles = [found.tested(found.challenger(key), incumbent) for key in top]
    ensemble_record: dict[str, Any] | None = None
    ensemble_challenger: Challenger | None = None
    members = _members(found, selection, incumbent)
    texts = {key: prompt.describe() for key, prompt in found.prompts.items()}
    if task.kind == "classification" and selection.ensemble_size >= 2 and len(members) >= 2:
        made = found.ensemble(members, incumbent, balance=selection.ensemble_balance)
        if made is not None:
            ensemble_challenger, ensemble = made
            ensemble_record = _vote_record(ensemble, members)
            balance = " (balanced)" if selection.ensemble_balance else ""
            texts[ensemble.content_hash] = f"ensemble of {len(members)}{balance}"
    challengers = sequence_order(singles, ensemble_challenger, incumbent, selection.order)
    # the best seed prompt balanced: the smallest change to the user's prompt, tested
    # first where the search part says it helps
    balanced_record: dict[str, Any] | None = None
    if selection.balanced_seed and task.kind == "classification" and incumbent_key in seeds:
        made = found.ensemble([incumbent_key], incumbent, balance=True, kind="balanced")
        if made is not None and made[0].search_score > incumbent.search_score:
            challengers.insert(0, made[0])
            balanced_record = _vote_record(made[1], [incumbent_key])
            texts[made[1].content_hash] = made[1].describe()
    pick, rows_out = decide(
        incumbent,
        challengers,
        selection.alpha,
        selection.procedure,
        selection.tests,
        selection.choose_by,
    )
    prompts = found.prompts
    for entry in rows_out:
        entry["text"] = texts.get(entry["key"], "?")
        entry["is_seed"] = entry["key"] in seeds
    evidence = found.evidence
    record: dict[str, Any] = {
        "version": SELECTION_VERSION,
        "settings": selection.to_dict(),
        "metric": task.metric,
        "n_search": len(found.search),
        "n_confirm": len(found.confirm),
        "n_train": len(evidence.held) + len(evidence.pool),
        "n_held_train": len(evidence.held),
        "incumbent": incumbent_key,
        "pick": pick,
        "pick_kind": next(
            (
                kind
                for kind, voted in (("ensemble", ensemble_record), ("balanced", balanced_record))
                if voted and pick == voted["key"]
            ),
            "prompt",
        ),
        "replaced_incumbent": pick != incumbent_key,
        "candidates": rows_out,
        "ensemble": ensemble_record,
        "balanced_seed": balanced_record,
        "prompts": {key: prompts[key].to_dict() for key in [incumbent_key, *top] if key in prompts},
        "forward_passes": found.scores.forward_passes,
    }
    study.storage.set_study_selection(study.name, record)
    if pick == incumbent_key:
        held = f" and {len(evidence.held)} held-back train" if evidence.held else ""
        logger.info(
            "study %r: no candidate beat the best seed prompt with evidence on the %d held-back "
            "dev%s examples; keeping it",
            study.name,
            len(found.confirm),
            held,
        )
    return record

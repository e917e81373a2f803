"""The ``optuna`` searcher: an Optuna sampler (TPE by default) over a structured prompt space.

A prompt is a point of a small space (see :mod:`promptsearch.searchers._prompt_space`):
an instruction, a template, a verbalizer, a separator, contextual calibration on or
off (classification), and up to *max_demonstrations* demonstrations from a fixed
sample of the train split.  Each
round the searcher asks the sampler for points through Optuna's ask-and-tell
interface, turns them into prompts, and tells it their dev scores when the study
reports them.

* **Pools that grow.**  The instruction, template and verbalizer pools start with
  the task's seed prompts' parts, format variants of the seed templates, with
  ``label_instructions`` two instructions that name a classification task's
  label words, and the extras given.  With ``pool_from_study`` they also take in
  the parts of the study's best prompts from every searcher
  (``SearchContext.leaderboard``), and those of the best prompts that the space
  can express join the sampler's history with their scores, at no cost.
* **Categoricals over growing pools.**  An Optuna categorical may not change its
  choices within a study.  So the searcher keeps its trial history as plain data
  (points of pool indices, states and scores) and, every round, builds a fresh
  in-memory Optuna study whose categoricals span the pools as they are now, and
  replays the history into it with ``add_trial``.  Pools only grow and indices
  never move, so every past trial stays valid under the wider distribution, and TPE
  learns from the whole history; a new pool entry starts with the prior's weight.
  The sampler is seeded from the context's generator and the round number, so the
  searcher is reproducible, and it pickles as plain data.
* **Duplicates.**  Many points stand for one prompt (unused demonstration slots, a
  separator with nothing to separate).  A point whose prompt was scored before is
  told its known score at once and another point is asked for, so duplicates cost
  no budget; the round gives up after ``10 * n + 10`` asks.
* **Seeds first.**  Seed prompts the searcher has not seen scored are enqueued as
  the first trials, so a study without ``manual`` still starts from them; with
  ``answer_keys``, the best answer-key templates with the task's label words follow
  them (see :mod:`promptsearch.searchers._answer_keys`).
* **Mirror.**  With ``mirror_storage`` (an Optuna storage URL such as
  ``sqlite:///optuna.db``) every trial the searcher proposed is also written to a
  persistent Optuna study, named after the promptsearch study, so
  ``optuna-dashboard sqlite:///optuna.db`` shows the search.

A resumed study rebuilds the searcher from its seed and replays it (the study
answers scored prompts from the database), so no learned state is saved.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.prompt import Prompt
from promptsearch.searchers._answer_keys import check_answer_keys, key_template, rank_keys
from promptsearch.searchers._optuna_mirror import MirrorParams, OptunaMirror, quiet_optuna
from promptsearch.searchers._prompt_space import Point, PromptSpace, chat_turns
from promptsearch.searchers.base import Candidate, SearchContext, Searcher, TrialResult
from promptsearch.task import normalize_verbalizer
from promptsearch.template import Template
from promptsearch.validation import check_choice, check_int, check_str

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler
    from optuna.study import Study as OptunaStudy
    from optuna.trial import Trial

__all__ = ["SAMPLERS", "OptunaSearcher"]

SAMPLERS = ("tpe", "random", "qmc")
_OWNER = "OptunaSearcher"
_STATES = {"complete": "complete", "failed": "fail", "fail": "fail", "pruned": "pruned"}

Record = tuple[Point, str, float | None]  # (point, complete|fail|pruned, score)


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(
            f"{_OWNER}: {name} must be a list of strings; got {value!r} "
            "(wrap a single one in a list)"
        )
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(f"{_OWNER}: each of {name} must be a string; got {item!r}")
    return tuple(value)


class OptunaSearcher(Searcher):
    """An Optuna sampler over instruction, template, verbalizer, calibration and demonstrations.

    Parameters
    ----------
    sampler:
        ``"tpe"`` (Tree-structured Parzen Estimator, multivariate), ``"random"`` or
        ``"qmc"`` (scrambled Sobol sequence).
    instructions:
        Extra instructions for the pool (besides none, the seed prompts' and the
        label instructions).
    templates:
        Extra templates for the pool (besides the seed templates, their one-line
        forms, and an ``Input:``/``Output:`` format); each may use only the task's
        input fields and needs one ``{answer}``.
    verbalizers:
        Extra label words for the pool (besides the task's and the seed prompts'),
        each a mapping ``{label: word or [words]}`` covering every label.
    max_demonstrations:
        Up to this many demonstrations per prompt, from a seeded sample of at most
        16 train examples (0: no demonstrations).
    pool_from_study:
        Before each round, take in the study's best prompts from all searchers:
        their parts join the pools and their scores the sampler's history.
    n_startup_trials:
        TPE samples at random until this many trials finished.
    mirror_storage:
        An Optuna storage URL (``"sqlite:///optuna.db"``) to copy the trials to,
        for optuna-dashboard; ``None``: no mirror.
    mirror_study:
        The Optuna study name in the mirror; ``None``: the promptsearch study's name.
    chat_format:
        Also search the seed templates written as one chat exchange of the model's own
        chat template (the input as the user's turn, the answer slot opening the
        assistant's): ``"auto"`` where the study's model has a chat template, ``False``
        never.  Off when the study scores every prompt as a chat exchange anyway
        (``chat_template`` on).
    calibrate:
        Search contextual calibration on or off per prompt (see
        :mod:`promptsearch.scoring.calibration`): ``"auto"`` on classification tasks
        whose study does not calibrate every prompt already, ``False`` never (every
        prompt it proposes is then uncalibrated, as before this parameter existed).
    label_instructions:
        ``True``: on classification tasks, two instructions that name the task's label
        words join the pool ("Classify the sentence as negative or positive.", "Answer
        with one word: negative or positive."; see
        :func:`~promptsearch.searchers._prompt_space.task_instructions`), so a search
        from seed prompts without an instruction has some to try.  Off by default:
        on the embedded model they did not help (docs/benchmarks.md, session 27).
    answer_keys:
        Plain templates that name the answer (``Text: {sentence}\nSentiment: {answer}``;
        see :mod:`promptsearch.searchers._answer_keys`), classification tasks only:
        ``"auto"`` ranks the built-in vocabulary of answer-field names
        (:data:`~promptsearch.searchers._answer_keys.ANSWER_KEYS`) by how likely the
        model finds the task's label words after each key on content-free inputs (no
        example is read), a list of words ranks those instead, ``False`` (the default;
        session 38's benchmark did not adopt it, docs/benchmarks.md) adds none.  The
        *n_answer_keys* best join the template pool and are proposed, with the task's
        label words, right after the seed prompts.
    n_answer_keys:
        How many of the ranked answer keys to use.
    """

    name = "optuna"
    uses_model = True  # for the tokenizer's chat template
    task_kinds = ("classification", "generation")

    def __init__(
        self,
        sampler: str = "tpe",
        instructions: Sequence[str] = (),
        templates: Sequence[str] = (),
        verbalizers: Sequence[Mapping[Any, Any]] = (),
        max_demonstrations: int = 4,
        pool_from_study: bool = True,
        n_startup_trials: int = 8,
        mirror_storage: str | None = None,
        mirror_study: str | None = None,
        chat_format: str | bool = "auto",
        calibrate: str | bool = "auto",
        label_instructions: bool = False,
        answer_keys: str | bool | Sequence[str] = False,
        n_answer_keys: int = 2,
    ) -> None:
        self.sampler = check_choice(sampler, "sampler", SAMPLERS, owner=_OWNER)
        self.instructions = _strings(instructions, "instructions")
        self.templates = _strings(templates, "templates")
        for template in self.templates:
            try:
                Template(template)
            except ConfigError as error:
                raise ConfigError(f"{_OWNER}: templates: {error}") from None
        if isinstance(verbalizers, Mapping) or not isinstance(verbalizers, Sequence):
            raise ConfigError(
                f"{_OWNER}: verbalizers must be a list of mappings {{label: word}}; got "
                f"{verbalizers!r} (wrap a single one in a list)"
            )
        self.verbalizers = tuple(
            normalize_verbalizer(v, f"{_OWNER}: verbalizers[{i}]")
            for i, v in enumerate(verbalizers)
        )
        self.max_demonstrations = check_int(
            max_demonstrations, "max_demonstrations", minimum=0, maximum=16, owner=_OWNER
        )
        if not isinstance(pool_from_study, bool):
            raise ConfigError(
                f"{_OWNER}: pool_from_study must be True or False; got {pool_from_study!r}"
            )
        self.pool_from_study = pool_from_study
        self.n_startup_trials = check_int(
            n_startup_trials, "n_startup_trials", minimum=0, owner=_OWNER
        )
        if mirror_storage is not None:
            check_str(mirror_storage, "mirror_storage", owner=_OWNER)
            if "://" not in mirror_storage:
                raise ConfigError(
                    f"{_OWNER}: mirror_storage must be an Optuna storage URL such as "
                    f"'sqlite:///optuna.db'; got {mirror_storage!r}"
                )
        self.mirror_storage = mirror_storage
        if mirror_study is not None:
            check_str(mirror_study, "mirror_study", owner=_OWNER)
        self.mirror_study = mirror_study
        if chat_format not in ("auto", False):
            raise ConfigError(f"{_OWNER}: chat_format must be 'auto' or False; got {chat_format!r}")
        self.chat_format = chat_format
        if not (calibrate is False or calibrate == "auto"):
            raise ConfigError(f"{_OWNER}: calibrate must be 'auto' or False; got {calibrate!r}")
        self.calibrate = calibrate
        if not isinstance(label_instructions, bool):
            raise ConfigError(
                f"{_OWNER}: label_instructions must be True or False; got {label_instructions!r}"
            )
        self.label_instructions = label_instructions
        self.answer_keys = answer_keys
        self._keys = check_answer_keys(answer_keys, _OWNER)
        self.n_answer_keys = check_int(n_answer_keys, "n_answer_keys", minimum=1, owner=_OWNER)
        self._key_prompts: list[Prompt] = []
        self._space: PromptSpace | None = None
        self._seed = 0
        self._round = 0
        self._history: list[Record] = []
        self._known: dict[str, tuple[str, float | None]] = {}  # content hash -> (state, score)
        self._pending: dict[str, Point] = {}  # proposed, not yet observed
        self._mirror: OptunaMirror | None = None

    # -- set-up ---------------------------------------------------------------------------

    def setup(self, context: SearchContext) -> None:
        super().setup(context)
        self._seed = context.rng.getrandbits(32)
        self._space = PromptSpace.build(
            context.task,
            instructions=self.instructions,
            templates=self.templates,
            verbalizers=self.verbalizers,
            max_demonstrations=self.max_demonstrations,
            rng=random.Random(f"{self._seed}:demonstrations"),
            owner=_OWNER,
            chat=self._chat_turns(context),
            calibration=self.calibrate == "auto" and not context.calibrated,
            label_instructions=self.label_instructions,
        )
        self._key_prompts = self._answer_key_prompts(context)
        for prompt in self._key_prompts:
            self._space.add_template(prompt.template)
        if self.mirror_storage is not None:
            study_name = (
                self.mirror_study or context.study_name or f"promptsearch-{context.task.name}"
            )
            self._mirror = OptunaMirror(
                self.mirror_storage,
                study_name,
                {
                    "promptsearch_task": context.task.name,
                    "promptsearch_study": context.study_name,
                    "promptsearch_sampler": self.sampler,
                },
            )
            self._mirror.open()

    def _answer_key_prompts(self, context: SearchContext) -> list[Prompt]:
        """The *n_answer_keys* best key templates with the task's label words."""
        task = context.task
        if not self._keys or task.kind != "classification" or context.scorer is None:
            return []
        ranked = rank_keys(context.scorer, task, self._keys)[: self.n_answer_keys]
        for i, (_key, value) in enumerate(ranked):
            self.ctx.metrics.log(i, "answer_key_logprob", value)
        return [
            Prompt(template=key_template(task.input_fields, key), verbalizer=task.verbalizer)
            for key, _ in ranked
        ]

    def _chat_turns(self, context: SearchContext) -> tuple[str, str] | None:
        if self.chat_format is False or context.model is None:
            return None
        if getattr(context.scorer, "chat", None) is not None:
            return None  # the scorer renders every prompt as a chat exchange already
        return chat_turns(getattr(context.model, "tokenizer", None))

    @property
    def space(self) -> PromptSpace:
        """The prompt space (after :meth:`setup`)."""
        if self._space is None:
            raise ConfigError(
                f"searcher {self.name!r}: call setup(context) before propose()/observe()"
            )
        return self._space

    @property
    def history(self) -> tuple[Record, ...]:
        """What the sampler has been told, oldest first: (point, state, score), where
        state is complete, fail or pruned (the searcher's own trials, the known
        scores of duplicates, and the study's best prompts it took in)."""
        return tuple(self._history)

    def _make_sampler(self, seed: int) -> BaseSampler:
        from optuna.samplers import QMCSampler, RandomSampler, TPESampler

        if self.sampler == "random":
            return RandomSampler(seed=seed)
        if self.sampler == "qmc":
            return QMCSampler(seed=seed, scramble=True)
        return TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)

    def _rebuild(self) -> OptunaStudy:
        """A fresh in-memory Optuna study over the current pools, with the history."""
        import optuna
        from optuna.trial import TrialState, create_trial

        seed = random.Random(f"{self._seed}:{self._round}").getrandbits(31)
        distributions = self.space.distributions()
        study = optuna.create_study(direction="maximize", sampler=self._make_sampler(seed))
        trials = []
        for point, state, value in self._history:
            if state == "complete":
                trials.append(create_trial(value=value, params=point, distributions=distributions))
            elif state == "pruned":
                trials.append(
                    create_trial(
                        state=TrialState.PRUNED,
                        params=point,
                        distributions=distributions,
                        intermediate_values=None if value is None else {0: value},
                    )
                )
            else:
                trials.append(
                    create_trial(state=TrialState.FAIL, params=point, distributions=distributions)
                )
        study.add_trials(trials)
        return study

    # -- learning from the study ------------------------------------------------------------

    def _take_in_study(self) -> None:
        """Pools and history from the study's leaderboard (all searchers' best)."""
        if not self.pool_from_study:
            return
        for row in self.ctx.leaderboard:
            self.space.absorb(row.prompt)
            if row.content_hash in self._known:
                continue
            self._known[row.content_hash] = ("complete", row.score)
            point = self.space.point(row.prompt)
            if point is not None and self.space.prompt(point).content_hash == row.content_hash:
                self._history.append((point, "complete", row.score))

    def _seed_points(self) -> list[Point]:
        """Points of the seed prompts, then of the answer-key prompts, not scored or
        proposed yet."""
        out = []
        for prompt in [*self.ctx.task.seed_prompts, *self._key_prompts]:
            point = self.space.point(prompt)
            if point is None:
                continue
            key = self.space.prompt(point).content_hash
            if key not in self._known and key not in self._pending:
                out.append(point)
        return out

    # -- interface ------------------------------------------------------------------------

    def propose(self, n: int) -> list[Candidate]:
        if n <= 0:
            return []
        self._take_in_study()
        self._pending = {}
        out: list[Candidate] = []
        with quiet_optuna():
            study = self._rebuild()
            seeds = self._seed_points()[:n]
            for point in seeds:
                study.enqueue_trial(dict(point))
            distributions = self.space.distributions()
            for _attempt in range(10 * n + 10):
                if len(out) >= n:
                    break
                trial = study.ask(dict(distributions))
                point = {name: int(value) for name, value in trial.params.items()}
                try:
                    prompt = self.space.prompt(point)
                except ConfigError:  # cannot happen with checked pools; told as failed
                    _tell(study, trial, "fail", None)
                    self._history.append((point, "fail", None))
                    continue
                key = prompt.content_hash
                if key in self._known:  # scored before: the known score, at no cost
                    state, value = self._known[key]
                    _tell(study, trial, state, value)
                    self._history.append((point, state, value))
                    continue
                if key in self._pending:  # the same prompt twice in one round: left out
                    continue
                self._pending[key] = point
                operation = self.sampler
                if point in seeds:
                    keyed = prompt.template in {k.template for k in self._key_prompts}
                    operation = "answer-key" if keyed else "seed"
                out.append(Candidate(prompt=prompt, operation=operation))
        self._round += 1
        self._log()
        return out

    def optuna_params(self, content_hash: str) -> MirrorParams | None:
        """The point of a candidate proposed this round, as the study's mirror writes it."""
        point = self._pending.get(content_hash)
        if point is None:
            return None
        space = self.space
        return MirrorParams(dict(point), space.distributions(ordinal=True), space.describe(point))

    def observe(self, results: Sequence[TrialResult]) -> None:
        for result in results:
            point = self._pending.pop(result.content_hash, None)
            state = _STATES.get(result.state, "fail")
            value = result.score
            if state == "complete" and value is None:
                state = "fail"
            self._known.setdefault(result.content_hash, (state, value))
            if point is None:
                continue
            self._history.append((point, state, value))
            if self._mirror is not None:
                self._mirror.add(
                    params=point,
                    distributions=self.space.distributions(ordinal=True),
                    state=state,
                    value=value,
                    attrs={
                        **self.space.describe(point),
                        "content_hash": result.content_hash,
                        "prompt": result.prompt.describe(),
                        "operation": result.operation,
                        "n_examples": result.n_examples,
                    },
                )
        self._pending = {}

    def _log(self) -> None:
        space = self.space
        step = self._round
        self.ctx.metrics.log(step, "instructions", len(space.instructions))
        self.ctx.metrics.log(step, "templates", len(space.templates))
        self.ctx.metrics.log(step, "verbalizers", len(space.verbalizers))
        self.ctx.metrics.log(step, "history", len(self._history))


def _tell(study: OptunaStudy, trial: Trial, state: str, value: float | None) -> None:
    """Finish a live trial the way the history records it."""
    from optuna.trial import TrialState

    if state == "complete" and value is not None:
        study.tell(trial, value)
    elif state == "pruned":
        if value is not None:
            trial.report(value, 0)
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)

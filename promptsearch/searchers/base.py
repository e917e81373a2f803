"""The searcher interface.

A searcher proposes candidate prompts and learns from their scores.  The study
drives every searcher through the same call order:

1. ``__init__(...)``: store each argument under its own name and validate it
   eagerly (raise :class:`~promptsearch.errors.ConfigError` naming the argument).
2. ``setup(context)``: called once, before anything else.  The
   :class:`SearchContext` holds the *train* side of the task only (never dev or
   test labels), a seeded random generator, the model and scorer (for searchers
   that need them), the remaining budget and a metric log.  The base class's
   ``setup`` refuses a task whose kind is not in the searcher's ``task_kinds``
   (:func:`check_task_kind`; :func:`promptsearch.search` checks it before any model
   loads, too), so an override calls ``super().setup(context)`` first.
3. Repeatedly ``propose(n)`` then ``observe(results)``: ``propose`` returns at most
   *n* :class:`Candidate` objects (an empty list means the searcher is exhausted);
   ``observe`` receives one :class:`TrialResult` per candidate, in order, with its
   dev score (``None`` when the trial failed or racing pruned it).
4. Optionally ``state_dict()`` / ``load_state_dict(state)`` for searchers that
   learn (the study stores the state after every ``observe``, so a resumed study
   resumes training).  A resumed study counts its budget by replaying: the trials
   it meets again cost nothing but count as spent.  A searcher restored from its
   state must therefore first propose its earlier candidates again, in order,
   before new ones (the ``rl`` searcher keeps them in its state for this).
   ``state_dict()`` must return data only: a dict with str keys, holding nothing but
   dicts (str or int keys), lists, tuples, str, int, float (non-finite too), bool,
   None, bytes and :class:`torch.Tensor` (so a :func:`random.getstate` tuple or a
   torch generator state is fine; a numpy array or any other object is not).  The
   study stores it as a JSON document with the tensors in safetensors
   (:mod:`promptsearch.study.state_codec`), never as a pickle, and refuses other types;
   subclasses come back as their base type (an ``OrderedDict`` as a dict, a tensor
   on the CPU).

Before every ``propose`` the study refreshes two read-only context fields:
``remaining`` (the budget left) and ``leaderboard``, the study's best complete
trials so far from *all* searchers, best first (at most :data:`LEADERBOARD_SIZE`
:class:`ScoredPrompt` rows: prompt, content hash, dev score, searcher).  It holds
prompts and dev scores only, never dev or test examples, so a searcher may learn
from the others' best (the ``optuna`` searcher grows its pools from it).
``study_name`` names the study (empty outside one).  ``calibrated`` is True when the
study's scorer calibrates every prompt (study-level ``calibrate=True``), so that a
prompt's own ``calibrate`` changes nothing and a searcher need not search it.

Searchers must be picklable and, given the same seed and the same observed
scores, propose the same candidates.
"""

from __future__ import annotations

import inspect
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from promptsearch.errors import ConfigError
from promptsearch.prompt import Prompt
from promptsearch.searchers._optuna_mirror import MirrorParams
from promptsearch.task import TASK_KINDS, Example, Task, TaskKind

if TYPE_CHECKING:
    from promptsearch.models.base import LanguageModel
    from promptsearch.scoring.scorer import Scorer

__all__ = [
    "LEADERBOARD_SIZE",
    "Candidate",
    "MetricLog",
    "MirrorParams",
    "RemainingBudget",
    "ScoredPrompt",
    "SearchContext",
    "Searcher",
    "TrainView",
    "TrialResult",
    "check_local_model",
    "check_task_kind",
    "declared_task_kinds",
]

LEADERBOARD_SIZE = 20
"""How many of the study's best prompts :attr:`SearchContext.leaderboard` holds."""


@dataclass(frozen=True)
class Candidate:
    """A proposed prompt, with how it was made.

    ``parent`` is the content hash of the prompt it was derived from, if any.
    """

    prompt: Prompt
    operation: str = "propose"
    parent: str | None = None


@dataclass(frozen=True)
class TrialResult:
    """The outcome of one candidate, as a searcher sees it.

    ``new`` is False when the prompt had already been scored in this study (the
    candidate was a duplicate and cost nothing).

    ``state`` is ``"complete"``, ``"failed"`` or, in a racing study (see
    :mod:`promptsearch.study.racing`), ``"pruned"``: the candidate was stopped early as
    weaker than the others.  A pruned result has ``score=None``, like a failed one,
    so that no partial score is taken for a dev score; ``n_examples`` says how many
    dev examples it was scored on before it stopped.
    """

    prompt: Prompt
    content_hash: str
    score: float | None
    state: str
    n_examples: int
    searcher: str
    operation: str
    parent: str | None = None
    new: bool = True


@dataclass(frozen=True)
class TrainView:
    """What a searcher may see of a task: everything but the dev and test splits."""

    name: str
    kind: str
    input_fields: tuple[str, ...]
    labels: tuple[str, ...]
    verbalizer: Mapping[str, tuple[str, ...]]
    metric: str
    train: tuple[Example, ...]
    seed_prompts: tuple[Prompt, ...]
    description: str = ""

    @classmethod
    def from_task(cls, task: Task) -> TrainView:
        return cls(
            name=task.name,
            kind=task.kind,
            input_fields=task.input_fields,
            labels=task.labels,
            verbalizer=dict(task.verbalizer),
            metric=task.metric,
            train=task.train,
            seed_prompts=tuple(task.seed_prompts),
            description=task.description,
        )


@dataclass
class RemainingBudget:
    """What is left of the study's budget; ``None`` means unlimited.  The study
    updates it before every ``propose`` call."""

    evaluations: int | None = None
    forward_passes: int | None = None
    seconds: float | None = None


@dataclass
class MetricLog:
    """A buffer of (searcher step, key, value) metrics the study writes to storage."""

    entries: list[tuple[int, str, float]] = field(default_factory=list)

    def log(self, step: int, key: str, value: float) -> None:
        self.entries.append((int(step), str(key), float(value)))

    def drain(self) -> list[tuple[int, str, float]]:
        out, self.entries = self.entries, []
        return out


@dataclass(frozen=True)
class ScoredPrompt:
    """One row of the study's leaderboard as searchers see it."""

    prompt: Prompt
    content_hash: str
    score: float
    searcher: str


@dataclass
class SearchContext:
    """Everything a searcher gets from the study (picklable).

    ``leaderboard`` and ``remaining`` are refreshed by the study before every
    ``propose``; see the module docstring.
    """

    task: TrainView
    rng: random.Random
    remaining: RemainingBudget = field(default_factory=RemainingBudget)
    metrics: MetricLog = field(default_factory=MetricLog)
    model: LanguageModel | None = None
    scorer: Scorer | None = None
    study_name: str = ""
    leaderboard: tuple[ScoredPrompt, ...] = ()
    calibrated: bool = False


class Searcher(ABC):
    """Base class of all searchers; see the module docstring for the call order.

    Subclasses set ``name`` (the registry name, e.g. ``"random-edit"``),
    ``needs_model`` (True for white-box or generating searchers) and ``task_kinds``
    (the task kinds they can search, from :data:`~promptsearch.task.TASK_KINDS`),
    store every constructor argument under its own name, and validate it in
    ``__init__``.
    """

    name: ClassVar[str] = ""
    needs_model: ClassVar[bool] = False
    uses_model: ClassVar[bool] = False
    """True for searchers that read the model (its tokenizer's chat template, say) when
    the study has one but work without it; the study then hands it (and its scorer)
    over too."""
    needs_local_model: ClassVar[bool] = False
    """True for searchers that need the model itself (its weights, tokenizer or
    gradients), which a model behind a server (an ``openai:`` spec) does not give:
    a study with such a model refuses them (:func:`check_local_model`)."""
    task_kinds: ClassVar[tuple[TaskKind, ...]] = TASK_KINDS
    """The task kinds the searcher can search: a non-empty tuple of
    :data:`~promptsearch.task.TASK_KINDS` (default: all of them).  Declare it in every
    searcher (the contract suite checks that it is declared).  On a task of another
    kind, :meth:`setup` raises one error naming the searcher and the kind (and
    :func:`promptsearch.search` raises it before any model loads)."""

    context: SearchContext | None = None

    def setup(self, context: SearchContext) -> None:
        """Receive the context; called once before the first :meth:`propose`.

        Refuses a task of a kind the searcher does not declare in :attr:`task_kinds`,
        and a context without a model when :meth:`_model_required` says one is needed.
        """
        check_task_kind(self, context.task)
        if self._model_required() and context.model is None:
            raise ConfigError(f"searcher {self.name!r} needs a model, but the context has none")
        self.context = context

    def _local_model_required(self) -> bool:
        """Whether the study's model must be local: ``needs_local_model`` unless a
        searcher's parameters make it unnecessary (``rl`` with a ``policy_model``, say)."""
        return self.needs_local_model

    def _model_required(self) -> bool:
        """Whether :meth:`setup` needs a model in the context: ``needs_model`` unless a
        searcher's parameters make it unnecessary (``mining`` with a corpus, say)."""
        return self.needs_model

    @property
    def ctx(self) -> SearchContext:
        """The context, or a clear error when :meth:`setup` was not called."""
        if self.context is None:
            raise ConfigError(
                f"searcher {self.name!r}: call setup(context) before propose()/observe()"
            )
        return self.context

    @abstractmethod
    def propose(self, n: int) -> list[Candidate]:
        """Return at most *n* candidates; an empty list means exhausted."""

    def observe(self, results: Sequence[TrialResult]) -> None:  # noqa: B027 - optional hook
        """Receive the results of the last proposed candidates (default: ignore)."""

    def state_dict(self) -> dict[str, Any] | None:
        """Learned state to save with the study (default: none), made only of the types
        the module docstring lists (dict, list, tuple, str, int, float, bool, None,
        bytes, torch.Tensor)."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore learned state saved by :meth:`state_dict`."""

    def optuna_params(self, content_hash: str) -> MirrorParams | None:
        """The Optuna parameters of the candidate *content_hash* this searcher proposed in
        its last round, for the study's Optuna mirror (``--optuna-storage``), asked
        between ``propose`` and ``observe``; ``None`` (the default): no parameters."""
        return None

    @classmethod
    def param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments, read back from the attributes of the same names."""
        return {name: getattr(self, name) for name in self.param_names()}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def declared_task_kinds(searcher: Searcher | type[Searcher]) -> tuple[TaskKind, ...]:
    """The ``task_kinds`` of *searcher* (a class or an instance), checked: a
    non-empty tuple of distinct :data:`~promptsearch.task.TASK_KINDS`."""
    cls = searcher if isinstance(searcher, type) else type(searcher)
    kinds: Any = getattr(cls, "task_kinds", None)
    if (
        not isinstance(kinds, tuple)
        or not kinds
        or len(set(kinds)) != len(kinds)
        or not all(isinstance(k, str) and k in TASK_KINDS for k in kinds)
    ):
        raise ConfigError(
            f"searcher {cls.name!r} ({cls.__module__}.{cls.__qualname__}) declares "
            f"task_kinds={kinds!r}; it must be a non-empty tuple of distinct task kinds "
            f"from {TASK_KINDS}, e.g. task_kinds = ('classification',)"
        )
    return kinds


def check_task_kind(searcher: Searcher | type[Searcher], task: Task | TrainView) -> None:
    """Raise :class:`~promptsearch.errors.ConfigError` unless *searcher* (a class or an
    instance) declares the kind of *task* in its ``task_kinds``."""
    kinds = declared_task_kinds(searcher)
    if task.kind not in kinds:
        name = searcher.name
        raise ConfigError(
            f"searcher {name!r} searches {' and '.join(kinds)} tasks only; task "
            f"{task.name!r} is a {task.kind} task: leave {name!r} out of the searchers "
            "for it"
        )


def check_local_model(searcher: Searcher, model: LanguageModel | str | None) -> None:
    """Raise :class:`~promptsearch.errors.ConfigError` when *searcher* needs a local model
    (see :attr:`Searcher.needs_local_model`) and *model* (a loaded model or a model
    name) is a remote one, behind an OpenAI-compatible server."""
    from promptsearch.models.remote import REMOTE_PREFIX

    name = model if isinstance(model, str) else getattr(model, "name", None)
    remote = getattr(model, "source", None) == "remote" or (
        isinstance(name, str) and name.strip().startswith(REMOTE_PREFIX)
    )
    if remote and searcher._local_model_required():
        shown = str(name).strip().split("#")[0]
        raise ConfigError(
            f"searcher {searcher.name!r} needs a local model (its weights, tokenizer and "
            f"gradients), but --model {shown!r} is a remote model behind a server; give "
            "--model a local model (a folder, a .gguf file, a hub id or the embedded model), "
            f"or leave {searcher.name!r} out of the searchers"
        )

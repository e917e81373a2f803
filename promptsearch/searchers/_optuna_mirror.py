"""Copies of trials in a persistent Optuna study, for optuna-dashboard and Optuna's plots.

Two writers use it: the ``optuna`` searcher's own ``mirror_storage`` (its trials,
with their parameters), and the study's ``--optuna-storage``
(:mod:`promptsearch.study.optuna_mirror`: every trial of every searcher).

The mirror is write-only: the search never reads it back.  Parameters are pool
indices as integer ranges (a persistent storage refuses a categorical whose
choices change, and the pools grow); the texts they stand for, the prompt and
its content hash are user attributes.  A trial is keyed by its promptsearch study
and content hash (one trial per prompt in a study): a trial whose key the Optuna
study already holds is not written again, so a resumed study, which replays its
trials, adds no copies.  Both writers of one process share the keys of each
Optuna study they write to, so pointing both at the same study writes each trial
once.

Storage URLs: an Optuna RDB URL (``sqlite:///optuna.db``, ``postgresql://...``) or
``journal:PATH``, an Optuna journal file (``JournalStorage``; safe for many
processes on one machine).  Error messages and stored records show the URL without
its password (:func:`public_url`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.storages import BaseStorage
    from optuna.study import Study as OptunaStudy

__all__ = [
    "JOURNAL_PREFIX",
    "MirrorParams",
    "OptunaMirror",
    "check_optuna_url",
    "open_optuna_storage",
    "public_url",
    "quiet_optuna",
]

JOURNAL_PREFIX = "journal:"
"""``journal:PATH`` names an Optuna journal file instead of a database."""

_CREATE_ATTEMPTS = 5
_SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "sslpassword")

# keys already in each Optuna study, by (public URL, study name), shared by every
# mirror of this process; the lock guards the sets (workers may be threads)
_KEYS: dict[tuple[str, str], set[str]] = {}
_KEYS_LOCK = threading.RLock()


@dataclass(frozen=True)
class MirrorParams:
    """What a searcher with an Optuna search space tells the study's mirror about one
    of its candidates (:meth:`~promptsearch.searchers.base.Searcher.optuna_params`):
    its parameters, their distributions, and extra user attributes."""

    params: Mapping[str, Any]
    distributions: Mapping[str, BaseDistribution]
    attrs: Mapping[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's INFO log lines ("Trial 3 finished ...") and its warnings
    (experimental samplers, independent sampling) for the duration."""
    import optuna  # noqa: F401 - Optuna sets up its logger on import: before we lower it

    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def check_optuna_url(url: object, what: str = "--optuna-storage") -> str:
    """*url*, checked to be an Optuna storage URL or ``journal:PATH``."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(
            f"{what} must be an Optuna storage URL such as sqlite:///optuna.db or "
            f"journal:optuna.log; got {url!r}"
        )
    url = url.strip()
    if url.startswith(JOURNAL_PREFIX):
        if not url[len(JOURNAL_PREFIX) :].strip():
            raise ConfigError(f"{what}: journal: needs a file path, e.g. journal:optuna.log")
        return url
    if "://" not in url:
        raise ConfigError(
            f"{what} must be an Optuna storage URL such as sqlite:///optuna.db, "
            f"postgresql://user@host/db or journal:optuna.log; got {public_url(url)!r}"
        )
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{what}: cannot parse {public_url(url)!r}; write it as sqlite:///optuna.db, "
            "postgresql://user@host/db or journal:optuna.log"
        ) from None
    return url


def public_url(url: str) -> str:
    """*url* without its password (in the netloc or the query string): safe to store
    and show.  A PostgreSQL password then comes from ``PGPASSWORD`` or ``~/.pgpass``."""
    if url.startswith(JOURNAL_PREFIX):
        return url
    if "://" not in url:  # not a URL: whatever stands before an @ may be a password
        return f"***@{url.rpartition('@')[2]}" if "@" in url else url
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        head, _, rest = url.partition("://")
        return f"{head}://{rest.rpartition('@')[2]}" if "@" in rest else url
    query = {k: v for k, v in parsed.query.items() if k.lower() not in _SECRET_QUERY_KEYS}
    stripped = URL.create(
        parsed.drivername,
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=query,
    )
    return stripped.render_as_string(hide_password=False)


def open_optuna_storage(url: str) -> BaseStorage:
    """The Optuna storage at *url* (``journal:PATH`` or an RDB URL), opened: an
    unreachable one raises here (an RDB storage connects and creates its tables)."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX) :]).expanduser()
        return JournalStorage(JournalFileBackend(str(path)))
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    attempt = 0
    while True:
        try:
            return RDBStorage(url)
        except (IntegrityError, ProgrammingError):
            # processes that open a new database at once race to create Optuna's
            # tables and types; the loser finds them made on the next attempt
            attempt += 1
            if attempt >= _CREATE_ATTEMPTS:
                raise
            time.sleep(0.1 * attempt)


def _key(attrs: Mapping[str, Any]) -> str:
    return f"{attrs.get('promptsearch_study', '')}\x00{attrs.get('content_hash')}"


class OptunaMirror:
    """Write trials to the Optuna study *study_name* in the storage at *url*; *attrs*
    become the study's user attributes; *owner* starts the error messages."""

    def __init__(
        self,
        url: str,
        study_name: str,
        attrs: Mapping[str, Any],
        owner: str = "OptunaSearcher",
    ) -> None:
        self.url = url
        self.study_name = study_name
        self.attrs = dict(attrs)
        self.owner = owner
        self._study: OptunaStudy | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_study"] = None  # a live database handle; reopened on the next write
        return state

    @property
    def _keys(self) -> set[str]:
        with _KEYS_LOCK:
            return _KEYS.setdefault((public_url(self.url), self.study_name), set())

    def _where(self) -> str:
        return f"the Optuna mirror storage {public_url(self.url)!r} (study {self.study_name!r})"

    def open(self) -> OptunaStudy:
        """The mirror study, created if it does not exist yet."""
        if self._study is not None:
            return self._study
        import optuna

        try:
            with quiet_optuna():
                study = optuna.create_study(
                    storage=open_optuna_storage(self.url),
                    study_name=self.study_name,
                    direction="maximize",
                    load_if_exists=True,
                )
                if study.direction != optuna.study.StudyDirection.MAXIMIZE:
                    raise ConfigError(
                        "it exists with direction minimize; promptsearch maximizes: "
                        "name another Optuna study"
                    )
                for key, value in self.attrs.items():
                    study.set_user_attr(key, value)
                trials = study.get_trials(deepcopy=False)
        except Exception as error:  # sqlalchemy, optuna and driver errors alike
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise StorageError(
                f"{self.owner}: cannot open {self._where()}: {type(error).__name__}: {reason}"
            ) from error
        keys = {_key(t.user_attrs) for t in trials}
        with _KEYS_LOCK:
            self._keys.update(keys)
        self._study = study
        return study

    def has(self, attrs: Mapping[str, Any]) -> bool:
        """Whether the Optuna study holds the trial of *attrs*."""
        self.open()
        if "promptsearch_study" in self.attrs:
            attrs = {"promptsearch_study": self.attrs["promptsearch_study"], **attrs}
        with _KEYS_LOCK:
            return _key(attrs) in self._keys

    def add(
        self,
        *,
        params: Mapping[str, Any],
        distributions: Mapping[str, BaseDistribution],
        state: str,
        value: float | None,
        attrs: Mapping[str, Any],
        intermediate: Mapping[int, float] | None = None,
    ) -> bool:
        """Write one finished trial (*state* is complete, fail or pruned) unless the
        study holds it already; *intermediate* values by step (racing: dev examples
        of each rung).  True if it was written."""
        if "promptsearch_study" in self.attrs:
            attrs = {"promptsearch_study": self.attrs["promptsearch_study"], **attrs}
        key = _key(attrs)
        study = self.open()
        with _KEYS_LOCK:
            if key in self._keys:
                return False
            self._keys.add(key)  # claimed now: a second writer of this process skips it
        from optuna.trial import TrialState, create_trial

        steps = dict(intermediate or {})
        if state == "complete" and value is not None:
            trial = create_trial(
                state=TrialState.COMPLETE,
                value=value,
                params=dict(params),
                distributions=dict(distributions),
                user_attrs=dict(attrs),
                intermediate_values=steps or None,
            )
        else:
            pruned = state == "pruned"
            if pruned and not steps and value is not None:
                steps = {0: value}
            trial = create_trial(
                state=TrialState.PRUNED if pruned else TrialState.FAIL,
                params=dict(params),
                distributions=dict(distributions),
                user_attrs=dict(attrs),
                intermediate_values=steps if pruned and steps else None,
            )
        try:
            with quiet_optuna():
                study.add_trial(trial)
        except Exception as error:
            with _KEYS_LOCK:
                self._keys.discard(key)
            raise StorageError(
                f"{self.owner}: cannot write to {self._where()}: {type(error).__name__}: {error}"
            ) from error
        return True

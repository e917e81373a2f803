"""Copies of a searcher's trials in a persistent Optuna storage, for optuna-dashboard.

The mirror is write-only: the search never reads it back.  Parameters are pool
indices as integer ranges (a persistent storage refuses a categorical whose
choices change, and the pools grow); the texts they stand for, the prompt and
its content hash are user attributes.  A trial whose content hash the mirror
already holds is not written again, so a resumed study, which replays its
trials, adds no copies.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from promptsearch.errors import StorageError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study as OptunaStudy

__all__ = ["OptunaMirror", "quiet_optuna"]


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


class OptunaMirror:
    """Write trials to the Optuna study *study_name* in the storage at *url*."""

    def __init__(self, url: str, study_name: str, attrs: Mapping[str, Any]) -> None:
        self.url = url
        self.study_name = study_name
        self.attrs = dict(attrs)
        self._study: OptunaStudy | None = None
        self._hashes: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_study"] = None  # a live database handle; reopened on the next write
        return state

    def open(self) -> OptunaStudy:
        """The mirror study, created if it does not exist yet."""
        if self._study is not None:
            return self._study
        import optuna

        try:
            with quiet_optuna():
                study = optuna.create_study(
                    storage=self.url,
                    study_name=self.study_name,
                    direction="maximize",
                    load_if_exists=True,
                )
                for key, value in self.attrs.items():
                    study.set_user_attr(key, value)
                trials = study.get_trials(deepcopy=False)
        except Exception as error:  # sqlalchemy, optuna and driver errors alike
            raise StorageError(
                f"OptunaSearcher: cannot open the Optuna mirror storage {self.url!r} "
                f"(study {self.study_name!r}): {type(error).__name__}: {error}"
            ) from error
        self._hashes = {str(t.user_attrs.get("content_hash")) for t in trials}
        self._study = study
        return study

    def add(
        self,
        *,
        params: Mapping[str, int],
        distributions: Mapping[str, BaseDistribution],
        state: str,
        value: float | None,
        attrs: Mapping[str, Any],
    ) -> None:
        """Write one finished trial (*state* is complete, fail or pruned)."""
        key = str(attrs.get("content_hash"))
        study = self.open()
        if key in self._hashes:
            return
        from optuna.trial import TrialState, create_trial

        if state == "complete" and value is not None:
            trial = create_trial(
                state=TrialState.COMPLETE,
                value=value,
                params=dict(params),
                distributions=dict(distributions),
                user_attrs=dict(attrs),
            )
        else:
            pruned = state == "pruned"
            trial = create_trial(
                state=TrialState.PRUNED if pruned else TrialState.FAIL,
                params=dict(params),
                distributions=dict(distributions),
                user_attrs=dict(attrs),
                intermediate_values={0: value} if pruned and value is not None else None,
            )
        try:
            with quiet_optuna():
                study.add_trial(trial)
        except Exception as error:
            raise StorageError(
                f"OptunaSearcher: cannot write to the Optuna mirror storage {self.url!r} "
                f"(study {self.study_name!r}): {type(error).__name__}: {error}"
            ) from error
        self._hashes.add(key)

"""What a finished (or stopped) study hands back: its best prompt and leaderboard."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.prompt import Prompt
from promptsearch.study.ensemble import PromptEnsemble, stored_vote

if TYPE_CHECKING:
    from promptsearch.storage import LeaderboardRow, Storage

__all__ = ["BestPrompt", "StudyResult"]


@dataclass(frozen=True)
class BestPrompt:
    """The prompt a study hands back.

    Without selection, the top of the leaderboard.  With selection (see
    :mod:`promptsearch.study.selection`), the stored pick: ``prompt`` may then be a
    :class:`~promptsearch.study.ensemble.PromptEnsemble`; ``score`` is its score on the
    search part of dev (what the leaderboard shows) and ``confirm_score`` its score on
    the held-back part, the estimate to expect on new data; ``replaced_seed`` says
    whether it beat the best seed prompt with evidence (False: it *is* that seed).
    """

    prompt: Prompt | PromptEnsemble
    score: float
    content_hash: str
    n_examples: int
    searcher: str
    confirm_score: float | None = None
    replaced_seed: bool | None = None


class StudyResult:
    """What :meth:`Study.run` returns: the best prompt and the leaderboard."""

    def __init__(self, name: str, storage: Storage, stopped: bool = False) -> None:
        self.name = name
        self.storage = storage
        self.stopped = stopped

    @property
    def selection(self) -> dict[str, Any] | None:
        """The stored final pick (see :mod:`promptsearch.study.selection`), or ``None``."""
        study = self.storage.get_study(self.name)
        return None if study is None else study.selection

    @property
    def best(self) -> BestPrompt | None:
        picked = self.selection
        if picked:
            return _picked(picked, self.storage, self.name)
        rows = self.storage.leaderboard(self.name, top=1)
        if not rows:
            return None
        row = rows[0]
        return BestPrompt(
            prompt=Prompt.from_dict(row.body),
            score=row.dev_score,
            content_hash=row.content_hash,
            n_examples=row.n_examples,
            searcher=row.searcher,
        )

    def leaderboard(
        self, top: int | None = None, searcher: str | None = None, include_pruned: bool = False
    ) -> list[LeaderboardRow]:
        """Rows of the leaderboard, best first; with *include_pruned*, the trials racing
        stopped early follow the complete ones (``row.state == "pruned"``)."""
        return self.storage.leaderboard(
            self.name, top=top, searcher=searcher, include_pruned=include_pruned
        )

    def to_dataframe(self, top: int | None = None) -> Any:
        """The leaderboard as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ConfigError("to_dataframe() needs pandas: pip install pandas") from None
        return pd.DataFrame([asdict(row) for row in self.leaderboard(top=top)])

    def __repr__(self) -> str:
        best = self.best
        score = "none" if best is None else f"{best.score:.4f}"
        return f"StudyResult(name={self.name!r}, best_score={score})"


def _picked(record: dict[str, Any], storage: Storage, study: str) -> BestPrompt:
    """The :class:`BestPrompt` of a stored selection record."""
    key = record["pick"]
    row = next(r for r in record["candidates"] if r["key"] == key)
    prompt: Prompt | PromptEnsemble
    voted = stored_vote(record)
    if voted is not None:
        prompt = PromptEnsemble.from_dict(voted["body"])
        searcher = "ensemble" if record["pick_kind"] == "ensemble" else "seed, balanced"
    else:
        prompt = Prompt.from_dict(record["prompts"][key])
        trial = storage.get_trial(study, key)
        searcher = trial.searcher if trial is not None else "seed"
    return BestPrompt(
        prompt=prompt,
        score=float(row["search_score"]),
        content_hash=key,
        n_examples=int(record["n_search"]),
        searcher=searcher,
        confirm_score=float(row["confirm_score"]),
        replaced_seed=bool(record["replaced_incumbent"]),
    )

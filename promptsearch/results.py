"""What a finished (or stopped) study hands back: its best prompt and leaderboard."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.prompt import Prompt

if TYPE_CHECKING:
    from promptsearch.storage import LeaderboardRow, Storage

__all__ = ["BestPrompt", "StudyResult"]


@dataclass(frozen=True)
class BestPrompt:
    """The top prompt of a study."""

    prompt: Prompt
    score: float
    content_hash: str
    n_examples: int
    searcher: str


class StudyResult:
    """What :meth:`Study.run` returns: the best prompt and the leaderboard."""

    def __init__(self, name: str, storage: Storage, stopped: bool = False) -> None:
        self.name = name
        self.storage = storage
        self.stopped = stopped

    @property
    def best(self) -> BestPrompt | None:
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

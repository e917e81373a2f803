"""Shared state of searchers that evolve the best prompts seen so far.

They start from the task's seed prompts (proposed first, as the initial
population), then derive children from parents drawn among the *top_k* scored
prompts, and never propose the same content hash twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from promptsearch.prompt import Prompt
from promptsearch.searchers.base import Candidate, Searcher, TrialResult

__all__ = ["PopulationSearcher"]


class PopulationSearcher(Searcher):
    """A searcher with a population: seed prompts first, then the *top_k* best as parents.

    Subclasses set ``self.top_k`` in ``__init__`` and call :meth:`_init_population`.
    """

    top_k: int

    def _init_population(self) -> None:
        self._scores: dict[str, tuple[float, Prompt]] = {}
        self._seen: set[str] = set()
        self._seed_queue: list[Prompt] | None = None

    def _take_seeds(self, n: int) -> list[Candidate]:
        """Up to *n* seed prompts not proposed yet (empty once all were proposed)."""
        if self._seed_queue is None:
            self._seed_queue = list(self.ctx.task.seed_prompts)
        batch, self._seed_queue = self._seed_queue[:n], self._seed_queue[n:]
        self._seen.update(p.content_hash for p in batch)
        return [Candidate(prompt=p, operation="seed") for p in batch]

    def _top_parents(self) -> list[tuple[str, Prompt]]:
        """(content hash, prompt) of the *top_k* best scored prompts, best first."""
        ranked = sorted(self._scores.items(), key=lambda item: (-item[1][0], item[0]))
        return [(h, p) for h, (_, p) in ranked[: self.top_k]]

    def observe(self, results: Sequence[TrialResult]) -> None:
        for result in results:
            self._seen.add(result.content_hash)
            if result.score is not None:
                self._scores[result.content_hash] = (result.score, result.prompt)

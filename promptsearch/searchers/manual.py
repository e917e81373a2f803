"""The ``manual`` searcher: the task's seed prompts (and any given), as baselines."""

from __future__ import annotations

from collections.abc import Sequence

from promptsearch.errors import ConfigError
from promptsearch.prompt import Prompt
from promptsearch.searchers.base import Candidate, Searcher

__all__ = ["ManualSearcher"]


class ManualSearcher(Searcher):
    """Propose the task's seed prompts, then the extra *prompts* given, once each.

    Parameters
    ----------
    prompts:
        Extra prompts (``Prompt`` objects or template strings) to try after the
        task's seed prompts.
    include_seed_prompts:
        Whether to propose the task's own seed prompts.
    """

    name = "manual"
    task_kinds = ("classification", "generation")

    def __init__(
        self, prompts: Sequence[Prompt | str] = (), include_seed_prompts: bool = True
    ) -> None:
        if isinstance(prompts, (str, Prompt)):
            raise ConfigError(
                "ManualSearcher: prompts must be a list of prompts or templates, not a single "
                f"one; got {prompts!r} (wrap it in a list)"
            )
        self.prompts = tuple(prompts)
        self.include_seed_prompts = bool(include_seed_prompts)
        self._queue: list[Prompt] | None = None
        for prompt in self.prompts:
            if not isinstance(prompt, (Prompt, str)):
                raise ConfigError(
                    f"ManualSearcher: each prompt must be a Prompt or a template string; "
                    f"got {prompt!r}"
                )
            if isinstance(prompt, str):
                Prompt(template=prompt)  # validates the template now

    def _pending(self) -> list[Prompt]:
        if self._queue is None:
            seeds = list(self.ctx.task.seed_prompts) if self.include_seed_prompts else []
            extra = [p if isinstance(p, Prompt) else Prompt(template=p) for p in self.prompts]
            self._queue = seeds + extra
        return self._queue

    def propose(self, n: int) -> list[Candidate]:
        queue = self._pending()
        batch, self._queue = queue[: max(n, 0)], queue[max(n, 0) :]
        return [Candidate(prompt=p, operation="seed") for p in batch]

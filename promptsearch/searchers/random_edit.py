"""The ``random-edit`` searcher: word-level edits of the best prompts so far.

A simple local-search baseline in the spirit of edit-based instruction search
(GrIPS, Prasad et al. 2022): pick a parent among the top-scoring prompts, apply a
random word-level edit (delete, swap, add or replace a word in the instruction or
the template's literal text, or take another seed prompt's verbalizer), propose
the child.  Slots such as ``{sentence}`` and ``{answer}`` are never edited.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from promptsearch.errors import ConfigError, TemplateError
from promptsearch.prompt import Prompt
from promptsearch.searchers._population import PopulationSearcher
from promptsearch.searchers.base import Candidate
from promptsearch.validation import check_int

__all__ = ["OPERATIONS", "RandomEditSearcher"]

OPERATIONS = ("delete", "swap", "add", "replace", "verbalizer")
_FILLER_WORDS = ("the", "is", "was", "this", "it", "so", "overall", "answer", "text", "really")
_SPACE = re.compile(r"(\s+)")


def _words(text: str) -> list[str]:
    return [t for t in _SPACE.split(text) if t]


def _editable(tokens: list[str]) -> list[int]:
    return [i for i, t in enumerate(tokens) if not t.isspace() and "{" not in t and "}" not in t]


class RandomEditSearcher(PopulationSearcher):
    """Random word-level edits of the best prompts observed so far.

    Parameters
    ----------
    top_k:
        Parents are drawn uniformly from the *top_k* best prompts observed.
    edits_per_candidate:
        How many edits are chained to make one candidate.
    operations:
        Which edit operations to use, a subset of ``OPERATIONS``.
    max_attempts:
        Tries per candidate before giving up on finding an unseen edit.
    """

    name = "random-edit"
    task_kinds = ("classification", "generation")

    def __init__(
        self,
        top_k: int = 4,
        edits_per_candidate: int = 1,
        operations: Sequence[str] = OPERATIONS,
        max_attempts: int = 20,
    ) -> None:
        self.top_k = check_int(top_k, "top_k", minimum=1, owner="RandomEditSearcher")
        self.edits_per_candidate = check_int(
            edits_per_candidate,
            "edits_per_candidate",
            minimum=1,
            maximum=10,
            owner="RandomEditSearcher",
        )
        if isinstance(operations, str):
            operations = [o.strip() for o in operations.split("+") if o.strip()]
        unknown = [o for o in operations if o not in OPERATIONS]
        if unknown or not operations:
            raise ConfigError(
                f"RandomEditSearcher: operations must be a non-empty subset of {list(OPERATIONS)}; "
                f"got {list(operations)!r}"
            )
        self.operations = tuple(operations)
        self.max_attempts = check_int(
            max_attempts, "max_attempts", minimum=1, owner="RandomEditSearcher"
        )
        self._init_population()

    # -- helpers -------------------------------------------------------------------------

    def _pool(self) -> list[str]:
        words: list[str] = []
        for prompt in self.ctx.task.seed_prompts:
            for text in (prompt.instruction, prompt.template):
                words.extend(_words(text)[i] for i in _editable(_words(text)))
        words.extend(_FILLER_WORDS)
        return sorted(set(words))

    def _edit_text(self, text: str, operation: str) -> str | None:
        rng = self.ctx.rng
        tokens = _words(text)
        editable = _editable(tokens)
        if operation == "delete" and editable:
            index = rng.choice(editable)
            del tokens[index]
            if index < len(tokens) and tokens[index].isspace():
                del tokens[index]
            elif index > 0 and tokens[index - 1].isspace():
                del tokens[index - 1]
        elif operation == "swap" and len(editable) >= 2:
            i, j = rng.sample(editable, 2)
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif operation == "add":
            # insert a word at a word boundary: before a word that starts the text or
            # follows whitespace, or at the very end
            starts = [
                i
                for i, t in enumerate(tokens)
                if not t.isspace() and (i == 0 or tokens[i - 1].isspace())
            ]
            position = rng.choice([*starts, len(tokens)])
            word = rng.choice(self._pool())
            tokens[position:position] = [word, " "] if position < len(tokens) else [" ", word]
        elif operation == "replace" and editable:
            tokens[rng.choice(editable)] = rng.choice(self._pool())
        else:
            return None
        return "".join(tokens)

    def _edit(self, prompt: Prompt) -> tuple[Prompt, str] | None:
        rng = self.ctx.rng
        operation = rng.choice(self.operations)
        if operation == "verbalizer":
            others = [
                p.verbalizer
                for p in self.ctx.task.seed_prompts
                if p.verbalizer is not None and p.verbalizer != prompt.verbalizer
            ]
            if not others:
                return None
            return replace(prompt, verbalizer=rng.choice(others)), operation
        fields = ["template"] + (["instruction"] if prompt.instruction.strip() else [])
        where = rng.choice(fields)
        edited = self._edit_text(getattr(prompt, where), operation)
        if edited is None:
            return None
        try:
            if where == "template":
                return replace(prompt, template=edited), f"{operation}:{where}"
            return replace(prompt, instruction=edited), f"{operation}:{where}"
        except TemplateError:
            return None

    def _parents(self) -> list[tuple[str, Prompt]]:
        return self._top_parents()

    # -- interface ------------------------------------------------------------------------

    def propose(self, n: int) -> list[Candidate]:
        if n <= 0:
            return []
        seeds = self._take_seeds(n)  # the seed prompts first, as the initial population
        if seeds:
            return seeds
        parents = self._parents()
        if not parents:
            return []
        out: list[Candidate] = []
        for _ in range(n):
            for _attempt in range(self.max_attempts):
                parent_hash, child = self.ctx.rng.choice(parents)
                operations = []
                for _edit in range(self.edits_per_candidate):
                    edited = self._edit(child)
                    if edited is not None:
                        child, operation = edited
                        operations.append(operation)
                if not operations:
                    continue
                key = child.content_hash
                if key in self._seen:
                    continue
                self._seen.add(key)
                out.append(Candidate(child, operation="+".join(operations), parent=parent_hash))
                break
        return out

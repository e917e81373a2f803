"""Corpus reading and template mining for the ``mining`` searcher (pure Python).

After LPAQA (Jiang et al. 2020, "How Can We Know What Language Models Know?"):

* :func:`read_corpus` reads text files, folders of ``*.txt`` / ``*.jsonl`` files
  (``"text"`` field) or ``datasets`` corpora and :func:`split_sentences` cuts
  the text into sentences.
* :class:`SentenceIndex` maps every lower-cased word token to the sentences
  holding it, so finding the sentences that contain both sides of a pair is a
  posting-list intersection, not a scan of the corpus.
* :func:`mine_middle` finds sentences holding an input *x* and an answer *y*
  (case-insensitive, on token boundaries) and keeps the words between them
  (``x ... y``, or ``y ... x`` for the reversed order), optionally with the
  words from the sentence start to *x* (``The capital of x is y``).
* :func:`mine_context` finds sentences holding a label word and keeps the words
  of its clause right before it (``... the movie was great``).
* :func:`select_patterns` ranks the patterns by label coverage then support
  (distinct pairs or sentences) and applies the count and diversity limits.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptsearch.errors import ConfigError, DataError

__all__ = [
    "HF_PREFIX",
    "Pair",
    "Pattern",
    "SentenceIndex",
    "jaccard",
    "mine_context",
    "mine_middle",
    "read_corpus",
    "select_patterns",
    "split_sentences",
    "tokenize",
]

HF_PREFIX = "hf:"
"""Corpus strings starting with this name a ``datasets`` corpus: ``hf:NAME[:CONFIG]``."""

KINDS = ("middle", "reversed", "context")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[^a-z\s])")
_CLAUSE_BREAK = frozenset('.,;:!?()[]{}"“”')
_SPACE = re.compile(r"\s+")

Token = tuple[str, int, int]  # lower-cased text, start offset, end offset


def tokenize(text: str) -> list[Token]:
    """Word and punctuation tokens of *text*, lower-cased, with character offsets."""
    return [(m.group().lower(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _is_word(token: str) -> bool:
    return token[:1].isalnum() or token[:1] == "_"


def _starts_word(text: str, token: Token) -> bool:
    before = text[token[1] - 1] if token[1] > 0 else " "
    return _is_word(token[0]) and not before.isalnum() and before not in "'’-_"


def _n_words(tokens: Sequence[Token]) -> int:
    return sum(1 for t in tokens if _is_word(t[0]))


def _normal(text: str) -> str:
    return _SPACE.sub(" ", text)


# -- reading ------------------------------------------------------------------------------


def split_sentences(texts: Iterable[str]) -> list[str]:
    """Sentences of *texts*: every non-blank line, cut after ``.``/``!``/``?`` + space."""
    out: list[str] = []
    for text in texts:
        for line in text.splitlines():
            for piece in _SENTENCE_END.split(line):
                piece = _normal(piece).strip()
                if piece and any(ch.isalnum() for ch in piece):
                    out.append(piece)
    return out


def _read_file(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"corpus file {path} cannot be read: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"corpus file {path} is not UTF-8 text (byte {error.start}); "
            "give plain-text .txt files or JSON lines with a 'text' field"
        ) from None
    if path.suffix.lower() != ".jsonl":
        return [text]
    texts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"corpus file {path}, line {number}: not JSON ({error.msg})") from None
        value = record.get("text") if isinstance(record, dict) else None
        if not isinstance(value, str):
            raise DataError(
                f"corpus file {path}, line {number}: expected an object with a string 'text' "
                f"field; got {line[:80]!r}"
            )
        texts.append(value)
    return texts


def _read_dataset(source: Any, where: str) -> list[str]:
    columns = list(getattr(source, "column_names", None) or [])
    if "text" not in columns:
        raise DataError(
            f"corpus {where}: a datasets corpus needs a 'text' column; it has {columns}"
        )
    return [t for t in source["text"] if isinstance(t, str)]


def _load_hf(spec: str) -> list[str]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"corpus {spec!r} names a Hugging Face dataset, which needs the 'datasets' "
            "library: pip install datasets (or give a text file or folder)"
        ) from None
    name, _, config = spec[len(HF_PREFIX) :].partition(":")
    try:
        data = datasets.load_dataset(name, config or None, split="train")
    except Exception as error:  # the library raises many kinds; report them all the same way
        raise DataError(f"corpus {spec!r}: datasets could not load it: {error}") from None
    return _read_dataset(data, repr(spec))


def read_corpus(source: str | Path | Sequence[str] | Any) -> list[str]:
    """Sentences of a corpus: a text or ``.jsonl`` file, a folder of them (recursive),
    ``hf:NAME[:CONFIG]`` (the ``datasets`` library), a ``datasets`` object with a
    ``text`` column, or a list of texts.  Raises :class:`DataError` when the corpus
    cannot be read or holds no sentence."""
    where = repr(str(source)) if isinstance(source, (str, Path)) else "given in memory"
    if isinstance(source, str) and source.startswith(HF_PREFIX):
        texts = _load_hf(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".txt", ".jsonl")
            )
            if not files:
                raise DataError(f"corpus folder {path} holds no .txt or .jsonl files")
            texts = [t for p in files for t in _read_file(p)]
        elif path.exists():
            texts = _read_file(path)
        else:
            raise DataError(f"corpus {where} does not exist; give a text file or a folder")
    elif hasattr(source, "column_names"):
        texts = _read_dataset(source, where)
    else:
        texts = [t for t in source if isinstance(t, str)]
    sentences = split_sentences(texts)
    if not sentences:
        raise DataError(
            f"corpus {where} is empty: it holds no sentence with a letter or digit; "
            "give a corpus with text in it"
        )
    return sentences


# -- index ------------------------------------------------------------------------------


class SentenceIndex:
    """Sentences with an inverted index from lower-cased word tokens to sentence ids."""

    def __init__(self, sentences: Sequence[str]) -> None:
        self.sentences = list(sentences)
        postings: dict[str, list[int]] = defaultdict(list)
        for number, sentence in enumerate(self.sentences):
            for token in set(_TOKEN.findall(sentence.lower())):
                postings[token].append(number)
        self.postings = dict(postings)

    def containing(self, *phrases: Sequence[Token]) -> list[int]:
        """Ids of sentences that hold every token of every phrase (a superset of matches)."""
        wanted = {t[0] for phrase in phrases for t in phrase}
        lists = sorted((self.postings.get(t, []) for t in wanted), key=len)
        if not lists or not lists[0]:
            return []
        found = set(lists[0])
        for other in lists[1:]:
            found.intersection_update(other)
            if not found:
                return []
        return sorted(found)


def _spans(tokens: Sequence[Token], phrase: Sequence[Token]) -> list[tuple[int, int]]:
    """Token index spans [start, end) where *phrase* occurs in *tokens*."""
    words = [t[0] for t in phrase]
    size = len(words)
    return [
        (i, i + size)
        for i in range(len(tokens) - size + 1)
        if tokens[i][0] == words[0] and [t[0] for t in tokens[i : i + size]] == words
    ]


# -- patterns ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One (input, answer) pair to mine: *answers* are alternative surface forms.

    ``group`` says which verbalizer the answers come from (0 for generation tasks)
    and ``label`` which label they stand for.
    """

    id: int
    x: str
    answers: tuple[str, ...]
    group: int = 0
    label: str = ""


@dataclass
class Pattern:
    """A mined pattern: ``prefix x middle y`` (middle), ``y middle x`` (reversed) or
    ``x middle y`` with *middle* the clause before a label word (context)."""

    kind: str
    group: int
    middle: str
    prefix: str = ""
    support: set[int] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    surfaces: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return len(self.support)

    def text(self) -> tuple[str, str]:
        """The most frequent surface form (prefix, middle); ties go to the smallest."""
        best = max(self.surfaces.values())
        return min(s for s, c in self.surfaces.items() if c == best)

    def words(self) -> frozenset[str]:
        return frozenset(t for t in _TOKEN.findall((self.prefix + " " + self.middle).lower()))


Patterns = dict[tuple[str, int, str, str], Pattern]


def _add(
    patterns: Patterns, kind: str, group: int, prefix: str, middle: str, key: int, label: str
) -> None:
    prefix, middle = _normal(prefix), _normal(middle)
    lookup = (kind, group, prefix.lower(), middle.lower())
    pattern = patterns.get(lookup)
    if pattern is None:
        pattern = patterns[lookup] = Pattern(kind, group, middle.lower(), prefix.lower())
    pattern.support.add(key)
    pattern.labels.add(label)
    pattern.surfaces[(prefix, middle)] += 1


def mine_middle(
    index: SentenceIndex,
    pairs: Sequence[Pair],
    *,
    min_words: int,
    max_words: int,
    max_prefix_words: int = 0,
    reversed_order: bool = False,
) -> Patterns:
    """Middle-word patterns of sentences holding both sides of a pair.

    The support of a pattern is the set of pair ids it was seen with.  Forward
    matches (``x ... y``) pair each occurrence of *x* with the nearest *y* after it;
    with ``max_prefix_words`` > 0 a second pattern keeps the 1..max words from the
    sentence start to *x*.  Reversed matches (``y ... x``) pair each *x* with the
    nearest *y* before it.
    """
    patterns: Patterns = {}
    for pair in pairs:
        x = tokenize(pair.x)
        if not x:
            continue
        for answer in pair.answers:
            y = tokenize(answer)
            if not y or [t[0] for t in y] == [t[0] for t in x]:
                continue
            for number in index.containing(x, y):
                sentence = index.sentences[number]
                tokens = tokenize(sentence)
                found = _middles(sentence, tokens, _spans(tokens, x), _spans(tokens, y))
                for kind, prefix, middle in found:
                    if kind == "reversed" and not reversed_order:
                        continue
                    if not min_words <= _n_words(tokenize(middle)) <= max_words:
                        continue
                    if prefix and not 1 <= _n_words(tokenize(prefix)) <= max_prefix_words:
                        continue
                    _add(patterns, kind, pair.group, prefix, middle, pair.id, pair.label)
    return patterns


def _middles(
    sentence: str,
    tokens: Sequence[Token],
    xs: Sequence[tuple[int, int]],
    ys: Sequence[tuple[int, int]],
) -> list[tuple[str, str, str]]:
    """(kind, prefix, middle) texts around each occurrence of x: the nearest y after it
    (with and without the sentence start before x), and the nearest y before it."""
    out = []
    for x_start, x_end in xs:
        after = [s for s in ys if s[0] >= x_end]
        if after:
            middle = sentence[tokens[x_end - 1][2] : tokens[after[0][0]][1]]
            out.append(("middle", "", middle))
            if x_start > 0:
                out.append(("middle", sentence[: tokens[x_start][1]], middle))
        before = [s for s in ys if s[1] <= x_start]
        if before:
            y_end = before[-1][1]
            out.append(("reversed", "", sentence[tokens[y_end - 1][2] : tokens[x_start][1]]))
    return out


def mine_context(
    index: SentenceIndex,
    words: Sequence[tuple[int, str, str]],
    *,
    min_words: int,
    max_words: int,
) -> Patterns:
    """Clause contexts right before label words: ``words`` holds (group, label, word).

    For each sentence holding a word, the tokens back to the previous clause break
    (punctuation or the sentence start), at most the last *max_words* words, form
    the pattern.  The support is the set of distinct sentences (by lower-cased text).
    """
    patterns: Patterns = {}
    seen_text: dict[str, int] = {}
    for group, label, word in words:
        phrase = tokenize(word)
        if not phrase:
            continue
        for number in index.containing(phrase):
            sentence = index.sentences[number]
            key = seen_text.setdefault(sentence.lower(), len(seen_text))
            tokens = tokenize(sentence)
            for start, _ in _spans(tokens, phrase):
                begin = start
                while begin > 0 and tokens[begin - 1][0] not in _CLAUSE_BREAK:
                    begin -= 1
                while _n_words(tokens[begin:start]) > max_words:
                    begin += 1
                while begin < start and not _starts_word(sentence, tokens[begin]):
                    begin += 1  # start on a whole word: not "s a" of "that's a"
                if not min_words <= _n_words(tokens[begin:start]) <= max_words:
                    continue
                if begin == start:  # no words before the label word (min_words == 0)
                    _add(patterns, "context", group, "", " ", key, label)
                    continue
                middle = " " + sentence[tokens[begin][1] : tokens[start][1]].rstrip() + " "
                _add(patterns, "context", group, "", middle, key, label)
    return patterns


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Token-set Jaccard similarity (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def select_patterns(
    patterns: Iterable[Pattern], *, min_count: int, max_templates: int, diversity: float
) -> list[Pattern]:
    """The best patterns, best first.

    Ranked by the number of labels whose words filled the answer slot (for
    classification; a slot seen with several labels can tell them apart), then by
    support, then by length (at equal support the longer pattern says more:
    ``The capital of x is y`` before ``x is y``), then kind and text.  Patterns seen fewer than
    *min_count* times are dropped, and one whose word-set Jaccard similarity to a
    chosen pattern of the same kind and group exceeds ``1 - diversity`` is skipped.
    """
    ranked = sorted(
        (p for p in patterns if p.count >= min_count),
        key=lambda p: (
            -len(p.labels),
            -p.count,
            -len(p.words()),
            KINDS.index(p.kind),
            p.group,
            p.text(),
        ),
    )
    chosen: list[Pattern] = []
    limit = 1.0 - diversity
    for pattern in ranked:
        if len(chosen) >= max_templates:
            break
        words = pattern.words()
        if diversity > 0 and any(
            c.kind == pattern.kind
            and c.group == pattern.group
            and jaccard(c.words(), words) > limit
            for c in chosen
        ):
            continue
        chosen.append(pattern)
    return chosen

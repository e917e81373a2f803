"""Plausible label words: the vocabulary words nearest to the words a task already has.

A label-word search over the whole vocabulary fits a few dozen train examples
with whatever tokens separate them, and on a small model those are often odd
(``Lebanon``/``Aaron`` for news topics, ``poorly``/``showcased`` for reviews).
:func:`nearby_columns` narrows the candidates to the words whose input
embeddings are closest (cosine) to some *anchor*: the label names and the label
words the prompts already use.  Antonyms lie close in such spaces ("negative"
and "positive" are each other's nearest words), so the nearby words of every
anchor form one shared set and the likelihood ratio decides which label a word
belongs to.

torch is imported inside the function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from promptsearch.errors import ConfigError
from promptsearch.validation import check_int

if TYPE_CHECKING:
    from promptsearch.models.base import LanguageModel
    from promptsearch.searchers._tokens.label_word_scores import VocabTable

__all__ = ["nearby_columns"]


def nearby_columns(
    model: LanguageModel, table: VocabTable, anchors: Sequence[str], count: int
) -> list[int]:
    """Positions in *table* of the *count* words nearest to each anchor, in table order.

    An anchor is encoded as a label word is (``table.space`` plus the word, the
    table's lead tokens dropped) and stands for the mean input embedding of its
    tokens, so multi-token names such as ``Sci/Tech`` count too.  Anchors without a
    letter (label names such as ``0`` and ``1``) are skipped; with none left the
    result is empty.
    """
    import torch

    count = check_int(count, "near_labels", minimum=1)
    embeddings = getattr(model.model, "get_input_embeddings", None)
    layer = embeddings() if callable(embeddings) else None
    weight = getattr(layer, "weight", None)
    if weight is None:
        raise ConfigError(
            f"model {model.name!r} exposes no input embeddings, so label words near the "
            "label names cannot be found; set near_labels=None (null in a searcher spec) or "
            "give candidate words"
        )
    lead = list(table.lead)
    vectors = []
    for anchor in dict.fromkeys(a.strip() for a in anchors if any(c.isalpha() for c in a)):
        ids = list(model.tokenizer(table.space + anchor, add_special_tokens=False)["input_ids"])
        if lead and ids[: len(lead)] == lead:
            ids = ids[len(lead) :]
        if ids:
            vectors.append(weight[ids].detach().float().mean(dim=0))
    if not vectors or not table.ids:
        return []
    with torch.no_grad():
        words = torch.nn.functional.normalize(weight[list(table.ids)].detach().float(), dim=1)
        targets = torch.nn.functional.normalize(torch.stack(vectors), dim=1).to(words.device)
        similarity = targets @ words.T  # (anchors, table words)
        top = torch.topk(similarity, min(count, words.shape[0]), dim=1).indices
    return sorted({int(k) for k in top.flatten().tolist()})

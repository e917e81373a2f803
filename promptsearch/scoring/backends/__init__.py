"""The scoring back-ends, one per model kind (causal, masked, seq2seq), the shared
pieces they all use (:mod:`~promptsearch.scoring.backends.base`), the causal
back-end's shared-prefix cache, the HTTP back-end of remote models (``remote.py``),
and :func:`make_backend`, which picks the back-end for a model (it sits here, above
the back-ends it builds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from promptsearch.models.base import LanguageModel
    from promptsearch.scoring.backends.base import Backend
    from promptsearch.scoring.batching import BatchSize

__all__ = ["make_backend"]


def make_backend(
    model: LanguageModel, batch_size: int | BatchSize, *, share_prefix: bool = True
) -> Backend:
    """The back-end for *model*'s kind.

    *batch_size*: rows per forward pass, or a :class:`~promptsearch.scoring.batching.BatchSize`
    (automatic sizes back off on out-of-memory).  *share_prefix*: causal LMs run the
    rows' common leading tokens once (see :mod:`promptsearch.scoring.backends.prefix_cache`).
    Remote models (``openai:`` specs) get the HTTP back-end whatever their kind.
    """
    from promptsearch.models.remote import is_remote

    if is_remote(model):
        from promptsearch.scoring.backends.remote import RemoteBackend

        return RemoteBackend(model)
    if model.kind == "masked":
        from promptsearch.scoring.backends.masked import MaskedBackend

        return MaskedBackend(model, batch_size)
    if model.kind == "seq2seq":
        from promptsearch.scoring.backends.seq2seq import Seq2SeqBackend

        return Seq2SeqBackend(model, batch_size)
    from promptsearch.scoring.backends.causal import CausalBackend

    return CausalBackend(model, batch_size, share_prefix=share_prefix)

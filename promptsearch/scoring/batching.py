"""Batches for the scoring back-ends: length-bucketed, of a fixed or automatic size.

Rows are sorted by length (longest first) and cut into batches, so each batch pads
to nearly the same width; callers write results by row index, so the original
order comes back whatever the batching.  The sort is stable, so equal lengths keep
their order and a run is reproducible.

``batch_size="auto"`` starts large (:data:`AUTO_START_ACCELERATOR` rows on a GPU,
:data:`AUTO_START_CPU` on a CPU, where bigger batches buy nothing) and halves the
size whenever a batch runs out of memory, retrying that batch; the size that
worked is kept for the rest of the run and for later calls.  A fixed size never
changes: running out of memory then is an error, as before.  The batch size never
changes results beyond floating-point rounding.

This module imports torch only inside the functions that need it.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence

from promptsearch.errors import ConfigError

__all__ = [
    "AUTO",
    "AUTO_START_ACCELERATOR",
    "AUTO_START_CPU",
    "BatchSize",
    "is_out_of_memory",
    "run_batches",
]

AUTO = "auto"
"""The ``batch_size`` value that asks for an automatic size."""

AUTO_START_ACCELERATOR = 256
"""First batch size tried by ``batch_size="auto"`` on a GPU (or other accelerator)."""

AUTO_START_CPU = 32
"""First batch size tried by ``batch_size="auto"`` on a CPU."""

_OOM_MESSAGES = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "failed to allocate",
)


class BatchSize:
    """The number of rows per forward pass: fixed, or automatic with back-off.

    ``BatchSize(16)`` is fixed.  ``BatchSize("auto", device_type="cuda")`` starts at
    :data:`AUTO_START_ACCELERATOR` and :meth:`shrink` halves it after an
    out-of-memory error.
    """

    def __init__(self, size: int | str, *, device_type: str = "cpu") -> None:
        if isinstance(size, str) and size.strip().lower() == AUTO:
            self.auto = True
            start = AUTO_START_CPU if device_type == "cpu" else AUTO_START_ACCELERATOR
            self.size = start
        elif isinstance(size, int) and not isinstance(size, bool) and size >= 1:
            self.auto = False
            self.size = size
        else:
            raise ConfigError(
                f"batch_size must be a positive integer (1 or more) or {AUTO!r}; got {size!r}"
            )
        self.shrinks = 0
        """How many times an out-of-memory error halved the size."""

    def shrink(self, rows: int) -> bool:
        """Halve an automatic size after a batch of *rows* ran out of memory.

        The new size is half the rows that failed (a last batch may hold fewer rows
        than the size).  ``False`` for a fixed size, or one already at a single row.
        """
        rows = min(rows, self.size)
        if not self.auto or rows <= 1:
            return False
        self.size = rows // 2
        self.shrinks += 1
        return True

    def __repr__(self) -> str:
        return f"BatchSize({AUTO!r}, now {self.size})" if self.auto else f"BatchSize({self.size})"


def is_out_of_memory(error: BaseException) -> bool:
    """Whether *error* says a device (GPU, MPS or CPU allocator) ran out of memory."""
    import torch

    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    if isinstance(error, RuntimeError):
        text = str(error).lower()
        return any(message in text for message in _OOM_MESSAGES)
    return False


def _release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_batches(lengths: Sequence[int], size: BatchSize, step: Callable[[list[int]], None]) -> None:
    """Call *step* on batches of row indices, longest rows first, until all are done.

    With an automatic *size*, a batch that runs out of memory is retried at half the
    size (down to one row); *step* must therefore write its results only once the
    forward pass is over, which the back-ends do.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    position = 0
    while position < len(order):
        batch = order[position : position + size.size]
        failed = False
        try:
            step(batch)
        except (RuntimeError, MemoryError) as error:
            if not is_out_of_memory(error) or not size.shrink(len(batch)):
                raise
            failed = True
        if failed:  # outside the handler, so the traceback's tensors can be freed
            _release_memory()
            continue
        position += len(batch)

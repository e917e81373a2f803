"""The heartbeat of a claimed trial: a thread that renews the claim while the worker
scores it, and notes when another worker has taken the trial over."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from promptsearch.errors import StorageError

if TYPE_CHECKING:
    from promptsearch.storage import Storage

__all__ = ["Heartbeat"]

logger = logging.getLogger(__name__)


class Heartbeat:
    """Renews a claimed trial's heartbeat from a thread while the worker scores it."""

    def __init__(self, storage: Storage, trial_id: int, worker: str, every: float) -> None:
        self._storage = storage
        self._trial_id = trial_id
        self._worker = worker
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}", daemon=True)
        self.lost = False

    def _run(self) -> None:
        warned = False
        while not self._stop.wait(self._every):
            try:
                if not self._storage.beat(self._trial_id, self._worker):
                    self.lost = True  # reclaimed by another worker (or finished)
                    return
            except StorageError as error:  # the next beat may get through
                if not warned:
                    logger.warning(
                        "heartbeat of trial %s failed, retrying: %s", self._trial_id, error
                    )
                    warned = True

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

"""The databases the commands open, closed when :func:`promptsearch.cli.main` ends."""

from __future__ import annotations

from typing import Any

__all__ = ["close_storages", "open_cli_storage"]

_OPENED: list[Any] = []


def open_cli_storage(url: str | None) -> Any:
    """:func:`promptsearch.storage.open_storage`, remembered for :func:`close_storages`."""
    from promptsearch.storage import open_storage

    storage = open_storage(url)
    _OPENED.append(storage)
    return storage


def close_storages() -> None:
    """Close the databases the commands opened (an SQLite file then has no ``-wal`` and
    ``-shm`` files left beside it, even when the command failed)."""
    while _OPENED:
        _OPENED.pop().close()

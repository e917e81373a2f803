"""Opening SQLite files read-only: URIs that ask for it, and files in a folder this
process may not write to (see :func:`read_only_url`)."""

from __future__ import annotations

import logging
import os
import re
import urllib.parse
from pathlib import Path

from sqlalchemy.engine import URL

from promptsearch.errors import StorageError

__all__ = ["is_read_only_uri", "read_only_url"]

logger = logging.getLogger(__name__)


def is_read_only_uri(url: URL) -> bool:
    """An SQLite URI the user opened read-only (``mode=ro`` or ``immutable=1``)."""
    if url.query.get("uri") != "true":
        return False
    text = f"{url.database or ''}&" + "&".join(f"{k}={v}" for k, v in url.query.items())
    return bool(re.search(r"[?&](mode=ro|immutable=1)\b", text))


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def read_only_url(url: URL, shown: str) -> URL | None:
    """For an existing SQLite file in a folder this process may not write to (a shared
    read-only archive, say): the URL that opens it read-only, so the commands that only
    read (leaderboard, studies, show, export, report) work: with ``mode=ro``, except for
    a WAL database without its ``-wal`` and ``-shm`` files, which SQLite can read only
    as ``immutable=1`` when it may not create them (no writer can be at work on it
    then: a writer would have made them).  None when the folder is writable or the
    file does not exist yet."""
    if url.query.get("uri") == "true" or url.database is None:
        return None
    path = Path(url.database)
    if not path.is_file() or _writable(path.parent):
        return None
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    uri = "file:" + urllib.parse.quote(str(path))
    if (wal.exists() and shm.exists()) or not _is_wal_file(path):
        query = {"mode": "ro", "uri": "true"}  # SQLite's own locks still apply
    elif wal.exists() and wal.stat().st_size > 0:
        raise StorageError(
            f"cannot open the trial database {shown}: its folder {path.parent} is read-only "
            f"and {wal.name} holds writes SQLite cannot read without {shm.name}; open it once "
            "where the folder is writable, or copy the files to one"
        )
    else:
        query = {"immutable": "1", "uri": "true"}
    logger.debug("opening %s read-only (%s): its folder is not writable", shown, query)
    return url.set(database=uri, query=query)


def _is_wal_file(path: Path) -> bool:
    """Whether the SQLite file's header marks it as a WAL database (bytes 18-19 are 2)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return False
    return header[18:20] == b"\x02\x02"

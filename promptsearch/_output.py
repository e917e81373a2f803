"""Writing an output file (``export --output``, ``report --output``) safely.

A regular file is written to a temporary file in the same folder and moved into
place with :func:`os.replace`, so a failed write (a full disk, say) leaves no half
file and never destroys the file that was there.  A special file that exists
(``/dev/stdout``, ``/dev/full``, a named pipe) is written directly.  Every failure
is one :class:`~promptsearch.errors.ConfigError` naming the option, the path and the
fix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from promptsearch.errors import ConfigError

__all__ = ["check_output_path", "write_output"]


def _fix(error: OSError) -> str:
    if error.errno == errno.ENOSPC or error.errno == errno.EDQUOT:
        return "free some disk space or write to another disk"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "choose a file in a folder you may write to"
    return "choose another path"


def _failed(option: str, path: Path, error: OSError) -> ConfigError:
    reason = error.strerror or type(error).__name__
    return ConfigError(f"{option} {path}: cannot write the file ({reason}); {_fix(error)}")


def check_output_path(
    path: str | Path, *, option: str = "--output", force: bool = True
) -> int | None:
    """Check that *path* can be written; return its ``st_mode`` (None when it does not
    exist yet).  With ``force=False`` an existing regular file is refused (the message
    names ``--force``); a folder, or a path whose folder is missing, always is."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{option} {target}: is a folder, not a file; give a file name inside it")
    if not target.parent.is_dir():
        raise ConfigError(
            f"{option} {target}: the folder {target.parent} does not exist; "
            "create it first or choose another path"
        )
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as error:
        raise _failed(option, target, error) from None
    if stat.S_ISREG(mode) and not force:
        raise ConfigError(
            f"{option} {target}: the file exists; add --force to overwrite it, or choose "
            "another name"
        )
    return mode


def write_output(
    path: str | Path, text: str, *, option: str = "--output", force: bool = True
) -> Path:
    """Write *text* (UTF-8) to *path* after :func:`check_output_path`; return the path."""
    target = Path(path)
    mode = check_output_path(target, option=option, force=force)
    data = text.encode("utf-8")
    if mode is not None and not stat.S_ISREG(mode):
        _write_special(target, data, option)
        return target
    temporary = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise _failed(option, target, error) from None
    return target


def _write_special(target: Path, data: bytes, option: str) -> None:
    try:
        with open(target, "wb") as handle:
            handle.write(data)
            handle.flush()
    except OSError as error:
        raise _failed(option, target, error) from None

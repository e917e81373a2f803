"""Reading Hugging Face data sets for :mod:`promptsearch.tasks.sources`: from the hub
(or its cache) with ``load_dataset``, or from a folder ``save_to_disk`` wrote.  The
``datasets`` library is optional and imported here only."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from promptsearch.errors import ConfigError, DataError

__all__ = ["read", "require_datasets"]

_OFFLINE_VARIABLES = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in _OFFLINE_VARIABLES
    )


def require_datasets(what: str) -> Any:
    """The ``datasets`` module, or a ConfigError saying how to install it."""
    try:
        return importlib.import_module("datasets")
    except ImportError:
        raise ConfigError(
            f"{what} needs the Hugging Face 'datasets' library, which is not installed; "
            "install it with: pip install 'promptsearch[datasets]'"
        ) from None


def read(
    kind: str, location: str, config: str | None, revision: str | None = None
) -> tuple[Any, Any]:
    """(rows per split name, the data set object for its features) of an ``hf`` or
    ``hf-disk`` source; *revision*: the hub revision of an ``hf`` one.  Every failure is
    one line."""
    datasets = require_datasets(f"task hf:{location}" if kind == "hf" else f"task {location}")
    if kind == "hf-disk":
        folder = Path(location)
        if not folder.is_dir():
            raise DataError(f"{folder}: the saved data set's folder is not there; check the path")
        try:
            loaded = datasets.load_from_disk(str(folder))
        except Exception as error:  # the library raises many kinds; each becomes one line
            raise DataError(
                f"{folder}: not a data set saved with save_to_disk ({_first_line(error)}); "
                "give the folder Dataset.save_to_disk or DatasetDict.save_to_disk wrote"
            ) from None
        return loaded, loaded
    try:
        loaded = datasets.load_dataset(location, config, revision=revision)
    except Exception as error:  # offline, unknown name, missing config ...
        hint = (
            "HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set, so only data sets in the local cache "
            "load; load it once online, or save it with save_to_disk and use hf-disk:PATH"
            if _offline()
            else "check the name (and the configuration after a second ':', hf:NAME:CONFIG, "
            "and the revision after '@') and the network"
        )
        named = (
            f"hf:{location}"
            + (f":{config}" if config else "")
            + (f"@{revision}" if revision else "")
        )
        reason = _first_line(error)
        raise DataError(f"{named}: cannot load the data set ({reason}); {hint}") from None
    if not hasattr(loaded, "items") and not hasattr(loaded, "__iter__"):
        raise ConfigError(f"hf:{location}: load_dataset gave a {type(loaded).__name__}")
    return loaded, loaded

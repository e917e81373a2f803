"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    """The shared data folder: $PROMPTSEARCH_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("PROMPTSEARCH_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return None


@pytest.fixture
def shared_data() -> Path:
    """Path of the shared data sets; skips the test when they are absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared data folder (../shared/data or $PROMPTSEARCH_DATA) is absent")
    return path

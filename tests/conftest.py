"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptsearch.storage import Storage, open_storage
from promptsearch.storage.testing import BACKENDS, skip_reason, temporary_database

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


# -- storage backends (every storage test runs on each) ---------------------------------


@pytest.fixture(
    params=[
        pytest.param(backend, marks=[pytest.mark.postgres] if backend == "postgresql" else [])
        for backend in BACKENDS
    ]
)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each backend (PostgreSQL skipped without a server)."""
    reason = skip_reason(request.param)
    if reason is not None:
        pytest.skip(reason)
    with temporary_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def storage(storage_url: str) -> Iterator[Storage]:
    with open_storage(storage_url) as opened:
        assert isinstance(opened, Storage)
        yield opened

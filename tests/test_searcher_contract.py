"""Every registered searcher passes the searcher contract."""

from __future__ import annotations

import pytest

from promptsearch.searchers import available_searchers, get_searcher_class
from promptsearch.testing.searchers import SEARCHER_CHECKS, run_check


@pytest.mark.parametrize("check", SEARCHER_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", available_searchers())
def test_searcher_contract(name: str, check) -> None:
    cls = get_searcher_class(name)
    run_check(check, cls)

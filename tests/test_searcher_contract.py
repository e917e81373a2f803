"""Every registered searcher passes the searcher contract."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from promptsearch.searchers import available_searchers, get_searcher_class
from promptsearch.testing.searchers import SEARCHER_CHECKS, run_check

# Smaller settings for searchers whose defaults cost many scored sequences per round on
# CPU; the contract is about behaviour, not the settings.
CHEAP_PARAMS: dict[str, dict[str, Any]] = {
    "rl": {"prompts_per_step": 4, "examples_per_step": 4, "steps_per_round": 2},
}


@pytest.mark.parametrize("check", SEARCHER_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", available_searchers())
def test_searcher_contract(name: str, check) -> None:
    cls = get_searcher_class(name)
    run_check(check, functools.partial(cls, **CHEAP_PARAMS.get(name, {})))

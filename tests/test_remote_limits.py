"""What a remote model (an ``openai:`` spec) cannot do, refused up front: the
searchers that need the model itself (``autoprompt``; ``rl`` with the study's model as
its policy) get one ConfigError naming the searcher and ``--model`` when the study is
created, before any model loads or anything is stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_bad_inputs import FakeScorer, cli_error, kshot_dir, small_task

from promptsearch.api import search
from promptsearch.errors import ConfigError, ModelError
from promptsearch.searchers import make_searcher
from promptsearch.searchers.base import check_local_model
from promptsearch.storage import open_storage
from promptsearch.study import Study

# nothing listens on port 1: a spec that got as far as loading would fail to connect
REMOTE = "openai:http://127.0.0.1:1/v1#model=m"


@dataclass
class RemoteModel:
    name: str = REMOTE
    fingerprint: str = "r" * 64
    source: str = "remote"


@dataclass
class RemoteFakeScorer(FakeScorer):
    model: RemoteModel = field(default_factory=RemoteModel)  # type: ignore[assignment]


@pytest.mark.parametrize("spec", ["autoprompt", "rl"])
def test_token_level_searchers_refuse_a_remote_model_before_it_loads(
    spec: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        search(small_task(), model=REMOTE, searchers=[spec], storage=str(tmp_path / "s.db"))
    message = str(caught.value)
    assert message.startswith(f"searcher {spec!r} needs a local model")
    assert "--model 'openai:http://127.0.0.1:1/v1'" in message and "\n" not in message
    assert not (tmp_path / "s.db").exists()


def test_rl_with_its_own_policy_model_takes_a_remote_study_model(tmp_path: Path) -> None:
    searcher = make_searcher("rl:policy_model=smollm2-135m-instruct")
    check_local_model(searcher, REMOTE)  # accepted: the policy is local
    with pytest.raises(ModelError, match="cannot reach"):  # so it got as far as loading
        search(small_task(), model=REMOTE, searchers=[searcher], storage=str(tmp_path / "s.db"))


def test_other_searchers_and_local_models_pass(tmp_path: Path) -> None:
    for spec in ("manual", "random-edit", "optuna"):
        check_local_model(make_searcher(spec), REMOTE)
    check_local_model(make_searcher("autoprompt"), "smollm2-135m-instruct")
    check_local_model(make_searcher("autoprompt"), None)


def test_a_study_with_a_remote_scorer_refuses_autoprompt(tmp_path: Path) -> None:
    with open_storage(str(tmp_path / "s.db")) as storage:
        with pytest.raises(ConfigError, match="searcher 'autoprompt' needs a local model"):
            Study("s", small_task(), RemoteFakeScorer(), ["manual", "autoprompt"], 4, storage)
        assert storage.list_studies() == []


def test_the_cli_says_it_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = kshot_dir(tmp_path / "data")
    db = tmp_path / "runs.db"
    args = ["run", "--task", "sst2", "--data-dir", str(data), "--storage", str(db)]
    err = cli_error([*args, "--model", REMOTE, "--searcher", "autoprompt"], capsys)
    assert "searcher 'autoprompt' needs a local model" in err and "--model" in err
    assert not db.exists() or not open_storage(str(db)).list_studies()  # nothing stored

"""The study's Optuna mirror (``--optuna-storage``, promptsearch/study/optuna_mirror.py),
read back with Optuna's own API: ``optuna.load_study(...)`` on real storages (an
SQLite RDB storage, an Optuna journal file, PostgreSQL when a server is given).

The studies use a fast fake scorer (each prompt right on a hash-chosen share of the
examples), real promptsearch storage, the real study loop and real workers (threads).
Every check compares the Optuna study with the promptsearch database: one Optuna
trial per stored trial, with its state, value, intermediate values and user
attributes; none twice, however often the study runs.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from storage_support import in_threads

from promptsearch import Prompt, Task
from promptsearch.cli import main
from promptsearch.errors import ConfigError, StorageError
from promptsearch.searchers._optuna_mirror import public_url
from promptsearch.searchers.manual import ManualSearcher
from promptsearch.storage import Storage, open_storage
from promptsearch.storage.testing import skip_reason, temporary_database
from promptsearch.study.loop import Study
from promptsearch.study.optuna_mirror import check_optuna_storage
from promptsearch.study.racing import Racing
from promptsearch.study.worker import run_worker
from promptsearch.task import Example
from promptsearch.testing.fakes import FakeModel, FakeReport, FakeResult
from promptsearch.testing.searchers import contract_task_with_dev

STATES = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}


@dataclass
class FakeScorer:
    """Each prompt has its own accuracy level; right or wrong per example by a hash.
    A prompt whose template holds *fail_on* raises (its trial fails)."""

    fail_on: str = "\x00never"
    model: FakeModel = field(default_factory=FakeModel)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def fingerprint(self) -> str:
        return "s" * 64

    def score(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> FakeReport:
        if self.fail_on in prompt.template:
            raise RuntimeError("this prompt breaks the fake model")
        level = 0.25 + 0.6 * hashlib.sha256(prompt.content_hash.encode()).digest()[0] / 255
        results = []
        for example in examples:
            digest = hashlib.sha256((prompt.content_hash + example.id).encode()).digest()
            correct = digest[0] / 255 < level
            gold = 0.5 + (0.5 if correct else -0.5) * (digest[1] + 1) / 257
            other = "0" if example.target == "1" else "1"
            logprobs = {example.target: math.log(gold), other: math.log(1 - gold)}
            prediction = example.target if correct else other
            results.append(FakeResult(example.id, prediction, correct, float(correct), logprobs))
        return FakeReport(results, len(examples))


def make_study(
    storage: Storage,
    optuna_url: str | None,
    *,
    budget: int = 12,
    searchers: Sequence[Any] = ("manual", "random-edit", "optuna:max_demonstrations=0"),
    racing: Racing | None = None,
    n_dev: int = 8,
    scorer: FakeScorer | None = None,
    name: str = "mirrored",
    optuna_study: str | None = None,
) -> Study:
    return Study(
        name,
        contract_task_with_dev(n_dev),
        scorer or FakeScorer(),
        list(searchers),
        budget,
        storage,
        seed=3,
        candidates_per_round=3,
        progress=False,
        racing=racing,
        optuna_storage=optuna_url,
        optuna_study=optuna_study,
    )


def _storage(url: str) -> Any:
    """What Optuna's own API takes: the URL, or the journal file's storage."""
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url[len("journal:") :]))
    return url


def load(url: str, name: str = "mirrored") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=_storage(url))


def check_mirror(storage: Storage, url: str, name: str = "mirrored") -> list[Any]:
    """The Optuna study holds each finished trial of the promptsearch study once, with
    its state, value and user attributes; returns its trials."""
    mirrored = load(url, name).trials
    stored = {t.number: t for t in storage.trials(name)}
    numbers = [t.user_attrs["promptsearch_trial"] for t in mirrored]
    assert len(numbers) == len(set(numbers)) == len(stored)  # none missing, none twice
    for trial in mirrored:
        record = stored[trial.user_attrs["promptsearch_trial"]]
        attrs = trial.user_attrs
        assert trial.state == STATES[record.state]
        assert attrs["content_hash"] == record.content_hash
        assert attrs["searcher"] == record.searcher
        assert attrs["operation"] == record.operation
        assert attrs["n_examples"] == record.n_examples
        assert attrs["promptsearch_study"] == name
        assert attrs["prompt"] == storage.get_prompt(record.content_hash).text
        if record.state == "complete":
            assert trial.value == pytest.approx(record.dev_score)
        else:
            assert trial.value is None
    return mirrored


# -- one process ------------------------------------------------------------------------------


def test_every_searchers_trials_are_mirrored_and_a_rerun_adds_no_copies(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    with open_storage(str(tmp_path / "ps.db")) as storage:
        make_study(storage, url).run()
        mirrored = check_mirror(storage, url)
        assert len(mirrored) == 12
        by_searcher = Counter(t.user_attrs["searcher"] for t in mirrored)
        assert set(by_searcher) == {"manual", "random-edit", "optuna"}
        for trial in mirrored:  # the optuna searcher's trials keep their parameters
            if trial.user_attrs["searcher"] == "optuna":
                assert {"instruction", "template", "verbalizer"} <= set(trial.params)
                assert trial.user_attrs["template"]  # the texts the indices stand for
            else:
                assert trial.params == {}
        study = load(url)
        assert study.direction == optuna.study.StudyDirection.MAXIMIZE
        assert study.user_attrs["promptsearch_study"] == "mirrored"
        assert study.best_value == pytest.approx(storage.leaderboard("mirrored")[0].dev_score)
        numbers = [t.user_attrs["promptsearch_trial"] for t in mirrored]
        assert numbers == sorted(numbers)  # in the order the search ran

        make_study(storage, url).run()  # the same study again: replayed, nothing copied
        assert len(check_mirror(storage, url)) == 12
        make_study(storage, url, budget=18).run()  # resumed with more budget: the new ones
        assert len(check_mirror(storage, url)) == len(storage.trials("mirrored")) == 18
        record = storage.get_study("mirrored")
        assert record is not None
        assert record.config["optuna"] == {"storage": url, "study": "mirrored"}


def test_the_optuna_searchers_own_mirror_in_the_same_study_writes_each_trial_once(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    searchers = ["manual", f"optuna:max_demonstrations=0,mirror_storage={url}"]
    with open_storage(str(tmp_path / "ps.db")) as storage:
        make_study(storage, url, searchers=searchers).run()
        check_mirror(storage, url)


def test_pruned_trials_carry_their_rung_scores_and_failed_ones_fail(tmp_path: Path) -> None:
    url = f"journal:{tmp_path / 'optuna.log'}"
    racing = Racing(min_examples=6, eta=3, min_trials=3, seed=1)  # rungs 6, 18, 54
    broken = "Broken: {sentence} => {answer}"
    searchers = ["random-edit", ManualSearcher(prompts=[broken])]
    with open_storage(str(tmp_path / "ps.db")) as storage:
        study = make_study(
            storage,
            url,
            budget=24,
            searchers=searchers,
            racing=racing,
            n_dev=54,
            scorer=FakeScorer(fail_on="Broken:"),
        )
        study.run()
        mirrored = check_mirror(storage, url)
        race = study.scoring.race
        assert race is not None
        states = Counter(t.state for t in mirrored)
        assert states[TrialState.PRUNED] and states[TrialState.COMPLETE]
        assert states[TrialState.FAIL] == 1
        for trial in mirrored:
            n = trial.user_attrs["n_examples"]
            if trial.state == TrialState.FAIL:
                assert "breaks the fake model" in trial.user_attrs["error"]
                assert trial.intermediate_values == {}
                continue
            rungs = race.rung_metrics(trial.user_attrs["content_hash"], n)
            assert set(rungs) == {r for r in (6, 18) if r <= n}
            if trial.state == TrialState.PRUNED:
                assert trial.intermediate_values == pytest.approx(rungs)
                assert max(trial.intermediate_values) == n < 54
            else:  # the rungs it passed, then the whole of dev
                assert trial.intermediate_values == pytest.approx({**rungs, 54: trial.value})


def test_a_study_mirrored_late_is_copied_in_full_by_run_and_by_db_mirror_optuna(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    late, after = f"sqlite:///{tmp_path / 'late.db'}", f"journal:{tmp_path / 'after.log'}"
    ps = f"sqlite:///{tmp_path / 'ps.db'}"
    with open_storage(ps) as storage:
        make_study(storage, None, budget=6).run()  # no mirror
        make_study(storage, late, budget=9).run()  # the first 6 copied, then 3 more
        mirrored = check_mirror(storage, late)
        assert [t.user_attrs["promptsearch_trial"] for t in mirrored] == list(range(9))
    args = ["db", "mirror-optuna", "--study", "mirrored", "--storage", ps]
    assert main([*args, "--optuna-storage", after]) == 0
    assert "copied 9 of the 9 finished trials of study 'mirrored'" in capsys.readouterr().out
    assert main([*args, "--optuna-storage", after]) == 0
    assert "copied 0 of" in capsys.readouterr().out
    assert main([*args, "--optuna-storage", late, "--optuna-study", "renamed"]) == 0
    with open_storage(ps) as storage:
        check_mirror(storage, after)
        assert len(load(late, "renamed").trials) == 9


# -- bad storages and credentials -------------------------------------------------------------


def test_an_unreachable_storage_stops_the_run_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ps = tmp_path / "ps.db"
    base = ["run", "--task", "sst2", "--storage", str(ps), "--model", "no/such-model"]
    cases = {
        f"sqlite:///{tmp_path / 'no-such-folder' / 'o.db'}": "cannot open the Optuna storage",
        "optuna.db": "must be an Optuna storage URL",
        f"sqlite:///{ps}": "is the study's own database",
        "journal:": "journal: needs a file path",
    }
    for url, message in cases.items():
        assert main([*base, "--optuna-storage", url]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not ps.exists() or not open_storage(str(ps)).list_studies()  # nothing was stored


def test_an_unreachable_storage_stops_the_study_before_it_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gone' / 'o.db'}"
    with open_storage(str(tmp_path / "ps.db")) as storage:
        with pytest.raises(StorageError, match="cannot open the Optuna mirror storage"):
            make_study(storage, url).run()
        assert storage.get_study("mirrored") is None


def test_a_failed_write_mid_search_is_a_warning_and_the_search_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "mirror"
    folder.mkdir()
    url = f"sqlite:///{folder / 'o.db'}"
    with open_storage(str(tmp_path / "ps.db")) as storage:
        study = make_study(storage, url)
        assert study.mirror is not None
        study.mirror.open()
        (folder / "o.db").unlink()  # the storage goes away once the study has opened it
        folder.chmod(0o500)
        try:
            study.run()
        finally:
            folder.chmod(0o700)
        assert len(storage.trials("mirrored")) == 12  # the search went on
        assert study.mirror.failed_writes == 12
        assert "is not in the Optuna mirror, the search goes on" in caplog.text
        make_study(storage, url).run()  # the next run copies what is missing
        check_mirror(storage, url)


def test_no_password_is_stored_or_shown(tmp_path: Path) -> None:
    secret = "postgresql://alice:s3cret@db.example:5432/optuna?sslmode=require&password=x"
    assert "s3cret" not in public_url(secret) and "password" not in public_url(secret)
    assert public_url(secret) == "postgresql://alice@db.example:5432/optuna?sslmode=require"
    with pytest.raises(StorageError) as raised:
        check_optuna_storage("postgresql://alice:s3cret@127.0.0.1:9/optuna")
    assert "s3cret" not in str(raised.value) and "alice@127.0.0.1:9" in str(raised.value)
    with pytest.raises(ConfigError, match="must be an Optuna storage URL"):
        check_optuna_storage("alice:s3cret@host")
    with pytest.raises(ConfigError) as bad:
        check_optuna_storage("a:s3cret@h")
    assert "s3cret" not in str(bad.value)


def test_a_postgresql_password_never_lands_in_the_stored_config(tmp_path: Path) -> None:
    """Real PostgreSQL for Optuna, with the test server's password in the URL."""
    reason = skip_reason("postgresql")
    if reason is not None:
        pytest.skip(reason)
    from sqlalchemy.engine import make_url

    with temporary_database("postgresql", tmp_path) as optuna_db:
        password = make_url(optuna_db).password
        if not password:
            pytest.skip("the test server's URL has no password")
        ps = tmp_path / "ps.db"
        with open_storage(str(ps)) as storage:
            make_study(storage, optuna_db, budget=6).run()
            check_mirror(storage, optuna_db)
            record = storage.get_study("mirrored")
            assert record is not None
            stored = record.config["optuna"]["storage"]
            assert stored == public_url(optuna_db) and str(password) not in stored
        assert str(password).encode() not in ps.read_bytes()


# -- workers ----------------------------------------------------------------------------------


@pytest.fixture
def optuna_url(storage_url: str, tmp_path: Path) -> Any:
    """An Optuna storage beside each promptsearch backend: a journal file beside
    SQLite, another PostgreSQL database beside PostgreSQL."""
    if storage_url.startswith("sqlite"):
        yield f"journal:{tmp_path / 'optuna.log'}"
        return
    with temporary_database("postgresql", tmp_path) as url:
        yield url


def test_workers_mirror_each_trial_once_into_the_storage_the_study_records(
    storage_url: str, optuna_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The study records the URL without its password: on PostgreSQL the workers get it
    from PGPASSWORD, as docs/optuna.md says."""
    from sqlalchemy.engine import make_url

    password = None if optuna_url.startswith("journal:") else make_url(optuna_url).password
    if password:
        monkeypatch.setenv("PGPASSWORD", str(password))
    budget = 16
    with open_storage(storage_url) as storage:
        make_study(storage, optuna_url, budget=budget, searchers=["manual", "random-edit"]).create()

    def work(i: int) -> Any:
        return run_worker(
            "mirrored",
            storage=storage_url,
            worker=f"w{i}",
            task=contract_task_with_dev(8),
            scorer=FakeScorer(),
            heartbeat_timeout=5,
        )

    reports = in_threads(4, work)
    assert sum(r.evaluated for r in reports) == budget
    with open_storage(storage_url) as storage:
        mirrored = check_mirror(storage, optuna_url)
        workers = {t.number: t.worker for t in storage.trials("mirrored")}
    assert len(mirrored) == budget
    for trial in mirrored:  # each copied by the worker that finished it
        assert trial.user_attrs["worker"] == workers[trial.user_attrs["promptsearch_trial"]]


def test_workers_opening_a_new_storage_at_once_all_get_it(optuna_url: str) -> None:
    """Processes that open a fresh database together race to create Optuna's tables
    (and, on PostgreSQL, its enum types): each gets the one Optuna study."""
    from promptsearch.study.optuna_mirror import StudyMirror

    def open_one(i: int) -> int:
        mirror = StudyMirror(optuna_url, "together", "task")
        mirror.open()
        return len(mirror.mirror.open().trials)

    assert in_threads(4, open_one) == [0, 0, 0, 0]
    assert len(optuna.get_all_study_names(storage=_storage(optuna_url))) == 1


def test_a_worker_given_its_own_optuna_storage_mirrors_there(tmp_path: Path) -> None:
    ps, url = f"sqlite:///{tmp_path / 'ps.db'}", f"journal:{tmp_path / 'own.log'}"
    with open_storage(ps) as storage:
        make_study(storage, None, budget=6, searchers=["manual", "random-edit"]).create()

    def work(i: int) -> Any:
        task, scorer = contract_task_with_dev(8), FakeScorer()
        return run_worker(
            "mirrored", storage=ps, worker=f"w{i}", task=task, scorer=scorer, optuna_storage=url
        )

    assert sum(r.evaluated for r in in_threads(2, work)) == 6
    with open_storage(ps) as storage:
        assert len(check_mirror(storage, url)) == 6

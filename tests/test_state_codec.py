"""Searcher state as data: the JSON state codec, and planted rows that must not run.

Searcher states were pickles, so a row planted in ``searcher_states`` ran code when a
study resumed.  They are JSON documents now (:mod:`promptsearch.study.state_codec`); a row
that is anything else gets one clear error that names the row and the fix, runs
nothing and leaves the database as it was, and ``promptsearch db upgrade`` drops the
pickles an older version wrote.
"""

from __future__ import annotations

import base64
import gc
import importlib
import json
import logging
import math
import pickle
import random
import sqlite3
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_bad_inputs import FakeScorer, cli_error, fingerprint, set_revision, small_task
from test_kill import save_tiny_model, write_kshot_data

import promptsearch
from promptsearch.cli import main
from promptsearch.errors import ConfigError, StorageError
from promptsearch.prompt import Prompt
from promptsearch.searchers.manual import ManualSearcher
from promptsearch.storage import open_storage
from promptsearch.study.loop import Study
from promptsearch.study.state_codec import MAGIC, StateFormatError, decode_state, encode_state

# -- round trips ---------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down (tensors: dtype, shape and values)."""
    if isinstance(a, torch.Tensor):
        return (
            type(b) is torch.Tensor
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a.detach().cpu(), b)
        )
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(
            type(k) is type(j) and same(a[k], b[j]) for k, j in zip(a, b, strict=True)
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    return bool(a == b)


VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -7,
    2**80,
    -(2**70),
    0.0,
    -0.0,
    1.5,
    5e-324,
    1.7976931348623157e308,
    math.nan,
    math.inf,
    -math.inf,
    "",
    'text with "quotes", {braces} and \\ backslashes',
    "ünïcode \u2603 \U0001f600",
    "\ud800 a lone surrogate",
    b"",
    bytes(range(256)),
    [],
    (),
    {},
    [1, (2, [3, ()]), {"t": "tuple", "v": []}],  # a dict that looks like a tag is just data
    {"a": {0: (1,), -3: [None]}, "0": "a str key beside an int key", 0: "int"},
    {"t": "tensor", "v": 0},
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:40] for v in VALUES])
def test_every_supported_value_round_trips_with_its_type(value: Any) -> None:
    encoded = encode_state(value)
    assert encoded.startswith(MAGIC)
    assert same(value, decode_state(encoded))
    assert encode_state(decode_state(encoded)) == encoded == encode_state(value)


TENSORS = {
    "float32": torch.linspace(-1, 1, 12).reshape(3, 4),
    "float64": torch.tensor([1e-300, -2.5], dtype=torch.float64),
    "float16": torch.tensor([0.5, 65504.0], dtype=torch.float16),
    "bfloat16": torch.tensor([1.0, -3.0], dtype=torch.bfloat16),
    "int8": torch.tensor([-128, 127], dtype=torch.int8),
    "int64": torch.tensor([2**62, -1]),
    "uint8": torch.arange(256, dtype=torch.uint8),
    "bool": torch.tensor([True, False]),
    "scalar": torch.tensor(3.0),
    "empty": torch.zeros(0, 3),
    "transposed": torch.arange(6.0).reshape(2, 3).t(),
    "slice": torch.arange(100.0)[10:20:3],
    "nan": torch.tensor([math.nan, math.inf, -math.inf]),
}


def test_tensors_round_trip_with_dtype_shape_and_values() -> None:
    state = {"tensors": TENSORS, "twice": [TENSORS["scalar"], TENSORS["scalar"]]}
    back = decode_state(encode_state(state))
    for name, tensor in TENSORS.items():
        got = back["tensors"][name]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape, name
        assert torch.equal(got.nan_to_num(), tensor.nan_to_num()), name
    assert same(state["twice"], back["twice"])


def test_subclasses_come_back_as_their_base_type() -> None:
    weight = torch.nn.Parameter(torch.ones(2, 2))
    back = decode_state(encode_state({"mlp": OrderedDict(weight=weight), "f": np.float64(0.25)}))
    assert type(back["mlp"]) is dict and type(back["mlp"]["weight"]) is torch.Tensor
    assert not back["mlp"]["weight"].requires_grad and torch.equal(back["mlp"]["weight"], weight)
    assert type(back["f"]) is float and back["f"] == 0.25


def test_random_states_continue_identically() -> None:
    py = random.Random(11)
    py.random()
    generator = torch.Generator().manual_seed(11)
    torch.rand(3, generator=generator)
    back = decode_state(encode_state({"py": py.getstate(), "torch": generator.get_state()}))
    py_clone, torch_clone = random.Random(), torch.Generator()
    py_clone.setstate(back["py"])
    torch_clone.set_state(back["torch"])
    assert [py_clone.random() for _ in range(5)] == [py.random() for _ in range(5)]
    assert torch.equal(torch.rand(5, generator=torch_clone), torch.rand(5, generator=generator))


def test_the_document_is_versioned_json() -> None:
    document = json.loads(encode_state({"w": torch.ones(2), "n": 1}).decode("utf-8"))
    assert list(document) == ["format", "version", "data", "tensors"]
    assert (document["format"], document["version"]) == ("promptsearch-state", 1)
    assert document["data"] == {"t": "dict", "v": [["w", {"t": "tensor", "v": 0}], ["n", 1]]}
    assert base64.b64decode(document["tensors"])  # one safetensors file
    assert json.loads(encode_state({"n": 1}))["tensors"] is None


def test_the_migration_knows_the_codecs_magic_bytes() -> None:
    name = "promptsearch.storage.migrations.versions.0004_searcher_state_json"
    assert importlib.import_module(name).MAGIC == MAGIC


def test_a_state_without_tensors_needs_no_torch() -> None:
    code = (
        "import sys\n"
        "from promptsearch.study.state_codec import decode_state, encode_state\n"
        "assert decode_state(encode_state({'step': 3, 'rng': (1, (2,), None)}))['step'] == 3\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- what is refused -------------------------------------------------------------------------

_cycle: list[Any] = []
_cycle.append({"again": _cycle})

UNSUPPORTED = [
    ({"w": np.zeros(2)}, r"state\['w'\] has type numpy\.ndarray"),
    ({"n": np.int64(3)}, r"state\['n'\] has type numpy\.int64"),
    ({"s": [{1, 2}]}, r"state\['s'\]\[0\] has type set"),
    ({"p": Prompt("{text} {answer}")}, r"has type promptsearch\.prompt\.Prompt"),
    ({"f": len}, r"has type builtin_function_or_method"),
    ({1.5: 0}, r"the state itself has a key 1\.5 of type float"),
    ({True: 0}, r"has a key True of type bool"),
    ({("a",): 0}, r"has a key \('a',\) of type tuple"),
    ({"c": torch.zeros(2, dtype=torch.complex64)}, r"state\['c'\] is a strided torch\.complex64"),
    ({"x": torch.eye(2).to_sparse()}, r"is a sparse_coo torch\.float32 tensor"),
    ({"m": torch.empty(2, device="meta")}, r"is a meta torch\.float32 tensor"),
    (_cycle, r"state\[0\]\['again'\] contains itself"),
]


@pytest.mark.parametrize("value, message", UNSUPPORTED, ids=[m for _, m in UNSUPPORTED])
def test_unsupported_values_are_refused_naming_the_place(value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        encode_state(value, what="state_dict() of searcher 'x'")
    assert str(caught.value).startswith("state_dict() of searcher 'x': ")
    assert "may hold only dict (str or int keys), list, tuple" in str(caught.value)


def _document(data: Any = None, **changes: Any) -> bytes:
    document = {"format": "promptsearch-state", "version": 1, "data": data, "tensors": None}
    document.update(changes)
    return json.dumps(document, separators=(",", ":")).encode()


NOT_STATES = [
    (pickle.dumps({"step": 1}), r"^not promptsearch's JSON state format$"),
    (b"", r"^not promptsearch's JSON state format$"),
    (
        b'{"version":1,"format":"promptsearch-state","data":null,"tensors":null}',
        r"^not promptsearch",
    ),
    (MAGIC + b"garbage", r"damaged state document: not UTF-8 JSON"),
    (MAGIC + b'"version":1,"data":"\xff","tensors":null}', r"not UTF-8 JSON"),
    (MAGIC + b'"version":1,"data":NaN,"tensors":null}', r"NaN is not JSON"),
    (_document(extra=1), r"expected the keys format, version, data and tensors"),
    (_document(version=0), r"bad version 0"),
    (_document(version="1"), r"bad version \"1\""),
    (_document(version=2), r"state format version 2, written by a newer promptsearch"),
    (_document({"t": "object", "v": "os.system"}), r"unknown node"),
    (_document({"t": "tuple", "v": [], "x": 1}), r"unknown node"),
    (_document({"t": ["tuple"], "v": []}), r"unknown node"),
    (_document({"t": "tuple", "v": 1}), r"bad tuple node"),
    (_document({"t": "float", "v": "1e9"}), r"bad float node"),
    (_document({"t": "bytes", "v": "not base64!"}), r"bytes that are not base64"),
    (_document({"t": "tensor", "v": 0}), r"bad tensor node"),
    (_document({"t": "tensor", "v": True}, tensors=None), r"bad tensor node"),
    (_document({"t": "dict", "v": [[True, 1]]}), r"a dict key is not a string or an integer"),
    (_document({"t": "dict", "v": [["a", 1], ["a", 2]]}), r"the key 'a' twice"),
    (_document({"t": "dict", "v": [["a"]]}), r"not a \[key, value\] pair"),
    (_document(tensors="AAAA"), r"'tensors' is not a safetensors file"),
    (_document(tensors="%%"), r"'tensors' is not base64"),
    (_document(tensors=7), r"'tensors' is neither null nor a base64 string"),
    (
        MAGIC + b'"version":1,"data":' + b"[" * 100_000 + b"]" * 100_000 + b',"tensors":null}',
        r"nested too deeply",
    ),
]


@pytest.mark.parametrize("data, message", NOT_STATES, ids=[m for _, m in NOT_STATES])
def test_anything_else_is_refused_when_loading(data: bytes, message: str) -> None:
    with pytest.raises(StateFormatError, match=message) as caught:
        decode_state(data)
    assert isinstance(caught.value, StorageError)


def test_tensor_names_must_be_the_indices() -> None:
    from safetensors.torch import save

    tensors = base64.b64encode(save({"weights": torch.ones(1)})).decode()
    with pytest.raises(StateFormatError, match=r"not named 0, 1"):
        decode_state(_document({"t": "tensor", "v": 0}, tensors=tensors))


def test_a_searcher_whose_state_cannot_be_stored_fails_naming_it(tmp_path: Path) -> None:
    class Holder(ManualSearcher):
        def state_dict(self) -> dict[str, Any] | None:
            return {"model": object()}

    with open_storage(str(tmp_path / "x.db")) as storage:
        study = Study("x", small_task(), FakeScorer(), [Holder()], 2, storage, progress=False)
        with pytest.raises(ConfigError, match=r"state_dict\(\) of searcher 'manual': .*object"):
            study.run()


# -- a planted row -----------------------------------------------------------------------------


class Planted:
    """Unpickling it creates *marker*: what an attacker's row would do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def plant(db: Path, study: str, searcher: str, state: bytes) -> None:
    connection = sqlite3.connect(db)
    try:
        with connection:
            connection.execute(
                "INSERT OR REPLACE INTO searcher_states (study_id, searcher, state, updated_at) "
                "VALUES ((SELECT id FROM studies WHERE name = ?), ?, ?, '2026-01-01 00:00:00')",
                (study, searcher, state),
            )
    finally:
        connection.close()


def state_rows(db: Path) -> dict[str, bytes]:
    connection = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
    try:
        rows = connection.execute("SELECT searcher, state FROM searcher_states").fetchall()
    finally:
        connection.close()
    return {searcher: bytes(state) for searcher, state in rows}


def settled(db: Path) -> Any:
    """The database's fingerprint once nothing holds it open: the command line and
    search() leave their storage to the garbage collector, whose last connection then
    folds the write-ahead log into the file (as a process exit does)."""
    gc.collect()
    return fingerprint(db)


def check_refusal(message: str, searcher: str, study: str, marker: Path) -> None:
    assert not marker.exists(), "the planted pickle ran"
    assert f"the searcher_states row of searcher '{searcher}' in study '{study}'" in message
    assert "is not promptsearch's JSON state format" in message
    assert "`promptsearch db upgrade` drops" in message and "delete the row" in message
    assert f"DELETE FROM searcher_states WHERE searcher = '{searcher}'" in message
    assert message.rstrip().endswith("nothing was loaded")


def test_the_payload_runs_under_pickle(tmp_path: Path) -> None:
    """The tests below would catch a loader that unpickles."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Planted(marker))).close()
    assert marker.exists()


def _run_small_study(db: Path, budget: int) -> None:
    with open_storage(str(db)) as storage:
        searchers = ["manual", "random-edit"]
        Study("kept", small_task(), FakeScorer(), searchers, budget, storage, progress=False).run()


def test_study_run_refuses_a_planted_pickle_and_leaves_the_database(tmp_path: Path) -> None:
    db, marker = tmp_path / "runs.db", tmp_path / "pwned"
    _run_small_study(db, 4)
    plant(db, "kept", "random-edit", pickle.dumps(Planted(marker)))
    before = settled(db)
    with pytest.raises(StorageError) as caught:
        _run_small_study(db, 8)
    check_refusal(str(caught.value), "random-edit", "kept", marker)
    assert "\n" not in str(caught.value)
    assert settled(db) == before


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("planted")
    return write_kshot_data(base / "data"), save_tiny_model(base / "model")


def test_cli_run_worker_and_search_refuse_a_planted_pickle(
    tmp_path: Path,
    assets: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data, model = assets
    db, marker = tmp_path / "cli.db", tmp_path / "pwned"
    url = f"sqlite:///{db}"
    run = ["run", "--task", "sst2", "--data-dir", str(data), "--model", str(model)]
    run += ["--searcher", "manual", "--study", "planted", "--storage", url, "--quiet"]
    assert main([*run, "--budget", "2"]) == 0
    plant(db, "planted", "manual", pickle.dumps(Planted(marker)))
    capsys.readouterr()
    before = settled(db)

    err = cli_error([*run, "--budget", "4"], capsys)  # exit status 2, one line
    check_refusal(err, "manual", "planted", marker)
    assert settled(db) == before

    worker = ["worker", "--study", "planted", "--storage", url, "--data-dir", str(data)]
    err = cli_error([*worker, "--worker-id", "w0"], capsys)
    check_refusal(err, "manual", "planted", marker)
    assert settled(db) == before

    with pytest.raises(StorageError) as caught:
        promptsearch.search(
            "sst2",
            data_dir=str(data),
            model=str(model),
            searchers=["manual"],
            budget=4,
            storage=url,
            study="planted",
            progress=False,
        )
    message = str(caught.value)
    del caught  # its traceback holds the open storage
    check_refusal(message, "manual", "planted", marker)
    assert settled(db) == before


def test_db_upgrade_drops_pickled_rows_and_keeps_json_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    db, marker = tmp_path / "runs.db", tmp_path / "pwned"
    _run_small_study(db, 4)
    kept = encode_state({"step": 3})
    plant(db, "kept", "manual", kept)
    plant(db, "kept", "random-edit", pickle.dumps(Planted(marker)))
    set_revision(db, "0003")  # as a database of the version that pickled
    with caplog.at_level(logging.INFO, logger="promptsearch"):
        assert main(["db", "upgrade", "--storage", str(db)]) == 0
    capsys.readouterr()
    assert not marker.exists()
    assert state_rows(db) == {"manual": kept}
    assert "dropped 1 searcher state row(s)" in caplog.text
    _run_small_study(db, 8)  # resumes; random-edit starts afresh
    assert not marker.exists()


def test_the_downgrade_drops_the_json_rows_the_older_version_cannot_read(tmp_path: Path) -> None:
    import sqlalchemy as sa
    from alembic import command

    from promptsearch.storage.schema import alembic_config

    db = tmp_path / "runs.db"
    _run_small_study(db, 4)
    plant(db, "kept", "manual", encode_state({"step": 3}))
    plant(db, "kept", "random-edit", b"\x80 an old pickle")
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0003")
    finally:
        engine.dispose()
    assert state_rows(db) == {"random-edit": b"\x80 an old pickle"}

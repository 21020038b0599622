"""Every family the users name goes through the same build, strategy and step code.

Each test builds a tiny random-init member, loads it through Ferry's real source code path
(``model.path`` + ``timm.create_model`` for images, ``from_pretrained`` for text), applies
``freeze_bottom`` (stem + first layer group frozen) and takes one optimizer step.
"""

from __future__ import annotations

import pytest
import torch

from ferry.config import ModelConfig, StrategyConfig
from ferry.models import classifier, vision
from ferry.models.sources import resolve
from ferry.transfer import strategies
from ferry.transfer.batching import encode, text_batches
from tests.zoo import IMAGE_FAMILIES, TEXT_FAMILIES, TEXTS, image_weights, text_folder


def _step(model: torch.nn.Module, batch: dict) -> list[dict]:
    policy = strategies.from_config(StrategyConfig(
        name="freeze_bottom", freeze_bottom={"frozen_layers": 1}))
    groups = policy.configure(model, 1e-3, 0.01)
    opt = torch.optim.AdamW(groups)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(batch), batch["labels"])
    loss.backward()
    opt.step()
    return groups


def _check_gradients(model: torch.nn.Module) -> None:
    """Head and every unfrozen parameter got a gradient; stem and first group got none."""
    bottom, blocks = classifier.layer_groups(model)
    assert len(blocks) >= 2, "a backbone needs at least two layer groups to freeze the bottom"
    frozen = [*bottom, *blocks[0]]
    assert frozen and all(not p.requires_grad and p.grad is None for p in frozen)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters())
    assert all(p.grad is not None for p in blocks[-1])
    live = [n for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert live and not missing, missing[:5]


@pytest.mark.parametrize("family", list(IMAGE_FAMILIES))
def test_image_family_trains_one_freeze_bottom_step(family, tmp_path):
    path, name, kwargs, side = image_weights(tmp_path, family)
    cfg = ModelConfig(source="timm", name=name, path=path, timm_kwargs=kwargs)
    source = resolve(cfg)
    assert source.modality == "image" and len(source.sha256) == 64
    model = vision.build(cfg, path, num_labels=3, dropout=0.0, augment=None)
    saved = vision.read_weights(path)
    key = next(k for k in saved if k.endswith("weight") and saved[k].ndim > 1)
    assert torch.equal(model.encoder.state_dict()[key], saved[key])  # the file's weights
    pixels = torch.randint(0, 256, (2, 3, side, side), dtype=torch.uint8)
    _step(model, {"pixel_values": pixels, "labels": torch.tensor([0, 2])})
    _check_gradients(model)
    folder = vision.save(model, ["a", "b", "c"], cfg, side, tmp_path / "export")
    again, _, meta = vision.load(folder)  # what evaluation and the pyfunc model load
    assert meta.size == side and meta.mean == model.mean.flatten().tolist()
    with torch.no_grad():
        batch = {"pixel_values": pixels}
        assert torch.allclose(again(batch), model.eval()(batch), atol=1e-5)


@pytest.mark.parametrize("family", TEXT_FAMILIES)
def test_text_family_trains_one_freeze_bottom_step(family, tmp_path):
    folder = text_folder(tmp_path / family, family)
    source = resolve(ModelConfig(source="local", path=folder))
    tokenizer = classifier.load_tokenizer(source.path)
    assert tokenizer.pad_token is not None  # GPT-2 ships none: the loader supplies one
    model = classifier.build(source.path, 2, ModelConfig(source="local", path=folder))
    enc = encode(tokenizer, TEXTS, [0, 1, 0, 1], 16)
    batch = next(text_batches(enc, 4, None, multiple=8))  # padded: masks are exercised
    assert batch["attention_mask"].min() == 0
    _step(model, batch)
    _check_gradients(model)
    cfg = ModelConfig(source="local", path=folder, max_length=16)
    again, tokenizer2, _ = classifier.load(classifier.save(model, tokenizer, ["a", "b"], cfg,
                                                           tmp_path / "export"))
    assert tokenizer2.pad_token == tokenizer.pad_token  # GPT-2's pad survives the export
    with torch.no_grad():
        assert torch.allclose(again(batch), model.eval()(batch), atol=1e-5)


def test_lite0_depth_groups_put_the_conv_head_on_top():
    """A backbone without timm's group_matcher is read by structure: stem, 16 MBConv blocks,
    and the 1x1 conv head (registered after the blocks) joins the top block."""
    model = vision.build(ModelConfig(source="packaged", name=vision.LITE0), None, 3, 0.0, None)
    bottom, blocks = classifier.layer_groups(model)
    assert len(blocks) == 16
    head_conv = model.encoder._conv_head.weight
    assert any(p is head_conv for p in blocks[-1])
    assert any(p is model.encoder._conv_stem.weight for p in bottom)


@pytest.mark.parametrize("family", ["lite0", "mobilenetv3"])
def test_lora_adapts_conv_backbones(family, tmp_path):
    """LoRA on a conv net: adapters on plain 1x1/kxk convs and linears, backbone frozen."""
    if family == "lite0":
        cfg = ModelConfig(source="packaged", name=vision.LITE0)
        model = vision.build(cfg, None, 3, 0.0, None)
    else:
        path, name, kwargs, _ = image_weights(tmp_path, family)
        model = vision.build(ModelConfig(source="timm", name=name, timm_kwargs=kwargs), path,
                             3, 0.0, None)
    policy = strategies.from_config(StrategyConfig(name="lora", lora={"r": 2}))
    groups = policy.configure(model, 1e-3, 0.01)
    assert isinstance(policy.targets, list) and policy.targets
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    opt = torch.optim.AdamW(groups)
    batch = {"pixel_values": torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8),
             "labels": torch.tensor([0, 1])}
    model.train()
    torch.nn.functional.cross_entropy(model(batch), batch["labels"]).backward()
    opt.step()
    assert all(p.grad is not None for n, p in model.named_parameters() if "lora_B" in n)

"""LoRA, zero-shot and scratch policies; their exported folders load back identically."""

from pathlib import Path

import pytest
import torch

from ferry.config import ModelConfig, StrategyConfig
from ferry.models import classifier
from ferry.models.sources import resolve
from ferry.transfer import strategies, zero_shot
from ferry.transfer.batching import encode, text_batches
from tests.conftest import review_rows


def _batch(folder, n=16):
    tok = classifier.load_tokenizer(folder)
    rows = review_rows(n)
    enc = encode(tok, [t for t, _ in rows], [int(lbl == "fresh") for _, lbl in rows], 32)
    return tok, next(iter(text_batches(enc, n, None)))


def test_lora_trains_only_adapters_and_head(tiny_bert):
    torch.manual_seed(0)
    model = classifier.build(tiny_bert, 2, ModelConfig(max_length=32))
    policy = strategies.from_config(StrategyConfig(name="lora", lora={"r": 4}))
    groups = policy.configure(model, 1e-3, 0.0)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    assert {g["lr"] for g in groups} == {1e-3}
    _, batch = _batch(tiny_bert)
    torch.nn.functional.cross_entropy(model(batch), batch["labels"]).backward()
    frozen = [p for n, p in model.named_parameters() if not p.requires_grad]
    assert all(p.grad is None for p in frozen)
    assert strategies.trainable_params(model) < sum(p.numel() for p in model.parameters()) / 2


@pytest.mark.parametrize("merge", [True, False])
def test_lora_export_merged_or_adapter_predicts_the_same(tiny_bert, tmp_path, merge):
    torch.manual_seed(0)
    model = classifier.build(tiny_bert, 2, ModelConfig(max_length=32, dropout=0.0))
    policy = strategies.from_config(StrategyConfig(name="lora", lora={"r": 4, "merge": merge}))
    policy.configure(model, 1e-3, 0.0)
    with torch.no_grad():  # B starts at zero; make the adapters do something
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    tok, batch = _batch(tiny_bert)
    model.eval()
    expected = model(batch)
    extra = policy.export(model)
    out = classifier.save(model, tok, ["rotten", "fresh"], ModelConfig(max_length=32,
                          dropout=0.0), tmp_path / "m", extra)
    assert (out / "adapter" / "adapter_config.json").is_file() != merge
    loaded, _, meta = classifier.load(out)
    assert meta.lora["merged"] == merge
    assert torch.allclose(loaded(batch), expected, atol=1e-4)


def test_scratch_strategy_is_random_init_at_one_lr(tiny_bert):
    policy = strategies.from_config(StrategyConfig(name="scratch"))
    assert isinstance(policy, strategies.Scratch) and not policy.pretrained
    model = classifier.build(tiny_bert, 2, ModelConfig(), pretrained=False)
    groups = policy.configure(model, 2e-3, 0.01)
    assert {g["lr"] for g in groups} == {2e-3}
    assert strategies.trainable_params(model) == sum(p.numel() for p in model.parameters())


def test_zero_shot_prototypes_classify_clear_reviews_with_minilm(tmp_path):
    """The packaged sentence-embedding model: label descriptions alone classify obvious texts."""
    cfg = ModelConfig()
    source = resolve(cfg)
    model = classifier.build(source.path, 2, cfg)
    tok = classifier.load_tokenizer(source.path)
    policy = strategies.from_config(StrategyConfig(name="zero_shot"))
    assert policy.configure(model, 1e-3, 0.0) == [] and not policy.trains
    zero_shot.init_head(model, tok, ["rotten", "fresh"], policy.descriptions, 64, policy.scale,
                        torch.device("cpu"))
    rows = torch.linalg.vector_norm(model.head.linear.weight, dim=1)
    assert torch.allclose(rows, torch.full((2,), policy.scale), atol=1e-4)
    texts = ["An absolute delight: funny, warm and beautifully acted.",
             "A tedious, incoherent mess that wastes its cast.",
             "One of the best films of the year, I loved every minute.",
             "Dull, lifeless and far too long; I nearly fell asleep."]
    enc = encode(tok, texts, [1, 0, 1, 0], 64)
    batch = next(iter(text_batches(enc, 8, None)))
    preds = model.eval()(batch).argmax(1)
    assert preds.tolist() == batch["labels"].tolist()
    out = classifier.save(model, tok, ["rotten", "fresh"], cfg, tmp_path / "zs")
    loaded, _, meta = classifier.load(Path(out))
    assert meta.normalize is True
    assert torch.equal(loaded(batch).argmax(1), preds)


def test_prototype_head_init_keeps_the_plain_head(tiny_bert):
    """head_init=prototypes only initialises the linear head: rows point at the prototypes."""
    cfg = ModelConfig(max_length=32)
    model = classifier.build(tiny_bert, 2, cfg)
    tok = classifier.load_tokenizer(tiny_bert)
    descriptions = {"rotten": ["awful dull boring"], "fresh": ["great superb fun"]}
    zero_shot.init_head(model, tok, ["rotten", "fresh"], descriptions, 32, 20.0,
                        torch.device("cpu"), normalize=False)
    assert model.head.normalize is False and torch.all(model.head.linear.bias == 0)
    enc = encode(tok, ["awful dull boring", "great superb fun"], [0, 1], 32)
    batch = next(iter(text_batches(enc, 2, None)))
    with torch.no_grad():
        feats = model.eval().features(batch["input_ids"], batch["attention_mask"])
    order = batch["index"].tolist()
    protos = torch.nn.functional.normalize(feats, dim=-1)[[order.index(0), order.index(1)]]
    rows = torch.nn.functional.normalize(model.head.linear.weight, dim=-1)
    assert torch.allclose(rows, protos, atol=1e-5)

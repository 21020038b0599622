"""Padding-free batches: a packed step computes what the padded step computes.

Tiny encoder (BERT) and decoder (GPT-2) backbones built from configs; the same rows through
the padded forward and through ``packing.flatten`` + the packed forward must give the same
logits, loss and gradients, and a whole ``fit`` with packing on must end at the same weights.
"""

from __future__ import annotations

import copy

import pytest
import torch

from ferry.config import TrainConfig
from ferry.models import packed
from ferry.models.classifier import TextClassifier
from ferry.transfer import packing
from ferry.transfer.batching import Encoded, Resident, collate, resident_batches
from ferry.transfer.loop import fit

LENGTHS = [5, 11, 3, 8, 1, 6]


def _encoder(kind: str):
    from transformers import AutoModel, BertConfig, GPT2Config

    torch.manual_seed(0)
    if kind == "bert":
        config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=64, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0)
    else:
        config = GPT2Config(vocab_size=120, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return AutoModel.from_config(config, attn_implementation="sdpa")


def _data(lengths=LENGTHS, seed: int = 0) -> Encoded:
    gen = torch.Generator().manual_seed(seed)
    rows = [torch.randint(3, 120, (n,), generator=gen).tolist() for n in lengths]
    from ferry.transfer.batching import pack

    return pack(rows, [i % 3 for i in range(len(rows))], pad_id=0)


def _step(model, batch) -> tuple[torch.Tensor, torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    logits = model(batch)
    loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
    loss.backward()
    return logits.detach(), loss.detach(), {n: p.grad.clone()
                                            for n, p in model.named_parameters()
                                            if p.grad is not None}


@pytest.mark.parametrize(("kind", "pooling"), [("bert", "mean"), ("bert", "cls"),
                                               ("gpt2", "mean")])
def test_packed_step_equals_padded(kind, pooling):
    model = TextClassifier(_encoder(kind), 3, pooling, 0.0)
    assert packed.supports(model)
    assert packed.causal(model.encoder) == (kind == "gpt2")
    enc = _data()
    batch = collate(enc, torch.arange(len(enc)), multiple=8)
    flat = packing.flatten(batch, multiple=8)
    assert flat["input_ids"].shape == (1, packing.bucket(sum(LENGTHS), 8))
    assert flat["input_ids"].numel() < batch["input_ids"].numel()  # fewer tokens computed
    assert int((flat["seq"] < len(LENGTHS)).sum()) == sum(LENGTHS)  # each real token once
    logits, loss, grads = _step(model, batch)
    p_logits, p_loss, p_grads = _step(model, flat)
    torch.testing.assert_close(p_logits, logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(p_loss, loss, atol=1e-6, rtol=1e-5)
    assert p_grads.keys() == grads.keys() and len(grads) > 4
    for name, grad in grads.items():
        torch.testing.assert_close(p_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_texts_packed_into_several_rows(kind):
    """Longer texts fill several 128-token rows; attention stays inside each text."""
    model = TextClassifier(_encoder(kind), 3, "mean", 0.0)
    lengths = [60, 50, 45, 30, 20, 12, 9]
    enc = _data(lengths)
    batch = collate(enc, torch.arange(len(enc)))
    flat = packing.flatten(batch)
    assert flat["input_ids"].shape == (2, 128)  # 226 tokens, not 7 x 60 = 420
    logits, loss, grads = _step(model, batch)
    p_logits, p_loss, p_grads = _step(model, flat)
    torch.testing.assert_close(p_logits, logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(p_loss, loss, atol=1e-6, rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(p_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_places_fill_rows_first_fit_decreasing():
    where = packing.places([100, 60, 50, 30, 28], 128)
    assert where == [(0, 0), (1, 0), (1, 60), (2, 0), (0, 100)]


def test_flatten_lays_rows_end_to_end():
    enc = _data([2, 3])
    batch = collate(enc, torch.tensor([1, 0]), multiple=4)
    flat = packing.flatten(batch)
    assert flat["input_ids"][0].tolist() == enc.ids[2:5].tolist() + enc.ids[0:2].tolist()
    assert flat["position_ids"][0].tolist() == [0, 1, 2, 0, 1]
    assert flat["seq"][0].tolist() == [0, 0, 0, 1, 1] and flat["starts"].tolist() == [0, 3]
    assert "attention_mask" not in flat and "lengths" not in flat
    filled = packing.flatten(batch, multiple=8)
    assert filled["seq"][0].tolist()[5:] == [2, 2, 2]  # filler: a text of its own


def test_bucket_bounds_the_shapes():
    sizes = {packing.bucket(t, 8) for t in range(1, 4097)}
    assert all(s >= 8 and s % 8 == 0 for s in sizes)
    assert len(sizes) <= 8 * 13  # about eight sizes per doubling, not one per token count
    assert all(packing.bucket(t, 8) < t * 1.15 + 8 for t in range(1, 4097))


def test_fit_with_packing_ends_at_the_padded_weights():
    enc = _data([int(n) for n in torch.randint(1, 30, (40,),
                                                generator=torch.Generator().manual_seed(1))])
    start = TextClassifier(_encoder("bert"), 3, "mean", 0.0)
    out = {}
    for mode in ("off", "on"):
        model = copy.deepcopy(start)
        cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, device="cpu", compile="off",
                          packing=mode, log_every=10**6)
        res = Resident.of(enc, torch.device("cpu"), 1)
        result = fit(model, [{"params": list(model.parameters()), "lr": 1e-3}],
                     lambda e, r=res: resident_batches(r, 8, e, 1), 5,
                     lambda net: {"val_accuracy": 0.0}, cfg, None)
        assert result.runtime["packed"] is (mode == "on")
        out[mode] = (model.state_dict(), [h["train_loss"] for h in result.history])
    (padded, losses), (flat, p_losses) = out["off"], out["on"]
    assert losses[1] < losses[0]  # it learned
    torch.testing.assert_close(p_losses, losses, atol=1e-4, rtol=1e-4)
    for name, value in padded.items():
        torch.testing.assert_close(flat[name], value, atol=1e-4, rtol=1e-3, msg=name)


def test_packing_is_off_where_it_cannot_apply():
    model = TextClassifier(_encoder("bert"), 3, "mean", 0.0)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not packing.enabled(TrainConfig(), model, cpu, custom_loss=False)  # auto: GPU only
    assert packing.enabled(TrainConfig(), model, cuda, custom_loss=False)
    assert packing.enabled(TrainConfig(packing="on"), model, cpu, custom_loss=False)
    assert not packing.enabled(TrainConfig(packing="on"), model, cpu, custom_loss=True)
    assert not packing.enabled(TrainConfig(packing="on"), model.head, cpu, custom_loss=False)

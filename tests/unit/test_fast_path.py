"""The fast path learns what the plain path learns.

Fast: the tokenized split padded once and kept on the training device, batches gathered
there, widths bucketed for ``torch.compile``, short batches filled with ignored rows, the
model compiled (inductor, as on a GPU). Plain: per-batch collation on the host, eager model.
On a tiny BERT without dropout, the two must end at the same metrics and nearly the same
weights (compiled kernels may round differently).
"""

from __future__ import annotations

import pytest
import torch

from ferry.config import ModelConfig, TrainConfig
from ferry.models import classifier
from ferry.transfer import parallel, strategies
from ferry.transfer.batching import Resident, encode, resident_batches, text_batches
from ferry.transfer.inference import run
from ferry.transfer.loop import fit
from tests.conftest import make_tiny_bert, review_rows


@pytest.fixture(scope="module")
def nodrop_bert(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("nodrop-bert"), dropout=0.0)


def _encoded(folder, n, seed):
    rows = review_rows(n, seed)
    tok = classifier.load_tokenizer(folder)
    return encode(tok, [t for t, _ in rows], [int(lbl == "fresh") for _, lbl in rows], 32)


def test_resident_batches_are_the_collated_batches(nodrop_bert):
    enc = _encoded(nodrop_bert, 150, 0)
    res = Resident.of(enc, torch.device("cpu"), multiple=8)
    for seed in (3, None):
        plain = list(text_batches(enc, 16, seed, multiple=8))
        fast = list(resident_batches(res, 16, seed, multiple=8))
        assert len(plain) == len(fast) == 10
        for a, b in zip(plain, fast, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                assert torch.equal(a[key], b[key]), key


def test_short_batches_fill_with_ignored_rows():
    batch = {"input_ids": torch.arange(6).view(3, 2), "labels": torch.tensor([0, 1, 1]),
             "index": torch.tensor([7, 8, 9])}
    full = parallel.pad_rows(batch, 5)
    assert full["labels"].tolist() == [0, 1, 1, parallel.IGNORE, parallel.IGNORE]
    assert full["input_ids"][3:].tolist() == [[0, 1], [2, 3]] and "index" not in full
    logits = torch.randn(5, 2)
    assert torch.nn.functional.cross_entropy(logits, full["labels"]) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits[:3], batch["labels"])))


def test_shards_of_a_global_batch_cover_it_once():
    batch = {"labels": torch.arange(7), "x": torch.arange(14).view(7, 2)}
    shares = [parallel.shard(batch, parallel.World(r, 3)) for r in range(3)]
    assert torch.cat([s["labels"] for s in shares]).tolist() == list(range(7))
    assert [len(s["labels"]) for s in shares] == [2, 2, 3]


def _train(folder, fast: bool):
    torch.manual_seed(0)
    model = classifier.build(folder, 2, ModelConfig(max_length=32, dropout=0.0))
    enc, val = _encoded(folder, 150, 0), _encoded(folder, 60, 9)  # 150: a short last batch
    cpu = torch.device("cpu")
    train = Resident.of(enc, cpu, 16) if fast else enc
    batches = (lambda e: resident_batches(train, 16, e, 16)) if fast else \
        (lambda e: text_batches(enc, 16, e, 1))
    cfg = TrainConfig(epochs=3, lr=3e-3, device="cpu", patience=3, compile="on" if fast else
                      "off", compile_width_multiple=16)

    def validate(net):
        net.eval()
        logits = run(net, text_batches(val, 64, None), len(val), cpu)
        loss = torch.nn.functional.cross_entropy(logits, val.labels)
        return {"val_accuracy": float((logits.argmax(1) == val.labels).float().mean()),
                "val_loss": float(loss)}

    groups = strategies.Full(backbone_lr_factor=1.0).configure(model, cfg.lr, 0.0)
    result = fit(model, groups, batches, -(-len(enc) // 16), validate, cfg, None)
    return result, {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_fast_compiled_path_learns_what_the_plain_path_learns(nodrop_bert):
    from torch._dynamo.utils import counters

    counters.clear()
    plain, w_plain = _train(nodrop_bert, fast=False)
    assert not counters["stats"]["unique_graphs"]
    fast, w_fast = _train(nodrop_bert, fast=True)
    graphs = counters["stats"]["unique_graphs"]
    assert 1 <= graphs <= 4, f"{graphs} compiled graphs: shapes are not bounded"
    assert plain.best_metric >= 0.8  # it learned something, so agreement is not trivial
    for a, b in zip(plain.history, fast.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-3)
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-3)
        assert b["val_accuracy"] == pytest.approx(a["val_accuracy"], abs=1 / 60 + 1e-9)
    drift = max(float((w_plain[k] - w_fast[k]).abs().max()) for k in w_plain)
    assert drift < 1e-3, f"fast and plain weights differ by {drift}"

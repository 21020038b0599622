"""Strategies, batching and the training loop on a tiny BERT built from a config."""

import pytest
import torch

from ferry.config import ModelConfig, StrategyConfig, TrainConfig
from ferry.errors import CheckpointError, ConfigError
from ferry.models import classifier
from ferry.transfer import strategies
from ferry.transfer.batching import encode, text_batches, train_order
from ferry.transfer.checkpoint import Checkpointer
from ferry.transfer.loop import fit
from tests.conftest import review_rows


def _model(tiny_bert):
    torch.manual_seed(0)
    return classifier.build(tiny_bert, 2, ModelConfig(max_length=32, dropout=0.0))


def _encoded(tiny_bert, n=64, seed=0):
    rows = review_rows(n, seed)
    tok = classifier.load_tokenizer(tiny_bert)
    return encode(tok, [t for t, _ in rows], [int(lbl == "fresh") for _, lbl in rows], 32)


def _one_step(model, groups, enc):
    opt = torch.optim.AdamW(groups)
    batch = next(iter(text_batches(enc, 16, seed=1)))
    loss = torch.nn.functional.cross_entropy(model(batch), batch["labels"])
    loss.backward()
    return opt


def test_freeze_bottom_freezes_embeddings_and_first_layers(tiny_bert):
    model, enc = _model(tiny_bert), _encoded(tiny_bert)
    policy = strategies.from_config(StrategyConfig(
        name="freeze_bottom", freeze_bottom={"frozen_layers": 1}))
    _one_step(model, policy.configure(model, 1e-3, 0.01), enc)
    bottom, blocks = classifier.layer_groups(model)
    assert len(blocks) == 2
    assert all(p.grad is None and not p.requires_grad for p in bottom)
    assert all(p.grad is None for p in blocks[0])
    assert all(p.grad is not None for p in blocks[1])
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters())
    assert policy.state(model)["trainable"][0].startswith("encoder.encoder.layer.1.")


def test_full_uses_discriminative_learning_rates(tiny_bert):
    model = _model(tiny_bert)
    groups = strategies.from_config(StrategyConfig(name="full", backbone_lr_factor=0.1)) \
        .configure(model, 1e-3, 0.01)
    head_ids = {id(p) for p in model.head.parameters()}
    lrs = {("head" if id(g["params"][0]) in head_ids else "body"): g["lr"] for g in groups}
    assert lrs == {"head": pytest.approx(1e-3), "body": pytest.approx(1e-4)}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert all(g["weight_decay"] == 0 for g in groups if g["params"][0].ndim == 1)


def test_linear_probe_trains_only_the_head(tiny_bert):
    model = _model(tiny_bert)
    policy = strategies.from_config(StrategyConfig(name="linear_probe"))
    groups = policy.configure(model, 1e-3, 0.0)
    assert policy.cached_features
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in
                                                            model.head.parameters()}
    assert not any(p.requires_grad for p in model.encoder.parameters())


def test_freezing_more_layers_than_exist_is_a_config_error(tiny_bert):
    policy = strategies.from_config(StrategyConfig(
        name="freeze_bottom", freeze_bottom={"frozen_layers": 5}))
    with pytest.raises(ConfigError, match="frozen_layers=5 but the backbone has only 2"):
        policy.configure(_model(tiny_bert), 1e-3, 0.0)


def test_dynamic_padding_and_length_grouping(tiny_bert):
    enc = _encoded(tiny_bert, 200)
    batches = list(text_batches(enc, 16, seed=3))
    assert all(b["input_ids"].shape[1] % 8 == 0 for b in batches)
    assert max(b["input_ids"].shape[1] for b in batches) < 32
    seen = torch.cat([b["index"] for b in batches])
    assert sorted(seen.tolist()) == list(range(200))
    assert [b.tolist() for b in train_order(enc.lengths, 16, 3)] == \
        [b.tolist() for b in train_order(enc.lengths, 16, 3)]
    for b in batches:  # every real token is kept and masked in
        assert b["attention_mask"].sum().item() == enc.lengths[b["index"]].sum().item()


def _fit(model, enc, val, cfg, ckpt, on_epoch=None):
    from ferry.transfer.inference import run

    groups = strategies.Full(backbone_lr_factor=1.0).configure(model, cfg.lr, 0.0)

    def validate(net):
        net.eval()
        logits = run(net, text_batches(val, 64, None), len(val), torch.device("cpu"))
        return {"val_accuracy": float((logits.argmax(1) == val.labels).float().mean())}

    return fit(model, groups, lambda e: text_batches(enc, 16, e), -(-len(enc) // 16), validate,
               cfg, ckpt, {"config": "test"}, on_epoch)


def test_loop_learns_and_resumes_after_a_crash(tiny_bert, tmp_path):
    enc, val = _encoded(tiny_bert, 160), _encoded(tiny_bert, 60, seed=9)
    cfg = TrainConfig(epochs=3, lr=3e-3, device="cpu", patience=3)
    ckpt = Checkpointer(tmp_path / "ckpt", {"run": "a"})

    def crash(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        _fit(_model(tiny_bert), enc, val, cfg, ckpt, crash)
    assert torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)["epoch"] == 2
    assert not list((tmp_path / "ckpt").glob(".*tmp"))  # atomic writes leave no temp files
    result = _fit(_model(tiny_bert), enc, val, cfg, Checkpointer(tmp_path / "ckpt", {"run": "a"}))
    assert result.resumed_from == 2 and len(result.history) == 3
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_metric >= 0.8  # the cue words make this separable


def test_checkpoint_of_another_run_is_refused(tiny_bert, tmp_path):
    Checkpointer(tmp_path, {"run": "a"}).save({"epoch": 1})
    with pytest.raises(CheckpointError, match="another config or data version"):
        Checkpointer(tmp_path, {"run": "b"}).load()


def _groups_signature(opt_state: dict) -> list[tuple]:
    """Param groups as (lr, weight decay, parameter count), comparable across processes."""
    return [(round(g["lr"], 12), g["weight_decay"], len(g["params"]))
            for g in opt_state["param_groups"]]


def _unfreeze_fit(tiny_bert, enc, val, folder, on_epoch=None):
    from ferry.transfer.inference import run
    from ferry.transfer.training import BoundPolicy

    torch.manual_seed(0)
    model = _model(tiny_bert)
    policy = strategies.from_config(StrategyConfig(name="gradual_unfreeze", layer_decay=0.5))
    groups = policy.configure(model, 3e-3, 0.01)
    cfg = TrainConfig(epochs=4, lr=3e-3, device="cpu", patience=4)

    def validate(net):
        net.eval()
        logits = run(net, text_batches(val, 64, None), len(val), torch.device("cpu"))
        return {"val_accuracy": float((logits.argmax(1) == val.labels).float().mean())}

    result = fit(model, groups, lambda e: text_batches(enc, 16, e), -(-len(enc) // 16),
                 validate, cfg, Checkpointer(folder, {"run": "gu"}), None, on_epoch,
                 hooks=BoundPolicy(policy, model, 3e-3, 0.01))
    return model, result


def test_gradual_unfreeze_resume_keeps_unfrozen_layers_and_param_groups(tiny_bert, tmp_path):
    enc, val = _encoded(tiny_bert, 96), _encoded(tiny_bert, 30, seed=9)

    def stop_at(n):
        def hook(epoch, record):
            if epoch == n:
                raise KeyboardInterrupt("killed")
        return hook

    # reference: uninterrupted until the end of epoch 3
    with pytest.raises(KeyboardInterrupt):
        _unfreeze_fit(tiny_bert, enc, val, tmp_path / "ref", stop_at(3))
    reference = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)
    # killed after epoch 2 (the first unfreeze step happened at its start), then resumed
    with pytest.raises(KeyboardInterrupt):
        _unfreeze_fit(tiny_bert, enc, val, tmp_path / "run", stop_at(2))
    killed = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert killed["strategy"]["unfrozen"] == 1
    assert any(n.startswith("encoder.encoder.layer.1.") for n in killed["strategy"]["trainable"])
    with pytest.raises(KeyboardInterrupt):
        _unfreeze_fit(tiny_bert, enc, val, tmp_path / "run", stop_at(3))
    resumed = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert resumed["strategy"] == reference["strategy"]  # same unfrozen set, step 2
    assert _groups_signature(resumed["optimizer"]) == \
        _groups_signature(reference["optimizer"])
    lrs = sorted({g[0] for g in _groups_signature(resumed["optimizer"])})
    # head : top block (x0.1 backbone factor) : next block (x0.5 layer decay), all on schedule
    assert [lr / lrs[-1] for lr in lrs] == pytest.approx([0.05, 0.1, 1.0])
    for key, tensor in reference["model"].items():  # resumed training == uninterrupted
        assert torch.allclose(tensor, resumed["model"][key], atol=1e-5), key

"""DDP under torchrun, on the CPU with gloo: 2 processes learn what 1 process learns.

The tiny model has no dropout, so the only differences between the runs are the order of
floating-point reductions: the 2-process run's shares of each global batch, averaged by DDP,
give the global batch's gradient.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from ferry import tracking
from ferry.config import load_config
from tests.conftest import make_tiny_bert, review_rows, tiny_overrides, write_csv


@pytest.fixture
def ddp_project(project, tmp_path_factory, prefect_harness):
    model = make_tiny_bert(tmp_path_factory.mktemp("tiny-bert-nodrop"), dropout=0.0)
    data = write_csv(project / "reviews.csv", review_rows(200))
    return project, [*tiny_overrides(model, data), "model.dropout=0", "train.device=cpu",
                     "train.epochs=3", "baseline=none", "shift.enabled=false"]


def _run(overrides: list[str]) -> tuple[dict, Path]:
    from flows.transfer import transfer

    cfg = load_config(None, overrides)
    result = transfer(cfg)
    folder = next(Path(cfg.paths.checkpoints).glob("transfer-*"))
    return result, folder


def test_two_gloo_processes_match_one(ddp_project):
    root, overrides = ddp_project
    one, one_dir = _run([*overrides, "paths.checkpoints=ckpt-1"])
    two, two_dir = _run([*overrides, "paths.checkpoints=ckpt-2", "distributed.nproc=2"])

    done_one = json.loads((one_dir / "complete.json").read_text())
    done_two = json.loads((two_dir / "complete.json").read_text())
    assert done_one["world_size"] == 1 and done_two["world_size"] == 2
    assert (two_dir / "ddp-spec.json").is_file()
    for a, b in zip(done_one["history"], done_two["history"], strict=True):
        assert b["rows_per_process"] == a["rows_per_process"] / 2  # each rank trained on half
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=2e-3)
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=2e-3)
        assert b["val_accuracy"] == pytest.approx(a["val_accuracy"], abs=0.02)
    m1, m2 = one["metrics"], two["metrics"]
    assert m2["test_accuracy"] == pytest.approx(m1["test_accuracy"], abs=0.02)
    w1 = load_file(str(one_dir / "model" / "model.safetensors"))
    w2 = load_file(str(two_dir / "model" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    drift = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    print(f"max weight difference 1 vs 2 processes: {drift:.2e}")
    assert drift < 1e-3, f"weights of 1- and 2-process training differ by {drift}"

    # The launching task alone tracked: both runs registered once, with per-epoch history.
    cfg = load_config(None, overrides)
    client = tracking.client(cfg, root)
    versions = {int(v.version) for v in client.search_model_versions("name='tiny'")}
    assert versions == {1, 2}
    history = client.get_metric_history(two["run_id"], "val_accuracy")
    assert [int(h.step) for h in history] == [1, 2, 3]
    params = client.get_run(two["run_id"]).data.params
    assert params["distributed.nproc"] == "2"

"""The image path end to end: real Fashion-MNIST PNGs (Debian package), the real packaged
EfficientNet-Lite0 weights, the real flow, MLflow registry and pyfunc; bad image input.
"""

from __future__ import annotations

import contextlib
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ferry import tracking
from ferry.config import DataConfig, ImageConfig, load_config
from ferry.data import fashion_mnist, recipes
from ferry.errors import FerryError
from tests.conftest import seed_store

LABELS = fashion_mnist.LABELS


def image_overrides(path, **extra) -> list[str]:
    """A quick image run: 32 px, three short epochs, the packaged EfficientNet-Lite0."""
    items = {"data.modality": "image", "data.recipe": "null", "data.path": str(path),
             "data.dvc_file": "none.dvc", "data.split_column": "split",
             "data.labels": "[" + ", ".join(LABELS) + "]", "data.min_class_count": "5",
             "data.image.size": "32", "model.source": "packaged",
             "model.name": "efficientnet-lite0", "train.epochs": "3", "train.lr": "0.002",
             "train.batch_size": "16",
             "strategy.backbone_lr_factor": "1.0", "shift.max_samples": "40",
             "tracking.experiment": "images", "tracking.model_name": "fm-tiny", **extra}
    return [f"{k}={v}" for k, v in items.items()]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, empty_store, prefect_harness):
    """A project with 200 + 60 real Fashion-MNIST images and one registered image model."""
    root = tmp_path_factory.mktemp("images")
    seed_store(root, empty_store)
    manifest = recipes.build("fashion-mnist", root / "fm" / "manifest.csv",
                             DataConfig(image=ImageConfig(subset_train=200, subset_test=60)))
    with contextlib.chdir(root):
        from flows.transfer import transfer

        cfg = load_config(None, image_overrides(manifest))
        result = transfer(cfg)
        yield root, manifest, cfg, result


def test_image_flow_trains_scores_and_registers(image_run):
    root, _, cfg, result = image_run
    mc = tracking.client(cfg, root)
    run = mc.get_run(result["run_id"])
    metrics, tags = run.data.metrics, run.data.tags
    # it learned: 10 classes (chance 0.1); measured 0.48 vs 0.13 from scratch (seed 42)
    assert metrics["test_accuracy"] >= 0.3
    assert metrics["test_accuracy"] >= metrics["scratch_test_accuracy"] + 0.15
    assert "transfer_gain" in metrics and metrics["data.rows_test"] == 60
    # the classical receipt: logistic regression on 16 px pixels of the same split files
    assert metrics["classical_test_accuracy"] >= 0.3 and metrics["classical_test_macro_f1"] > 0
    assert metrics["gain_over_classical"] == pytest.approx(
        metrics["test_accuracy"] - metrics["classical_test_accuracy"])
    assert metrics["gain_over_classical_ci_low"] <= metrics["gain_over_classical"] <= \
        metrics["gain_over_classical_ci_high"]
    assert tags["ferry.beats_classical"] == str(metrics["gain_over_classical"] > 0).lower()
    assert tags["ferry.classical"].startswith("logistic regression on 16x16 pixels")
    assert tags["data.md5"].endswith(".dir")  # untracked images: their whole folder's md5
    assert tracking.Tracker(cfg, root).registry.state()["aliases"] == {"challenger": 1}
    version = mc.get_model_version("fm-tiny", "1")
    assert version.tags["pretrained.source"] == "packaged:efficientnet-lite0"
    assert len(version.tags["pretrained.sha256"]) == 64


def test_registered_image_model_predicts_files_and_arrays(image_run):
    root, manifest, cfg, result = image_run
    model = tracking.Tracker(cfg, root).model("fm-tiny").load("challenger")
    frame = pd.read_csv(manifest).query("split == 'test'")
    paths = [str(manifest.parent / p) for p in frame["path"]]
    by_path = model.predict(paths)
    served = float(np.mean(np.array(by_path) == frame["label"].to_numpy()))
    run = tracking.client(cfg, root).get_run(result["run_id"])
    assert served == pytest.approx(run.data.metrics["test_accuracy"])  # what was evaluated
    arrays = np.stack([np.asarray(Image.open(p)) for p in paths[:6]])  # 6 x 28 x 28 grayscale
    assert model.predict(arrays) == by_path[:6]
    assert model.predict(arrays[0]) == by_path[:1]
    with pytest.raises(ValueError, match="input 0: expected an image file path"):
        model.predict([3.5])


def _copy_dataset(root, name):
    src = root / "fm"
    dst = root / name
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst, pd.read_csv(dst / "manifest.csv")


def _corrupt(root):
    dst, frame = _copy_dataset(root, "corrupt")
    target = dst / frame["path"][5]
    target.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return dst / "manifest.csv", target.name


def _zero_byte(root):
    dst, frame = _copy_dataset(root, "zero")
    target = dst / frame["path"][7]
    target.write_bytes(b"")
    return dst / "manifest.csv", target.name


def _unknown_label(root):
    dst, frame = _copy_dataset(root, "unknown")
    frame.loc[3, "label"] = "sandals"
    frame.to_csv(dst / "manifest.csv", index=False)
    return dst / "manifest.csv", frame["path"][3].split("/")[-1]


def _duplicate(root):
    dst, frame = _copy_dataset(root, "dup")
    train = frame[frame["split"] == "train"].iloc[0]
    test = frame[frame["split"] == "test"].iloc[0]
    shutil.copy(dst / train["path"], dst / test["path"])  # the same pixels on both sides
    return dst / "manifest.csv", train["path"].split("/")[-1]


def _empty_class(root):
    dst = root / "folder-empty"
    shutil.rmtree(dst, ignore_errors=True)
    frame = pd.read_csv(root / "fm" / "manifest.csv")
    for split, label, path in frame[["split", "label", "path"]].itertuples(index=False):
        (dst / split / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "fm" / path, dst / split / label)
    for file in (dst / "test" / "bag").iterdir():
        file.unlink()
    return dst, "test/bag"


CASES = {
    "corrupt png": (_corrupt, r"'problem'[\s\S]*{name}: 'cannot decode"),
    "zero-byte file": (_zero_byte, r"'problem'[\s\S]*{name}: 'empty file \(0 bytes\)'"),
    "unknown label": (_unknown_label, r"be_in_set on column 'label'[\s\S]*{name}: 'sandals'"),
    "train/test duplicate": (_duplicate, r"train-test-leakage[\s\S]*{name}"),
    "empty class folder": (_empty_class, r"{name}: empty class folder"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_image_input_is_named_and_registers_nothing(image_run, case, monkeypatch):
    root, _, cfg, _ = image_run
    monkeypatch.chdir(root)
    make, pattern = CASES[case]
    path, name = make(root)
    before = tracking.Tracker(cfg, root).registry.state()
    from flows.transfer import transfer

    with pytest.raises(FerryError, match=pattern.format(name=name)):
        transfer(load_config(None, image_overrides(path)))
    assert tracking.Tracker(cfg, root).registry.state() == before


KIND = {"sandal": "footwear", "sneaker": "footwear", "ankle-boot": "footwear", "bag": "bag"}


def test_an_image_model_with_two_heads_answers_both(image_run, tmp_path):
    """Multi-task on images: the class and its kind (footwear / bag / clothing) from one
    backbone (a probe: both heads on the same cached features), each with its own metrics;
    the registered model returns both columns."""
    root, manifest, _, _ = image_run
    frame = pd.read_csv(manifest)
    frame["kind"] = [KIND.get(label, "clothing") for label in frame["label"]]
    two = manifest.parent / "two-tasks.csv"
    frame.to_csv(two, index=False)
    with contextlib.chdir(root):
        from flows.transfer import transfer

        labels = "[" + ", ".join(LABELS) + "]"
        cfg = load_config(None, [*image_overrides(two, **{"tracking.model_name": "fm-two",
                                                          "baseline": "none",
                                                          "shift.enabled": "false",
                                                          "strategy.name": "linear_probe"}),
                                 f"data.tasks=[{{column: label, labels: {labels}}}, "
                                 "{column: kind}]"])
        result = transfer(cfg)
    metrics = result["metrics"]
    assert metrics["test_label_accuracy"] >= 0.3 and metrics["test_kind_accuracy"] >= 0.75
    assert metrics["classical_kind_test_accuracy"] > 0
    model = tracking.Tracker(cfg, root).model("fm-two").load("challenger")
    test = frame.query("split == 'test'")
    out = model.predict([str(manifest.parent / p) for p in test["path"]])
    assert list(out.columns) == ["label", "kind"]
    assert (out["kind"].to_numpy() == test["kind"].to_numpy()).mean() >= 0.75

"""Multi-task and multi-label models through the real flow: one registered model, per-task
metrics and receipts, thresholds stored and used, answers from the model loaded by alias."""

from __future__ import annotations

import json
import random

import pytest

from ferry import tracking
from ferry.config import load_config
from tests.conftest import FILLER, WORDS, tiny_overrides, write_csv

# The second task reads another cue than the first: which half of its word list the cue is in.
ASPECT = {w: ("strong" if i % 5 < 2 else "mild") for i, w in enumerate(WORDS)}


def _two_task_rows(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """label from the cue's polarity, aspect from the cue itself; every 4th row has no
    aspect (it trains the label task only)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "fresh" if i % 2 == 0 else "rotten"
        cue = rng.choice(WORDS[:5] if label == "fresh" else WORDS[5:])
        words = rng.sample(FILLER, rng.randint(2, 5)) + [cue] * 2
        rng.shuffle(words)
        rows.append((" ".join(words) + f" {i}", label, "" if i % 4 == 3 else ASPECT[cue]))
    return rows


def _run(overrides: list[str]):
    from flows.transfer import transfer

    cfg = load_config(None, overrides)
    return cfg, transfer(cfg)


@pytest.fixture
def tiny(project, tiny_bert, prefect_harness):
    return project, tiny_bert


def test_multitask_model_answers_every_task_with_per_task_metrics_and_receipts(tiny):
    root, bert = tiny
    data = write_csv(root / "two.csv", _two_task_rows(240), header="text,label,aspect")
    overrides = [o for o in tiny_overrides(bert, data) if not o.startswith("data.labels")]
    cfg, result = _run([*overrides, "data.tasks=[{column: label}, {column: aspect}]",
                        "train.epochs=4", "shift.enabled=false"])
    assert result["model"]["version"] == "1"
    metrics = result["metrics"]
    assert metrics["test_label_accuracy"] >= 0.8 and metrics["test_aspect_accuracy"] >= 0.7
    assert metrics["test_accuracy"] == pytest.approx(
        (metrics["test_label_accuracy"] + metrics["test_aspect_accuracy"]) / 2)

    mc = tracking.client(cfg, root)
    run = mc.get_run(result["run_id"])
    for key in ("test_label_macro_f1", "test_aspect_recall_strong", "transfer_gain_label",
                "transfer_gain_aspect", "classical_aspect_test_accuracy"):
        assert key in run.data.metrics, sorted(run.data.metrics)
    for task in ("label", "aspect"):  # a confusion matrix per task, each in its own folder
        files = {a.path for a in mc.list_artifacts(result["run_id"],
                                                    f"evaluation/transfer/{task}")}
        assert f"evaluation/transfer/{task}/confusion_matrix.png" in files
    model = tracking.Tracker(cfg, root).model("tiny").load("challenger")
    texts = ["the film superb superb", "the plot dull was dull"]
    out = model.predict(texts)
    assert list(out.columns) == ["label", "aspect"]
    assert out["label"].tolist() == ["fresh", "rotten"]
    assert out["aspect"].tolist() == [ASPECT["superb"], ASPECT["dull"]]


def _multilabel_rows(n: int, seed: int = 1) -> list[tuple[str, str]]:
    """Tags from the words present: a polarity tag, plus 'acting' / 'plot' when those words
    appear (rows with neither carry only their polarity)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        polarity = "positive" if i % 2 == 0 else "negative"
        cue = rng.choice(WORDS[:5] if polarity == "positive" else WORDS[5:])
        extra = rng.sample(["acting", "plot", "movie", "film"], rng.randint(0, 2))
        words = [cue, cue, *extra, "the", "was"]
        rng.shuffle(words)
        tags = [polarity, *sorted(t for t in extra if t in ("acting", "plot"))]
        rows.append((" ".join(words) + f" {i}", "|".join(tags)))
    return rows


def test_multilabel_model_stores_thresholds_and_returns_label_lists(tiny):
    root, bert = tiny
    data = write_csv(root / "tags.csv", _multilabel_rows(240))
    overrides = [o for o in tiny_overrides(bert, data) if not o.startswith("data.labels")]
    cfg, result = _run([*overrides, "data.label_separator='|'", "train.epochs=8",
                        "tracking.model_name=tags", "baseline=none", "shift.enabled=false"])
    metrics = result["metrics"]
    assert cfg.train.select_on == "macro_f1"
    assert metrics["test_macro_f1"] >= 0.75 and metrics["test_micro_f1"] >= 0.8, metrics

    registry = tracking.Tracker(cfg, root).model("tags")
    model = registry.load("challenger")
    folder = registry.model_folder(registry.alias_version("challenger"), root / "meta")
    meta = json.loads((folder / "ferry_model.json").read_text())
    task = meta["tasks"][0]
    assert task["multi"] and len(task["thresholds"]) == len(task["labels"]) == 4
    assert any(t != 0.5 for t in task["thresholds"])  # tuned on validation, not the default
    fresh = _multilabel_rows(30, seed=7)  # texts the model never saw, drawn alike
    out = model.predict([text for text, _ in fresh])
    assert all(isinstance(tags, list) for tags in out)
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    binarize = MultiLabelBinarizer(classes=task["labels"]).fit([])
    truth = binarize.transform([want.split("|") for _, want in fresh])
    micro = f1_score(truth, binarize.transform(out), average="micro")
    assert micro >= 0.8, out  # the tags of unseen texts, mostly right

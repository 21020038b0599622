"""Long documents through the flow: the label cue sits only at the END of each text, past
``model.max_length``. Truncation cannot see it; chunking reads it, and the same chunked text gets
the same prediction from the flow's evaluation, the registered pyfunc model and batch scoring."""

from __future__ import annotations

import random

import pytest

from ferry import tracking
from ferry.config import load_config
from tests.conftest import FILLER, WORDS, tiny_overrides, write_csv


def cue_at_the_end(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Texts of 36-44 filler words (the same mix for both labels), then 3 cue words: past the
    30 text tokens a 32-token window holds, in the second or third window."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "fresh" if i % 2 == 0 else "rotten"
        cues = WORDS[:5] if label == "fresh" else WORDS[5:]
        filler = [rng.choice(FILLER) for _ in range(rng.randint(36, 44))]
        rows.append((f"{i} " + " ".join([*filler, *rng.choices(cues, k=3)]), label))
    return rows


@pytest.fixture
def long_project(project, tiny_bert, prefect_harness):
    data = write_csv(project / "long.csv", cue_at_the_end(160))
    return project, [*tiny_overrides(tiny_bert, data), "train.epochs=8", "train.patience=8",
                     "data.split.test=0.25", "baseline=none", "shift.enabled=false"]


def _run(overrides):
    from flows.transfer import transfer

    cfg = load_config(None, overrides)
    return cfg, transfer(cfg)


def test_chunked_documents_predict_alike_everywhere_and_beat_truncation(long_project):
    from ferry.data.splits import read_split
    from ferry.transfer import inference, scoring
    from ferry.transfer.runtime import resolve_device

    root, overrides = long_project
    cfg, chunked = _run([*overrides, "data.chunk.pooling=attention",
                         "tracking.model_name=tiny-chunk"])
    _, truncated = _run([*overrides, "data.long_text=truncate",
                         "tracking.model_name=tiny-truncate"])

    run = tracking.client(cfg, root).get_run(chunked["run_id"])
    assert run.data.tags["data.long_text"] == "chunk"  # auto: every training text is cut
    assert run.data.metrics["data.texts_cut_share"] == 1.0
    assert run.data.metrics["data.tokens_cut_mean"] > 5
    assert run.data.metrics["data.test_texts_cut"] == 40
    assert run.data.metrics["data.windows_mean"] >= 2
    assert chunked["metrics"]["test_accuracy"] >= 0.85
    assert truncated["metrics"]["test_accuracy"] <= 0.7  # the cue is out of its sight
    assert chunked["metrics"]["test_accuracy"] > truncated["metrics"]["test_accuracy"] + 0.2

    model_dir = next(p for p in (root / cfg.paths.checkpoints).glob("transfer-*/model")
                     if '"long_text": "chunk"' in (p / "ferry_model.json").read_text())
    test = read_split(next((root / cfg.paths.prepared).glob("*/test.csv")).parent, "test")
    texts = test[cfg.data.text_column].tolist()
    labels = cfg.data.labels
    flow_preds = [labels[i] for i in scoring.predictions(model_dir, "")["y_pred"]]
    pyfunc = tracking.Tracker(cfg, root).model("tiny-chunk").load("1")  # pyfunc.load_model
    batch = inference.predict_folder(model_dir, texts, 4, resolve_device("cpu"))
    assert len(flow_preds) == len(texts) == 40
    assert pyfunc.predict(texts) == flow_preds
    assert [labels[i] for i in batch.argmax(1).tolist()] == flow_preds
    assert len(set(flow_preds)) == 2

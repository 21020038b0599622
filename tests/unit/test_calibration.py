"""Temperature scaling: fitted on over-confident logits it calibrates them, never changes an
answer, and travels with the model folder's metadata (an older folder reads as T = 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ferry.evaluation import calibration
from ferry.evaluation.calibration import expected_calibration_error, fit_temperature
from ferry.models.meta import ModelMeta
from ferry.models.tasks import Layout, Task


def _overconfident(n: int, classes: int = 4, scale: float = 4.0, seed: int = 0):
    """Logits 4x sharper than the distribution the labels are drawn from."""
    rng = np.random.default_rng(seed)
    true = rng.normal(0.0, 1.5, size=(n, classes))
    p = np.exp(true - true.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(classes, p=row) for row in p])
    return (true * scale).astype(np.float32), y


def _softmax(x: np.ndarray, t: float = 1.0) -> np.ndarray:
    z = x / t - (x / t).max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def test_an_overconfident_model_gets_t_above_one_and_a_lower_ece():
    logits, y = _overconfident(2000)
    t = fit_temperature(logits[:1000], y[:1000])  # fitted on "validation", judged on "test"
    assert 2.5 < t < 6.0  # the logits were 4x too sharp
    before = expected_calibration_error(_softmax(logits[1000:]), y[1000:])
    after = expected_calibration_error(_softmax(logits[1000:], t), y[1000:])
    assert before > 0.1 and after < before / 2, (before, after)
    assert fit_temperature(logits[:1000], y[:1000]) == t  # deterministic: re-runs agree


def test_temperature_never_changes_an_answer():
    logits, _ = _overconfident(300)
    layout = Layout([Task(name="label", labels=list("abcd"), temperature=3.0)])
    raw = layout.probabilities(logits, calibrated=False)[0]
    cal = layout.probabilities(logits)[0]
    assert (raw.argmax(1) == cal.argmax(1)).all()
    assert cal.max(1).mean() < raw.max(1).mean()  # only the confidence moves
    np.testing.assert_allclose(cal, _softmax(logits, 3.0), rtol=1e-5, atol=1e-6)


def test_unlabelled_rows_are_ignored_by_the_fit():
    logits, y = _overconfident(500)
    noisy = np.concatenate([logits, np.full((200, 4), [50.0, -50.0, 0.0, 0.0], np.float32)])
    mixed = np.concatenate([y, np.full(200, -1)])
    assert fit_temperature(noisy, mixed) == pytest.approx(fit_temperature(logits, y))
    assert fit_temperature(logits[:5], y[:5]) == 1.0  # too few labelled rows to fit
    assert fit_temperature(noisy[500:], mixed[500:]) == 1.0  # none labelled


def test_ece_of_a_perfectly_calibrated_bin_is_zero():
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 0])) == pytest.approx(0.25)


def _round_trip(layout: Layout) -> Layout:
    meta = ModelMeta(labels=list(layout.tasks[0].labels), **layout.to_meta())
    return Layout.from_meta(ModelMeta.model_validate_json(meta.model_dump_json()))


def test_temperatures_travel_with_the_model_metadata():
    classic = Layout([Task(name="label", labels=["rotten", "fresh"], temperature=1.7)])
    assert _round_trip(classic).tasks[0].temperature == 1.7
    two = Layout([Task(name="party", labels=["l", "r"], temperature=2.5),
                  Task(name="topic", labels=["tax", "war"], multi=True, separator="|",
                       thresholds=[0.4, 0.6])])
    back = _round_trip(two)
    assert [t.temperature for t in back.tasks] == [2.5, 1.0]
    assert back.tasks[1].thresholds == [0.4, 0.6]
    old = ModelMeta.model_validate_json('{"labels": ["a", "b"]}')  # before calibration
    assert Layout.from_meta(old).tasks[0].temperature == 1.0
    old_tasks = ModelMeta.model_validate({"labels": ["l", "r"], "tasks": [
        {"name": "party", "labels": ["l", "r"]}, {"name": "x", "labels": ["p", "q"]}]})
    assert [t.temperature for t in Layout.from_meta(old_tasks).tasks] == [1.0, 1.0]


def test_evaluation_helpers_key_and_lay_out_per_task(tmp_path):
    logits, y = _overconfident(400)
    two = Layout([Task(name="party", labels=list("abcd")),
                  Task(name="topic", labels=["tax", "war"], multi=True, separator="|")])
    wide = np.concatenate([logits, np.zeros((400, 2), np.float32)], 1)
    targets = np.stack([y, np.zeros(400, int), np.ones(400, int)], 1)
    assert calibration.calibrate(two, targets, wide)
    assert two.tasks[0].temperature > 2 and two.tasks[1].temperature == 1.0
    m = calibration.scores(two, targets, wide, "scratch_")
    assert set(m) == {"scratch_test_party_ece_raw", "scratch_test_party_ece",
                      "scratch_party_temperature"}
    assert m["scratch_test_party_ece"] < m["scratch_test_party_ece_raw"]
    paths = calibration.diagrams(two, targets, wide, tmp_path)
    assert paths == [tmp_path / "party" / "reliability.png"] and paths[0].stat().st_size > 0


def test_evaluation_fits_on_validation_records_t_and_reuses_only_calibrated_scores(
        tmp_path, monkeypatch):
    from ferry.config import FerryConfig
    from ferry.models import meta
    from ferry.transfer import scoring

    folder = tmp_path / "run" / "model"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    meta.write(folder, ModelMeta(labels=list("abcd")))
    logits, y = _overconfident(600)
    seen = []

    def split_logits(cfg, model_dir, split_dir, names):
        seen.append(names)
        layout = Layout.from_meta(meta.read(model_dir))
        parts = {"validation": (y[:300], logits[:300]), "test": (y[300:], logits[300:])}
        return layout, {name: parts[name] for name in names}

    monkeypatch.setattr(scoring, "split_logits", split_logits)
    m, artifacts = scoring.evaluate(FerryConfig(), folder, tmp_path, "")
    assert seen == [("validation", "test")]
    assert meta.read(folder).temperature == m["temperature"] > 2  # the registered folder has it
    assert m["test_ece"] < m["test_ece_raw"] and "reliability.png" in {a.name for a in artifacts}
    assert scoring.evaluate(FerryConfig(), folder, tmp_path, "")[0] == m and len(seen) == 1
    saved = scoring.evaluation_dir(folder, "") / "metrics.json"
    record = json.loads(saved.read_text())
    saved.write_text(json.dumps({k: v for k, v in record.items() if k != "calibrated"}))
    assert scoring.evaluate(FerryConfig(), folder, tmp_path, "")[0] == m and len(seen) == 2


def test_the_model_card_shows_ece_before_and_after():
    from ferry.config import FerryConfig
    from ferry.evaluation import card

    facts = card.CardFacts(
        name="m", run_id="r", strategy="full", trainable_params=10, best_epoch=1,
        data_md5="md5", data_origin="here", git_rev="abc", git_dirty=False, source="src",
        source_path="p", source_sha256="sha", rows={"train": 100, "test": 20},
        metrics={"test_accuracy": 0.8, "test_ece_raw": 0.12, "test_ece": 0.03,
                 "temperature": 1.8})
    assert "0.1200 -> **0.0300** (T = 1.800)" in card.render(FerryConfig(), facts)
    facts.metrics = {"test_accuracy": 0.8}  # evaluated before calibration existed
    assert "temperature-scaled" not in card.render(FerryConfig(), facts)

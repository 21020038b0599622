"""The classical baseline of the receipt: tuned on validation, scored on the same test rows."""

import numpy as np
import pytest

from ferry.config import FerryConfig
from ferry.evaluation import card, classical
from tests.conftest import review_rows

SPLITS = ("train", "validation", "test")


def _reviews():
    rows = {name: review_rows(n, seed) for name, n, seed in zip(SPLITS, (120, 40, 60), (0, 1, 2),
                                                                 strict=True)}
    texts = {k: [t for t, _ in v] for k, v in rows.items()}
    labels = {k: [int(lbl == "fresh") for _, lbl in v] for k, v in rows.items()}
    return texts, labels


def test_text_baseline_learns_cue_words_and_is_tuned_on_validation():
    texts, labels = _reviews()
    result = classical.text_baseline(texts, labels)
    assert result.test_accuracy >= 0.9 and result.test_macro_f1 >= 0.9  # chance is 0.5
    assert len(result.y_pred) == 60
    expected = np.mean(result.y_pred == np.array(labels["test"]))
    assert result.test_accuracy == pytest.approx(expected)
    assert len(result.grid) == len(classical.TEXT_C) * len(classical.TEXT_NGRAMS)
    assert result.val_accuracy == max(p["val_accuracy"] for p in result.grid)
    assert set(result.params) == {"C", "ngram_max"} and "TF-IDF" in result.describe()


def test_text_baseline_is_at_chance_when_labels_carry_no_signal():
    """The baseline must not be trivially perfect: shuffled labels leave it near 0.5."""
    texts, labels = _reviews()
    rng = np.random.default_rng(0)
    shuffled = {k: list(rng.permutation(v)) for k, v in labels.items()}
    assert classical.text_baseline(texts, shuffled).test_accuracy < 0.75


def _images(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """Noisy 16 px RGB images of 3 classes: a bright left half, right half, or top half."""
    rng = np.random.default_rng(seed)
    labels = [i % 3 for i in range(n)]
    pixels = rng.integers(0, 120, size=(n, 3, 16, 16)).astype(np.uint8)
    for i, y in enumerate(labels):
        part = (slice(None), slice(None), slice(0, 8)) if y == 0 else \
            (slice(None), slice(None), slice(8, 16)) if y == 1 else \
            (slice(None), slice(0, 8), slice(None))
        pixels[i][part] += 100
    return pixels, labels


def test_image_baseline_learns_pixel_patterns():
    data = {name: _images(n, seed) for name, n, seed in zip(SPLITS, (90, 30, 60), (0, 1, 2),
                                                           strict=True)}
    result = classical.image_baseline({k: v[0] for k, v in data.items()},
                                      {k: v[1] for k, v in data.items()})
    assert result.test_accuracy >= 0.9  # chance is 1/3
    assert "16x16 pixels" in result.describe() and set(result.params) == {"pixels", "C"}
    again = classical.ClassicalResult.from_dict(result.to_dict())  # as kept on disk
    assert again.test_accuracy == result.test_accuracy
    assert (again.y_pred == result.y_pred).all()


def test_grayscale_stored_as_rgb_is_fit_on_one_channel():
    gray = np.repeat(np.arange(2 * 16 * 16, dtype=np.float32).reshape(2, 1, 16, 16), 3, 1)
    assert classical._gray_when_equal(gray).shape == (2, 256)
    gray[0, 2, 0, 0] += 1
    assert classical._gray_when_equal(gray).shape == (2, 768)


@pytest.mark.parametrize(("gain", "low", "needle"), [
    (-0.02, -0.06, "does not beat it"), (0.03, -0.01, "though not significantly"),
    (0.10, 0.05, "the fine-tuned model is better.")])
def test_the_model_card_states_the_classical_verdict(gain, low, needle):
    m = {"classical_test_accuracy": 0.77, "classical_test_macro_f1": 0.76,
         "gain_over_classical": gain, "gain_over_classical_ci_low": low,
         "gain_over_classical_ci_high": gain + 0.04}
    text = card._classical(FerryConfig(), m)
    assert "TF-IDF + logistic regression" in text and "0.7700" in text and needle in text
    assert "receipt.classical: false" in card._classical(FerryConfig(), {})


def test_receipt_classical_false_skips_the_baseline():
    from ferry.steps import classical_gain

    cfg = FerryConfig.model_validate({"receipt": {"classical": False}})
    assert classical_gain(cfg, "no-run", None, None) == {}  # nothing read, fit or logged


def _tasks_table():
    """Reviews with three tasks: ``sentiment`` (cue words; every row), ``venue`` ("movie" in
    the text or not; every third row unlabelled) and multi-label ``topic`` (positive cue,
    "plot" in the text)."""
    from ferry.models.tasks import MISSING, Layout, Task

    layout = Layout([Task(name="sentiment", labels=["rotten", "fresh"]),
                     Task(name="venue", labels=["other", "movie"]),
                     Task(name="topic", labels=["upbeat", "plot"], multi=True, separator="|")])
    texts, targets = {}, {}
    for name, n, seed in zip(SPLITS, (160, 60, 90), (0, 1, 2), strict=True):
        rows = review_rows(n, seed)
        texts[name] = [t for t, _ in rows]
        y = []
        for i, (text, label) in enumerate(rows):
            fresh = int(label == "fresh")
            venue = MISSING if i % 3 == 2 else int("movie" in text.split())
            y.append([fresh, venue, fresh, int("plot" in text.split())])
        targets[name] = np.array(y)
    return layout, texts, targets


def test_the_classical_baseline_is_fit_per_task_on_its_labelled_rows():
    from ferry.evaluation import receipt

    layout, texts, targets = _tasks_table()
    results = classical.per_task(layout, classical.text_features(texts), targets)
    assert set(results) == {"sentiment", "venue", "topic"}
    assert results["sentiment"].test_accuracy >= 0.9  # chance is 0.5
    assert results["venue"].test_accuracy >= 0.85  # one word decides it; chance is ~0.5
    topic = results["topic"]
    assert topic.y_pred.shape == (90, 2) and topic.test_macro_f1 >= 0.85
    assert "val_macro_f1" in topic.grid[0]  # multi-label: tuned on macro-F1
    m = classical.metrics(layout, results)
    assert m["classical_venue_test_accuracy"] == results["venue"].test_accuracy
    assert m["classical_topic_test_macro_f1"] == topic.test_macro_f1
    assert m["classical_test_accuracy"] == pytest.approx(np.mean(
        [r.test_accuracy for r in results.values()]))  # the unprefixed: means over tasks
    assert "classical_test_macro_f1" in m and m["classical_seconds"] > 0
    rec = classical.record(layout, targets["test"], results)
    venue = rec["tasks"]["venue"]
    assert venue["y_true"][2] is None and len(venue["y_pred"]) == 90  # unlabelled: kept out
    labelled = [i for i, t in enumerate(venue["y_true"]) if t is not None]
    assert results["venue"].test_accuracy == pytest.approx(
        np.mean([venue["y_true"][i] == venue["y_pred"][i] for i in labelled]))
    assert receipt.scores(layout, rec)["accuracy"] == pytest.approx(
        m["classical_test_accuracy"])
    again = classical.load(layout, classical.dump(layout, results))
    assert (again["topic"].y_pred == topic.y_pred).all()


def test_one_task_keeps_its_classical_metric_names():
    from ferry.models.tasks import Layout, Task

    texts, labels = _reviews()
    layout = Layout([Task(name="label", labels=["rotten", "fresh"])])
    results = classical.per_task(layout, classical.text_features(texts),
                                 {k: np.array(v) for k, v in labels.items()})
    m = classical.metrics(layout, results)
    assert set(m) == {"classical_test_accuracy", "classical_test_macro_f1",
                      "classical_val_accuracy", "classical_seconds"}
    assert m["classical_test_accuracy"] == classical.text_baseline(texts, labels).test_accuracy
    assert "tasks" not in classical.record(layout, np.array(labels["test"]), results)
    assert "tasks" not in classical.dump(layout, results)  # kept as before there were tasks


def _card_facts(model_dir: str = "", **metrics: float) -> card.CardFacts:
    return card.CardFacts(
        name="m", run_id="r", strategy="full", trainable_params=10, best_epoch=1,
        data_md5="md5", data_origin="here", git_rev="abc", git_dirty=False, source="src",
        source_path="p", source_sha256="sha", rows={"train": 100, "test": 20},
        metrics=metrics, model_dir=model_dir)


def test_the_model_card_has_a_task_table_and_multi_label_thresholds(tmp_path):
    from ferry.models import meta

    cfg = FerryConfig.model_validate({"train": {"select_on": "macro_f1",
                                                "class_weights": "auto"}, "data": {
        "recipe": None, "tasks": [{"column": "party", "labels": ["left", "right"]},
                                  {"column": "topic", "labels": ["tax", "war"],
                                   "separator": "|"}]}})
    meta.write(tmp_path, meta.ModelMeta(labels=["left", "right"], tasks=[
        {"name": "party", "labels": ["left", "right"]},
        {"name": "topic", "labels": ["tax", "war"], "multi": True, "separator": "|",
         "thresholds": [0.35, 0.6]}]))
    m = {"test_accuracy": 0.7, "test_macro_f1": 0.68, "test_party_accuracy": 0.8,
         "test_party_macro_f1": 0.79, "scratch_test_party_accuracy": 0.6,
         "classical_party_test_accuracy": 0.75, "transfer_gain_party": 0.2,
         "transfer_gain_party_ci_low": 0.1, "transfer_gain_party_ci_high": 0.3,
         "test_topic_accuracy": 0.6, "test_topic_macro_f1": 0.57, "test_party_recall_left": 0.9,
         "test_party_recall_right": 0.7, "test_topic_f1_tax": 0.5}
    text = card.render(cfg, _card_facts(str(tmp_path), **m))
    assert "| `party` | 0.8000 | 0.7900 | 0.6000 | 0.7500 | +0.2000 [+0.1000, +0.3000] | - |" \
        in text
    assert "| `topic` | 0.6000 | 0.5700 | - | - | - | - |" in text
    assert "`topic`: tax 0.350, war 0.600" in text  # from the folder's ferry_model.json
    assert "validation macro_f1" in text and "class weights | auto" in text
    assert "Weakest class on the holdout: `party / right` (recall 0.7000)" in text
    assert "(means over the tasks)" in text and len(text) < 5000


def test_the_model_card_of_one_task_reads_as_before():
    cfg = FerryConfig()
    m = {"test_accuracy": 0.8, "test_macro_f1": 0.79, "test_recall_rotten": 0.7,
         "test_recall_fresh": 0.9}
    text = card.render(cfg, _card_facts(**m))
    assert "classifier over 2 labels (rotten, fresh)" in text and "| rotten |" in text
    assert "validation accuracy" in text and "class weights | none" in text
    assert "| task |" not in text and "thresholds" not in text
    assert "always answers with one of them" in text

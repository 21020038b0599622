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

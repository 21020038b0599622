"""Drift figures and their verdict on synthetic embeddings and predictions (no model): what
counts as drift, what does not, and what a retrain request carries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ferry.config import MonitorConfig, load_config
from ferry.errors import ConfigError
from ferry.serving import drift
from ferry.serving.inputs import stem

LABELS = ["rotten", "fresh"]


def _reference(n: int = 200, seed: int = 0) -> drift.Reference:
    rng = np.random.default_rng(seed)
    return drift.Reference(rng.normal(size=(n, 8)).astype(np.float32),
                           rng.integers(0, 2, size=n), LABELS)


def test_same_distribution_is_not_drift_and_a_shifted_one_is():
    monitor = MonitorConfig(permutations=200)
    ref = _reference()
    rng = np.random.default_rng(1)
    same = drift.check(ref, rng.normal(size=(150, 8)), rng.integers(0, 2, size=150), monitor)
    assert not same.drifted and same.mmd_p_value > 0.05 and same.prior_tv < 0.1
    moved = drift.check(ref, rng.normal(loc=0.8, size=(150, 8)), rng.integers(0, 2, size=150),
                        monitor)
    assert moved.mmd_drift and moved.drifted and not moved.prior_drift
    assert moved.mmd_p_value == pytest.approx(1 / 201)
    assert "DRIFT: MMD^2" in moved.line() and "< 0.01" in moved.line()
    assert set(moved.as_dict()) == {"mmd2", "mmd_p_value", "prior_tv", "prior_chi2",
                                    "prior_chi2_p_value", "rows_tested", "reference_rows",
                                    "drift"}


def test_prior_drift_needs_a_material_and_significant_shift():
    monitor = MonitorConfig(permutations=200)
    ref = _reference()
    emb = np.random.default_rng(2).normal(size=(400, 8))
    one_sided = drift.check(ref, emb, np.ones(400, dtype=int), monitor)
    assert one_sided.prior_drift and one_sided.prior_tv > 0.4
    assert one_sided.prior_chi2_p_value < 1e-10
    # a small batch far from the reference's shares by chance only: TV high, not significant
    small = drift.check(ref, emb[:6], np.array([1, 1, 1, 1, 0, 1]), monitor)
    assert small.prior_tv > monitor.max_prior_tv and small.prior_chi2_p_value > 0.01
    assert not small.prior_drift


def test_the_prior_test_keeps_its_false_alarm_rate_on_a_large_batch():
    """The reference is a sample too: a batch 10x its size from the same distribution is
    flagged at about the nominal rate (a one-sample test against the reference's shares
    would flag ~40% of such batches at p < 0.01)."""
    rng = np.random.default_rng(0)
    alarms = 0
    for _ in range(300):
        ref = drift.Reference(np.zeros((300, 2)), rng.integers(0, 2, 300), LABELS)
        _, _, p = drift.prior_shift(ref, rng.integers(0, 2, 3000))
        alarms += p < 0.01
    assert alarms / 300 < 0.03


def test_a_class_the_reference_never_predicted_does_not_divide_by_zero():
    ref = drift.Reference(np.zeros((10, 2)), np.zeros(10, dtype=int), LABELS)
    tv, chi2, p = drift.prior_shift(ref, np.array([1, 0, 0]))
    assert tv == pytest.approx(1 / 3) and math.isfinite(chi2) and 0 <= p <= 1
    assert all(math.isnan(v) for v in drift.prior_shift(ref, np.array([], dtype=int)))


def test_a_one_row_batch_is_scored_without_an_mmd_figure():
    found = drift.check(_reference(), np.zeros((1, 8)), np.array([0]), MonitorConfig())
    assert math.isnan(found.mmd_p_value) and not found.mmd_drift
    assert "mmd2" not in found.as_dict() and "not tested" in found.line()


def test_max_samples_bounds_the_mmd_sample():
    rng = np.random.default_rng(3)
    found = drift.check(_reference(), rng.normal(size=(1000, 8)),
                        rng.integers(0, 2, size=1000), MonitorConfig(max_samples=50,
                                                                     permutations=100))
    assert found.rows_tested == 50 and found.reference_rows == 200


def test_permutations_too_few_for_the_p_value_are_refused():
    with pytest.raises(ConfigError, match=r"monitor.permutations=50 .* set it to 100 or more"):
        load_config(None, ["monitor.permutations=50"])
    assert load_config(None, ["monitor.permutations=100"]).monitor.permutations == 100


def test_retrain_request_carries_the_config_and_the_drift_as_reason():
    cfg = load_config(None, ["tracking.model_name=tiny"])
    result = {"model_name": "tiny", "model_version": "3", "input": "incoming/batch.csv",
              "input_md5": "0123456789abcdef", "run_id": "r1", "drift_line": "DRIFT: MMD^2 1"}
    request = drift.retrain_request(cfg, "configs/x.yaml", ["train.lr=1e-4"], result)
    assert request["name"] == "ferry-retrain/nightly-retrain"
    assert request["flow_run_name"] == "drift-tiny-v3"
    assert request["parameters"]["config"] == "configs/x.yaml"
    assert request["parameters"]["overrides"] == ["train.lr=1e-4"]
    assert "incoming/batch.csv" in request["parameters"]["reason"]
    assert "tiny v3: DRIFT: MMD^2 1" in request["parameters"]["reason"]
    assert request["idempotency_key"] == "ferry-drift-tiny-v3-0123456789abcdef"  # per content


def test_no_prefect_server_means_no_retrain_and_one_line_saying_what_to_run():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks.scoring import _start

    request = {"name": "ferry-retrain/nightly-retrain"}
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        outcome = _start(request)
    assert not outcome["started"] and "no Prefect server" in outcome["line"]
    assert "ferry schedule" in outcome["line"]


@pytest.mark.parametrize(("name", "expected"), [
    ("batch.csv", "batch"), ("batch.csv.gz", "batch"), ("my.data.parquet", "my.data"),
    ("images", "images"), ("x.jsonl.xz", "x")])
def test_scored_file_is_named_after_the_input(name, expected):
    from pathlib import Path

    assert stem(Path(name)) == expected

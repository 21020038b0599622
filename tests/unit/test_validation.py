"""Great Expectations suites: each failure names the expectation, column and example rows."""

import pytest

from ferry.config import DataConfig
from ferry.data import splits, validation
from ferry.data.loading import read_table
from ferry.errors import DataValidationError
from tests.conftest import review_rows, write_csv


def _check(tmp_path, rows, **cfg):
    path = write_csv(tmp_path / "d.csv", rows)
    data = DataConfig(path=path, min_class_count=5, **cfg)
    frame = read_table(path, ["text", "label"])
    findings = validation.check_table(frame, data)
    if all(f.success for f in findings):
        findings += validation.check_leakage(splits.split_frame(frame, data), data)
    report = validation.write_report(findings, path, tmp_path / "report")
    return findings, report, path


def _failure(tmp_path, rows, **cfg) -> str:
    findings, report, path = _check(tmp_path, rows, **cfg)
    with pytest.raises(DataValidationError) as err:
        validation.raise_on_failure(findings, path, report)
    assert report.is_file() and "FAILED" in report.read_text(encoding="utf-8")
    assert str(path) in str(err.value)
    return str(err.value)


def test_clean_data_passes_and_report_lists_every_expectation(tmp_path):
    findings, report, _ = _check(tmp_path, review_rows(60))
    assert all(f.success for f in findings) and len(findings) >= 10
    assert (tmp_path / "report" / "validation.json").is_file()
    assert "FAILED" not in report.read_text(encoding="utf-8")


def test_blank_text_names_rows(tmp_path):
    rows = review_rows(60)
    rows[6] = ("   ", "fresh")
    rows[9] = ("", "rotten")
    msg = _failure(tmp_path, rows)
    assert "expect_column_values_to_match_regex on column 'text'" in msg
    assert "_row 7" in msg
    assert "expect_column_values_to_not_be_null on column 'text'" in msg and "_row 10" in msg


def test_label_outside_set_names_row_and_value(tmp_path):
    rows = review_rows(60)
    rows[11] = ("a very fresh typo", "frsh")
    msg = _failure(tmp_path, rows)
    assert "expect_column_values_to_be_in_set on column 'label'" in msg
    assert "_row 12: 'frsh'" in msg and "['rotten', 'fresh']" in msg


def test_single_class_fails_counts_and_distinct_labels(tmp_path):
    rows = [(t, "fresh") for t, _ in review_rows(60)]
    msg = _failure(tmp_path, rows)
    assert "expect_column_unique_value_count_to_be_between" in msg
    assert "class-counts" in msg and "label rotten: 0" in msg


def test_text_length_bound(tmp_path):
    rows = review_rows(60)
    rows[2] = ("x" * 300, "fresh")
    msg = _failure(tmp_path, rows, max_text_chars=200)
    assert "expect_column_value_lengths_to_be_between" in msg and "_row 3" in msg


def test_text_in_train_and_test_is_leakage(tmp_path):
    rows = [(t, lbl, "train") for t, lbl in review_rows(40)]
    rows += [(t, lbl, "validation") for t, lbl in review_rows(20, seed=1)]
    rows += [(t + " x", lbl, "test") for t, lbl in review_rows(20, seed=2)]
    rows[-1] = (rows[3][0], rows[3][1], "test")  # row 4 of train reappears as the last row
    path = tmp_path / "s.csv"
    import pandas as pd

    pd.DataFrame(rows, columns=["text", "label", "split"]).to_csv(path, index=False)
    data = DataConfig(path=path, min_class_count=5, split_column="split")
    frame = read_table(path, ["text", "label"])
    findings = validation.check_table(frame, data)
    findings += validation.check_leakage(splits.split_frame(frame, data), data)
    with pytest.raises(DataValidationError) as err:
        validation.raise_on_failure(findings, path, tmp_path / "r.html")
    assert "train-test-leakage" in str(err.value) and "_row 4" in str(err.value)

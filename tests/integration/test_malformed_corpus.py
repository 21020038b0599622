"""Bad inputs at scale: every malformed dataset of the corpus (text and image) makes
``ferry run`` exit 2 with a message naming the file, row or field, and leaves the registry as
it was; messy-but-usable datasets are accepted and repaired, each repair named (and refused,
naming the same rows, under ``data.strict``); awkward but valid datasets pass validation.

The CLI runs in-process (``ferry.cli.main``), so each case costs a flow start and a
validation, not a Python start.
"""

from __future__ import annotations

import contextlib
import re

import pytest

from ferry import tracking
from ferry.cli import main
from ferry.config import load_config
from tests.conftest import review_rows, seed_store, tiny_overrides, write_csv
from tests.corpus.malformed import awkward_cases, image_cases, repaired_cases, text_cases

MALFORMED = {**text_cases(), **image_cases()}
REPAIRED = repaired_cases()
AWKWARD = awkward_cases()


@pytest.fixture(scope="module")
def registered(tmp_path_factory, empty_store, tiny_bert, prefect_harness):
    """A project whose registry holds one version with its alias."""
    root = tmp_path_factory.mktemp("corpus")
    seed_store(root, empty_store)
    with contextlib.chdir(root):
        from flows.transfer import transfer

        overrides = [*tiny_overrides(tiny_bert, write_csv(root / "good.csv", review_rows(120))),
                     "baseline=none", "shift.enabled=false", "train.epochs=1"]
        cfg = load_config(None, overrides)
        transfer(cfg)
        yield root, overrides, cfg


def _cli(args: list[str], overrides: list[str]) -> int:
    argv = list(args)
    for item in overrides:
        argv += ["--set", item]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
        raise SystemExit(0)
    return exit_info.value.code


def test_the_corpus_is_large_enough():
    assert len(MALFORMED) >= 30 and len(image_cases()) >= 10


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_input_exits_2_names_it_and_registers_nothing(registered, case, capsys,
                                                                monkeypatch):
    root, overrides, cfg = registered
    monkeypatch.chdir(root)
    path, extra, pattern = MALFORMED[case](root / "inputs" if (root / "inputs").is_dir()
                                           else _mkdir(root / "inputs"))
    before = tracking.Tracker(cfg, root).registry.state()
    code = _cli(["run"], [*overrides, f"data.path={path}", *extra])
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert re.search(pattern, err), f"{case}: {err[-3000:]}"
    assert tracking.Tracker(cfg, root).registry.state() == before


@pytest.mark.parametrize("case", list(AWKWARD))
def test_awkward_but_valid_input_is_accepted(registered, case, capsys, monkeypatch):
    root, overrides, _ = registered
    monkeypatch.chdir(root)
    path, extra, _ = AWKWARD[case](_mkdir(root / "awkward"))
    code = _cli(["validate"], [*overrides, f"data.path={path}", *extra])
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    assert "all expectations passed" in out.out


@pytest.mark.parametrize("case", list(REPAIRED))
def test_messy_input_is_repaired_and_strict_refuses_the_same_rows(registered, case, capsys,
                                                                  monkeypatch):
    root, overrides, _ = registered
    monkeypatch.chdir(root)
    path, extra, pattern = REPAIRED[case](_mkdir(root / "messy"))
    code = _cli(["validate"], [*overrides, f"data.path={path}", *extra])
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    assert re.search("data repair: " + pattern, out.out), out.out
    assert "passed after repairs" in out.out
    code = _cli(["validate"], [*overrides, f"data.path={path}", *extra, "data.strict=true"])
    err = capsys.readouterr().err
    assert code == 2 and str(path.name) in err
    assert re.search(re.sub(r"^(dropped|kept)", "found", pattern), err), err[-3000:]


def test_a_messy_file_trains_registers_and_counts_each_repair(registered, monkeypatch):
    """``ferry run`` on a file with an empty text, a duplicate and a conflicting label: a new
    version registered from the repaired rows, each repair counted on its run."""
    from tests.corpus.malformed import _csv

    root, overrides, cfg = registered
    monkeypatch.chdir(root)
    rows = [list(r) for r in review_rows(120, seed=3)]
    rows[5][0] = ""
    rows += [[rows[8][0] + " ", rows[8][1]], [rows[9][0], "fresh" if rows[9][1] == "rotten"
                                              else "rotten"]]
    path = root / "messy-run.csv"
    path.write_text(_csv(rows), encoding="utf-8")
    before = tracking.Tracker(cfg, root).registry.state()
    assert _cli(["run"], [*overrides, f"data.path={path}"]) == 0
    after = tracking.Tracker(cfg, root).registry.state()
    assert len(after["versions"]) == len(before["versions"]) + 1
    mc = tracking.client(cfg, root)
    run = mc.search_runs([mc.get_experiment_by_name("test").experiment_id],
                         order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    assert (m["data_dropped_missing"], m["data_dropped_duplicates"],
            m["data_dropped_conflicts"], m["data_dropped_leakage"]) == (1, 1, 2, 0)
    assert sum(m[f"data.rows_{s}"] for s in ("train", "validation", "test")) == 122 - 4


def _mkdir(path):
    path.mkdir(exist_ok=True)
    return path


def test_registered_model_rejects_inputs_that_do_not_match_its_signature(registered,
                                                                          monkeypatch):
    import mlflow
    import pandas as pd

    root, _, cfg = registered
    monkeypatch.chdir(root)
    tracking.client(cfg, root)
    model = mlflow.pyfunc.load_model("models:/tiny@challenger")
    assert model.metadata.get_input_schema().input_types() == [mlflow.types.DataType.string]
    assert model.predict(pd.DataFrame({"text": ["a good film", "a dull film"]})) == \
        ["fresh", "rotten"]
    with pytest.raises(mlflow.exceptions.MlflowException, match="string"):
        model.predict(pd.DataFrame({"text": [1.5, 2.5]}))
    with pytest.raises(mlflow.exceptions.MlflowException, match="Incompatible input types"):
        model.predict(pd.DataFrame({"review": [3, 4]}))

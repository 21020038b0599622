"""Batch scoring end to end on the tiny BERT trained once by the real transfer flow:
``ferry predict`` writes the Parquet file and logs the scoring run, drift is flagged on
another kind of text and not on more of the same, a malformed batch writes nothing, and a
drifted batch asks for a retrain (which, without a deployment to start, is said in one line).

Drift on the tiny model: its word-level vocabulary knows the 20 words of the synthetic
reviews, so the rotten-tomatoes plot summaries reach it mostly as [UNK] tokens, an obviously
different input; held-out rows of the training generator are the same distribution.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ferry import tracking
from ferry.config import load_config
from tests.conftest import review_rows, seed_store, tiny_overrides, write_csv

COLUMNS = ["row", "id", "text", "prediction", "confidence", "proba.rotten", "proba.fresh",
           "model_name", "model_version", "model_run_id", "input_md5", "scored_at"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, empty_store, tiny_bert, prefect_harness):
    """A project whose model 'tiny' v1 (with its drift reference) is @champion."""
    root = tmp_path_factory.mktemp("scoring")
    seed_store(root, empty_store)
    with contextlib.chdir(root), pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        from flows.transfer import transfer

        overrides = [*tiny_overrides(tiny_bert, write_csv(root / "good.csv", review_rows(200))),
                     "data.max_text_chars=300"]
        cfg = load_config(None, overrides)
        result = transfer(cfg)
        tracking.Tracker(cfg, root).registry.set_alias("champion", "1")
        yield root, overrides, result["run_id"]


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _batch(root: Path) -> tuple[Path, list[tuple[str, str, str]]]:
    """60 new reviews with ids; rows 3 and 10 empty, row 5 over max_text_chars, row 8
    repeating row 7."""
    rows = [(f"id-{i}", text, "") for i, (text, _) in enumerate(review_rows(60, seed=7), 1)]
    rows[2] = ("id-3", "", "")
    rows[9] = ("id-10", "   ", "")
    rows[4] = ("id-5", " ".join(["good movie"] * 40), "")  # 439 characters
    rows[7] = ("id-8", rows[6][1], "")
    return write_csv(root / "incoming" / "batch.csv", rows, "id,text,note"), rows


def test_predict_writes_every_column_and_logs_the_scoring_run(trained, capsys):
    from ferry.cli.main import main

    root, overrides, _ = trained
    path, rows = _batch(root)
    main(["predict", str(path), *_sets(overrides)])
    printed = capsys.readouterr().out
    assert "dropped 2 row(s) with an empty or missing text: rows 3, 10" in printed, printed
    assert "kept 1 row(s) with a text longer than data.max_text_chars" in printed
    assert "drift: no drift" in printed and "see it:  http" in printed
    scored = pd.read_parquet(root / "scored" / "batch.scored.parquet")
    assert list(scored.columns) == COLUMNS
    assert scored["row"].tolist() == [r for r in range(1, 61) if r not in (3, 10)]
    assert scored["id"].tolist() == [f"id-{r}" for r in scored["row"]]
    assert scored.loc[scored["row"] == 8, "text"].item() == rows[6][1]  # repeats are scored
    assert set(scored["model_name"]) == {"tiny"} and set(scored["model_version"]) == {"1"}
    assert set(scored["input_md5"]) == {hashlib.md5(path.read_bytes()).hexdigest()}
    model = tracking.Tracker(load_config(None, overrides), root).registry.pyfunc("1")
    expected = model.predict(scored["text"].tolist(), params={"output": "probabilities"})
    assert scored["prediction"].tolist() == expected["prediction"].tolist()
    for column in ("confidence", "proba.rotten", "proba.fresh"):
        assert np.allclose(scored[column], expected[column], atol=1e-6), column
    _scoring_run_has_everything(root, overrides, scored)


def _scoring_run_has_everything(root: Path, overrides: list[str], scored) -> None:
    cfg = load_config(None, overrides)
    mc = tracking.client(cfg, root)
    exp = mc.get_experiment_by_name("test-scoring")
    assert exp.tags["mlflow.experimentKind"] == "classification"
    (run,) = mc.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["ferry.drift"] == "false"
    assert run.data.tags["ferry.scored_model"] == "tiny/1"
    m = run.data.metrics
    assert (m["rows_in"], m["rows_scored"], m["rows_dropped"]) == (60, 58, 2)
    fresh = float((scored["prediction"] == "fresh").mean())
    assert m["predicted_fraction_fresh"] == pytest.approx(fresh)
    assert m["mean_confidence"] == pytest.approx(scored["confidence"].mean(), abs=1e-6)
    assert {"mmd2", "mmd_p_value", "prior_tv", "prior_chi2_p_value"} <= set(m)
    assert run.data.params["input_md5"] == scored["input_md5"].iloc[0]
    assert run.data.params["model_run_id"] == scored["model_run_id"].iloc[0]
    files = {a.path for folder in ("scoring", "validation")
             for a in mc.list_artifacts(run.info.run_id, folder)}
    assert {"scoring/confidence_histogram.png", "scoring/prediction_distribution.csv",
            "scoring/prediction_distribution.png", "scoring/drift.json",
            "validation/validation.html", "validation/validation.json"} <= files, files
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "batch.csv" and dataset.tags[0].value == "scoring"


def _plots(root: Path) -> Path:
    from ferry.data import recipes

    return recipes.build("rotten-tomatoes-plots", root / "incoming" / "plots.csv")


def test_drift_is_flagged_on_plot_summaries_and_not_on_more_reviews(trained):
    from ferry.serving.batch import score

    root, overrides, _ = trained
    cfg = load_config(None, overrides)
    same = write_csv(root / "incoming" / "same.csv", review_rows(120, seed=11))
    calm = score(cfg, same)
    shifted = score(cfg, _plots(root))
    print(f"in-distribution: {calm.drift_line}\nplot summaries: {shifted.drift_line}")
    assert not calm.drifted and calm.drift["mmd_p_value"] > cfg.monitor.p_value
    assert calm.drift["prior_tv"] <= cfg.monitor.max_prior_tv
    assert shifted.drifted and shifted.drift["mmd_p_value"] < cfg.monitor.p_value
    assert shifted.drift["reference_rows"] == calm.drift["reference_rows"] > 100
    runs = tracking.client(cfg, root).search_runs(
        [tracking.client(cfg, root).get_experiment_by_name("test-scoring").experiment_id],
        "tags.`ferry.drift` = 'true'")
    assert [r.info.run_id for r in runs] == [shifted.run_id]


def test_a_drifted_batch_without_a_retrain_deployment_is_scored_and_says_why(trained):
    from flows.score import score

    root, overrides, _ = trained
    result = score(str(_plots(root)), None,
                   [*overrides, "monitor.on_drift=retrain"], None,
                   str(root / "out" / "plots.parquet"))
    assert result["drifted"] and (root / "out" / "plots.parquet").is_file()
    retrain = result["retrain"]
    assert not retrain["started"]
    assert "no deployment ferry-retrain/nightly-retrain" in retrain["line"]


@pytest.mark.parametrize(("content", "needle"), [
    ("id,texts\n1,good film\n", "missing column(s) ['text']; did you mean 'texts'? found "
     "['id', 'texts']. Set data.text_column (--set data.text_column=NAME) to the right name."),
    (b"text\n\xff\xfe bad bytes\n", "is not valid UTF-8"),
    ("id,text\n1,\n2,  \n", "no rows left to score"),
    (None, "no such file or folder to score"),
])
def test_a_malformed_batch_fails_in_one_line_and_writes_nothing(trained, capsys, content,
                                                                  needle):
    from ferry.cli.main import main

    root, overrides, _ = trained
    path = root / "bad" / "batch.csv"
    shutil.rmtree(path.parent, ignore_errors=True)
    path.parent.mkdir()
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = root / "bad" / "out"
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(path), "--out", str(out / "x.parquet"), *_sets(overrides)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and needle in err and "Traceback" not in err, err
    assert not out.exists()


def test_strict_data_fails_naming_the_empty_rows(trained, capsys):
    from ferry.cli.main import main

    root, overrides, _ = trained
    path = write_csv(root / "strict" / "batch.csv", [("a good film",), ("",)], "text")
    out = root / "strict" / "out" / "batch.parquet"
    with pytest.raises(SystemExit):
        main(["predict", str(path), "--out", str(out), *_sets([*overrides, "data.strict=true"])])
    err = capsys.readouterr().err
    assert "found 1 row(s) with an empty or missing text: row 2" in err, err
    assert not out.parent.exists()


def test_a_model_without_a_drift_reference_is_scored_and_says_so(trained):
    from ferry.serving import drift
    from ferry.serving.batch import score

    root, overrides, run_id = trained
    cfg = load_config(None, [*overrides, "tracking.model_name=old"])
    folder = tracking.Tracker(cfg, root).model("tiny").model_folder("1", root / "dl")
    for name in (drift.ARRAYS, drift.FACTS):
        (folder / name).unlink()
    tracking.Tracker(cfg, root).registry.register(run_id, folder, {}, "old", "old")
    result = score(cfg, write_csv(root / "incoming" / "few.csv", review_rows(10, seed=3)),
                   "old@challenger", root / "out" / "few.parquet")
    assert result.drift is None and not result.drifted
    assert "has no drift reference" in result.drift_line

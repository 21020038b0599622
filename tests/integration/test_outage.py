"""Tracking server outage: a real ``mlflow server`` stopped in the middle of a run.

Back within ``tracking.outage_window_s``: the flow waits, completes, every epoch's metrics
are there and the registered version loads. Not back in time: the flow fails with a clear
message and the registry holds nothing unloadable.
"""

from __future__ import annotations

import time

import pytest
from mlflow.tracking import MlflowClient

from ferry.config import load_config
from ferry.errors import FerryError
from tests.conftest import review_rows, tiny_overrides, write_csv
from tests.servers import Server, in_thread, join_all


def transfer_flow():
    from flows.transfer import transfer

    return transfer


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path)
    srv.start()
    yield srv
    srv.stop()


def _wait_for_metric(uri: str, key: str, timeout: float = 300) -> None:
    mc = MlflowClient(uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for exp in mc.search_experiments():
            if mc.search_runs([exp.experiment_id], f"metrics.{key} >= 0"):
                return
        time.sleep(0.2)
    raise AssertionError(f"no run logged {key}")


def test_flow_waits_out_an_outage_and_registers_a_loadable_model(server, project, tiny_bert,
                                                                 prefect_harness):
    data = write_csv(project / "reviews.csv", review_rows(3000))
    cfg = load_config(None, [*tiny_overrides(tiny_bert, data), f"tracking.uri={server.uri}",
                             "train.epochs=3", "train.batch_size=8", "baseline=none",
                             "shift.enabled=false", "tracking.outage_window_s=120"])
    thread, out = in_thread(transfer_flow(), cfg)
    _wait_for_metric(server.uri, "val_accuracy")  # epoch 1 logged: training goes on
    server.stop()
    down = time.monotonic()
    time.sleep(8)
    server.start()
    outage = time.monotonic() - down
    join_all([(thread, out)], 300)
    assert "error" not in out, out.get("error")
    run_id = out["result"]["run_id"]
    mc = MlflowClient(server.uri)
    assert [int(m.step) for m in mc.get_metric_history(run_id, "val_accuracy")] == [1, 2, 3]
    version = mc.get_model_version_by_alias("tiny", "challenger")
    assert version.run_id == run_id
    import mlflow

    mlflow.set_tracking_uri(server.uri)
    model = mlflow.pyfunc.load_model("models:/tiny@challenger")
    assert model.predict(["a good film", "a dull film"]) == ["fresh", "rotten"]
    print(f"outage survived: {outage:.1f} s")


def test_outage_longer_than_the_window_fails_clearly_and_registers_nothing(
        server, project, tiny_bert, prefect_harness):
    data = write_csv(project / "reviews.csv", review_rows(3000))
    cfg = load_config(None, [*tiny_overrides(tiny_bert, data), f"tracking.uri={server.uri}",
                             "train.epochs=3", "train.batch_size=8", "baseline=none",
                             "shift.enabled=false", "tracking.outage_window_s=5"])
    thread, out = in_thread(transfer_flow(), cfg)
    _wait_for_metric(server.uri, "val_accuracy")
    server.stop()
    join_all([(thread, out)], 300)
    assert isinstance(out.get("error"), FerryError)
    assert "unreachable for 5 s" in str(out["error"])
    server.start()
    mc = MlflowClient(server.uri)
    assert mc.search_model_versions("name='tiny'") == []

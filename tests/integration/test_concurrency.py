"""Ten flow runs at once against one tracking server, then concurrent promotions.

Every run finishes and registers exactly one version with its own lineage; version numbers
are unique; promotions started together are decided one after the other, each against the
champion of its moment, so ``champion`` never holds a version that did not beat the one it
replaced.
"""

from __future__ import annotations

import itertools

import pytest
from mlflow.tracking import MlflowClient

from ferry.config import load_config
from tests.conftest import review_rows, tiny_overrides, write_csv
from tests.servers import Server, in_thread, join_all

RUNS = 10


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "mlflow-server")
    srv.home.mkdir()
    srv.start()
    yield srv
    srv.stop()


def test_ten_concurrent_runs_then_concurrent_promotions(server, project, tiny_bert,
                                                        prefect_harness):
    from flows.promote import promote
    from flows.transfer import transfer

    data = write_csv(project / "reviews.csv", review_rows(120))
    base = [*tiny_overrides(tiny_bert, data), f"tracking.uri={server.uri}", "train.epochs=1",
            "baseline=none", "shift.enabled=false", "promotion.min_accuracy=0",
            "promotion.min_macro_f1=0", "promotion.margin=0", "promotion.max_recall_drop=1"]
    started = [in_thread(transfer, load_config(None, [*base, f"train.seed={i}"]))
               for i in range(RUNS)]
    outs = join_all(started, 480)
    errors = [out["error"] for out in outs if "error" in out]
    assert not errors, errors
    results = [out["result"] for out in outs]

    mc = MlflowClient(server.uri)
    versions = mc.search_model_versions("name='tiny'")
    assert sorted(int(v.version) for v in versions) == list(range(1, RUNS + 1))
    by_run = {v.run_id: v for v in versions}
    assert set(by_run) == {r["run_id"] for r in results}  # one version per run, its own
    for result in results:
        version, run = by_run[result["run_id"]], mc.get_run(result["run_id"])
        assert str(result["model"]["version"]) == version.version
        assert version.tags["data.md5"] == run.data.tags["data.md5"]
        assert version.tags["pretrained.sha256"] == run.data.tags["pretrained.sha256"]
        assert "code.git_rev" in version.tags
    seeds = sorted(int(mc.get_run(r["run_id"]).data.params["train.seed"]) for r in results)
    assert seeds == list(range(RUNS))

    candidates = [2, 4, 6, 8, 10]
    promos = [in_thread(promote, load_config(None, [*base, f"promotion.challenger_version={v}"]))
              for v in candidates]
    outs = join_all(promos, 240)
    assert not [out["error"] for out in outs if "error" in out]
    decisions = [out["result"] for out in outs]
    # serialised: ordered by when they moved the alias, each promotion replaced the previous
    promoted = sorted((d for d in decisions if d["promote"]),
                      key=lambda d: float(mc.get_model_version("tiny", d["challenger"])
                                          .tags["promotion.promoted_at"]))
    assert promoted and promoted[0]["champion_before"] is None
    for before, after in itertools.pairwise(promoted):
        assert after["champion_before"] == before["challenger"]
    for kept in (d for d in decisions if not d["promote"]):
        assert kept["champion_before"] is not None  # a keep compared against a real champion
    champion = mc.get_model_version_by_alias("tiny", "champion")
    assert champion.version == promoted[-1]["challenger"]
    print(f"{RUNS} concurrent runs registered v1..v{RUNS}; promotions: "
          f"{[(d['challenger'], d['champion_before'], d['promote']) for d in decisions]}")

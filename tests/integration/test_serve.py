"""`ferry serve` as a real process against a real registry: MLflow's scoring protocol, answers
equal to the registered pyfunc's, dynamic batching, following @champion through a real
second training and promotion with no failed request, refusing a broken version, an image
model over base64 PNGs, and the 503 it answers before there is a champion.

One text project (the tiny BERT, two real trainings by the transfer flow) and one server
process are shared by the text tests, in file order: waiting -> serving v1 -> v2 promoted
mid-stream -> a broken v3 refused (the alias is put back afterwards).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import requests

from ferry import tracking
from ferry.config import load_config
from ferry.stack import free_port
from tests.conftest import review_rows, seed_store, tiny_overrides, write_csv

POLL = 0.5
# Cheap runs (no scratch or classical baseline, no shift test); gates open so the first
# (deliberately weak) model becomes champion and the second only has to beat it.
CHEAP = ["baseline=none", "receipt.classical=false", "shift.enabled=false",
         "promotion.min_accuracy=0", "promotion.min_macro_f1=0",
         "promotion.max_recall_drop=1.0"]
WEAK = ["train.epochs=1", "train.lr=0.00001", "strategy.head_init=random"]
TEXTS = ["good great fun movie", "awful boring dull plot", "the film was superb",
         "weak and bad acting", "a very moving film"]


class Server:
    """A `ferry serve` subprocess on a free port, in its own process group."""

    def __init__(self, root: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / f"serve-{self.port}.log"
        cmd = [str(Path(sys.executable).with_name("ferry")), "serve", "--port",
               str(self.port), "--set", f"serve.poll_seconds={POLL}",
               "--set", "serve.max_wait_ms=50", *args]
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def get(self, path: str) -> tuple[int, dict]:
        r = requests.get(self.url + path, timeout=30)
        return r.status_code, r.json()

    def post(self, body, content_type: str = "application/json") -> requests.Response:
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return requests.post(self.url + "/invocations", data=data, timeout=60,
                             headers={"Content-Type": content_type})

    def wait(self, check, what: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"ferry serve exited:\n{self.tail()}"
            with contextlib.suppress(requests.RequestException):
                if check():
                    return
            time.sleep(0.2)
        raise AssertionError(f"{what} not within {timeout} s:\n{self.tail()}")

    def version(self) -> str | None:
        status, body = self.get("/version")
        return body["version"] if status == 200 else None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Stream:
    """``clients`` threads posting one text each, back to back, until stopped; every
    answer is recorded (start, end, status, version header, client)."""

    def __init__(self, server: Server, clients: int = 4) -> None:
        self.stop_event, self.log = threading.Event(), []
        self.threads = [threading.Thread(target=self._client, args=(server, i), daemon=True)
                        for i in range(clients)]

    def _client(self, server: Server, i: int) -> None:
        session, n = requests.Session(), 0
        while not self.stop_event.is_set():
            began = time.monotonic()
            try:
                r = session.post(server.url + "/invocations", timeout=60,
                                 json={"inputs": [f"{TEXTS[n % len(TEXTS)]} {i} {n}"]})
                self.log.append((began, time.monotonic(), r.status_code,
                                 r.headers.get("X-Ferry-Model-Version"), i))
            except requests.RequestException as exc:
                self.log.append((began, time.monotonic(), repr(exc), None, i))
            n += 1
            time.sleep(0.01)

    def __enter__(self) -> Stream:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=90)

    def failures(self) -> list:
        return [row for row in self.log if row[2] != 200]

    def versions_by_client(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for row in sorted(self.log):
            out.setdefault(row[4], []).append(row[3])
        return out


@pytest.fixture(scope="module")
def text(tmp_path_factory, empty_store, tiny_bert, prefect_harness):
    """The project with a weak v1 (@challenger), and `ferry serve --wait` started before
    there is a champion: what it answered then is kept, then v1 is made champion (the
    registry's alias write; the real promotion flow moves it to v2 later)."""
    root = tmp_path_factory.mktemp("serve")
    seed_store(root, empty_store)
    with contextlib.chdir(root), pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        from flows.transfer import transfer

        base = [*tiny_overrides(tiny_bert, write_csv(root / "reviews.csv", review_rows(160))),
                *CHEAP]
        server = Server(root, "--model", "tiny@champion", "--wait")  # starts while v1 trains
        try:
            weak = load_config(None, [*base, *WEAK])
            first = transfer(weak)
            server.wait(lambda: "no alias" in server.get("/health")[1].get("message", ""),
                        "the server answering 503 (no champion yet)")
            before = {"health": server.get("/health"), "invoke": server.post({"inputs": ["x"]})}
            _registry_of(weak, root).set_alias("champion", first["model"]["version"])
            server.wait(lambda: server.version() == "1", "version 1 serving")
            yield SimpleNamespace(root=root, base=base, server=server, before=before,
                                  run_id=first["run_id"], cfg=weak)
        finally:
            server.stop()


def _registry_of(cfg, root):
    return tracking.Tracker(cfg, root).model("tiny")


def _registry(ns):
    return _registry_of(ns.cfg, ns.root)


def test_answers_503_until_there_is_a_champion(text):
    status, health = text.before["health"]
    assert status == 503 and health["status"] == "waiting" and health["version"] is None
    assert "no alias @champion" in health["message"]
    response = text.before["invoke"]
    assert response.status_code == 503
    assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "no model version is serving yet" in response.json()["message"]
    status, version = text.server.get("/version")
    assert status == 200 and version["version"] == "1" and version["alias"] == "champion"
    assert version["name"] == "tiny" and version["run_id"] == text.run_id


def test_answers_mlflow_protocol_with_the_pyfuncs_probabilities(text):
    server = text.server
    r = server.post({"inputs": TEXTS, "params": {"output": "probabilities"}})
    assert r.status_code == 200, r.text
    assert r.headers["X-Ferry-Model-Version"] == "1"
    served = pd.DataFrame(r.json()["predictions"])
    # mlflow.pyfunc.load_model("models:/tiny/1") of the same store
    expected = _registry(text).pyfunc("1").predict(TEXTS, params={"output": "probabilities"})
    assert list(served.columns) == list(expected.columns)
    assert list(served["prediction"]) == list(expected["prediction"])
    probs = [c for c in expected.columns if c != "prediction"]
    np.testing.assert_allclose(served[probs].to_numpy(float), expected[probs].to_numpy(float),
                               atol=1e-5)
    labels = list(expected["prediction"])
    shapes = [{"inputs": TEXTS}, {"instances": TEXTS},
              {"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}},
              {"dataframe_records": [{"text": t} for t in TEXTS]}]
    for body in shapes:
        assert server.post(body).json() == {"predictions": labels}, body
    csv = "text\n" + "\n".join(TEXTS) + "\n"
    assert server.post(csv, "text/csv").json() == {"predictions": labels}


def test_bad_requests_are_400s_with_mlflow_error_json(text):
    for body, content_type in [("{not json", "application/json"),
                               ({"rows": TEXTS}, "application/json"),
                               ({"inputs": ["x"], "params": {"output": "nope"}},
                                "application/json"),
                               ("x", "application/xml")]:
        r = text.server.post(body, content_type)
        assert r.status_code in (400, 415), (body, r.status_code, r.text)
        assert r.json()["error_code"] and r.json()["message"], r.text
        assert "Traceback" not in r.text
    assert text.server.get("/health")[0] == 200


def test_concurrent_requests_share_a_predict(text):
    barrier, answers = threading.Barrier(16), []

    def one(i):
        session = requests.Session()
        session.get(text.server.url + "/ping", timeout=30)  # connect first
        barrier.wait()
        r = session.post(text.server.url + "/invocations", json={"inputs": [TEXTS[i % 5]]},
                         timeout=60)
        answers.append((i, r.status_code, r.json()["predictions"]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    alone = text.server.post({"inputs": TEXTS}).json()["predictions"]
    assert sorted(answers) == [(i, 200, [alone[i % 5]]) for i in range(16)]
    batches = text.server.get("/health")[1]["batches"]
    assert batches["largest_batch"] > 1, batches


def test_follows_champion_to_a_new_version_without_failing_a_request(text):
    from flows.promote import promote
    from flows.transfer import transfer

    with Stream(text.server) as stream, contextlib.chdir(text.root):
        time.sleep(1)
        good = load_config(None, [*text.base, "train.epochs=3"])
        new = transfer(good)["model"]["version"]
        decision = promote(good)
        promoted = time.monotonic()
        assert decision["promote"] and decision["champion"] == new, decision
        text.server.wait(lambda: any(row[3] == str(new) for row in stream.log),
                         f"answers from version {new}")
        time.sleep(1)
    assert stream.failures() == [], stream.failures()[:5]
    assert len(stream.log) > 20
    for client, versions in stream.versions_by_client().items():
        switched = versions.index(str(new))
        assert set(versions[:switched]) == {"1"} and set(versions[switched:]) == {str(new)}, \
            client
    status, version = text.server.get("/version")
    assert status == 200 and version["version"] == str(new)
    first_new = min(row[1] for row in stream.log if row[3] == str(new))
    assert first_new - promoted <= POLL + version["load_seconds"] + 5.0


def test_broken_version_is_refused_and_the_old_one_keeps_answering(text):
    registry = _registry(text)
    old = text.server.version()
    folder = registry.model_folder(old, text.root / "old-copy")
    broken = shutil.copytree(folder, text.root / "broken")
    (broken / "model.safetensors").write_bytes(b"these are not weights")
    version = registry.register(text.run_id, broken, {"test.case": "broken"}, "broken",
                                "test model")
    try:
        with Stream(text.server) as stream:
            time.sleep(0.5)
            registry.set_alias("champion", version)
            text.server.wait(lambda: version in text.server.get("/health")[1].get("refused",
                                                                                  {}),
                             f"version {version} refused")
            time.sleep(2 * POLL)
    finally:
        registry.set_alias("champion", old)
    assert stream.failures() == [] and len(stream.log) > 5
    assert {row[3] for row in stream.log} == {old}
    status, health = text.server.get("/health")
    assert status == 200 and health["version"] == old
    assert health["refused"][version]  # the reason, also logged
    assert f"refused version {version}" in text.server.tail()


def test_serve_names_a_missing_model_in_one_line(text, capsys):
    from ferry.cli.main import main

    with contextlib.chdir(text.root), pytest.raises(SystemExit) as exit_info:
        main(["serve", "--model", "nobody@champion", "--port", str(free_port())])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: registered model 'nobody' has no alias @champion"), err


@pytest.fixture(scope="module")
def image_server(tmp_path_factory, empty_store, prefect_harness):
    """A cheap image model (linear probe on EfficientNet-Lite0, 32 px) served as
    ``fm-tiny@challenger``: the server starts while the model trains."""
    from ferry.config import DataConfig, ImageConfig
    from ferry.data import recipes
    from tests.integration.test_images import image_overrides

    root = tmp_path_factory.mktemp("serve-images")
    seed_store(root, empty_store)
    manifest = recipes.build("fashion-mnist", root / "fm" / "manifest.csv",
                             DataConfig(image=ImageConfig(subset_train=200, subset_test=60)))
    with contextlib.chdir(root), pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        from flows.transfer import transfer

        cfg = load_config(None, image_overrides(manifest, **{
            "strategy.name": "linear_probe", "train.epochs": "1", "baseline": "none",
            "receipt.classical": "false", "shift.enabled": "false"}))
        server = Server(root, "--model", "fm-tiny@challenger", "--wait")
        try:
            transfer(cfg)
            server.wait(lambda: server.version() == "1", "the image model serving")
            yield root, manifest, cfg, server
        finally:
            server.stop()


def _expected(image_server, paths):
    root, _, cfg, _ = image_server
    return tracking.Tracker(cfg, root).model("fm-tiny").pyfunc("1").predict(
        [str(p) for p in paths], params={"output": "probabilities"})


def _test_images(image_server, n: int = 6) -> list[Path]:
    manifest = image_server[1]
    frame = pd.read_csv(manifest).query("split == 'test'").head(n)
    return [manifest.parent / p for p in frame["path"]]


def _assert_same(served: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(served["prediction"]) == list(expected["prediction"])
    probs = [c for c in expected.columns if c.startswith("proba.")]
    np.testing.assert_allclose(served[probs].to_numpy(float), expected[probs].to_numpy(float),
                               atol=1e-5)


def test_image_model_answers_base64_pngs(image_server):
    server = image_server[3]
    paths = _test_images(image_server)
    encoded = [base64.b64encode(p.read_bytes()).decode() for p in paths]
    r = server.post({"inputs": encoded, "params": {"output": "probabilities"}})
    assert r.status_code == 200, r.text
    expected = _expected(image_server, paths)
    _assert_same(pd.DataFrame(r.json()["predictions"]), expected)
    assert server.post({"inputs": encoded[:2]}).json() == \
        {"predictions": list(expected["prediction"][:2])}
    bad = server.post({"inputs": ["bm90IGFuIGltYWdl"]})  # base64 of "not an image"
    assert bad.status_code == 400 and "image" in bad.json()["message"], bad.text
    status, body = server.get("/version")
    assert status == 200 and body["alias"] == "challenger" and body["name"] == "fm-tiny"


def test_image_model_answers_pixel_arrays(image_server):
    """28 x 28 grayscale pixels as nested JSON lists (``inputs``: N x H x W)."""
    from PIL import Image

    server = image_server[3]
    paths = _test_images(image_server)
    pixels = [np.asarray(Image.open(p)).tolist() for p in paths]
    r = server.post({"inputs": pixels, "params": {"output": "probabilities"}})
    assert r.status_code == 200, r.text
    _assert_same(pd.DataFrame(r.json()["predictions"]), _expected(image_server, paths))


def test_batcher_shares_predicts_and_isolates_a_bad_request():
    """The batcher alone (no server): concurrent requests with the same params share one
    predict and get their own rows back; other params go in their own predict; a request
    the model refuses fails alone, the rest of its batch is still answered."""
    import asyncio

    from ferry.serving.batcher import Batcher

    calls = []

    class Model:
        def predict(self, data, params=None):
            calls.append((list(data), params))
            if any(str(x).startswith("bad") for x in data):
                raise ValueError("input 0: not a review")
            if params:
                return pd.DataFrame({"prediction": [str(x).upper() for x in data]})
            return [str(x).upper() for x in data]

    async def run():
        model = Model()
        batcher = Batcher(lambda: model, max_batch=64, max_wait_ms=50)
        await batcher.start()

        async def one(i):
            params = {"output": "probabilities"} if i % 4 == 0 else None
            text = "bad" if i == 5 else f"t{i}"
            try:
                return (await batcher.submit(np.array([text, text + "b"]), params))[1]
            except ValueError as exc:
                return str(exc)

        try:
            return await asyncio.gather(*(one(i) for i in range(8))), batcher.stats
        finally:
            await batcher.stop()

    answers, stats = asyncio.run(run())
    for i, answer in enumerate(answers):
        if i == 5:
            assert answer == "input 0: not a review"
        elif i % 4 == 0:
            assert list(answer["prediction"]) == [f"T{i}", f"T{i}B"]
        else:
            assert answer == [f"T{i}", f"T{i}B"]
    # one predict per params group (the labels group failed, then each of its requests alone)
    assert calls[0] == (["t0", "t0b", "t4", "t4b"], {"output": "probabilities"})
    assert len(calls[1][0]) == 12 and len(calls) == 2 + 6
    assert stats.requests == 7 and stats.largest == 4

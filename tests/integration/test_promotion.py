"""Champion/challenger through the real promotion flow and registry, with models whose
behaviour on the holdout is fixed by construction:

G  the tiny BERT trained by the real transfer flow;
K  G with a zeroed head and a bias that always says "fresh" (accuracy 0.5 on the holdout);
M  G with its "fresh" logit lowered by the median margin of the true-fresh holdout rows, so
   about half of them flip to "rotten": better than K on accuracy, but "fresh" recall drops
   from K's 1.0 to about 0.5.
"""

from __future__ import annotations

import contextlib
import shutil

import numpy as np
import pytest
import torch

from ferry import steps, tracking
from ferry.config import load_config
from ferry.errors import PromotionError
from ferry.models.meta import read as read_meta
from ferry.transfer import cache
from ferry.transfer.inference import predict_folder
from tests.conftest import review_rows, seed_store, tiny_overrides, write_csv


@pytest.fixture(scope="module")
def trained(tmp_path_factory, empty_store, tiny_bert, prefect_harness):
    """A project with the tiny BERT trained once by the transfer flow (model 'tiny' v1)."""
    root = tmp_path_factory.mktemp("promotion")
    seed_store(root, empty_store)
    with contextlib.chdir(root):
        from flows.transfer import transfer

        overrides = tiny_overrides(tiny_bert, write_csv(root / "good.csv", review_rows(160)))
        cfg = load_config(None, [*overrides, "train.epochs=3"])
        result = transfer(cfg)
        folder = _registry(cfg, root, "tiny").model_folder("1", root / "g")
        yield root, overrides, result["run_id"], folder


def _head_variant(src, dst, edit):
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    state = load_file(str(dst / "model.safetensors"))
    edit(state)
    save_file(state, str(dst / "model.safetensors"))
    return dst


def _holdout(cfg, root):
    version = steps.data_version(cfg)
    prepared = steps.validate_data(cfg, version, steps.start_run(cfg, "test-holdout"))
    return cache.split_labels(root / prepared.split_dir, cfg, ("test",))["test"]


@pytest.fixture(scope="module")
def models(trained):
    """Folders of G, K and M (see the module docstring)."""
    root, overrides, _, good = trained
    cfg = load_config(None, overrides)
    fresh = cfg.data.labels.index("fresh")

    def constant(state):
        state["head.linear.weight"].zero_()
        state["head.linear.bias"].copy_(torch.tensor([-5.0, 5.0])[[1 - fresh, fresh]])

    texts, labels = _holdout(cfg, root)
    probs = predict_folder(good, texts, 64, torch.device("cpu")).numpy()
    margin = np.log(probs[:, fresh]) - np.log(probs[:, 1 - fresh])
    # the folder's probabilities are calibrated (logits / T): the head's own margin is T x
    shift = float(np.median(margin[np.array(labels) == fresh])) * read_meta(good).temperature

    def lowered(state):
        state["head.linear.bias"][fresh] -= shift

    return {"G": good, "K": _head_variant(good, root / "k", constant),
            "M": _head_variant(good, root / "m", lowered)}


def _register(cfg, root, run_id, folder) -> str:
    """Register ``folder`` as a new version under the config's model name (@challenger)."""
    return tracking.Tracker(cfg, root).registry.register(
        run_id, folder, {"test.case": cfg.tracking.model_name}, "test version", "test model")


def _setup(trained, models, name, champion, extra=()):
    """A fresh model name whose champion is ``champion`` (set directly) and whose next
    registration becomes the challenger."""
    root, overrides, run_id, _ = trained
    cfg = load_config(None, [*overrides, f"tracking.model_name={name}", *extra])
    if champion:
        version = _register(cfg, root, run_id, models[champion])
        _registry(cfg, root, name).set_alias("champion", version)
        _registry(cfg, root, name).set_version_tags(version,
                                                    {"promotion.promoted_at": 1.0})
    return cfg, root, run_id


def _promote(cfg, root, monkeypatch):
    from flows.promote import promote

    monkeypatch.chdir(root)
    return promote(cfg)


def _registry(cfg, root, name):
    return tracking.Tracker(cfg, root).model(name)


def _champion(cfg, root):
    return _registry(cfg, root, cfg.tracking.model_name).alias_version("champion")


def test_first_model_is_champion_only_if_it_passes_the_gates(trained, models, monkeypatch):
    cfg, root, run_id = _setup(trained, models, "first", None)
    _register(cfg, root, run_id, models["K"])
    refused = _promote(cfg, root, monkeypatch)
    assert not refused["promote"] and "absolute gates" in refused["reason"]
    assert _champion(cfg, root) is None
    good = _register(cfg, root, run_id, models["G"])
    result = _promote(cfg, root, monkeypatch)
    assert result["promote"], (result["reason"], result["scores"])
    assert _champion(cfg, root) == good


def test_better_challenger_is_promoted_and_the_decision_recorded(trained, models, monkeypatch):
    # the recall gate is checked in its own test; here the margin on accuracy decides
    cfg, root, run_id = _setup(trained, models, "better", "K",
                               ["promotion.max_recall_drop=1.0"])
    challenger = _register(cfg, root, run_id, models["G"])
    result = _promote(cfg, root, monkeypatch)
    assert result["promote"], result["reason"]
    assert result["scores"]["challenger_accuracy"] > result["scores"]["champion_accuracy"] + 0.005
    assert _champion(cfg, root) == challenger
    tags = _registry(cfg, root, "better").version_tags(challenger)
    assert tags["promotion.decision"] == "promote" and "beats champion" in tags["promotion.reason"]
    run = tracking.client(cfg, root).get_run(result["run_id"])
    assert run.data.tags["promotion.decision"] == "promote"
    assert {"challenger_accuracy", "champion_accuracy", "challenger_recall_fresh"} <= \
        set(run.data.metrics)


@pytest.mark.parametrize(("champion", "challenger", "needle"), [
    ("G", "K", "does not beat champion"),          # worse
    ("G", "G", "does not beat champion"),          # same scores: within the margin
    ("K", "M", "recall of class 'fresh' drops"),   # better accuracy, one class collapses
])
def test_challenger_that_fails_a_gate_leaves_champion(trained, models, monkeypatch,
                                                      champion, challenger, needle):
    name = f"keep-{champion}-{challenger}".lower()
    cfg, root, run_id = _setup(trained, models, name, champion)
    before = _champion(cfg, root)
    version = _register(cfg, root, run_id, models[challenger])
    result = _promote(cfg, root, monkeypatch)
    assert not result["promote"] and needle in result["reason"], result
    assert _champion(cfg, root) == before
    assert _registry(cfg, root, name).version_tags(version)["promotion.decision"] == \
        "keep"


def test_failure_just_before_the_alias_move_leaves_champion(trained, models, monkeypatch):
    cfg, root, run_id = _setup(trained, models, "crash", "K", ["promotion.max_recall_drop=1.0"])
    before = _champion(cfg, root)
    challenger = _register(cfg, root, run_id, models["G"])

    def injected(*args, **kwargs):
        raise RuntimeError("injected failure before the alias move")

    monkeypatch.setattr(tracking.Registry, "set_alias", injected)
    with pytest.raises(RuntimeError, match="injected"):
        _promote(cfg, root, monkeypatch)
    monkeypatch.undo()
    assert _champion(cfg, root) == before
    assert "promotion.promoted_at" not in \
        _registry(cfg, root, "crash").version_tags(challenger)


def test_rollback_restores_the_previous_champion(trained, models, monkeypatch):
    cfg, root, run_id = _setup(trained, models, "roll", "K", ["promotion.max_recall_drop=1.0"])
    first = _champion(cfg, root)
    second = _register(cfg, root, run_id, models["G"])
    assert _promote(cfg, root, monkeypatch)["promote"] and _champion(cfg, root) == second
    from flows.promote import rollback

    result = rollback(cfg)
    assert result["from"] == second and _champion(cfg, root) == first
    with pytest.raises(PromotionError, match="nothing to roll back to"):
        rollback(cfg)
    assert _champion(cfg, root) == first


def test_registered_version_carries_its_model_card(trained):
    root, overrides, run_id, _ = trained
    cfg = load_config(None, overrides)
    version = tracking.client(cfg, root).get_model_version("tiny", "1")
    card = version.description
    for section in ("# Model card: tiny", "## Data and lineage", "## Pretrained source",
                    "## Config", "`train.lr` | `0.003`", "## Test metrics",
                    "## Transfer receipt", "## Intended use", "## Limitations"):
        assert section in card
    assert version.tags["pretrained.sha256"] in card and version.tags["data.md5"] in card
    names = {a.path for a in tracking.client(cfg, root).list_artifacts(run_id)}
    assert "model_card.md" in names


def test_registry_lock_survives_losing_the_race_to_create_it(prefect_harness, monkeypatch):
    """Two first promotions both read "no limit yet"; the slower create gets a 409. The loser
    must take the winner's lock, not fail (CI saw ObjectAlreadyExists from this race)."""
    from prefect.client.orchestration import SyncPrefectClient, get_client
    from prefect.exceptions import ObjectNotFound

    from tasks.promotion import registry_lock

    name = "race-model"
    with registry_lock(name):  # the winner creates the limit
        pass

    def not_yet(self, limit_name):  # what the loser read before the winner's create landed
        raise ObjectNotFound(http_exc=Exception(limit_name))

    monkeypatch.setattr(SyncPrefectClient, "read_global_concurrency_limit_by_name", not_yet)
    with registry_lock(name):  # the loser: its create answers 409, and it still holds the lock
        monkeypatch.undo()
        with get_client(sync_client=True) as client:
            limit = client.read_global_concurrency_limit_by_name(f"ferry-registry-{name}")
        assert (limit.limit, limit.active_slots) == (1, 1)

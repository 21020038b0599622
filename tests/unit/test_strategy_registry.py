"""The strategy registry: one policy class per strategy name, each reading its own block."""

from typing import get_args

import pytest

from ferry.config import StrategyName, load_config
from ferry.experiments import sweep_strategies
from ferry.transfer import strategies


def test_every_configurable_name_has_exactly_one_registered_policy():
    assert set(strategies.REGISTRY) == set(get_args(StrategyName))
    for name, cls in strategies.REGISTRY.items():
        assert cls.name == name


@pytest.mark.parametrize("name", list(strategies.REGISTRY))
def test_each_policy_builds_from_the_default_config(name):
    policy = strategies.from_config(load_config(None, [f"strategy.name={name}"]).strategy)
    assert type(policy) is strategies.REGISTRY[name]


def test_a_policy_reads_its_own_block_and_the_shared_knobs():
    cfg = load_config(None, ["strategy.name=freeze_bottom", "strategy.backbone_lr_factor=0.5",
                             "strategy.freeze_bottom.frozen_layers=3", "strategy.lora.r=4"])
    policy = strategies.from_config(cfg.strategy)
    assert (policy.frozen_layers, policy.backbone_lr_factor) == (3, 0.5)
    lora = strategies.from_config(cfg.with_strategy("lora").strategy)
    assert lora.r == 4 and lora.backbone_lr_factor == 1.0  # adapters ignore the backbone LR
    probe = strategies.from_config(load_config(None, [
        "strategy.name=linear_probe", "strategy.linear_probe.epochs=7"]).strategy)
    assert probe.budget(cfg.train).epochs == 7


def test_the_sweep_default_is_the_registry_filtered_by_modality():
    text = load_config(None, [])
    assert sweep_strategies(text) == list(strategies.REGISTRY)
    image = load_config(None, ["data.modality=image", "data.recipe=fashion-mnist"])
    assert sweep_strategies(image) == [n for n in strategies.REGISTRY if n != "zero_shot"]
    chosen = load_config(None, ["sweep.strategies=[lora, full]"])
    assert sweep_strategies(chosen) == ["lora", "full"]

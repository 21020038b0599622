"""The search space: which keys a trial draws, and the config a drawn trial runs.

A knob is drawn only when the drawn strategy reads it. ``when`` says so explicitly; without
it, a ``strategy.*`` or ``train.*`` key is inferred to be read by a strategy when changing it
changes what that strategy's policy object trains with (its identity, which is what its
checkpoints are keyed on, or its training budget). So ``strategy.lora.r`` is drawn for LoRA
only and ``train.lr`` not for the linear probe (it has its own), with no table to keep in step
with the strategy registry. Keys outside those blocks (``model.dropout``) are always drawn.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ferry.config import FerryConfig, ParamSpace, format_validation_error
from ferry.config.loading import set_key
from ferry.errors import ConfigError

STRATEGY_KEY = "strategy.name"


def strategies(cfg: FerryConfig) -> list[str]:
    """The strategies a trial can draw (the config's own when the space fixes it)."""
    drawn = cfg.tune.space.get(STRATEGY_KEY)
    return [str(c) for c in drawn.choices] if drawn and drawn.choices else [cfg.strategy.name]


def active(cfg: FerryConfig, key: str, spec: ParamSpace, strategy: str) -> bool:
    """Whether ``key`` is drawn when ``strategy`` is."""
    if key == STRATEGY_KEY:
        return False
    if spec.when is not None:
        return strategy in spec.when
    if not key.startswith(("strategy.", "train.")):
        return True
    from ferry.transfer.strategies import REGISTRY

    if key.startswith("train.") and not REGISTRY[strategy].trains:
        return False  # zero-shot trains nothing
    try:
        a, b = (with_values(cfg, {STRATEGY_KEY: strategy, key: v}) for v in _extremes(spec))
    except ConfigError:  # an invalid value: drawn, so that ``check`` names it
        return True
    policy_a, policy_b = (REGISTRY[strategy].build(c.strategy) for c in (a, b))
    return (policy_a.identity() != policy_b.identity()
            or policy_a.budget(a.train) != policy_b.budget(b.train))


def _extremes(spec: ParamSpace) -> tuple[Any, Any]:
    if spec.choices is not None:
        return spec.choices[0], spec.choices[-1] if len(spec.choices) > 1 else spec.choices[0]
    cast = int if spec.integer else float
    return cast(spec.low), cast(spec.high)


def suggest(trial, cfg: FerryConfig) -> dict[str, Any]:
    """Draw a trial's values through Optuna's ``suggest_*`` (the strategy first, then the
    keys active for it), under the dotted keys as parameter names."""
    space = cfg.tune.space
    values: dict[str, Any] = {}
    if STRATEGY_KEY in space:
        values[STRATEGY_KEY] = _draw(trial, STRATEGY_KEY, space[STRATEGY_KEY])
    strategy = values.get(STRATEGY_KEY, cfg.strategy.name)
    for key, spec in space.items():
        if active(cfg, key, spec, strategy):
            values[key] = _draw(trial, key, spec)
    return values


def _draw(trial, key: str, spec: ParamSpace) -> Any:
    if spec.choices is not None:
        return trial.suggest_categorical(key, spec.choices)
    if spec.integer:
        return trial.suggest_int(key, int(spec.low), int(spec.high),
                                 step=int(spec.step or 1))
    return trial.suggest_float(key, spec.low, spec.high, log=spec.log, step=spec.step)


def with_values(cfg: FerryConfig, values: dict[str, Any]) -> FerryConfig:
    """The config with each dotted key set (validated like ``--set`` overrides)."""
    tree = cfg.model_dump(mode="json")
    for key, value in values.items():
        set_key(tree, key.split("."), value, f"{key}={value}")
    try:
        return FerryConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(f"tune.space: the values {values} make an invalid config:\n"
                          f"{format_validation_error(exc)}") from None


def baseline(cfg: FerryConfig) -> dict[str, Any] | None:
    """The config's own values of the searched keys (``tune.baseline_first``): what
    trial 0 runs, so the search starts from the settings it should beat. ``cfg`` has its
    ``train.epochs: auto`` resolved already. None when one of them is not among its key's
    choices (the space excludes the config's own settings)."""
    tree = cfg.model_dump(mode="json")
    values: dict[str, Any] = {}
    if STRATEGY_KEY in cfg.tune.space:
        values[STRATEGY_KEY] = cfg.strategy.name
    for key, spec in cfg.tune.space.items():
        if active(cfg, key, spec, cfg.strategy.name):
            node: Any = tree
            for part in key.split("."):
                node = node[part]
            values[key] = node
    if any(cfg.tune.space[k].choices is not None and v not in cfg.tune.space[k].choices
           for k, v in values.items()):
        return None
    return values


def check(cfg: FerryConfig) -> None:
    """Every value the space can draw makes a valid config for each strategy that draws it
    (choices, and both ends of a range), and every ``when`` names a strategy that can be
    drawn: a space that would fail its trials one by one fails here, naming the key."""
    names = strategies(cfg)
    problems = []
    for key, spec in cfg.tune.space.items():
        if key == STRATEGY_KEY:
            continue
        if spec.when is not None and not set(spec.when) & set(names):
            problems.append(f"tune.space: {key} is drawn only for {spec.when}, none of which "
                            f"strategy.name can draw ({names})")
        values = spec.choices if spec.choices is not None else list(_extremes(spec))
        for strategy in (s for s in names if active(cfg, key, spec, s)):
            for value in values:
                try:
                    with_values(cfg, {STRATEGY_KEY: strategy, key: value})
                except ConfigError:
                    problems.append(f"tune.space: {key}={value!r} is not a valid setting "
                                    f"(with strategy.name={strategy}); narrow its range")
                    break
    if problems:
        raise ConfigError("\n".join(dict.fromkeys(problems)))

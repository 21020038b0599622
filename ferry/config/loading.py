"""Reading a config: a YAML file plus ``--set key.sub=value`` overrides, with errors that name
the file and the dotted key of every invalid entry (a silently ignored typo costs a run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ferry.config.root import FerryConfig
from ferry.config.strategy import MOVED
from ferry.errors import ConfigError

DEFAULT_CONFIG = Path("configs/default.yaml")


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into a key path and a YAML-parsed value (so ``[x, y]`` is a list)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.lr=3e-5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from exc
    return key.strip().split("."), value


def set_key(tree: dict[str, Any], path: list[str], value: Any, item: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: '{part}' is a value, not a section")
        node = child
    node[path[-1]] = value


def load_config(path: Path | str | None = None, overrides: list[str] | None = None) -> FerryConfig:
    """Load a config: file (or configs/default.yaml if present, else built-in defaults) + overrides.

    Raises ConfigError naming the file and the dotted key of every invalid entry.
    """
    source = Path(path) if path else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    tree: dict[str, Any] = {}
    if source is not None:
        tree = _read_yaml(source)
    for item in overrides or []:
        keys, value = parse_override(item)
        set_key(tree, keys, value, item)
    try:
        return FerryConfig.model_validate(tree)
    except ValidationError as exc:
        where = str(source) if source else "built-in defaults"
        raise ConfigError(f"invalid config ({where}" + (" + --set" if overrides else "") +
                          "):\n" + format_validation_error(exc)) from None


def _read_yaml(source: Path) -> dict[str, Any]:
    if not source.is_file():
        raise ConfigError(f"config file not found: {source}")
    try:
        tree = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: not valid UTF-8 YAML ({exc})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    return tree


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``  train.lr: expected a number, got 'abc'``."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            moved = MOVED.get(key.removeprefix("strategy.")) if key.startswith("strategy.") \
                else None
            lines.append(f"  {key}: moved to strategy.{moved} (each strategy has its own block)"
                         if moved else
                         f"  {key}: unknown key (check the spelling; see configs/default.yaml)")
        elif err["type"] == "value_error" and not err["loc"]:  # a rule spanning blocks
            lines += [f"  {part}" for part in str(err["ctx"]["error"]).splitlines()]
        else:
            lines.append(f"  {key}: {err['msg']}, got {err.get('input')!r}")
    return "\n".join(lines)

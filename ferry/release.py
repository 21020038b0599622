"""Champion steps: promote the challenger, roll back, and decide whether a scheduled retrain
has anything new to learn. Each Prefect task in tasks/promotion.py calls exactly one; the gate
decision itself is the pure function in ``ferry.promotion``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from ferry.config import FerryConfig
from ferry.data.versioning import DataVersion
from ferry.steps import Prepared, data_version, root

if TYPE_CHECKING:
    from ferry.tracking import Registry


def promote(cfg: FerryConfig, version: DataVersion, prepared: Prepared, run_id: str) -> dict:
    """Challenger vs champion on this data version's test split; the alias moves last.

    Every registry write before the alias move only adds tags; if anything fails before it,
    ``champion`` still points where it did.
    """
    import tempfile

    from ferry import promotion
    from ferry.errors import PromotionError
    from ferry.tracking import Tracker

    tracker = Tracker(cfg, root())
    reg, name, gates = tracker.registry, cfg.tracking.model_name, cfg.promotion
    chal = (str(gates.challenger_version) if gates.challenger_version else
            reg.alias_version(cfg.tracking.alias))
    if chal is None:
        raise PromotionError(f"model {name!r} has no @{cfg.tracking.alias} version to promote "
                             "(run `ferry run` first, or set tracking.model_name)")
    champ = reg.alias_version(gates.champion_alias)
    with tempfile.TemporaryDirectory(prefix="ferry-promote-") as tmp:
        split = Path(prepared.split_dir)
        scores = promotion.score(cfg, reg.model_folder(chal, Path(tmp) / "c"), split)
        held = None if champ is None else promotion.score(
            cfg, reg.model_folder(champ, Path(tmp) / "p"), split)
    decision = (promotion.Decision(False, f"v{chal} is already @{gates.champion_alias}")
                if chal == champ else promotion.decide(gates, scores, held, cfg.train.select_on))
    record = {"promotion.decision": "promote" if decision.promote else "keep",
              "promotion.reason": decision.reason, "promotion.run_id": run_id,
              "promotion.holdout_md5": version.md5, "promotion.challenger": chal,
              "promotion.champion": champ or "none"}
    run = tracker.run(run_id)
    run.metrics(scores.flat("challenger") | (held.flat("champion") if held else {}))
    run.tags(record)
    reg.set_version_tags(chal, record)
    if champ and champ != chal:
        reg.set_version_tags(champ, {
            "promotion.last_challenger": chal, "promotion.last_decision":
            record["promotion.decision"], "promotion.last_run_id": run_id})
    if decision.promote:
        _still_champion(reg, gates.champion_alias, champ)
        reg.set_alias(gates.champion_alias, chal)  # the last step
        reg.set_version_tags(chal, {"promotion.promoted_at": time.time()})
    return {"model": name, "challenger": chal, "champion_before": champ,
            "champion": chal if decision.promote else champ, **decision.as_dict(),
            "run_id": run_id, "scores": scores.flat("challenger") |
            (held.flat("champion") if held else {})}


def _still_champion(reg: Registry, alias: str, champ: str | None) -> None:
    """The champion this decision compared against must still hold the alias: a decision
    against a champion another promotion replaced meanwhile is void (the flows serialise
    promotions with a lock; this guards direct library use and a lost lock)."""
    from ferry.errors import PromotionError

    now = reg.alias_version(alias)
    if now != champ:
        raise PromotionError(f"@{alias} of {reg.name!r} moved from "
                             f"v{champ or '-'} to v{now} during this decision; nothing moved, "
                             "promote again to compare against the new champion")


def retrain_check(cfg: FerryConfig) -> dict:
    """Whether a scheduled retrain has anything new to learn from: it skips training when the
    data version equals the one the current champion was trained on."""
    from ferry.tracking import Tracker

    version = data_version(cfg)
    reg = Tracker(cfg, root()).registry
    name, alias = cfg.tracking.model_name, cfg.promotion.champion_alias
    champ = reg.alias_version(alias)
    trained_on = reg.version_tags(champ).get("data.md5") if champ else None
    skip = trained_on == version.md5
    reason = (f"data version {version.md5} is the one {name} v{champ} (@{alias}) was trained "
              "on: skipping training" if skip else
              f"data version {version.md5} is new (@{alias} was trained on {trained_on})"
              if champ else f"no @{alias} yet: training on data version {version.md5}")
    return {"skip": skip, "reason": reason, "data_md5": version.md5, "champion": champ}


def rollback(cfg: FerryConfig) -> dict:
    """Move ``champion`` back to the version that held it before the current one."""
    from ferry.errors import PromotionError
    from ferry.tracking import Tracker

    tracker = Tracker(cfg, root())
    reg = tracker.registry
    name, alias = cfg.tracking.model_name, cfg.promotion.champion_alias
    current = reg.alias_version(alias)
    if current is None:
        raise PromotionError(f"model {name!r} has no @{alias}; nothing to roll back")
    promoted = reg.tagged_versions("promotion.promoted_at")
    undone = reg.tagged_versions("promotion.rolled_back_at")
    live = {v: float(t) for v, t in promoted.items()
            if v != current and float(t) > float(undone.get(v, 0))}
    if not live:
        raise PromotionError(f"v{current} is the only champion {name!r} has had; "
                             "nothing to roll back to")
    previous = max(live, key=live.get)
    run_id = tracker.record_decision("rollback", name, {}, {
        "rollback.from": current, "rollback.to": previous})
    reg.set_alias(alias, previous)
    reg.set_version_tags(current, {"promotion.rolled_back_at": time.time()})
    return {"model": name, "from": current, "champion": previous, "run_id": run_id}

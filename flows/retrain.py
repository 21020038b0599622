"""The scheduled retrain: transfer flow then promotion flow, unless the data is unchanged.

Deployments pass a config path and overrides (JSON-friendly), not a config object; a retrain
started by something other than its schedule (a drifted scoring batch, ``flows/score.py``)
says why in ``reason``: logged, and tagged on the training run as ``ferry.retrain_reason``.
"""

from prefect import flow, get_run_logger

from ferry.config import load_config
from flows.promote import promote
from flows.transfer import transfer
from tasks.promotion import retrain_check
from tasks.scoring import tag_reason


@flow(name="ferry-retrain")
def retrain(config: str | None = "configs/default.yaml",
            overrides: list[str] | None = None, reason: str | None = None) -> dict:
    """Retrain on the current data version and let the promotion gates decide."""
    cfg = load_config(config, overrides or [])
    if reason:
        get_run_logger().info("retrain started because: %s", reason)
    check = retrain_check(cfg)
    if check["skip"]:
        return {"trained": False, **check, "started_because": reason}
    trained = transfer(cfg)
    if reason:
        tag_reason(cfg, trained["run_id"], reason)
    decision = promote(cfg)
    return {"trained": True, **check, "run_id": trained["run_id"],
            "model": trained["model"], "promotion": decision, "started_because": reason}

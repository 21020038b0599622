"""The scheduled retrain: transfer flow then promotion flow, unless the data is unchanged.

Deployments pass a config path and overrides (JSON-friendly), not a config object.
"""

from prefect import flow

from ferry.config import load_config
from flows.promote import promote
from flows.transfer import transfer
from tasks.promotion import retrain_check


@flow(name="ferry-retrain")
def retrain(config: str | None = "configs/default.yaml",
            overrides: list[str] | None = None) -> dict:
    """Retrain on the current data version and let the promotion gates decide."""
    cfg = load_config(config, overrides or [])
    check = retrain_check(cfg)
    if check["skip"]:
        return {"trained": False, **check}
    trained = transfer(cfg)
    decision = promote(cfg)
    return {"trained": True, **check, "run_id": trained["run_id"],
            "model": trained["model"], "promotion": decision}

"""The scoring flow: a batch scored by the champion, tested for drift, and (with
``monitor.on_drift: retrain``) a drifted batch starting the retrain deployment.

``ferry predict`` runs this flow, and the ``nightly-score`` deployment runs it on the pool's
worker: both do the same thing. Parameters are JSON-friendly (a config path and overrides).
"""

from prefect import flow

from ferry.config import load_config
from flows.common import log_to_prefect
from tasks.scoring import score_batch, start_retrain


@flow(name="ferry-score")
def score(input: str, config: str | None = None, overrides: list[str] | None = None,
          model: str | None = None, out: str | None = None) -> dict:
    """Score ``input`` with ``model`` (NAME@ALIAS or NAME/VERSION; default the champion)
    into ``out`` (default scored/<stem>.scored.parquet); retrain on drift if configured."""
    log_to_prefect()
    cfg = load_config(config, overrides or [])
    result = score_batch(cfg, input, model, out)
    if result["drifted"] and cfg.monitor.on_drift == "retrain":
        result["retrain"] = start_retrain(cfg, config, overrides or [], result)
    return result

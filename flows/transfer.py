"""The transfer flow: validate -> retrieve -> fine-tune -> evaluate -> register, in MLflow."""

from prefect import flow

from ferry.config import FerryConfig
from flows.common import mlflow_run
from tasks.data import hide_labels, log_validation, resolve_data, validate_data
from tasks.model import (
    domain_shift,
    evaluate,
    extract_features,
    fine_tune,
    retrieve_pretrained,
)
from tasks.receipts import classical_baseline
from tasks.tracking import register, transfer_gain


@flow(name="ferry-transfer")
def transfer(cfg: FerryConfig) -> dict:
    """Adapt a pretrained model to the configured data and register it with its receipts."""
    with mlflow_run(cfg) as run_id:
        version = resolve_data(cfg, run_id)
        prepared = validate_data(cfg, version, run_id)
        prepared = log_validation(cfg, version, prepared, run_id)
        cfg = prepared.bind(cfg)  # data.labels as found in the training split, if not given
        prepared = hide_labels(cfg, prepared, run_id)
        source = retrieve_pretrained(cfg)
        metrics = domain_shift(cfg, source, prepared, run_id)
        features = extract_features(cfg, source, prepared)
        trained = fine_tune(cfg, source, prepared, features, run_id)
        metrics |= evaluate(cfg, trained, prepared, run_id)
        metrics |= classical_baseline(cfg, run_id, trained, prepared)
        if cfg.baseline == "scratch":
            scratch = fine_tune(cfg, source, prepared, None, run_id, role="scratch")
            metrics |= evaluate(cfg, scratch, prepared, run_id)
            metrics |= transfer_gain(cfg, run_id, trained, scratch)
        registered = register(cfg, trained, run_id, version, source, metrics, prepared.rows,
                              prepared.split_dir)
    return {"run_id": run_id, "metrics": metrics, "model": registered.model_dump(),
            "data_md5": version.md5, "pretrained_sha256": source.sha256}

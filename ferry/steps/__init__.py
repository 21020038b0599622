"""The pipeline's steps as plain functions: each Prefect task in tasks/ calls exactly one.

``runs`` (the MLflow run and its lifecycle), ``data`` (version, validation, splits),
``model`` (pretrained source, features, fine-tuning, evaluation), ``receipts`` (transfer
gain, domain shift) and ``register``. Paths in the config are relative to the project root,
which is the current directory. This face re-exports the steps so tasks read as one call each.
"""

from ferry.steps.data import (
    Prepared,
    check_data,
    data_version,
    hide_labels,
    log_validation,
    read_data,
    resolve_data,
    split_key,
    validate_data,
    validation_cache_key,
)
from ferry.steps.model import (
    evaluate,
    extract_features,
    features_cache_key,
    fine_tune,
    retrieve_pretrained,
    source_cache_key,
    source_tags,
)
from ferry.steps.receipts import (
    classical_gain,
    domain_shift,
    shift_between_revisions,
    transfer_gain,
)
from ferry.steps.register import Registered, register
from ferry.steps.runs import finish_run, lifecycle, log_metrics, root, run_log, start_run
from ferry.transfer.records import Trained

__all__ = [
    "Prepared", "Registered", "Trained", "check_data", "classical_gain", "data_version",
    "domain_shift",
    "evaluate", "extract_features", "features_cache_key", "fine_tune", "finish_run",
    "hide_labels", "lifecycle", "log_metrics", "log_validation", "read_data", "register",
    "resolve_data", "retrieve_pretrained", "root", "run_log", "shift_between_revisions",
    "source_cache_key", "source_tags", "split_key", "start_run", "transfer_gain",
    "validate_data", "validation_cache_key",
]

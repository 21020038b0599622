"""The inputs every flow starts from: data version, validated splits, pretrained source."""

from ferry import steps
from ferry.config import FerryConfig
from ferry.data.versioning import DataVersion
from ferry.models.sources import PretrainedSource
from tasks.data import log_validation, resolve_data, validate_data
from tasks.model import retrieve_pretrained


def inputs(cfg: FerryConfig, run_id: str) -> tuple[DataVersion, steps.Prepared,
                                                     PretrainedSource]:
    """Resolve the data version, validate and split it, and locate the pretrained weights."""
    version = resolve_data(cfg, run_id)
    prepared = log_validation(cfg, version, validate_data(cfg, version, run_id), run_id)
    return version, prepared, retrieve_pretrained(cfg)

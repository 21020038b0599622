"""The blocks of what happens after registration: serving the champion and monitoring the
batches it scores (``ferry serve``, ``ferry predict``, ``flows/score.py``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ferry.config.base import Strict


class ServeConfig(Strict):
    """``ferry serve``: an HTTP server speaking MLflow's scoring protocol that follows a
    registry alias. Concurrent requests are batched: a batch closes at ``max_batch`` inputs;
    while it is smaller than the previous batch, the server waits at most ``max_wait_ms``
    for more (a lone client never waits)."""

    host: str = "127.0.0.1"
    port: int = Field(5080, ge=1, le=65535)
    alias: str | None = None  # the alias the server follows; null: promotion.champion_alias
    poll_seconds: float = Field(5.0, gt=0)  # how often the alias is read from the registry
    max_batch: int = Field(64, ge=1)
    max_wait_ms: float = Field(10.0, ge=0)


class MonitorConfig(Strict):
    """Drift of scored batches against the reference stored with the model at registration:
    MMD^2 of the model's own embeddings (permutation p-value) and the shift of the predicted
    class distribution (total variation, with a chi-square p-value)."""

    reference_rows: int = Field(300, ge=10)  # training rows embedded at registration
    max_samples: int = Field(300, ge=10)  # batch rows drawn (seeded) for the MMD test
    permutations: int = Field(500, ge=19)
    seed: int = 0
    p_value: float = Field(0.01, gt=0, lt=1)  # MMD drift when its p-value is below this
    max_prior_tv: float = Field(0.2, gt=0, le=1)  # prior drift when the TV distance exceeds
    # retrain: a drifted batch starts `retrain_deployment` through the Prefect API (a server
    # and a worker are needed: `ferry schedule` or the team stack); none: tag and report only.
    on_drift: Literal["none", "retrain"] = "none"
    retrain_deployment: str = "ferry-retrain/nightly-retrain"
    experiment: str | None = None  # scoring runs' MLflow experiment; null: <experiment>-scoring
    batch_size: int = Field(64, ge=1)
    # `ferry predict` / flows/score.py without --out: <out_dir>/<input stem>.scored.parquet
    # (outside data/, whose DVC version a scored file would otherwise change)
    out_dir: Path = Path("scored")
    id_column: str | None = "id"  # copied to the scored file when the batch has this column

    @model_validator(mode="after")
    def _p_value_reachable(self) -> MonitorConfig:
        """A permutation p-value is never below 1/(1 + permutations): with too few of them
        no batch could ever be flagged, and nobody would notice until it mattered."""
        if 1 / (1 + self.permutations) >= self.p_value:
            raise ValueError(f"monitor.permutations={self.permutations} gives MMD p-values of "
                             f"at least {1 / (1 + self.permutations):.3g}, never below "
                             f"monitor.p_value={self.p_value}: set it to "
                             f"{math.ceil(1 / self.p_value)} or more")
        return self

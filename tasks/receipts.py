"""Receipt tasks beyond the transfer gain: the classical baseline on the same split."""

from prefect import task

from ferry import steps
from ferry.config import FerryConfig


@task(name="classical_baseline")
def classical_baseline(cfg: FerryConfig, run_id: str, trained: steps.Trained,
                       prepared: steps.Prepared) -> dict:
    """TF-IDF (or pixel) logistic regression, tuned on validation, and the gain over it."""
    return steps.classical_gain(cfg, run_id, trained, prepared)

"""Model tasks: retrieve the pretrained source, extract features, fine-tune, evaluate."""

from prefect import task

from ferry import steps
from ferry.config import FerryConfig
from ferry.models.sources import PretrainedSource


@task(name="retrieve_pretrained", persist_result=True,
      cache_key_fn=lambda ctx, params: steps.source_cache_key(params["cfg"]))
def retrieve_pretrained(cfg: FerryConfig) -> PretrainedSource:
    """Locate and hash the weights; cached while the source's files are unchanged."""
    return steps.retrieve_pretrained(cfg)


@task(name="extract_features", persist_result=True,
      cache_key_fn=lambda ctx, p: steps.features_cache_key(p["cfg"], p["source"], p["prepared"]))
def extract_features(cfg: FerryConfig, source: PretrainedSource,
                     prepared: steps.Prepared) -> str | None:
    """Frozen-backbone features (linear probe); cached by backbone hash, data and preprocessing."""
    return steps.extract_features(cfg, source, prepared)


@task(name="fine_tune")
def fine_tune(cfg: FerryConfig, source: PretrainedSource, prepared: steps.Prepared,
              features: str | None, run_id: str, role: str = "transfer") -> steps.Trained:
    """Train with the configured strategy, or the scratch baseline when role='scratch'."""
    return steps.fine_tune(cfg, source, prepared, features, run_id, role)


@task(name="evaluate")
def evaluate(cfg: FerryConfig, trained: steps.Trained, prepared: steps.Prepared,
             run_id: str) -> dict:
    """Metrics on validation and test, confusion matrix and report."""
    return steps.evaluate(cfg, trained, prepared, run_id)


@task(name="domain_shift")
def domain_shift(cfg: FerryConfig, source: PretrainedSource, prepared: steps.Prepared,
                 run_id: str) -> dict:
    """MMD^2 between train and test embeddings, with its p-value (cached on disk, logged)."""
    return steps.domain_shift(cfg, source, prepared, run_id)

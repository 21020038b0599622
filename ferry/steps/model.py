"""Model steps: locate the pretrained source, extract cached features, fine-tune, evaluate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ferry.config import FerryConfig
from ferry.models.sources import PretrainedSource
from ferry.steps.data import Prepared
from ferry.steps.runs import log, root, run_log
from ferry.transfer.records import Role, Trained, metric_prefix


def retrieve_pretrained(cfg: FerryConfig) -> PretrainedSource:
    """Locate and fingerprint the pretrained source (offline, safetensors only)."""
    from ferry.models.sources import resolve

    return resolve(cfg.model)


def source_cache_key(cfg: FerryConfig) -> str:
    """Cache key of retrieval: the source's files (sizes, mtimes), not just its name."""
    from ferry.models.sources import fingerprint

    return "retrieve-" + fingerprint(cfg.model)


def features_cache_key(cfg: FerryConfig, source: PretrainedSource, prepared: Prepared) -> str:
    """Cache key of feature extraction: backbone hash, data version and preprocessing."""
    from ferry.files import content_key
    from ferry.transfer import cache, strategies

    if not strategies.from_config(cfg.strategy).cached_features:
        return "features-none"
    path = root() / cache.features_path(cfg, source.sha256, prepared.split_key)
    return "features-" + content_key(path=path)


def extract_features(cfg: FerryConfig, source: PretrainedSource, prepared: Prepared) -> str | None:
    """Frozen-backbone features for strategies that train on them (None for the others)."""
    from ferry.transfer import features, strategies

    if not strategies.from_config(cfg.strategy).cached_features:
        return None
    return str(features.ensure(cfg, source, prepared.split_dir, prepared.split_key))


def source_tags(source: PretrainedSource) -> dict[str, str]:
    """Where the weights came from; a run that let model code execute says so."""
    tags = {"pretrained.source": source.label, "pretrained.path": source.path,
            "pretrained.sha256": source.sha256}
    if source.trust_remote_code:
        tags["pretrained.trust_remote_code"] = "true"
    return tags


def fine_tune(cfg: FerryConfig, source: PretrainedSource, prepared: Prepared,
              features_file: str | None, run_id: str, role: Role = "transfer",
              on_epoch: Callable[[int, dict], None] | None = None) -> Trained:
    """Train with the configured strategy (or the scratch baseline) and export the model.

    ``on_epoch(epoch, record)`` also sees each epoch after it is logged (a tuning trial
    reports it to its pruner, which may stop the training by raising)."""
    from ferry.tracking.system import system_metrics
    from ferry.transfer import training

    run = run_log(cfg, run_id)
    run.tags(source_tags(source))
    cfg, plan = training.budgeted(cfg, prepared.rows["train"])  # train.epochs: auto
    log.info("training budget: %s", plan.reason)
    run.tags({"ferry.budget.epochs": plan.epochs, "ferry.budget.reason": plan.reason})
    run.metrics({f"{metric_prefix(role)}planned_epochs": plan.epochs})
    if role == "transfer" and cfg.self_training.enabled:
        trained = _self_train(cfg, source, prepared, run_id)
    else:
        if cfg.self_training.enabled:  # the baseline gets the budget of a self-training round
            cfg = training.with_min_steps(cfg, prepared.rows["train"],
                                          cfg.self_training.min_steps)
        what = "scratch baseline" if role == "scratch" else f"fine-tune ({cfg.strategy.name})"
        log.info("%s of %s on %s training rows", what, source.label,
                 f"{prepared.rows['train']:,}")
        logger = run.epoch_logger(metric_prefix(role))

        def report(epoch: int, record: dict) -> None:
            logger(epoch, record)
            if on_epoch:
                on_epoch(epoch, record)

        with system_metrics(run):
            trained = training.train(cfg, source, Path(prepared.split_dir), prepared.split_key,
                                     Path(features_file) if features_file else None, role,
                                     report)
    run.metrics({f"{metric_prefix(role)}train_rows": trained.train_rows})
    if role == "transfer" and trained.long_text:  # how long texts were read, and cut
        run.tags({"data.long_text": trained.long_text["mode"],
                  "data.long_text_reason": trained.long_text["reason"]})
        run.metrics(trained.long_text["metrics"])
    return trained


def evaluate(cfg: FerryConfig, trained: Trained, prepared: Prepared, run_id: str) -> dict:
    """Test and validation metrics (sklearn) and the confusion matrix, logged to the run."""
    from ferry.transfer import scoring

    prefix = metric_prefix(trained.role)
    model_dir = Path(trained.model_dir)
    metrics, artifacts = scoring.evaluate(cfg, model_dir, Path(prepared.split_dir), prefix)
    artifacts += scoring.learning_curves(model_dir, prefix)
    metrics[f"{prefix}best_epoch"] = trained.best_epoch
    # the kept epoch's score on the metric that chose it (train.select_on)
    metrics[f"{prefix}best_val_{cfg.train.select_on}"] = trained.best_val_accuracy
    run = run_log(cfg, run_id)
    run.metrics(metrics)
    for path in artifacts:  # a folder (one per task) keeps its name: same file names inside
        run.artifacts([path], f"evaluation/{trained.role}" +
                      (f"/{path.name}" if path.is_dir() else ""))
    return metrics


def _self_train(cfg: FerryConfig, source: PretrainedSource, prepared: Prepared,
                run_id: str) -> Trained:
    """Self-training rounds, each logged with the round as step (``self_training_*``)."""
    from ferry.errors import ConfigError
    from ferry.transfer import self_training

    pool = cfg.self_training.unlabelled_path or Path(prepared.split_dir) / "unlabelled.csv"
    if not Path(pool).is_file():
        raise ConfigError(f"self_training: the unlabelled pool {pool} does not exist; set "
                          "self_training.unlabelled_path to a CSV of texts")
    run = run_log(cfg, run_id)

    def on_round(round_: int, record: dict) -> None:
        run.metrics({f"self_training_{k}": v for k, v in record.items()}, step=round_)
        log.info("self-training round %d: %s", round_, ", ".join(
            f"{k} {v:.4f}" for k, v in record.items() if k.endswith("accuracy")))

    return self_training.run(cfg, source, Path(prepared.split_dir), prepared.split_key,
                             Path(pool), on_round)

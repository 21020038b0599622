"""The pipeline's steps as plain functions: each Prefect task in tasks/ calls exactly one.

Steps exchange small references (paths, hashes, run ids) so that Prefect can hash them for
cache keys and the library stays usable without Prefect. Paths in the config are relative to
the project root, which is the current directory.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel

from ferry.config import FerryConfig
from ferry.data.versioning import DataVersion
from ferry.models.sources import PretrainedSource


class Prepared(BaseModel):
    """Validated splits of one data version."""

    split_dir: str
    split_key: str
    report_dir: str
    rows: dict[str, int]


class Trained(BaseModel):
    """A trained model folder and how it got there."""

    model_dir: str
    role: str  # "transfer" or "scratch"
    strategy: str
    best_epoch: int
    best_val_accuracy: float
    resumed_from: int
    train_seconds: float
    trainable_params: int = 0
    cached: bool = False


class Registered(BaseModel):
    name: str
    version: str
    alias: str


def root() -> Path:
    return Path.cwd()


def start_run(cfg: FerryConfig, kind: str = "transfer", parent_id: str | None = None) -> str:
    """Open the MLflow run every later step logs into (a child run when ``parent_id`` is set)."""
    from ferry import tracking

    what = cfg.strategy.name if kind == "transfer" else kind
    name = cfg.tracking.run_name if cfg.tracking.run_name and not parent_id else (
        f"{what}-{cfg.model.name.split('/')[-1]}-{time.strftime('%Y%m%d-%H%M%S')}")
    tags = {"ferry.kind": kind, "ferry.strategy": cfg.strategy.name,
            "ferry.baseline": cfg.baseline, "ferry.dataset": str(cfg.data.path)}
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    return tracking.start_run(cfg, root(), name, tags)


def finish_run(cfg: FerryConfig, run_id: str, ok: bool) -> None:
    from ferry import tracking

    tracking.end_run(cfg, root(), run_id, ok)


def data_version(cfg: FerryConfig) -> DataVersion:
    """Make the dataset present (cache, remote or recipe) and equal to its DVC version."""
    from ferry.data import recipes, versioning

    tracked = versioning.tracked_out(root(), cfg.data.dvc_file)

    def rebuild() -> None:  # everything built-in inside the tracked folder, not just this one
        recipes.rebuild_tracked(root(), Path(tracked[0]) if tracked else cfg.data.path,
                                cfg.data)

    rebuild_fn = rebuild if cfg.data.recipe else None
    return versioning.ensure_data(root(), cfg.data.dvc_file, cfg.data.path, rebuild_fn,
                                   whole_folder=cfg.data.modality == "image")


def resolve_data(cfg: FerryConfig, run_id: str) -> DataVersion:
    """The data version, with the run tagged by its lineage."""
    from ferry import tracking

    version = data_version(cfg)
    tracking.set_tags(cfg, root(), run_id, {
        "data.md5": version.md5, "data.dvc_tracked": version.dvc_tracked,
        "data.origin": version.origin, "data.path": str(cfg.data.path),
        "code.git_rev": version.git_rev, "code.git_dirty": version.git_dirty,
        "data.dvc_rev": version.git_rev})
    return version


def split_key(cfg: FerryConfig, version: DataVersion) -> str:
    """Identity of a validated split: data version, split settings, columns, labels, bounds."""
    from ferry.files import content_key

    return content_key(md5=version.md5, data=cfg.data.model_dump(mode="json", exclude={"recipe"}))


def validate_data(cfg: FerryConfig, version: DataVersion, run_id: str) -> Prepared:
    """GX suites on the table, split, leakage suite on the splits.

    The outcome depends only on the data version and the data settings, so a passed validation
    is cached; a failure logs its report to the run before stopping it.
    """
    from ferry import tracking
    from ferry.data import splits
    from ferry.errors import DataValidationError

    skey = split_key(cfg, version)
    report_dir = root() / cfg.paths.reports / skey
    try:
        parts = check_data(cfg, report_dir)
    except DataValidationError:
        tracking.log_artifacts(cfg, root(), run_id, [report_dir], "validation")
        raise
    split_dir = splits.write_splits(parts, root() / cfg.paths.prepared / skey)
    return Prepared(split_dir=str(split_dir), split_key=skey, report_dir=str(report_dir),
                    rows={name: len(part) for name, part in parts.items()})


def check_data(cfg: FerryConfig, report_dir: Path) -> dict:
    """Run the suites, write the report, raise DataValidationError on failure; the splits."""
    from ferry.data import splits, validation

    frame = read_data(cfg)
    findings = validation.check_table(frame, cfg.data)
    parts = None
    if all(f.success for f in findings):
        parts = splits.split_frame(frame, cfg.data)
        findings += validation.check_leakage(parts, cfg.data)
    report = validation.write_report(findings, cfg.data.path, report_dir)
    validation.raise_on_failure(findings, cfg.data.path, report)
    assert parts is not None
    return parts


def read_data(cfg: FerryConfig):
    """The labelled table; for images, with each file's inspection (decode, mode, size, hash)."""
    import pandas as pd

    from ferry.data import images
    from ferry.data.loading import read_table

    path = root() / cfg.data.path
    if cfg.data.modality == "text":
        return read_table(path, [cfg.data.text_column, cfg.data.label_column],
                          strip=(cfg.data.label_column,))
    frame = images.read_images(path, cfg.data).reset_index(drop=True)
    inspected = images.inspect(frame[cfg.data.path_column].tolist(), images.data_root(path))
    return pd.concat([frame, inspected], axis=1)


def validation_cache_key(cfg: FerryConfig, version: DataVersion) -> str:
    """Cache key of validation: the data version, data settings and where splits are kept."""
    from ferry.files import content_key

    where = [str(root() / cfg.paths.prepared), str(root() / cfg.paths.reports)]
    return "validate-" + content_key(split=split_key(cfg, version), where=where)


def log_validation(cfg: FerryConfig, version: DataVersion, prepared: Prepared,
                   run_id: str) -> Prepared:
    """Attach the (possibly cached) validation report and split sizes to this run.

    If the cached split files or report were deleted since, validation simply runs again.
    """
    from ferry import tracking

    files = [Path(prepared.split_dir) / f"{name}.csv" for name in prepared.rows]
    if not all(f.is_file() for f in [*files, Path(prepared.report_dir) / "validation.html"]):
        prepared = validate_data(cfg, version, run_id)

    tracking.log_artifacts(cfg, root(), run_id, [Path(prepared.report_dir)], "validation")
    tracking.log_metrics(cfg, root(), run_id,
                         {f"data.rows_{k}": v for k, v in prepared.rows.items()})
    return prepared


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
              features_file: str | None, run_id: str, role: str = "transfer") -> Trained:
    """Train with the configured strategy (or the scratch baseline) and export the model."""
    from ferry import tracking
    from ferry.transfer import training

    tracking.set_tags(cfg, root(), run_id, source_tags(source))
    prefix = training.metric_prefix(role)
    if role == "transfer" and cfg.self_training.enabled:
        out = _self_train(cfg, source, prepared, run_id)
    else:
        if cfg.self_training.enabled:  # the baseline gets the budget of a self-training round
            cfg = training.with_min_steps(cfg, prepared.rows["train"],
                                          cfg.self_training.min_steps)
        logger = tracking.epoch_logger(cfg, root(), run_id, prefix)
        with tracking.system_metrics(cfg, root(), run_id):
            out = training.train(cfg, source, Path(prepared.split_dir), prepared.split_key,
                                 Path(features_file) if features_file else None, role, logger)
    return Trained(model_dir=str(out.model_dir), role=role, strategy=out.strategy,
                   best_epoch=out.best_epoch, best_val_accuracy=out.best_metric,
                   resumed_from=out.resumed_from, train_seconds=out.seconds,
                   trainable_params=out.trainable_params, cached=out.cached)


def evaluate(cfg: FerryConfig, trained: Trained, prepared: Prepared, run_id: str) -> dict:
    """Test and validation metrics (sklearn) and the confusion matrix, logged to the run."""
    from ferry import tracking
    from ferry.transfer import training

    prefix = training.metric_prefix(trained.role)
    metrics, artifacts = training.evaluate(cfg, Path(trained.model_dir),
                                           Path(prepared.split_dir), prefix)
    artifacts += training.learning_curves(Path(trained.model_dir), prefix)
    metrics[f"{prefix}best_epoch"] = trained.best_epoch
    metrics[f"{prefix}best_val_accuracy"] = trained.best_val_accuracy
    tracking.log_metrics(cfg, root(), run_id, metrics)
    tracking.log_artifacts(cfg, root(), run_id, artifacts, f"evaluation/{trained.role}")
    return metrics


def transfer_gain(cfg: FerryConfig, run_id: str, trained: Trained, scratch: Trained) -> dict:
    """The receipt: fine-tuned minus scratch test accuracy, with a paired bootstrap interval.

    ``ferry.negative_transfer`` is true only when the whole interval lies below zero.
    """
    import numpy as np

    from ferry import tracking
    from ferry.evaluation.receipt import paired_bootstrap
    from ferry.transfer.training import metric_prefix, predictions

    mine = predictions(Path(trained.model_dir), metric_prefix(trained.role))
    base = predictions(Path(scratch.model_dir), metric_prefix(scratch.role))
    if mine["y_true"] != base["y_true"]:
        raise ValueError("transfer and scratch were scored on different test examples")
    opts = cfg.receipt
    gain, low, high = paired_bootstrap(np.array(mine["y_true"]), np.array(mine["y_pred"]),
                                       np.array(base["y_pred"]), opts.bootstrap_samples,
                                       opts.confidence, opts.seed)
    out = {"transfer_gain": gain, "transfer_gain_ci_low": low, "transfer_gain_ci_high": high,
           "scratch_test_accuracy": float(np.mean(np.array(base["y_pred"]) ==
                                                  np.array(base["y_true"])))}
    tracking.log_metrics(cfg, root(), run_id, out)
    tracking.set_tags(cfg, root(), run_id, {"ferry.negative_transfer": high < 0,
                                            "ferry.scratch_model": scratch.model_dir})
    return out


def domain_shift(cfg: FerryConfig, source: PretrainedSource, prepared: Prepared,
                 run_id: str) -> dict:
    """MMD^2 and p-value between the train and test texts, on pretrained embeddings."""
    from ferry import tracking
    from ferry.transfer import cache, shift

    if not cfg.shift.enabled:
        return {}
    texts = cache.split_labels(Path(prepared.split_dir), cfg, ("train", "test"))
    result = shift.between(cfg, source, texts["train"][0], texts["test"][0])
    out = {"shift_train_test_mmd2": result.mmd2, "shift_train_test_p": result.p_value}
    tracking.log_metrics(cfg, root(), run_id, out)
    return out


def shift_between_revisions(cfg: FerryConfig, rev_from: str, rev_to: str) -> dict:
    """MMD^2 and p-value between the dataset's texts (or images) at two git/DVC revisions."""
    import tempfile

    from ferry.transfer import shift

    with tempfile.TemporaryDirectory(prefix="ferry-shift-") as tmp:
        items = [_items_at(cfg, rev, Path(tmp) / str(i))
                 for i, rev in enumerate((rev_from, rev_to))]
        result = shift.between(cfg, retrieve_pretrained(cfg), items[0], items[1])
    return {"from": rev_from, "to": rev_to, **result.as_dict()}


def _items_at(cfg: FerryConfig, rev: str, tmp: Path) -> list[str]:
    """The texts (or image file paths, copied out) of the dataset at a revision."""
    from ferry.data import images
    from ferry.data.loading import read_table
    from ferry.data.versioning import folder_at, read_at

    path = cfg.data.path
    if cfg.data.modality == "image":
        folder = path if (root() / path).is_dir() else path.parent
        copy = folder_at(root(), folder, rev, tmp)
        frame = images.read_images(copy if folder == path else copy / path.name, cfg.data)
        return frame[cfg.data.path_column].tolist()
    frame = read_table(read_at(root(), path, rev, tmp.with_suffix(path.suffix)),
                       [cfg.data.text_column])
    return [str(t) for t in frame[cfg.data.text_column]]


def register(cfg: FerryConfig, trained: Trained, run_id: str, version: DataVersion,
             source: PretrainedSource, metrics: dict, rows: dict[str, int] | None = None
             ) -> Registered:
    """Log the model and its card, register it (card as description), move the alias."""
    from ferry import tracking
    from ferry.evaluation.card import CardFacts, render
    from ferry.files import write_atomic

    tags = {"data.md5": version.md5, "code.git_rev": version.git_rev,
            "pretrained.source": source.label, "pretrained.sha256": source.sha256,
            "ferry.strategy": trained.strategy,
            "test_accuracy": f"{metrics['test_accuracy']:.4f}",
            **({"pretrained.trust_remote_code": "true"} if source.trust_remote_code else {})}
    if "transfer_gain" in metrics:
        tags["transfer_gain"] = f"{metrics['transfer_gain']:.4f}"
    card = render(cfg, CardFacts(
        name=cfg.tracking.model_name, run_id=run_id, strategy=trained.strategy,
        trainable_params=trained.trainable_params, best_epoch=trained.best_epoch,
        data_md5=version.md5, data_origin=version.origin, git_rev=version.git_rev,
        git_dirty=version.git_dirty, source=source.label, source_path=source.path,
        source_sha256=source.sha256, rows=rows or {}, metrics=metrics))
    path = write_atomic(Path(trained.model_dir).parent / "model_card.md",
                        lambda tmp: tmp.write_text(card, encoding="utf-8"))
    tracking.log_artifacts(cfg, root(), run_id, [path], "")
    name, number = tracking.register(cfg, root(), run_id, Path(trained.model_dir), tags, card)
    return Registered(name=name, version=number, alias=cfg.tracking.alias)


def log_metrics(cfg: FerryConfig, run_id: str, metrics: dict[str, float]) -> None:
    from ferry import tracking

    tracking.log_metrics(cfg, root(), run_id, metrics)


def _self_train(cfg: FerryConfig, source: PretrainedSource, prepared: Prepared, run_id: str):
    """Self-training rounds, each logged with the round as step (``self_training_*``)."""
    from ferry import tracking
    from ferry.errors import ConfigError
    from ferry.transfer import self_training

    pool = cfg.self_training.unlabelled_path or Path(prepared.split_dir) / "unlabelled.csv"
    if not Path(pool).is_file():
        raise ConfigError("self_training.enabled needs self_training.unlabelled_path (a CSV of "
                          "texts) or self_training.label_fraction (hide part of the labels)")

    def on_round(round_: int, record: dict) -> None:
        tracking.log_metrics(cfg, root(), run_id,
                             {f"self_training_{k}": v for k, v in record.items()}, step=round_)

    return self_training.run(cfg, source, Path(prepared.split_dir), prepared.split_key,
                             Path(pool), on_round)


def hide_labels(cfg: FerryConfig, prepared: Prepared, run_id: str) -> Prepared:
    """With ``self_training.label_fraction``: keep that share of the training labels (the
    rest become the unlabelled pool). Every later step, scratch included, sees only those."""
    from ferry import tracking
    from ferry.data import subsets
    from ferry.data.splits import read_split

    fraction = cfg.self_training.label_fraction
    if not fraction:
        return prepared
    split_dir, key, _pool = subsets.hide_labels(Path(prepared.split_dir), prepared.split_key,
                                               cfg.data.label_column, fraction,
                                               cfg.data.split.seed)
    rows = {**prepared.rows, "train": len(read_split(split_dir, "train"))}
    tracking.log_metrics(cfg, root(), run_id, {"data.rows_train_labelled": rows["train"]})
    return Prepared(split_dir=str(split_dir), split_key=key, report_dir=prepared.report_dir,
                    rows=rows)

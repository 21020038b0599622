"""Data steps: make the data version present, validate and split it, attach it to the run.

They exchange small references (paths, hashes, run ids) so that Prefect can hash them for
cache keys and the library stays usable without Prefect.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from ferry.config import FerryConfig
from ferry.data.versioning import DataVersion
from ferry.steps.runs import log, root, run_log


class Prepared(BaseModel):
    """Validated splits of one data version, the labels they carry and the repairs made."""

    split_dir: str
    split_key: str
    report_dir: str
    rows: dict[str, int]
    labels: list[str] = []  # the primary task's
    task_labels: dict[str, list[str]] = {}  # every task's, by label column
    dropped: dict[str, int] = {}  # repair rule -> rows dropped
    repairs: list[str] = []  # one line per repair, as printed

    def bind(self, cfg: FerryConfig) -> FerryConfig:
        """The config with every task's labels resolved (``data.labels`` the primary's, and
        ``data.tasks[].labels``): every later step reads the labels there."""
        found = dict(self.task_labels)
        if self.labels:
            found.setdefault(cfg.data.label_column, list(self.labels))
        tasks = cfg.data.task_list()
        if not found or all(t.labels == found.get(t.column, t.labels) for t in tasks):
            return cfg
        return cfg.model_copy(update={"data": cfg.data.with_task_labels(found)})


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

    version = data_version(cfg)
    run_log(cfg, run_id).tags({
        "data.md5": version.md5, "data.dvc_tracked": version.dvc_tracked,
        "data.origin": version.origin, "data.path": str(cfg.data.path),
        "code.git_rev": version.git_rev, "code.git_dirty": version.git_dirty,
        "data.dvc_rev": version.git_rev})
    how = f"DVC-tracked by {cfg.data.dvc_file}" if version.dvc_tracked else "not DVC-tracked"
    log.info("data %s: version %s (%s, %s)", cfg.data.path, version.md5, how, version.origin)
    return version


def split_key(cfg: FerryConfig, version: DataVersion) -> str:
    """Identity of a validated split: data version, split settings, columns, labels, bounds."""
    from ferry.config.base import identity_dump
    from ferry.files import content_key

    return content_key(md5=version.md5, data=identity_dump(cfg.data, exclude={"recipe"}))


def validate_data(cfg: FerryConfig, version: DataVersion, run_id: str) -> Prepared:
    """GX suites on the table, split, leakage suite on the splits.

    The outcome depends only on the data version and the data settings, so a passed validation
    is cached; a failure logs its report to the run before stopping it.
    """
    from ferry.data import splits
    from ferry.errors import DataValidationError

    skey = split_key(cfg, version)
    report_dir = root() / cfg.paths.reports / skey
    try:
        checked = check_data(cfg, report_dir)
    except DataValidationError:
        run_log(cfg, run_id).artifacts([report_dir], "validation")
        raise
    split_dir = splits.write_splits(checked.parts, root() / cfg.paths.prepared / skey)
    return Prepared(split_dir=str(split_dir), split_key=skey, report_dir=str(report_dir),
                    rows={name: len(part) for name, part in checked.parts.items()},
                    labels=checked.labels, task_labels=checked.task_labels,
                    repairs=[r.line() for r in checked.repairs],
                    dropped={r.rule: r.count for r in checked.repairs
                             if r.action == "dropped"})


def check_data(cfg: FerryConfig, report_dir: Path):
    """Read, run the suites and the repair policy, write the report, split; raise
    DataValidationError on what cannot be repaired. Returns ``checks.Checked``."""
    from ferry.data import checks

    return checks.check(read_data(cfg), cfg.data, report_dir)


def read_data(cfg: FerryConfig):
    """The labelled table; for images, with each file's inspection (decode, mode, size, hash)."""
    import pandas as pd

    from ferry.data import images
    from ferry.data.loading import read_labelled

    path = root() / cfg.data.path
    if cfg.data.modality == "text":
        return read_labelled(path, cfg.data)
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
    """Attach the (possibly cached) validation report, split sizes and the splits themselves
    (as MLflow dataset inputs) to this run.

    If the cached split files or report were deleted since, validation simply runs again.
    """
    from ferry.data.splits import read_split

    files = [Path(prepared.split_dir) / f"{name}.csv" for name in prepared.rows]
    if not all(f.is_file() for f in [*files, Path(prepared.report_dir) / "validation.html"]):
        prepared = validate_data(cfg, version, run_id)
    from ferry.data.repair import RULES

    run = run_log(cfg, run_id)
    run.artifacts([Path(prepared.report_dir)], "validation")
    run.metrics({f"data.rows_{k}": v for k, v in prepared.rows.items()}
                | {f"data_dropped_{rule}": prepared.dropped.get(rule, 0)
                   for rule in RULES if rule != "long"})
    run.tags({"data.labels": json.dumps(prepared.labels),
              "data.labels_source": "config" if cfg.data.labels else "inferred from train"}
             | ({"data.tasks": json.dumps(prepared.task_labels)}
                if len(prepared.task_labels) > 1 else {}))
    for line in prepared.repairs:
        log.info("data repair: %s", line)
    source = {"path": str(cfg.data.path), "md5": version.md5, "git_rev": version.git_rev,
              "dvc_file": str(cfg.data.dvc_file) if version.dvc_tracked else ""}
    run.datasets({name: read_split(Path(prepared.split_dir), name) for name in prepared.rows},
                 source, version.md5, cfg.data.label_column)
    log.info("validation passed%s: %s (report %s)", " after repairs" if prepared.dropped else "",
             ", ".join(f"{k} {v:,}" for k, v in prepared.rows.items()),
             Path(prepared.report_dir) / "validation.html")
    return prepared


def hide_labels(cfg: FerryConfig, prepared: Prepared, run_id: str) -> Prepared:
    """With ``self_training.label_fraction``: keep that share of the training labels (the
    rest become the unlabelled pool). Every later step, scratch included, sees only those."""
    from ferry.data import subsets
    from ferry.data.splits import read_split

    fraction = cfg.self_training.label_fraction
    if not fraction:
        return prepared
    split_dir, key, _pool = subsets.hide_labels(Path(prepared.split_dir), prepared.split_key,
                                               cfg.data.label_column, fraction,
                                               cfg.data.split.seed)
    rows = {**prepared.rows, "train": len(read_split(split_dir, "train"))}
    run_log(cfg, run_id).metrics({"data.rows_train_labelled": rows["train"]})
    return prepared.model_copy(update={"split_dir": str(split_dir), "split_key": key,
                                      "rows": rows})

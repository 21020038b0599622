"""Batch scoring: a registered model answers a file of new inputs, and says how far they are
from what it was trained on.

``score`` resolves the model (``NAME@ALIAS`` or ``NAME/VERSION``; default the champion of
``tracking.model_name``), validates the batch with training's label-free rules (empty texts
dropped and reported, long ones kept and reported, unreadable images dropped; repeated rows
all scored: every input row gets its answer), scores it in batches on the GPU when there is
one, writes one Parquet file atomically (a failure leaves no file, not even a partial one),
tests drift against the reference stored with the model, and logs a scoring run.

The Parquet columns: ``row`` (the input's 1-based row number, as the repair report counts
rows), ``id`` (the input's ``monitor.id_column``, when it has one), the scored text or image
path under its input name, ``prediction``, ``confidence``, ``proba.<label>`` (the calibrated
probabilities, exactly what the registered pyfunc answers with ``output: probabilities``),
``model_name``, ``model_version``, ``model_run_id``, ``input_md5``, ``scored_at`` (UTC).
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from ferry.config import FerryConfig
from ferry.errors import FerryError
from ferry.files import content_key, write_atomic
from ferry.serving import drift as drift_mod
from ferry.serving.inputs import Batch, stem

log = logging.getLogger("ferry.serving")


class ScoreResult(BaseModel):
    """What one scored batch produced (small and JSON-able: it crosses Prefect's API)."""

    input: str
    out: str
    model_name: str
    model_version: str
    model_run_id: str
    input_md5: str
    rows_in: int
    rows_scored: int
    rows_dropped: int
    repairs: list[str] = []
    report: str = ""
    predicted: dict[str, float] = {}
    mean_confidence: float = 0.0
    drift: dict[str, Any] | None = None  # Drift.record(); None: the model has no reference
    drifted: bool = False
    drift_line: str = ""
    run_id: str = ""
    link: str = ""


def resolve(cfg: FerryConfig, ref: str | None) -> tuple[str, str]:
    """(model name, alias or version): ``--model`` as given, the rest from the config."""
    from ferry.tracking.registry import parse_ref

    default = (cfg.tracking.model_name, cfg.promotion.champion_alias)
    return default if not ref else parse_ref(ref, *default)


def out_path(cfg: FerryConfig, source: Path, given: str | Path | None) -> Path:
    """``--out`` as given (it must be a .parquet file), else
    ``<monitor.out_dir>/<input stem>.scored.parquet``: outside ``data/``, whose DVC version
    (and so the retrain's "is the data new?" check) a scored file would otherwise change."""
    if given is None:  # relative to the project root, the current directory
        return Path(cfg.monitor.out_dir) / f"{stem(source)}.scored.parquet"
    path = Path(given)
    if path.suffix.lower() != ".parquet" or path.is_dir():
        raise FerryError(f"--out {path}: expected a file name ending in .parquet (the scored "
                         "rows are written as Parquet)")
    return path


def score(cfg: FerryConfig, input_path: str | Path, ref: str | None = None,
          out: str | Path | None = None) -> ScoreResult:
    """Score the batch at ``input_path`` with the model ``ref``; see the module docstring."""
    from ferry.serving import inputs
    from ferry.steps.runs import root
    from ferry.tracking import Tracker

    source, began = Path(input_path), time.perf_counter()
    name, which = resolve(cfg, ref)
    target = out_path(cfg, source, out)
    key = content_key(input=str(source.absolute()), model=name, which=which, t=time.time())
    report_dir = root() / cfg.paths.reports / "scoring" / key
    batch = inputs.read(cfg, source, report_dir / "validation")
    for repair in batch.repairs:
        log.info("data repair: %s", repair.line())
    registry = Tracker(cfg, root()).model(name)
    version, run_id = registry.version_of(which)
    model = registry.pyfunc(version).unwrap_python_model()
    _same_modality(cfg, model.meta, name, version)
    log.info("scoring %s: %d of %d rows with %s v%s%s", source, len(batch.frame), batch.rows_in,
             name, version, "" if which.isdigit() else f" (@{which})")
    logits, embeddings = model.forward(batch.items, embeddings=True,
                                       batch_size=cfg.monitor.batch_size, desc="score")
    meta = {"model_name": name, "model_version": version, "model_run_id": run_id,
            "input_md5": batch.md5}
    frame = scored_frame(cfg, batch, model.meta, logits, meta)
    payload = io.BytesIO()
    frame.to_parquet(payload, index=False)  # whole in memory first: the file is all or nothing
    write_atomic(target, lambda tmp: tmp.write_bytes(payload.getvalue()))
    log.info("scored %d rows -> %s", len(frame), target)
    result = ScoreResult(input=str(source), out=str(target), model_name=name,
                         model_version=version, model_run_id=run_id, input_md5=batch.md5,
                         rows_in=batch.rows_in, rows_scored=len(frame),
                         rows_dropped=batch.rows_in - len(frame),
                         repairs=[r.line() for r in batch.repairs], report=str(batch.report))
    found = _test_drift(cfg, result, model, logits, embeddings.numpy())
    _log_run(cfg, result, batch, model.meta, logits, found, report_dir)
    log.info("done in %.1f s; MLflow scoring run %s", time.perf_counter() - began, result.run_id)
    return result


def _same_modality(cfg: FerryConfig, meta: Any, name: str, version: str) -> None:
    if meta.modality != cfg.data.modality:
        raise FerryError(f"{name} v{version} is a {meta.modality} model but the config's "
                         f"data.modality is {cfg.data.modality}; pass the config the model was "
                         "trained with (-c)")


def scored_frame(cfg: FerryConfig, batch: Batch, meta: Any, logits: Any,
                 model: dict[str, str]) -> Any:
    """The output rows: input row (and id), the scored input, the pyfunc's probability
    table, the model and input lineage, and when."""
    import pandas as pd

    from ferry.data.loading import ROW
    from ferry.tracking.pyfunc import table

    rows = batch.frame.reset_index(drop=True)
    head = {"row": rows[ROW].astype("int64")}
    ident = cfg.monitor.id_column
    if ident and ident in rows.columns and ident != batch.column:
        head["id"] = rows[ident]
    head[batch.column] = rows[batch.column].astype(str)
    probs = table(meta, logits)
    lineage = pd.DataFrame({k: [v] * len(rows) for k, v in model.items()})
    lineage["scored_at"] = pd.Timestamp.now(tz="UTC")
    return pd.concat([pd.DataFrame(head), probs, lineage], axis=1)


def _test_drift(cfg: FerryConfig, result: ScoreResult, model: Any, logits: Any,
                embeddings: np.ndarray) -> drift_mod.Drift | None:
    """The drift figures against the model's stored reference (none stored: said so)."""
    labels = drift_mod.primary_labels(model.meta)
    predicted = drift_mod.primary_classes(model.meta, logits)
    confidence = _confidence(model.meta, logits)
    counts = np.bincount(predicted, minlength=len(labels)) / max(len(predicted), 1)
    result.predicted = dict(zip(labels, counts.tolist(), strict=True))
    result.mean_confidence = float(confidence.mean()) if len(confidence) else 0.0
    reference = drift_mod.read_reference(model.folder)
    found = None
    if reference is None:
        result.drift_line = (f"not tested: {result.model_name} v{result.model_version} has no "
                             "drift reference (registered before Ferry stored one)")
    else:
        found = drift_mod.check(reference, embeddings, predicted, cfg.monitor)
        result.drift, result.drifted, result.drift_line = found.record(), found.drifted, \
            found.line()
    log.info("drift: %s", result.drift_line)
    return found


def _confidence(meta: Any, logits: Any) -> np.ndarray:
    from ferry.models.tasks import Layout

    return Layout.from_meta(meta).probabilities(logits)[0].max(1)


def _log_run(cfg: FerryConfig, result: ScoreResult, batch: Batch, meta: Any, logits: Any,
             found: drift_mod.Drift | None, report_dir: Path) -> None:
    """The scoring run: lineage params, counts, predicted shares, drift, files, dataset."""
    from ferry.serving import report
    from ferry.steps.runs import root
    from ferry.tracking.scoring import ScoringRecord, log_scoring

    labels = drift_mod.primary_labels(meta)
    predicted = drift_mod.primary_classes(meta, logits)
    files = report.write(report_dir / "run", labels, predicted, _confidence(meta, logits),
                         result.drift, found.reference_predicted if found else None)
    metrics = {"rows_in": result.rows_in, "rows_scored": result.rows_scored,
               "rows_dropped": result.rows_dropped, "mean_confidence": result.mean_confidence,
               **{f"predicted_fraction_{_metric(k)}": v for k, v in result.predicted.items()}}
    metrics |= found.as_dict() if found else {}
    params = {"model_name": result.model_name, "model_version": result.model_version,
              "model_run_id": result.model_run_id, "input_path": result.input,
              "input_md5": result.input_md5, "output_path": result.out,
              **{f"monitor.{k}": v for k, v in cfg.monitor.model_dump(mode="json").items()}}
    tags = {"ferry.drift": str(result.drifted).lower(),
            "ferry.scored_model": f"{result.model_name}/{result.model_version}",
            "ferry.drift_tested": str(result.drift is not None).lower()}
    record = ScoringRecord(
        name=f"score-{stem(Path(result.input))}-{result.model_name}-v{result.model_version}-"
             f"{time.strftime('%Y%m%d-%H%M%S')}", params=params, metrics=metrics, tags=tags,
        files=files, report=report_dir / "validation", inputs=batch.frame[[batch.column]],
        source=result.input, digest=result.input_md5)
    result.run_id, result.link = log_scoring(cfg, root(), record)


def _metric(label: str) -> str:
    """A label as part of a metric key (MLflow allows letters, digits and ``_-. /``)."""
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in label)

"""Steps of the comparison flows (sweep, learning curve): each Prefect task calls one.

They reuse the transfer steps (ferry.steps) for every training, so a strategy trained by a
sweep is trained, cached, scored and registered exactly as ``ferry run`` would.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from ferry import steps
from ferry.config import FerryConfig
from ferry.data.versioning import DataVersion
from ferry.errors import FerryError
from ferry.models.sources import PretrainedSource


class StrategyResult(BaseModel):
    """One strategy's child run in a sweep."""

    strategy: str
    run_id: str
    trained: steps.Trained
    metrics: dict[str, float]


def sweep_strategies(cfg: FerryConfig) -> list[str]:
    """``sweep.strategies``, or (null) every registered strategy that fits the modality and
    the heads (zero-shot has one label-description list: one single-label task only)."""
    from ferry.config.root import TEXT_ONLY
    from ferry.transfer.strategies import applicable

    if cfg.sweep.strategies:
        return list(cfg.sweep.strategies)
    tasks = cfg.data.task_list()
    single = len(tasks) == 1 and tasks[0].separator is None
    return [s for s in applicable(cfg.data.modality) if single or s not in TEXT_ONLY]


def scratch_baseline(cfg: FerryConfig, source: PretrainedSource, prepared: steps.Prepared,
                     run_id: str) -> steps.Trained:
    """Train (or reuse the cached) scratch model and score it: every receipt compares to it."""
    trained = steps.fine_tune(cfg, source, prepared, None, run_id, role="scratch")
    steps.evaluate(cfg, trained, prepared, run_id)
    return trained


def run_strategy(cfg: FerryConfig, name: str, source: PretrainedSource,
                 prepared: steps.Prepared, parent_id: str,
                 scratch: steps.Trained) -> StrategyResult:
    """One strategy as a child run: train, score, receipt against the shared scratch model."""
    child = cfg.with_strategy(name)
    with steps.lifecycle(lambda: steps.start_run(child, parent_id=parent_id),
                         lambda run_id, ok: steps.finish_run(child, run_id, ok)) as run_id:
        features = steps.extract_features(child, source, prepared)
        trained = steps.fine_tune(child, source, prepared, features, run_id)
        metrics = steps.evaluate(child, trained, prepared, run_id)
        if name != "scratch":
            metrics |= steps.transfer_gain(child, run_id, trained, scratch)
        metrics |= {"train_minutes": _minutes(child, trained, features),
                    "trainable_params": float(trained.trainable_params)}
        steps.log_metrics(child, run_id, metrics)
    return StrategyResult(strategy=name, run_id=run_id, trained=trained, metrics=metrics)


def _minutes(cfg: FerryConfig, trained: steps.Trained, features: str | None) -> float:
    """Training time; a probe's includes the one-off feature extraction it depends on."""
    from ferry.transfer.features import extraction_seconds

    extra = extraction_seconds(Path(features)) if features else 0.0
    return (trained.train_seconds + extra) / 60.0


def workers(cfg: FerryConfig, source: PretrainedSource) -> int:
    """How many strategy runs may train at once (see SweepConfig.concurrency).

    ``auto`` on a GPU is one: the runs would be threads sharing one device and its one
    default stream (kernels queue behind each other, no overlap), ``torch.compile`` is not
    thread-safe, and every run reseeds the process's one global generator. On a CPU, as
    many as fit in the available memory, at most one per 4 cores (they share the cores).
    """
    if cfg.sweep.concurrency != "auto":
        return int(cfg.sweep.concurrency)
    import psutil
    import torch

    if torch.cuda.is_available() and cfg.train.device != "cpu":
        return 1
    need = 4 * weight_bytes(source) + (1 << 30)  # weights, grads, two Adam moments + headroom
    cap = max(1, (os.cpu_count() or 1) // 4)
    return max(1, min(cap, len(sweep_strategies(cfg)), psutil.virtual_memory().available // need))


def weight_bytes(source: PretrainedSource) -> int:
    """Size of the pretrained weights: the safetensors of a text model's folder, or the one
    weights file of an image source (its ``path`` is that file)."""
    path = Path(source.path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def compare(cfg: FerryConfig, parent_id: str, results: list[StrategyResult]) -> dict:
    """Comparison table (CSV) and chart (PNG) on the parent run; the winner by validation
    ``train.select_on`` (each training's best epoch: what it was selected on)."""
    from ferry.evaluation import comparison

    select = cfg.train.select_on
    rows = [{"strategy": r.strategy, **validation_scores(r.trained, select),
             **{k: r.metrics.get(k) for k in comparison.COLUMNS},
             "trainable_params": r.trained.trainable_params, "run_id": r.run_id}
            for r in results]
    out_dir = Path(cfg.paths.reports) / "sweeps" / parent_id
    files = comparison.write(rows, out_dir, select)
    run = steps.run_log(cfg, parent_id)
    run.artifacts(files, "comparison")
    best = comparison.best(rows, select)
    run.tags({"ferry.best_strategy": best["strategy"], "ferry.best_run_id": best["run_id"],
              "ferry.selected_on": f"val_{select}"})
    keys = ("test_accuracy",) if select == "accuracy" else ("test_accuracy", f"test_{select}")
    run.metrics({f"{r['strategy']}_{k}": r[k] for r in rows for k in keys
                 if r[k] is not None})
    return {"rows": rows, "best": best["strategy"], "table": str(files[0]),
            "select_on": select}


def validation_scores(trained: steps.Trained, select: str) -> dict[str, float | None]:
    """``val_accuracy`` and ``val_macro_f1`` of the epoch a training kept, from its history
    (``complete.json``). ``Trained.best_val_accuracy`` holds the *monitored* metric, which
    is ``val_<train.select_on>``, whatever its name says: it only stands in for that one
    figure when the history is gone, never for the other."""
    from ferry.transfer.records import Completion

    done = Completion.read(Path(trained.model_dir).parent)
    kept = next((r for r in (done.history if done else [])
                 if int(r.get("epoch", -1)) == trained.best_epoch), None)
    out: dict[str, float | None] = {"val_accuracy": None, "val_macro_f1": None}
    if kept is None:
        return out | {f"val_{select}": trained.best_val_accuracy}
    return out | {k: kept[k] for k in out if k in kept}


def member_file(cfg: FerryConfig, parent_id: str, name: str) -> Path:
    """Where a spread sweep's member leaves its result for the parent (shared filesystem)."""
    return Path(cfg.paths.reports) / "sweeps" / parent_id / f"{name}.json"


def run_member(cfg: FerryConfig, name: str, source: PretrainedSource,
               prepared: steps.Prepared, parent_id: str,
               scratch: steps.Trained) -> StrategyResult:
    """One strategy of a spread sweep, on a worker: its child run plus a result file."""
    from ferry.files import write_atomic

    result = run_strategy(cfg, name, source, prepared, parent_id, scratch)
    path = member_file(cfg, parent_id, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: tmp.write_text(result.model_dump_json(), encoding="utf-8"))
    return result


def member_params(cfg: FerryConfig, name: str, source: PretrainedSource,
                  prepared: steps.Prepared, parent_id: str, scratch: steps.Trained) -> dict:
    """The parameters of one spread-sweep member flow run (JSON: they cross the Prefect API)."""
    return {"cfg": cfg.model_dump(mode="json"), "name": name,
            "source": source.model_dump(mode="json"),
            "prepared": prepared.model_dump(mode="json"), "parent_id": parent_id,
            "scratch": scratch.model_dump(mode="json")}


def collect_members(cfg: FerryConfig, parent_id: str,
                    outcomes: list[tuple[str, str | None]]) -> list[StrategyResult]:
    """The members' results from their files; ``outcomes`` is (strategy, failed state name or
    None) per member. A member that did not complete fails the sweep, naming it."""
    failed = [f"{name} ({state})" for name, state in outcomes if state is not None]
    if failed:
        raise FerryError(f"sweep members did not complete on {cfg.sweep.deployment}: "
                         f"{', '.join(failed)}; see those flow runs' logs")
    return [StrategyResult.model_validate_json(
        member_file(cfg, parent_id, name).read_text(encoding="utf-8")) for name, _ in outcomes]


def register_best(cfg: FerryConfig, results: list[StrategyResult], best: str,
                  version: DataVersion, source: PretrainedSource,
                  rows: dict[str, int] | None = None,
                  split_dir: str | None = None) -> steps.Registered:
    """Register the winner (chosen on validation) from its own child run."""
    winner = next(r for r in results if r.strategy == best)
    child = cfg.with_strategy(best)
    return steps.register(child, winner.trained, winner.run_id, version, source,
                          winner.metrics, rows, split_dir)


def curve_grid(cfg: FerryConfig) -> list[tuple[int | str, int, str]]:
    """The learning curve's (k, seed, arm) points."""
    from ferry.transfer import curve

    return curve.grid(cfg)


def curve_point(cfg: FerryConfig, source: PretrainedSource, prepared: steps.Prepared,
                k: int | str, seed: int, arm: str) -> dict:
    """One point of the learning curve (trained, or reused from the training cache)."""
    from ferry.transfer import curve

    return curve.point(cfg, source, Path(prepared.split_dir), prepared.split_key, k, seed, arm)


def curve_report(cfg: FerryConfig, run_id: str, points: list[dict]) -> list[dict]:
    """Summary table, every point and the plot on the curve run; gains as metrics."""
    from ferry.transfer import curve

    rows = curve.summarise(points)
    files = curve.write(points, rows, Path(cfg.paths.reports) / "curves" / run_id)
    run = steps.run_log(cfg, run_id)
    run.artifacts(files, "curve")
    metrics = {}
    for row in rows:
        for key in ("pretrained_accuracy", "scratch_accuracy", "gain"):
            metrics[f"curve_k{row['k']}_{key}"] = row[key]
    run.metrics(metrics)
    return rows

"""The receipts a run carries: the gain over a from-scratch model, and domain shift."""

from __future__ import annotations

from pathlib import Path

from ferry.config import FerryConfig
from ferry.models.sources import PretrainedSource
from ferry.steps.data import Prepared
from ferry.steps.model import retrieve_pretrained
from ferry.steps.runs import log, root, run_log
from ferry.transfer.records import Trained, metric_prefix


def transfer_gain(cfg: FerryConfig, run_id: str, trained: Trained, scratch: Trained) -> dict:
    """The receipt: fine-tuned minus scratch test accuracy, with a paired bootstrap interval
    (several tasks: per-example correctness over the example's labelled tasks, and every
    task's own ``transfer_gain_<task>``).

    ``ferry.negative_transfer`` is true only when the whole interval lies below zero.
    """
    from ferry.evaluation import receipt
    from ferry.transfer.scoring import predictions

    mine = predictions(Path(trained.model_dir), metric_prefix(trained.role))
    base = predictions(Path(scratch.model_dir), metric_prefix(scratch.role))
    if not receipt.same_examples(mine, base):
        raise ValueError("transfer and scratch were scored on different test examples")
    opts = cfg.receipt
    out = receipt.gains(mine, base, "transfer_gain", opts.bootstrap_samples, opts.confidence,
                        opts.seed) | {"scratch_test_accuracy": receipt.accuracy(base)}
    tags = {"ferry.negative_transfer": out["transfer_gain_ci_high"] < 0,
            "ferry.scratch_model": scratch.model_dir}
    if len(mine.get("tasks") or {}) > 1:  # which tasks the pretrained start made worse
        tags["ferry.negative_transfer_tasks"] = ",".join(
            t for t in mine["tasks"] if out.get(f"transfer_gain_{t}_ci_high", 0.0) < 0) or "none"
    run = run_log(cfg, run_id)
    run.metrics(out)
    run.tags(tags)
    return out


def classical_gain(cfg: FerryConfig, run_id: str, trained: Trained, prepared: Prepared) -> dict:
    """The classical receipt: a tuned TF-IDF (or pixel) logistic regression on the same split
    (one per task), and the fine-tuned model's gain over it on the same test rows (paired
    bootstrap; several tasks: overall and per task, as ``transfer_gain``).

    ``ferry.beats_classical`` is false, with a warning, when the model's test
    ``train.select_on`` metric (the mean over tasks) is not above the baseline's: a pretrained
    network that costs minutes and a GPU is then not worth it on this data.
    """
    from ferry.evaluation import classical, receipt
    from ferry.transfer.scoring import predictions

    if not cfg.receipt.classical:
        return {}
    layout, results, test_targets = _classical(cfg, prepared)
    mine = predictions(Path(trained.model_dir), metric_prefix(trained.role))
    base = classical.record(layout, test_targets, results)
    if not receipt.same_examples(mine, base):
        raise ValueError("the classical baseline and the model were scored on different test "
                         f"rows ({len(base['y_true'])} vs {len(mine['y_true'])})")
    opts = cfg.receipt
    out = classical.metrics(layout, results) | receipt.gains(
        mine, base, "gain_over_classical", opts.bootstrap_samples, opts.confidence, opts.seed)
    select = cfg.train.select_on
    ours, theirs = (receipt.scores(layout, r)[select] for r in (mine, base))
    beats = ours > theirs
    what = "; ".join((f"{name}: " if len(results) > 1 else "") + r.describe()
                     for name, r in results.items())
    run = run_log(cfg, run_id)
    run.metrics(out)
    run.tags({"ferry.beats_classical": str(beats).lower(), "ferry.classical": what})
    line = (f"{what}: test {select} {theirs:.4f} in {out['classical_seconds']:.1f} s, the "
            f"fine-tuned model's {ours:.4f}; its accuracy gain over it "
            f"{out['gain_over_classical']:+.4f} ({opts.confidence:.0%} CI "
            f"[{out['gain_over_classical_ci_low']:+.4f}, "
            f"{out['gain_over_classical_ci_high']:+.4f}])")
    if beats:
        log.info("classical baseline %s", line)
    else:
        log.warning("the fine-tuned model does not beat the classical baseline, %s: the "
                    "pretrained network is not worth its cost on this data as configured", line)
    return out


def _classical(cfg: FerryConfig, prepared: Prepared):
    """(task layout, the tuned classical baseline per task, the test targets) on the run's
    own split files (texts, or image files downsampled to ``classical.IMAGE_SIZE``), targets
    encoded like the model's. Kept per data version, tasks, labels and recipe (a re-run of the
    same data skips the fit)."""
    import json
    import time

    import numpy as np

    from ferry.evaluation import classical
    from ferry.files import content_key, write_atomic
    from ferry.transfer import cache

    layout = cache.layout_of(cfg)
    data = cache.split_labels(Path(prepared.split_dir), cfg, layout=layout)
    targets = {name: np.asarray(y) for name, (_, y) in data.items()}
    path = root() / cfg.paths.cache / "classical" / (content_key(
        split=prepared.split_key, modality=cfg.data.modality, labels=cfg.data.labels,
        seed=cfg.receipt.seed, recipe=classical.RECIPE, **layout.key()) + ".json")
    if path.is_file():
        raw = json.loads(path.read_text("utf-8"))
        return layout, classical.load(layout, raw), targets["test"]
    if cfg.data.modality == "text":
        began = time.perf_counter()  # (the baseline's seconds include its features)
        features = classical.text_features({n: x for n, (x, _) in data.items()})
    else:
        from ferry.data.images import load_pixels

        pixels = {n: load_pixels(x, classical.IMAGE_SIZE) for n, (x, _) in data.items()}
        began = time.perf_counter()
        features = classical.image_features(pixels)
    results = classical.per_task(layout, features, targets, cfg.receipt.seed, began)
    text = json.dumps(classical.dump(layout, results))
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return layout, results, targets["test"]


def domain_shift(cfg: FerryConfig, source: PretrainedSource, prepared: Prepared,
                 run_id: str) -> dict:
    """MMD^2 and p-value between the train and test texts, on pretrained embeddings."""
    from ferry.transfer import cache, shift

    if not cfg.shift.enabled:
        return {}
    texts = cache.split_labels(Path(prepared.split_dir), cfg, ("train", "test"))
    result = shift.between(cfg, source, texts["train"][0], texts["test"][0])
    out = {"shift_train_test_mmd2": result.mmd2, "shift_train_test_p": result.p_value}
    run_log(cfg, run_id).metrics(out)
    log.info("domain shift train vs test: MMD^2 %.4f, p = %.3f", result.mmd2, result.p_value)
    return out


def shift_between_revisions(cfg: FerryConfig, rev_from: str, rev_to: str) -> dict:
    """MMD^2 and p-value between the dataset's texts (or images) at two git/DVC revisions."""
    import tempfile

    from ferry.transfer import shift

    # only the backbone's features are compared: any head will do
    unset = {t.column: ["a", "b"] for t in cfg.data.task_list() if t.labels is None}
    if unset:
        cfg = cfg.model_copy(update={"data": cfg.data.with_task_labels(unset)})
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
    frame = read_table(read_at(root(), path, rev, tmp.with_suffix("".join(path.suffixes))),
                       [cfg.data.text_column])
    return [str(t) for t in frame[cfg.data.text_column]]

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
    """The receipt: fine-tuned minus scratch test accuracy, with a paired bootstrap interval.

    ``ferry.negative_transfer`` is true only when the whole interval lies below zero.
    """
    import numpy as np

    from ferry.evaluation.receipt import paired_bootstrap
    from ferry.transfer.scoring import predictions

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
    run = run_log(cfg, run_id)
    run.metrics(out)
    run.tags({"ferry.negative_transfer": high < 0, "ferry.scratch_model": scratch.model_dir})
    return out


def classical_gain(cfg: FerryConfig, run_id: str, trained: Trained, prepared: Prepared) -> dict:
    """The classical receipt: a tuned TF-IDF (or pixel) logistic regression on the same split,
    and the fine-tuned model's gain over it on the same test rows (paired bootstrap).

    ``ferry.beats_classical`` is false, with a warning, when the gain is not above zero: a
    pretrained network that costs minutes and a GPU is then not worth it on this data.
    """
    import numpy as np

    from ferry.evaluation.receipt import paired_bootstrap
    from ferry.transfer.scoring import predictions

    if not cfg.receipt.classical:
        return {}
    result, test_labels = _classical(cfg, prepared)
    mine = predictions(Path(trained.model_dir), metric_prefix(trained.role))
    if mine["y_true"] != list(test_labels):
        raise ValueError("the classical baseline and the model were scored on different test "
                         f"rows ({len(test_labels)} vs {len(mine['y_true'])})")
    y_true = np.array(mine["y_true"])
    opts = cfg.receipt
    gain, low, high = paired_bootstrap(y_true, np.array(mine["y_pred"]), result.y_pred,
                                       opts.bootstrap_samples, opts.confidence, opts.seed)
    out = {"classical_test_accuracy": result.test_accuracy,
           "classical_test_macro_f1": result.test_macro_f1,
           "classical_val_accuracy": result.val_accuracy, "classical_seconds": result.seconds,
           "gain_over_classical": gain, "gain_over_classical_ci_low": low,
           "gain_over_classical_ci_high": high}
    beats = gain > 0
    run = run_log(cfg, run_id)
    run.metrics(out)
    run.tags({"ferry.beats_classical": str(beats).lower(), "ferry.classical": result.describe()})
    line = (f"{result.describe()}: test accuracy {result.test_accuracy:.4f} in "
            f"{result.seconds:.1f} s; the fine-tuned model's gain over it {gain:+.4f} "
            f"({opts.confidence:.0%} CI [{low:+.4f}, {high:+.4f}])")
    if beats:
        log.info("classical baseline %s", line)
    else:
        log.warning("the fine-tuned model does not beat the classical baseline, %s: the "
                    "pretrained network is not worth its cost on this data as configured", line)
    return out


def _classical(cfg: FerryConfig, prepared: Prepared):
    """The tuned classical baseline on the run's own split files (texts, or image files
    downsampled to ``classical.IMAGE_SIZE``) and the test labels, as indices into
    ``data.labels`` like the model's. Kept per data version, labels and recipe (a re-run
    of the same data skips the fit)."""
    import json

    from ferry.evaluation import classical
    from ferry.files import content_key, write_atomic
    from ferry.transfer import cache

    data = cache.split_labels(Path(prepared.split_dir), cfg)
    labels = {name: y for name, (_, y) in data.items()}
    path = root() / cfg.paths.cache / "classical" / (content_key(
        split=prepared.split_key, modality=cfg.data.modality, labels=cfg.data.labels,
        seed=cfg.receipt.seed, recipe=classical.RECIPE) + ".json")
    if path.is_file():
        return classical.ClassicalResult.from_dict(json.loads(path.read_text("utf-8"))), \
            labels["test"]
    if cfg.data.modality == "text":
        result = classical.text_baseline({n: x for n, (x, _) in data.items()}, labels,
                                         cfg.receipt.seed)
    else:
        from ferry.data.images import load_pixels

        pixels = {n: load_pixels(x, classical.IMAGE_SIZE) for n, (x, _) in data.items()}
        result = classical.image_baseline(pixels, labels, cfg.receipt.seed)
    text = json.dumps(result.to_dict())
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return result, labels["test"]


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

    if cfg.data.labels is None:  # only the backbone's features are compared: any head will do
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"labels": ["a", "b"]})})
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

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

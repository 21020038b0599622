"""Registration: the model, its card and lineage tags become a registry version."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from ferry.config import FerryConfig
from ferry.data.versioning import DataVersion
from ferry.models.sources import PretrainedSource
from ferry.steps.runs import log, root
from ferry.transfer.records import Trained


class Registered(BaseModel):
    name: str
    version: str
    alias: str


def register(cfg: FerryConfig, trained: Trained, run_id: str, version: DataVersion,
             source: PretrainedSource, metrics: dict, rows: dict[str, int] | None = None,
             split_dir: str | None = None) -> Registered:
    """Log the model and its card, register it (card as description), move the alias.

    With ``split_dir`` (the validated splits it was trained on), the drift reference batch
    scoring tests against is written into the model folder first, so that it travels with
    the registered version (``ferry.serving.drift``)."""
    from ferry.evaluation.card import CardFacts, model_description, render
    from ferry.files import write_atomic
    from ferry.tracking import Tracker

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
        source_sha256=source.sha256, rows=rows or {}, metrics=metrics,
        model_dir=trained.model_dir))
    if split_dir:
        from ferry.serving.drift import write_reference

        write_reference(cfg, Path(trained.model_dir), Path(split_dir))
    path = write_atomic(Path(trained.model_dir).parent / "model_card.md",
                        lambda tmp: tmp.write_text(card, encoding="utf-8"))
    tracker = Tracker(cfg, root())
    tracker.run(run_id).artifacts([path], "")
    number = tracker.registry.register(run_id, Path(trained.model_dir), tags, card,
                                       model_description(cfg, source.label, version.md5))
    log.info("registered %s version %s (@%s)", cfg.tracking.model_name, number,
             cfg.tracking.alias)
    return Registered(name=cfg.tracking.model_name, version=number, alias=cfg.tracking.alias)

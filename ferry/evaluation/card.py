"""The model card of a registered version: what a reviewer needs before trusting it.

Rendered from what the run already knows (lineage, source, strategy, metrics, receipt), logged
as ``model_card.md`` and set as the version's description, so the registry page itself says
what the model is, what it was trained on, how good it is and where it must not be used.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry.config import FerryConfig


@dataclass
class CardFacts:
    """Everything the card states, gathered by the register step."""

    name: str
    run_id: str
    strategy: str
    trainable_params: int
    best_epoch: int
    data_md5: str
    data_origin: str
    git_rev: str
    git_dirty: bool
    source: str
    source_path: str
    source_sha256: str
    rows: dict[str, int]
    metrics: dict[str, float]


def render(cfg: FerryConfig, facts: CardFacts) -> str:
    """Markdown, under ~5,000 characters (the registry's description limit)."""
    m, labels = facts.metrics, cfg.data.labels
    sections = [
        f"# Model card: {facts.name}",
        f"{cfg.data.modality.capitalize()} classifier over {len(labels)} labels "
        f"({', '.join(labels)}), adapted by Ferry from `{facts.source}` with strategy "
        f"`{facts.strategy}` ({facts.trainable_params:,} trainable parameters, best epoch "
        f"{facts.best_epoch}). Training run `{facts.run_id}` (its `config.yaml` holds every "
        "setting).",
        "## Data and lineage\n" + _table(["", ""], [
            ["dataset", f"`{cfg.data.path}`"], ["DVC md5", f"`{facts.data_md5}`"],
            ["restored from", facts.data_origin],
            ["code revision", f"`{facts.git_rev}`" + (" (uncommitted changes)"
                                                     if facts.git_dirty else "")],
            ["rows", ", ".join(f"{k} {v:,}" for k, v in facts.rows.items())]]),
        "## Pretrained source\n" + _table(["", ""], [
            ["source", f"`{facts.source}`"], ["sha256", f"`{facts.source_sha256}`"],
            ["path", f"`{facts.source_path}`"]]),
        "## Training\n" + _table(["", ""], [
            ["strategy", facts.strategy], ["epochs", _epochs(cfg, facts)],
            ["learning rate", f"{cfg.train.lr:g} (backbone x{cfg.strategy.backbone_lr_factor:g})"],
            ["batch size", str(cfg.train.batch_size)], ["seed", str(cfg.train.seed)]]),
        "## Config\n" + _config_diff(cfg),
        "## Test metrics\n" + f"Accuracy **{m.get('test_accuracy', float('nan')):.4f}**, "
        f"macro-F1 **{m.get('test_macro_f1', float('nan')):.4f}** on "
        f"{facts.rows.get('test', 0):,} held-out examples.\n\n" + _table(
            ["class", "precision", "recall", "F1"],
            [[lbl, *(f"{m.get(f'test_{k}_{lbl}', float('nan')):.4f}"
                     for k in ("precision", "recall", "f1"))] for lbl in labels]),
        "## Transfer receipt\n" + _receipt(m),
        "## Classical baseline\n" + _classical(cfg, m),
        "## Intended use\n" + f"Assigning one of the labels above to {cfg.data.modality} "
        "inputs like those of the training data, served through `mlflow.pyfunc` by alias. "
        "Promote with `ferry promote`, which re-scores it against the champion on the same "
        "holdout.",
        "## Limitations\n" + "\n".join(f"- {line}" for line in _limits(cfg, facts)),
    ]
    return "\n\n".join(sections) + "\n"


def _config_diff(cfg: FerryConfig, limit: int = 25) -> str:
    """The settings that differ from Ferry's defaults (the run's config.yaml has them all)."""
    from ferry.config import FerryConfig as Defaults

    base = Defaults().flat()
    rows = [[f"`{k}`", f"`{v}`"] for k, v in cfg.flat().items() if base.get(k) != v]
    if not rows:
        return "Ferry's defaults throughout (`configs/default.yaml`)."
    more = f"\n\n…and {len(rows) - limit} more in the run's `config.yaml`." \
        if len(rows) > limit else ""
    return ("Settings that differ from Ferry's defaults (all of them: the run's "
            "`config.yaml`):\n\n" + _table(["key", "value"], rows[:limit]) + more)


def _receipt(m: dict[str, float]) -> str:
    if "transfer_gain" not in m:
        return "No from-scratch baseline was trained for this version (`baseline: none`)."
    verdict = ("negative transfer: the pretrained start made it worse"
               if m["transfer_gain_ci_high"] < 0 else "pretrained knowledge helped"
               if m["transfer_gain_ci_low"] > 0 else "no significant difference from scratch")
    return (f"Same architecture and budget from random init: test accuracy "
            f"{m['scratch_test_accuracy']:.4f}. Transfer gain **{m['transfer_gain']:+.4f}** "
            f"(95% CI [{m['transfer_gain_ci_low']:+.4f}, {m['transfer_gain_ci_high']:+.4f}]): "
            f"{verdict}.")


def _classical(cfg: FerryConfig, m: dict[str, float]) -> str:
    """Whether the network beat a tuned TF-IDF (pixel) logistic regression on the same rows:
    a reviewer should know when a model that needs minutes and a GPU is not worth it."""
    if "gain_over_classical" not in m:
        return "Not measured for this version (`receipt.classical: false`)."
    what = ("TF-IDF + logistic regression" if cfg.data.modality == "text"
            else "logistic regression on downsampled pixels")
    low, high = m["gain_over_classical_ci_low"], m["gain_over_classical_ci_high"]
    verdict = ("**the fine-tuned model does not beat it**: the classical model is cheaper "
               "and as good or better here" if m["gain_over_classical"] <= 0 else
               "the fine-tuned model is better" + ("" if low > 0 else
                                                  ", though not significantly"))
    return (f"{what}, tuned on the validation split: test accuracy "
            f"{m['classical_test_accuracy']:.4f}, macro-F1 "
            f"{m['classical_test_macro_f1']:.4f}. Gain over it "
            f"**{m['gain_over_classical']:+.4f}** ({cfg.receipt.confidence:.0%} CI "
            f"[{low:+.4f}, {high:+.4f}]): {verdict}.")


def _epochs(cfg: FerryConfig, facts: CardFacts) -> str:
    """The epochs the run planned (``auto`` resolved for its data), and why."""
    if cfg.train.epochs != "auto":
        return str(cfg.train.epochs)
    from ferry.transfer.budget import plan_epochs

    plan = plan_epochs(cfg.train, facts.rows.get("train", 0), len(cfg.data.labels))
    return f"auto: {plan.epochs} planned ({plan.steps:,} optimizer steps, early stopping)"


def _limits(cfg: FerryConfig, facts: CardFacts) -> list[str]:
    out = [f"Trained on {facts.rows.get('train', 0):,} labelled examples; it only knows the "
           f"labels {', '.join(cfg.data.labels)} and always answers with one of them, even for "
           "inputs from none of these classes.",
           "Scores are from one held-out split of the same data version; accuracy on data "
           "from another source or time can be lower (see `shift_train_test_p` in the run)."]
    if cfg.data.modality == "text":
        out.append(f"Texts longer than {cfg.model.max_length} tokens are cut, or read in "
                   f"overlapping windows (data.long_text={cfg.data.long_text}; the run's tag "
                   "data.long_text says which); the tokenizer and pretraining data of the "
                   "source decide which languages it handles.")
    else:
        out.append(f"Images are resized to {cfg.data.image.size} px (shorter side, centre "
                   "crop); fine detail below that scale is lost.")
    recalls = {lbl: facts.metrics.get(f"test_recall_{lbl}") for lbl in cfg.data.labels}
    known = {k: v for k, v in recalls.items() if v is not None}
    if known:
        worst = min(known, key=known.get)
        out.append(f"Weakest class on the holdout: `{worst}` (recall {known[worst]:.4f}).")
    return out


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def model_description(cfg: FerryConfig, source: str, data_md5: str) -> str:
    """The registered model's own description (the registry's list page shows it): the task,
    its labels and the data, where each version's card tells that version's story."""
    labels = cfg.data.labels
    return (f"{cfg.data.modality.capitalize()} classification into {len(labels)} labels "
            f"({', '.join(labels)}), adapted by Ferry from `{source}` on `{cfg.data.path}` "
            f"(latest data version `{data_md5}`). Each version's description is its model "
            f"card (data lineage, strategy, test metrics, transfer receipt); "
            f"`@{cfg.promotion.champion_alias}` is the version that beat the previous one on "
            f"the same holdout (`ferry promote`), `@{cfg.tracking.alias}` the newest "
            "candidate. Experiment: " + f"`{cfg.tracking.experiment}`.")

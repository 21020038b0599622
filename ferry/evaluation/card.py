"""The model card of a registered version: what a reviewer needs before trusting it.

Rendered from what the run already knows (lineage, source, strategy, metrics, receipt), logged
as ``model_card.md`` and set as the version's description, so the registry page itself says
what the model is, what it was trained on, how good it is and where it must not be used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ferry.config import FerryConfig
from ferry.models.tasks import Layout


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
    model_dir: str = ""  # the exported folder: its ferry_model.json has the tasks' thresholds


def render(cfg: FerryConfig, facts: CardFacts) -> str:
    """Markdown, under ~5,000 characters (the registry's description limit)."""
    m, layout = facts.metrics, _layout(cfg, facts)
    sections = [
        f"# Model card: {facts.name}",
        f"{_what(cfg, layout)}, adapted by Ferry from `{facts.source}` with strategy "
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
            ["batch size", str(cfg.train.batch_size)], ["seed", str(cfg.train.seed)],
            ["selected on", f"validation {cfg.train.select_on} (`train.select_on`: the best "
             "epoch, a sweep's winner, promotion's comparison)"],
            ["class weights", _CLASS_WEIGHTS[cfg.train.class_weights]]]),
        "## Config\n" + _config_diff(cfg),
        "## Test metrics\n" + _test_metrics(m, facts, layout),
        "## Transfer receipt\n" + _receipt(m, len(layout.tasks) > 1),
        "## Classical baseline\n" + _classical(cfg, m),
        "## Intended use\n" + ("Assigning one of the labels above to" if layout.classic
                               else "Predicting the tasks above for") + f" {cfg.data.modality} "
        "inputs like those of the training data, served through `mlflow.pyfunc` by alias. "
        "Promote with `ferry promote`, which re-scores it against the champion on the same "
        "holdout.",
        "## Limitations\n" + "\n".join(f"- {line}" for line in _limits(cfg, facts, layout)),
    ]
    return "\n\n".join(sections) + "\n"


_CLASS_WEIGHTS = {"auto": "auto (each class's loss weighed by its inverse training frequency; "
                          "multi-label: positives by negatives/positives)",
                  "none": "none (every example counts the same)"}


def _layout(cfg: FerryConfig, facts: CardFacts) -> Layout:
    """The tasks the registered folder predicts, with the thresholds it was exported with
    (``ferry_model.json``); the config's tasks when the folder is not at hand."""
    from ferry.models import meta

    folder = Path(facts.model_dir) if facts.model_dir else None
    if folder is not None and (folder / meta.FILE).is_file():
        return Layout.from_meta(meta.read(folder))
    return Layout.of(cfg.data)


def _what(cfg: FerryConfig, layout: Layout) -> str:
    """``Text classifier over 2 labels (a, b)``, or its tasks when it has several."""
    kind = cfg.data.modality.capitalize()
    if layout.classic:
        labels = layout.tasks[0].labels
        return f"{kind} classifier over {len(labels)} labels ({', '.join(labels)})"
    parts = [f"`{t.name}` ({'multi-label: ' if t.multi else ''}{', '.join(t.labels)})"
             for t in layout.tasks]
    return (f"{kind} classifier with {len(parts)} task{'s' if len(parts) > 1 else ''} on one "
            f"backbone: {'; '.join(parts)}")


def _test_metrics(m: dict[str, float], facts: CardFacts, layout: Layout) -> str:
    """Headline figures; per task (several) their own and their receipts; per class; the
    calibration of single-label tasks; the decision thresholds of multi-label tasks."""
    several = len(layout.tasks) > 1
    out = (f"Accuracy **{_f(m.get('test_accuracy'))}**, macro-F1 "
           f"**{_f(m.get('test_macro_f1'))}** on {facts.rows.get('test', 0):,} held-out "
           "examples" + (" (means over the tasks)" if several else "") + ".\n\n")
    if several:
        out += _table(["task", "accuracy", "macro-F1", "scratch", "classical",
                       "gain over scratch", "gain over classical"],
                      [_task_row(m, t.name) for t in layout.tasks])
        out += "\n\n"
    rows = [[f"{t.name} / {lbl}" if several else lbl,
             *(_f(m.get(f"test_{layout.prefix(i)}{k}_{lbl}")) for k in ("precision", "recall",
                                                                         "f1"))]
            for i, t in enumerate(layout.tasks) for lbl in t.labels]
    out += _table(["class", "precision", "recall", "F1"], rows[:_MAX_CLASS_ROWS])
    if len(rows) > _MAX_CLASS_ROWS:
        out += f"\n\n…and {len(rows) - _MAX_CLASS_ROWS} more classes in the run's metrics."
    out += _calibration(m, layout)
    multi = [t for t in layout.tasks if t.multi]
    if multi:
        out += ("\n\nMulti-label decision thresholds (a label is predicted at or above its "
                "own; tuned on validation F1):\n\n" + "\n".join(
                    f"- `{t.name}`: " + (", ".join(f"{lbl} {c:.3f}" for lbl, c in zip(
                        t.labels, t.thresholds, strict=True)) if t.thresholds
                        else "0.5 for every label (none recorded)") for t in multi))
    return out


_MAX_CLASS_ROWS = 30  # (the card must stay under the registry's description limit)


def _calibration(m: dict[str, float], layout: Layout) -> str:
    """Test ECE before -> after temperature scaling, and the temperature, per single-label
    task: how far its confidences can be read as probabilities (nothing for a version
    evaluated before calibration existed)."""
    lines = []
    for i, t in enumerate(layout.tasks):
        inner = layout.prefix(i)
        raw, cal = m.get(f"test_{inner}ece_raw"), m.get(f"test_{inner}ece")
        if t.multi or raw is None or cal is None:
            continue
        temp = m.get(f"{inner}temperature", t.temperature)
        lines.append(("" if layout.classic else f"- `{t.name}`: ") +
                     f"{raw:.4f} -> **{cal:.4f}** (T = {temp:.3f})")
    if not lines:
        return ""
    head = ("\n\nConfidences are temperature-scaled (softmax of logits / T, T fitted on the "
            "validation split; answers and accuracy unchanged). Test top-label expected "
            "calibration error (ECE), raw softmax -> calibrated")
    return head + (": " + lines[0] + "." if layout.classic else ":\n\n" + "\n".join(lines))


def _task_row(m: dict[str, float], task: str) -> list[str]:
    """One task's figures and its two receipts (accuracy gains with their intervals)."""
    return [f"`{task}`", _f(m.get(f"test_{task}_accuracy")), _f(m.get(f"test_{task}_macro_f1")),
            _f(m.get(f"scratch_test_{task}_accuracy")),
            _f(m.get(f"classical_{task}_test_accuracy")),
            _gain(m, f"transfer_gain_{task}"), _gain(m, f"gain_over_classical_{task}")]


def _gain(m: dict[str, float], key: str) -> str:
    if key not in m:
        return "-"
    ci = f" [{m[key + '_ci_low']:+.4f}, {m[key + '_ci_high']:+.4f}]" \
        if key + "_ci_low" in m else ""
    return f"{m[key]:+.4f}{ci}"


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


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


def _receipt(m: dict[str, float], several: bool = False) -> str:
    """The gain over scratch and what it says (``several`` tasks: the figures are means,
    the per-task gains are in the test metrics' task table)."""
    if "transfer_gain" not in m:
        return "No from-scratch baseline was trained for this version (`baseline: none`)."
    verdict = ("negative transfer: the pretrained start made it worse"
               if m["transfer_gain_ci_high"] < 0 else "pretrained knowledge helped"
               if m["transfer_gain_ci_low"] > 0 else "no significant difference from scratch")
    means = " (mean over the tasks; each task's gain: the task table above)" if several else ""
    return (f"Same architecture and budget from random init: test accuracy "
            f"{m['scratch_test_accuracy']:.4f}{means}. Transfer gain "
            f"**{m['transfer_gain']:+.4f}** "
            f"(95% CI [{m['transfer_gain_ci_low']:+.4f}, {m['transfer_gain_ci_high']:+.4f}]): "
            f"{verdict}.")


def _classical(cfg: FerryConfig, m: dict[str, float]) -> str:
    """Whether the network beat a tuned TF-IDF (pixel) logistic regression on the same rows:
    a reviewer should know when a model that needs minutes and a GPU is not worth it. The
    verdict reads ``train.select_on`` as ``ferry.beats_classical`` does (on macro-F1: the
    two test macro-F1s; the interval is the accuracy gain's either way)."""
    if "gain_over_classical" not in m:
        return "Not measured for this version (`receipt.classical: false`)."
    what = ("TF-IDF + logistic regression" if cfg.data.modality == "text"
            else "logistic regression on downsampled pixels")
    low, high = m["gain_over_classical_ci_low"], m["gain_over_classical_ci_high"]
    several = len(cfg.data.task_list()) > 1
    if cfg.train.select_on == "macro_f1" and "test_macro_f1" in m:
        better = m["test_macro_f1"] > m["classical_test_macro_f1"]
        verdict = ("the fine-tuned model is better on macro-F1 "
                   f"({m['test_macro_f1']:.4f})" if better else
                   "**the fine-tuned model does not beat it** on macro-F1 "
                   f"({m['test_macro_f1']:.4f}): the classical model is cheaper and as good or "
                   "better here")
    else:
        verdict = ("**the fine-tuned model does not beat it**: the classical model is cheaper "
                   "and as good or better here" if m["gain_over_classical"] <= 0 else
                   "the fine-tuned model is better" + ("" if low > 0 else
                                                      ", though not significantly"))
    return (f"{what}, tuned on the validation split" + (" (one per task; means over the "
                                                        "tasks)" if several else "")
            + f": test accuracy {m['classical_test_accuracy']:.4f}, macro-F1 "
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


def _limits(cfg: FerryConfig, facts: CardFacts, layout: Layout) -> list[str]:
    out = [f"Trained on {facts.rows.get('train', 0):,} labelled examples; " + _answers(layout),
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
    several = len(layout.tasks) > 1
    recalls = {(f"{t.name} / {lbl}" if several else lbl):
               facts.metrics.get(f"test_{layout.prefix(i)}recall_{lbl}")
               for i, t in enumerate(layout.tasks) if not t.multi for lbl in t.labels}
    known = {k: v for k, v in recalls.items() if v is not None}
    if known:
        worst = min(known, key=known.get)
        out.append(f"Weakest class on the holdout: `{worst}` (recall {known[worst]:.4f}).")
    return out


def _answers(layout: Layout) -> str:
    """What it can answer: one of its labels per single-label task (even for inputs from
    none of them), any subset (possibly empty) per multi-label task."""
    if layout.classic:
        return (f"it only knows the labels {', '.join(layout.tasks[0].labels)} and always "
                "answers with one of them, even for inputs from none of these classes.")
    parts = [f"`{t.name}`: " + ("any subset (possibly none) of its labels, at the thresholds "
                                "above" if t.multi else "always one of its labels, even for "
                                "inputs from none of them") for t in layout.tasks]
    return "it only knows the labels listed above and answers, per task, " + \
        "; ".join(parts) + "."


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def model_description(cfg: FerryConfig, source: str, data_md5: str) -> str:
    """The registered model's own description (the registry's list page shows it): the task,
    its labels and the data, where each version's card tells that version's story."""
    tasks = cfg.data.task_list()
    if len(tasks) == 1 and tasks[0].separator is None:
        labels = cfg.data.labels
        what = (f"{cfg.data.modality.capitalize()} classification into {len(labels)} labels "
                f"({', '.join(labels)})")
    else:
        what = (f"{cfg.data.modality.capitalize()} classification, one head per task: " +
                "; ".join(f"`{t.column}`" + (" (multi-label)" if t.separator else "")
                          for t in tasks))
    return (f"{what}, adapted by Ferry from `{source}` on `{cfg.data.path}` "
            f"(latest data version `{data_md5}`). Each version's description is its model "
            f"card (data lineage, strategy, test metrics, transfer receipt); "
            f"`@{cfg.promotion.champion_alias}` is the version that beat the previous one on "
            f"the same holdout (`ferry promote`), `@{cfg.tracking.alias}` the newest "
            "candidate. Experiment: " + f"`{cfg.tracking.experiment}`.")

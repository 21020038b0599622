"""Champion/challenger: score both on the same holdout and decide, with a reason.

The decision is a pure function of the two score sets and the gates, so it is tested without
any registry; ``release.promote`` does the I/O around it and moves the alias last.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ferry.config import FerryConfig, PromotionConfig


@dataclass
class Scores:
    """One model on the holdout: what the gates read. ``accuracy`` and ``macro_f1`` are the
    means over tasks with several; ``recall`` is keyed by label (``<task>/<label>`` with
    several tasks). A multi-label task has no per-class recall: its labels' F1 stand in, in
    ``f1`` (same keys), and the drop rule reads them alike."""

    accuracy: float
    macro_f1: float
    recall: dict[str, float]
    f1: dict[str, float] = field(default_factory=dict)

    def get(self, metric: str) -> float:
        return self.accuracy if metric == "accuracy" else self.macro_f1

    def flat(self, prefix: str) -> dict[str, float]:
        """MLflow metrics: ``challenger_accuracy``, ``challenger_recall_fresh``, ..."""
        out = {f"{prefix}_accuracy": self.accuracy, f"{prefix}_macro_f1": self.macro_f1}
        return out | {f"{prefix}_recall_{k}": v for k, v in self.recall.items()} | \
            {f"{prefix}_f1_{k}": v for k, v in self.f1.items()}


@dataclass
class Decision:
    promote: bool
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def score(cfg: FerryConfig, model_dir: Path, split_dir: Path) -> Scores:
    """Score an exported model folder on the test split (no cache: both models, same rows)."""
    from ferry.evaluation import task_metrics
    from ferry.transfer.scoring import test_probabilities

    targets, probs, layout = test_probabilities(cfg, model_dir, split_dir)
    out = task_metrics.scores(layout, targets, probs, "")
    recall: dict[str, float] = {}
    f1: dict[str, float] = {}
    for i, task in enumerate(layout.tasks):
        named = "" if len(layout.tasks) == 1 else f"{task.name}/"
        kind, into = ("f1", f1) if task.multi else ("recall", recall)
        into |= {named + lbl: out.get(f"{layout.prefix(i)}{kind}_{lbl}", float("nan"))
                 for lbl in task.labels}
    return Scores(out["accuracy"], out["macro_f1"], recall, f1)


def decide(gates: PromotionConfig, challenger: Scores, champion: Scores | None,
           select_on: str = "accuracy") -> Decision:
    """Promote or not, and why, in words a reviewer can check against the logged scores.
    The compared metric is ``gates.metric``, or when that is unset ``select_on`` (the run's
    ``train.select_on``: promotion judges on what training selected on)."""
    if champion is None:
        # multi-label tasks (scored by F1) make accuracy a subset accuracy, where one wrong
        # tag of five is a miss: their first champion is gated on macro-F1 only
        floors = [("macro-F1", challenger.macro_f1, gates.min_macro_f1)]
        if not challenger.f1:
            floors.insert(0, ("accuracy", challenger.accuracy, gates.min_accuracy))
        failed = [f"{name} {value:.4f} < {limit}" for name, value, limit in floors
                  if value < limit]
        if failed:
            return Decision(False, "first champion must pass the absolute gates: "
                            + "; ".join(failed))
        return Decision(True, f"first champion: accuracy {challenger.accuracy:.4f}, macro-F1 "
                        f"{challenger.macro_f1:.4f} pass the gates")
    metric = gates.metric or select_on
    gain = challenger.get(metric) - champion.get(metric)
    if gain <= gates.margin:
        return Decision(False, f"challenger {metric} {challenger.get(metric):.4f} does not beat "
                        f"champion {champion.get(metric):.4f} by more than {gates.margin}")
    drops = {("recall of class", k): champion.recall[k] - challenger.recall.get(k, 0.0)
             for k in champion.recall}
    drops |= {("F1 of multi-label label", k): champion.f1[k] - challenger.f1.get(k, 0.0)
              for k in champion.f1}
    worst = max(drops, key=drops.get) if drops else None
    if worst is not None and drops[worst] > gates.max_recall_drop:
        return Decision(False, f"{worst[0]} {worst[1]!r} drops by {drops[worst]:.4f} "
                        f"(> {gates.max_recall_drop}) although {metric} improves by {gain:.4f}"
                        + (" (a multi-label task has no per-class recall: its labels' F1 "
                           "stand in)" if worst[0].startswith("F1") else ""))
    return Decision(True, f"challenger {metric} {challenger.get(metric):.4f} beats champion "
                    f"{champion.get(metric):.4f} by {gain:.4f} (> {gates.margin}); no class "
                    f"recall drops by more than {gates.max_recall_drop}"
                    + (" (nor any multi-label label's F1, which stands in for recall there)"
                       if champion.f1 else ""))

"""Champion/challenger: score both on the same holdout and decide, with a reason.

The decision is a pure function of the two score sets and the gates, so it is tested without
any registry; ``release.promote`` does the I/O around it and moves the alias last.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ferry.config import FerryConfig, PromotionConfig


@dataclass
class Scores:
    """One model on the holdout: what the gates read."""

    accuracy: float
    macro_f1: float
    recall: dict[str, float]

    def get(self, metric: str) -> float:
        return self.accuracy if metric == "accuracy" else self.macro_f1

    def flat(self, prefix: str) -> dict[str, float]:
        """MLflow metrics: ``challenger_accuracy``, ``challenger_recall_fresh``, ..."""
        out = {f"{prefix}_accuracy": self.accuracy, f"{prefix}_macro_f1": self.macro_f1}
        return out | {f"{prefix}_recall_{k}": v for k, v in self.recall.items()}


@dataclass
class Decision:
    promote: bool
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def score(cfg: FerryConfig, model_dir: Path, split_dir: Path) -> Scores:
    """Score an exported model folder on the test split (no cache: both models, same rows)."""
    from ferry.evaluation import metrics
    from ferry.transfer.scoring import test_probabilities

    y_true, probs, meta = test_probabilities(cfg, model_dir, split_dir)
    out = metrics.scores(y_true, probs, meta.labels, "")
    return Scores(out["accuracy"], out["macro_f1"],
                  {name: out[f"recall_{name}"] for name in meta.labels})


def decide(gates: PromotionConfig, challenger: Scores, champion: Scores | None) -> Decision:
    """Promote or not, and why, in words a reviewer can check against the logged scores."""
    if champion is None:
        failed = [f"{name} {value:.4f} < {limit}" for name, value, limit in (
            ("accuracy", challenger.accuracy, gates.min_accuracy),
            ("macro-F1", challenger.macro_f1, gates.min_macro_f1)) if value < limit]
        if failed:
            return Decision(False, "first champion must pass the absolute gates: "
                            + "; ".join(failed))
        return Decision(True, f"first champion: accuracy {challenger.accuracy:.4f}, macro-F1 "
                        f"{challenger.macro_f1:.4f} pass the gates")
    metric = gates.metric
    gain = challenger.get(metric) - champion.get(metric)
    if gain <= gates.margin:
        return Decision(False, f"challenger {metric} {challenger.get(metric):.4f} does not beat "
                        f"champion {champion.get(metric):.4f} by more than {gates.margin}")
    drops = {k: champion.recall[k] - challenger.recall.get(k, 0.0) for k in champion.recall}
    worst = max(drops, key=drops.get)
    if drops[worst] > gates.max_recall_drop:
        return Decision(False, f"recall of class {worst!r} drops by {drops[worst]:.4f} "
                        f"(> {gates.max_recall_drop}) although {metric} improves by {gain:.4f}")
    return Decision(True, f"challenger {metric} {challenger.get(metric):.4f} beats champion "
                    f"{champion.get(metric):.4f} by {gain:.4f} (> {gates.margin}); no class "
                    f"recall drops by more than {gates.max_recall_drop}")

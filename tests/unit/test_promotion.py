"""The promotion decision as a pure function of two score sets and the gates."""

from __future__ import annotations

import pytest

from ferry.config import PromotionConfig
from ferry.promotion import Scores, decide

GATES = PromotionConfig(margin=0.01, max_recall_drop=0.05, min_accuracy=0.7, min_macro_f1=0.6)


def s(acc: float, f1: float, **recall: float) -> Scores:
    return Scores(acc, f1, recall)


def test_first_champion_must_pass_the_absolute_gates():
    assert decide(GATES, s(0.8, 0.8, a=0.8, b=0.8), None).promote
    low = decide(GATES, s(0.65, 0.8, a=0.6, b=0.7), None)
    assert not low.promote and "accuracy 0.6500 < 0.7" in low.reason
    assert not decide(GATES, s(0.8, 0.5, a=1.0, b=0.0), None).promote


def test_challenger_must_beat_the_champion_by_more_than_the_margin():
    champ = s(0.80, 0.80, a=0.8, b=0.8)
    assert decide(GATES, s(0.82, 0.82, a=0.82, b=0.82), champ).promote
    within = decide(GATES, s(0.805, 0.81, a=0.8, b=0.81), champ)
    assert not within.promote and "does not beat champion 0.8000" in within.reason
    assert not decide(GATES, s(0.70, 0.70, a=0.9, b=0.5), champ).promote


def test_a_class_recall_drop_beyond_the_limit_blocks_promotion():
    champ = s(0.80, 0.80, a=0.9, b=0.7)
    drop = decide(GATES, s(0.86, 0.85, a=0.84, b=0.88), champ)
    assert not drop.promote and "recall of class 'a' drops by 0.0600" in drop.reason
    assert decide(GATES, s(0.86, 0.85, a=0.86, b=0.86), champ).promote  # drop 0.04 is fine


def test_the_gate_metric_is_configurable():
    f1_gates = GATES.model_copy(update={"metric": "macro_f1"})
    champ = s(0.80, 0.70, a=0.8, b=0.8)
    assert decide(f1_gates, s(0.79, 0.75, a=0.79, b=0.79), champ).promote
    assert not decide(GATES, s(0.79, 0.75, a=0.79, b=0.79), champ).promote


def test_an_unset_gate_metric_follows_train_select_on():
    """``promotion.metric: null`` compares on what training selected on."""
    assert GATES.metric is None
    champ = s(0.80, 0.70, a=0.8, b=0.8)
    better_f1 = s(0.79, 0.75, a=0.79, b=0.79)
    on_f1 = decide(GATES, better_f1, champ, select_on="macro_f1")
    assert on_f1.promote and "challenger macro_f1 0.7500 beats champion 0.7000" in on_f1.reason
    assert not decide(GATES, better_f1, champ, select_on="accuracy").promote
    pinned = GATES.model_copy(update={"metric": "accuracy"})  # an explicit gate wins
    assert not decide(pinned, better_f1, champ, select_on="macro_f1").promote


def test_a_multi_label_label_f1_drop_blocks_promotion_and_says_so():
    champ = Scores(0.80, 0.80, {"party/a": 0.8}, {"topic/x": 0.9, "topic/y": 0.7})
    drop = decide(GATES, Scores(0.86, 0.86, {"party/a": 0.85}, {"topic/x": 0.8,
                                                                 "topic/y": 0.9}), champ)
    assert not drop.promote
    assert "F1 of multi-label label 'topic/x' drops by 0.1000" in drop.reason
    assert "no per-class recall" in drop.reason
    fine = decide(GATES, Scores(0.86, 0.86, {"party/a": 0.85}, {"topic/x": 0.88,
                                                                 "topic/y": 0.9}), champ)
    assert fine.promote and "multi-label label's F1" in fine.reason
    flat = champ.flat("champion")
    assert flat["champion_recall_party/a"] == 0.8 and flat["champion_f1_topic/x"] == 0.9


def test_score_keys_recall_by_task_and_label(monkeypatch):
    """Several tasks: ``<task>/<label>`` keys, recall for single-label, F1 for multi-label;
    the gates read the means over tasks."""
    import numpy as np

    from ferry import promotion
    from ferry.config import FerryConfig
    from ferry.models.tasks import Layout, Task
    from ferry.transfer import scoring

    layout = Layout([Task(name="party", labels=["a", "b"]),
                     Task(name="topic", labels=["x", "y"], multi=True, separator="|")])
    targets = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 1], [1, -1, -1]])
    probs = [np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]]),
             np.array([[0.9, 0.1], [0.1, 0.8], [0.8, 0.7], [0.5, 0.5]])]
    monkeypatch.setattr(scoring, "test_probabilities", lambda *a: (targets, probs, layout))
    got = promotion.score(FerryConfig(), None, None)
    assert got.recall == {"party/a": 1.0, "party/b": 0.5}
    assert got.f1 == {"topic/x": 1.0, "topic/y": 1.0}
    assert got.accuracy == pytest.approx((0.75 + 1.0) / 2)


def test_the_sweep_winner_is_chosen_on_select_on():
    """The same two strategies: one wins on validation accuracy, the other on macro-F1
    (an imbalanced validation set, where accuracy rewards the majority class)."""
    from ferry.evaluation import comparison

    rows = [{"strategy": "head", "val_accuracy": 0.90, "val_macro_f1": 0.55,
             "trainable_params": 1_000},
            {"strategy": "full", "val_accuracy": 0.86, "val_macro_f1": 0.78,
             "trainable_params": 9_000}]
    assert comparison.best(rows)["strategy"] == "head"
    assert comparison.best(rows, "accuracy")["strategy"] == "head"
    assert comparison.best(rows, "macro_f1")["strategy"] == "full"
    rows.append({"strategy": "lost", "val_accuracy": None, "val_macro_f1": None,
                 "trainable_params": 1})
    assert comparison.best(rows, "macro_f1")["strategy"] == "full"  # no figure ranks last


def test_sweep_rows_read_the_kept_epoch_from_the_history(tmp_path):
    """``best_val_accuracy`` holds the monitored metric; the row's figures come from the
    kept epoch's history record, each under its own name."""
    from ferry.experiments import validation_scores
    from ferry.transfer.records import Completion, Trained

    done = Completion(key="k", strategy="full", best_epoch=2, best_metric=0.78,
                      history=[{"epoch": 1.0, "val_accuracy": 0.90, "val_macro_f1": 0.50},
                               {"epoch": 2.0, "val_accuracy": 0.86, "val_macro_f1": 0.78}])
    done.write(tmp_path)
    trained = Trained.of(tmp_path, done, "transfer", 0)
    assert validation_scores(trained, "macro_f1") == {"val_accuracy": 0.86,
                                                      "val_macro_f1": 0.78}
    (tmp_path / "complete.json").unlink()  # history gone: the monitored figure, named so
    assert validation_scores(trained, "macro_f1") == {"val_accuracy": None,
                                                      "val_macro_f1": 0.78}

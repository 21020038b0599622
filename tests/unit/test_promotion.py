"""The promotion decision as a pure function of two score sets and the gates."""

from __future__ import annotations

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

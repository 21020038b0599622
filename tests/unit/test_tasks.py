"""Several tasks and multi-label heads: targets, the objective, class weights, select_on, and
which parameters each strategy trains on a multi-task model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from ferry.config import load_config
from ferry.models import classifier
from ferry.models.sources import resolve
from ferry.models.tasks import MISSING, Layout, layout_of
from ferry.transfer import objective, strategies
from ferry.transfer.loop import fit
from ferry.transfer.modality import of as modality_of

TASKS = ["data.recipe=null", "data.tasks=[{column: party, labels: [D, R]}, "
         "{column: speaker, labels: [a, b, c]}]"]


def test_targets_of_two_tasks_and_a_missing_cell():
    layout = layout_of(load_config(None, TASKS))
    frame = pd.DataFrame({"party": ["R", "D"], "speaker": ["c", None]})
    assert layout.width == 5 and not layout.classic
    assert layout.encode(frame).tolist() == [[1, 2], [0, MISSING]]
    with pytest.raises(ValueError, match="'x' is not one of"):
        layout.encode(pd.DataFrame({"party": ["R"], "speaker": ["x"]}))


def test_multilabel_targets_and_thresholded_answers():
    cfg = load_config(None, ["data.recipe=null", "data.labels=[acting, plot, score]",
                             "data.label_separator='|'"])
    layout = layout_of(cfg)
    assert cfg.train.select_on == "macro_f1"  # multi-label defaults to macro-F1
    targets = layout.encode(pd.DataFrame({"label": ["plot | acting", "score", ""]}))
    assert targets.tolist() == [[1, 1, 0], [0, 0, 1], [MISSING] * 3]
    layout.tasks[0].thresholds = [0.9, 0.2, 0.5]
    probs = np.array([[0.8, 0.3, 0.6]])
    assert layout.decide(0, probs) == [["plot", "score"]]  # acting is under its 0.9


def test_class_weights_scale_one_rows_loss_by_its_class_weight():
    """Balanced weights n / (k * n_c): with 6 'a' and 2 'b' rows, a 'b' row counts 2x and an
    'a' row 2/3 of the plain cross-entropy, exactly, on a one-row batch."""
    layout = Layout.of(load_config(None, ["data.recipe=null", "data.labels=[a, b]"]).data)
    train = np.array([0] * 6 + [1] * 2)
    weights = objective.class_weights(layout, train)
    assert weights[0].tolist() == pytest.approx([8 / (2 * 6), 8 / (2 * 2)])
    weighted = objective.Objective(layout, weights)
    logits = torch.tensor([[0.3, -0.2]])
    for label, factor in ((1, 2.0), (0, 2 / 3)):
        y = torch.tensor([label])
        plain = torch.nn.functional.cross_entropy(logits, y)
        assert float(weighted(logits, y)) == pytest.approx(factor * float(plain), rel=1e-6)


def test_a_row_without_a_tasks_label_trains_only_the_other_task():
    layout = layout_of(load_config(None, TASKS))
    crit = objective.Objective(layout)
    logits = torch.zeros(1, 5, requires_grad=True)
    crit(logits, torch.tensor([[1, MISSING]])).backward()
    assert logits.grad[0, :2].abs().sum() > 0 and logits.grad[0, 2:].abs().sum() == 0
    both = float(crit(torch.zeros(1, 5), torch.tensor([[1, 2]])))
    assert both == pytest.approx(math.log(2) + math.log(3), rel=1e-6)


def test_learned_task_weights_are_uncertainty_weighting():
    layout = layout_of(load_config(None, [*TASKS, "train.task_weighting=learned"]))
    log_vars = torch.nn.Parameter(torch.tensor([0.0, math.log(4.0)]))
    crit = objective.Objective(layout, None, log_vars)
    loss = float(crit(torch.zeros(1, 5), torch.tensor([[1, 2]])).detach())
    assert loss == pytest.approx(math.log(2) + math.log(3) / 4 + 0.5 * math.log(4), rel=1e-6)


def _script(values: list[dict]):
    calls = iter(values)
    return lambda model: dict(next(calls))


@pytest.mark.parametrize(("select_on", "epoch"), [("accuracy", 1), ("macro_f1", 3)])
def test_select_on_picks_the_epoch_of_its_metric(select_on, epoch, tmp_path):
    """Accuracy peaks at epoch 1 (the majority class), macro-F1 at epoch 3: the kept epoch
    follows train.select_on."""
    cfg = load_config(None, ["train.epochs=3", "train.patience=5", "train.device=cpu",
                             f"train.select_on={select_on}", "train.compile='off'"])
    batch = {"features": torch.randn(4, 2), "labels": torch.tensor([0, 1, 0, 1])}
    history = [{"val_accuracy": 0.9, "val_macro_f1": 0.47, "val_loss": 0.3},
               {"val_accuracy": 0.8, "val_macro_f1": 0.6, "val_loss": 0.4},
               {"val_accuracy": 0.85, "val_macro_f1": 0.8, "val_loss": 0.35}]
    model = classifier.Head(2, 2, 0.0)
    result = fit(model, [{"params": list(model.parameters()), "lr": 0.01}],
                 lambda e: [batch], 1, _script(history), cfg.train, None,
                 monitor=f"val_{select_on}")
    assert result.best_epoch == epoch


def _trainable(name: str, tiny_bert) -> set[str]:
    cfg = load_config(None, [*TASKS, "model.source=local", f"model.path={tiny_bert}",
                             f"strategy.name={name}", "train.task_weighting=learned",
                             "strategy.freeze_bottom.frozen_layers=1"])
    source = resolve(cfg.model)
    model = modality_of(cfg, source).build(cfg, source, pretrained=True)
    assert model.head.linear.out_features == 5 and model.head.log_vars.shape == (2,)
    policy = strategies.from_config(cfg.strategy)
    policy.configure(model, 1e-3, 0.0)
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_freezing_and_lora_on_a_multitask_model_train_only_what_they_should(tiny_bert):
    head = {"head.linear.weight", "head.linear.bias", "head.log_vars"}
    assert _trainable("linear_probe", tiny_bert) == head
    frozen = _trainable("freeze_bottom", tiny_bert)
    assert head <= frozen and not any(".layer.0." in n or "embeddings" in n for n in frozen)
    lora = _trainable("lora", tiny_bert)
    assert head <= lora and lora - head and all("lora_" in n for n in lora - head)


def test_a_task_without_labels_in_a_split_is_left_out_of_the_means():
    from ferry.evaluation import task_metrics

    layout = layout_of(load_config(None, TASKS))
    targets = np.array([[0, MISSING], [1, MISSING]])  # no speaker label in this split
    probs = [np.array([[0.9, 0.1], [0.2, 0.8]]), np.full((2, 3), 1 / 3)]
    out = task_metrics.scores(layout, targets, probs, "val_")
    assert out["val_party_accuracy"] == 1.0 and "val_speaker_accuracy" not in out
    assert out["val_accuracy"] == 1.0


def test_identities_of_an_unchanged_single_task_config_do_not_see_the_new_keys():
    """Cached splits, trainings and baselines stay valid: the added keys at their
    old-behaviour values are not part of what identities hash."""
    from ferry.config.base import identity_dump

    cfg = load_config(None, [])
    assert not {"tasks", "label_separator", "label_columns"} & set(identity_dump(cfg.data))
    assert "stratify" not in identity_dump(cfg.data)["split"]
    assert not {"class_weights", "select_on", "task_weighting"} & set(identity_dump(cfg.train))
    weighted = load_config(None, ["train.class_weights=auto"])
    assert identity_dump(weighted.train)["class_weights"] == "auto"

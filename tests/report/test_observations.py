"""The report's observations: the gap rule, LR drops and per-class F1 deltas, as tables."""

import math

import pytest

from cnnlab.report.observations import (f1_deltas, gap, gap_opened_at, gap_series, lr_reductions,
                                        observations)


def history(train_acc, val_acc, train_loss=None, val_loss=None, lr=None):
    n = len(train_acc)
    train_loss = train_loss or [1.0] * n
    val_loss = val_loss or [1.0] * n
    lr = lr or [1e-3] * n
    return [{"epoch": i + 1, "accuracy": a, "val_accuracy": v, "loss": tl, "val_loss": vl,
             "lr": r} for i, (a, v, tl, vl, r) in enumerate(zip(train_acc, val_acc, train_loss,
                                                                  val_loss, lr))]


@pytest.mark.parametrize("gaps, threshold, opened", [
    ([0.0, 0.01, 0.02], 0.05, None),                 # never above
    ([0.0, 0.06, 0.08, 0.10], 0.05, 2),              # opens and stays
    ([0.06, 0.01, 0.07, 0.09], 0.05, 3),             # an early blip that closed does not count
    ([0.0, 0.06, 0.07, 0.02], 0.05, None),           # closed again by the last epoch
    ([0.06, None, 0.07], 0.05, 3),                   # a missing value breaks the run
    ([0.05, 0.05], 0.05, None),                      # "above" is strict
    ([], 0.05, None),
])
def test_gap_opens_at_the_first_epoch_it_stays_above_the_threshold(gaps, threshold, opened):
    series = [(i + 1, g) for i, g in enumerate(gaps)]
    assert gap_opened_at(series, threshold) == opened


def test_gap_series_signs_and_missing_values():
    rows = history([0.9, 0.95], [0.8, math.nan], train_loss=[0.3, 0.2], val_loss=[0.5, 0.9])
    acc = gap_series(rows, "accuracy")
    assert acc[0] == (1, pytest.approx(0.1)) and acc[1] == (2, None)
    assert gap_series(rows, "loss") == [(1, pytest.approx(0.2)), (2, pytest.approx(0.7))]
    with pytest.raises(ValueError):
        gap_series(rows, "f1")


def test_gap_summary_reads_best_and_last_epochs():
    rows = history([0.5, 0.7, 0.9, 0.99], [0.5, 0.68, 0.8, 0.81])
    g = gap(rows, "accuracy", best_epoch=2)
    assert g.opened_at == 3 and g.at_best == pytest.approx(0.02) and g.at_last == pytest.approx(0.18)
    assert g.last_epoch == 4


def test_lr_reductions_are_listed_with_their_epoch():
    rows = history([0.5] * 5, [0.5] * 5, lr=[1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])
    assert lr_reductions(rows) == [(3, 1e-3, 5e-4), (5, 5e-4, 2.5e-4)]


def test_f1_deltas_largest_gain_first_and_unmatched_classes_last():
    mine = {"cat": {"f1": 0.5, "support": 10}, "dog": {"f1": 0.9, "support": 5},
            "frog": {"f1": 0.3, "support": 7}}
    other = {"cat": {"f1": 0.6, "support": 10}, "dog": {"f1": 0.7, "support": 5},
             "bird": {"f1": 0.4, "support": 3}}
    rows = f1_deltas(mine, other)
    assert [r.name for r in rows] == ["dog", "cat", "bird", "frog"]
    assert rows[0].delta == pytest.approx(0.2) and rows[1].delta == pytest.approx(-0.1)
    assert rows[2].delta is None and rows[3].delta is None


def test_observations_state_best_epoch_gap_and_confusions():
    rows = history([0.5, 0.8, 0.95], [0.5, 0.7, 0.72], train_loss=[1.0, 0.5, 0.2],
                   val_loss=[1.0, 0.8, 0.9], lr=[1e-3, 1e-3, 5e-4])
    metrics = {"best_epoch": 2, "epochs_run": 3, "stop_reason": "reached 3 epochs",
               "test": {"accuracy": 0.7, "macro": {"f1": 0.65}, "log_loss": 0.8,
                        "per_class": {"a": {"f1": 0.8, "support": 5}, "b": {"f1": 0.5, "support": 5}},
                        "confusion_matrix": [[4, 1], [2, 3]]}}
    text = " ".join(observations(metrics, rows, "val_loss", "test"))
    assert "Best epoch: 2 of 3 (val_loss 0.8000)" in text
    assert "accuracy gap" in text and "opened at epoch 2" in text
    assert "from 0.001 to 0.0005 at epoch 3" in text
    assert "weakest class is b" in text and "b predicted as a (2 images)" in text

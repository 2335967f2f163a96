"""classification_metrics agrees with scikit-learn, including classes never seen or predicted."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support

from cnnlab.evaluate.metrics import classification_metrics

METRICS = ("precision", "recall", "f1")


def _random_case(n: int, k: int, seed: int, absent_target: int | None = None,
                 never_predicted: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=gen, dtype=torch.float64) * 2.0
    if never_predicted is not None:
        # A very low logit keeps this class off the argmax without changing the others.
        logits[:, never_predicted] = -30.0
    probs = torch.softmax(logits, dim=1)
    allowed = [c for c in range(k) if c != absent_target]
    targets = torch.tensor(allowed)[torch.randint(len(allowed), (n,), generator=gen)]
    return probs, targets


def _check_against_sklearn(probs: torch.Tensor, targets: torch.Tensor) -> dict:
    k = probs.shape[1]
    names = [f"class_{c}" for c in range(k)]
    result = classification_metrics(probs, targets, names)
    y_true = targets.numpy()
    y_pred = probs.argmax(dim=1).numpy()
    labels = list(range(k))

    prec, rec, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    expected = {"precision": prec, "recall": rec, "f1": f1}
    for c, name in enumerate(names):
        row = result["per_class"][name]
        assert row["support"] == int(support[c])
        for metric in METRICS:
            assert row[metric] == pytest.approx(expected[metric][c], abs=1e-6), (name, metric)

    cm = confusion_matrix(y_true, y_pred, labels=labels)
    assert result["confusion_matrix"] == cm.tolist()

    # Specificity by hand from sklearn's matrix: TN / (TN + FP), 0 when that is 0/0.
    spec = []
    for c in range(k):
        fp = cm[:, c].sum() - cm[c, c]
        tn = cm.sum() - cm[c, :].sum() - cm[:, c].sum() + cm[c, c]
        spec.append(tn / (tn + fp) if tn + fp else 0.0)
        assert result["per_class"][names[c]]["specificity"] == pytest.approx(spec[c], abs=1e-6)

    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0)
        got = result[average]
        assert got["precision"] == pytest.approx(p, abs=1e-6), average
        assert got["recall"] == pytest.approx(r, abs=1e-6), average
        assert got["f1"] == pytest.approx(f, abs=1e-6), average
    assert result["macro"]["specificity"] == pytest.approx(np.mean(spec), abs=1e-6)
    assert result["weighted"]["specificity"] == pytest.approx(
        np.average(spec, weights=support), abs=1e-6)

    assert result["accuracy"] == pytest.approx(float((y_true == y_pred).mean()), abs=1e-7)
    assert result["n"] == len(y_true)
    assert result["log_loss"] == pytest.approx(
        log_loss(y_true, probs.numpy(), labels=labels), rel=1e-9)
    return result


@pytest.mark.parametrize("k", [2, 3, 7, 25])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_sklearn_on_random_predictions(k: int, seed: int) -> None:
    probs, targets = _random_case(200, k, seed)
    _check_against_sklearn(probs, targets)


@pytest.mark.parametrize("k", [3, 5, 12])
def test_class_absent_from_targets_and_class_never_predicted(k: int) -> None:
    probs, targets = _random_case(150, k, seed=k, absent_target=0, never_predicted=k - 1)
    result = _check_against_sklearn(probs, targets)
    assert result["per_class"]["class_0"]["support"] == 0
    assert result["per_class"]["class_0"]["recall"] == 0.0
    assert all(row[k - 1] == 0 for row in result["confusion_matrix"])
    assert result["per_class"][f"class_{k - 1}"]["precision"] == 0.0


def test_class_absent_from_both_targets_and_predictions_counts_in_macro() -> None:
    # torchmetrics' own macro average drops such a class; sklearn's (labels=range(K)) keeps
    # it as 0, and so must we.
    probs, targets = _random_case(120, 6, seed=3, absent_target=2, never_predicted=2)
    result = _check_against_sklearn(probs, targets)
    row = result["per_class"]["class_2"]
    assert (row["precision"], row["recall"], row["f1"], row["support"]) == (0.0, 0.0, 0.0, 0)


def test_log_loss_is_finite_and_matches_sklearn_when_true_class_has_zero_probability() -> None:
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64)
    targets = torch.tensor([1, 1, 2])
    result = classification_metrics(probs, targets, ["a", "b", "c"])
    assert math.isfinite(result["log_loss"])
    expected = log_loss(targets.numpy(), probs.numpy(), labels=[0, 1, 2])
    assert result["log_loss"] == pytest.approx(expected)


def test_float32_log_loss_matches_sklearn() -> None:
    probs, targets = _random_case(300, 4, seed=9)
    result = classification_metrics(probs.float(), targets, list("abcd"))
    assert result["log_loss"] == pytest.approx(
        log_loss(targets.numpy(), probs.float().numpy(), labels=range(4)), rel=1e-5)


def test_every_class_the_same_gives_zero_specificity_not_nan() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])
    targets = torch.tensor([0, 0, 0])
    result = classification_metrics(probs, targets, ["only", "other"])
    assert result["per_class"]["only"]["specificity"] == 0.0
    assert result["per_class"]["other"]["specificity"] == pytest.approx(2 / 3)


def test_result_is_plain_json() -> None:
    probs, targets = _random_case(50, 4, seed=1)
    result = classification_metrics(probs, targets, ["cat", "dog", "frog", "ship"])
    decoded = json.loads(json.dumps(result))
    assert decoded == result
    assert set(result) == {"accuracy", "log_loss", "n", "macro", "weighted", "per_class",
                           "confusion_matrix"}
    assert list(result["per_class"]) == ["cat", "dog", "frog", "ship"]
    assert type(result["n"]) is int and type(result["accuracy"]) is float
    assert all(type(v) is int for row in result["confusion_matrix"] for v in row)


def test_inputs_that_do_not_fit_are_rejected() -> None:
    probs, targets = _random_case(10, 3, seed=0)
    with pytest.raises(ValueError, match="class names"):
        classification_metrics(probs, targets, ["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        classification_metrics(probs, targets, ["a", "b", "a"])
    with pytest.raises(ValueError, match="targets"):
        classification_metrics(probs, targets[:5], ["a", "b", "c"])
    with pytest.raises(ValueError, match="targets"):
        classification_metrics(probs, torch.full((10,), 3), ["a", "b", "c"])
    with pytest.raises(ValueError, match="empty"):
        classification_metrics(probs[:0], targets[:0], ["a", "b", "c"])

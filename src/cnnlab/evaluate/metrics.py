"""Classification metrics for one evaluated split, as a JSON-ready dict.

After training, every run is scored on its val and test splits with the same per-class
numbers the users' Keras reports carried: precision, recall, specificity, F1 and support per
class, their macro and support-weighted averages, accuracy, log loss and the confusion matrix.
The numbers come from torchmetrics; the definitions (zero where a ratio is 0/0, macro over
all K classes) match scikit-learn's so that old and new reports can be compared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
    multiclass_specificity,
)

__all__ = ["METRIC_NAMES", "classification_metrics"]

METRIC_NAMES: tuple[str, ...] = ("precision", "recall", "specificity", "f1")
"""The per-class metrics, in their order under ``macro``, ``weighted`` and ``per_class``."""

# zero_division=0 is sklearn's convention for a 0/0 ratio. multiclass_specificity takes no such
# argument, but already gives 0 when TN + FP = 0 (every sample is of that class).
_PER_CLASS_FNS: dict[str, Callable[..., torch.Tensor]] = {
    "precision": partial(multiclass_precision, zero_division=0),
    "recall": partial(multiclass_recall, zero_division=0),
    "specificity": multiclass_specificity,
    "f1": partial(multiclass_f1_score, zero_division=0),
}


def _check_inputs(probs: torch.Tensor, targets: torch.Tensor, class_names: Sequence[str]) -> None:
    if probs.ndim != 2:
        raise ValueError(f"probs must have shape (N, K), got {tuple(probs.shape)}")
    if targets.ndim != 1 or targets.shape[0] != probs.shape[0]:
        raise ValueError(
            f"targets must have shape ({probs.shape[0]},) to match probs, "
            f"got {tuple(targets.shape)}"
        )
    if probs.shape[0] == 0:
        raise ValueError("cannot score an empty split (N = 0)")
    n_classes = probs.shape[1]
    if len(class_names) != n_classes:
        raise ValueError(f"{len(class_names)} class names for {n_classes} probability columns")
    names = [str(name) for name in class_names]
    if len(set(names)) != len(names):
        # Names become dict keys; a duplicate would silently drop a class from the report.
        raise ValueError(f"class names must be unique, got {names}")
    if not probs.is_floating_point():
        raise ValueError(f"probs must be floating point, got {probs.dtype}")
    if targets.is_floating_point() or targets.is_complex():
        raise ValueError(f"targets must be integer class indices, got {targets.dtype}")
    if int(targets.min()) < 0 or int(targets.max()) >= n_classes:
        raise ValueError(
            f"targets must lie in [0, {n_classes}), "
            f"got [{int(targets.min())}, {int(targets.max())}]"
        )


def _log_loss(probs: torch.Tensor, targets: torch.Tensor) -> float:
    # Clip like sklearn.metrics.log_loss (machine epsilon of the input dtype) so that one
    # confidently wrong sample gives a large but finite loss rather than inf.
    eps = torch.finfo(probs.dtype).eps
    clipped = probs.to(torch.float64).clamp(eps, 1.0 - eps)
    return float(F.nll_loss(clipped.log(), targets))


def classification_metrics(
    probs: torch.Tensor, targets: torch.Tensor, class_names: Sequence[str]
) -> dict:
    """Score predicted class probabilities against true labels.

    Args:
        probs: ``(N, K)`` class probabilities, rows summing to 1. The prediction is the argmax.
        targets: ``(N,)`` integer true class indices in ``[0, K)``.
        class_names: the ``K`` class names, in column order of ``probs``.

    Returns:
        A JSON-serialisable dict of plain floats, ints and lists::

            {"accuracy", "log_loss", "n",
             "macro": {"precision", "recall", "specificity", "f1"},
             "weighted": {same four},
             "per_class": {name: {"precision", "recall", "specificity", "f1", "support"}},
             "confusion_matrix": K x K ints, rows = true class, columns = predicted class}

        A ratio that is 0/0 (precision of a class never predicted, recall of a class absent
        from ``targets``, specificity when every sample is of that class) is 0, as with
        scikit-learn's ``zero_division=0``. ``macro`` is the plain mean over all K classes;
        ``weighted`` weights each class by its support.
    """
    _check_inputs(probs, targets, class_names)
    probs = probs.detach().cpu()
    targets = targets.detach().cpu().long()
    n_classes = probs.shape[1]
    # One argmax for every metric, so they all score the same predictions.
    preds = probs.argmax(dim=1)

    confusion = multiclass_confusion_matrix(preds, targets, n_classes)
    support = confusion.sum(dim=1)

    per_class: dict[str, torch.Tensor] = {}
    macro: dict[str, float] = {}
    weighted: dict[str, float] = {}
    for name, fn in _PER_CLASS_FNS.items():
        values = fn(preds, targets, n_classes, average=None)
        per_class[name] = values
        # torchmetrics' average="macro" leaves out classes that are absent from both targets
        # and predictions; sklearn (labels=range(K)) and the Keras-era reports count them as
        # 0, so the macro average is taken here over all K per-class values.
        macro[name] = float(values.mean())
        weighted[name] = float(fn(preds, targets, n_classes, average="weighted"))

    names = [str(name) for name in class_names]
    return {
        "accuracy": float(multiclass_accuracy(preds, targets, n_classes, average="micro")),
        "log_loss": _log_loss(probs, targets),
        "n": int(targets.shape[0]),
        "macro": macro,
        "weighted": weighted,
        "per_class": {
            name: {
                **{metric: float(per_class[metric][k]) for metric in METRIC_NAMES},
                "support": int(support[k]),
            }
            for k, name in enumerate(names)
        },
        "confusion_matrix": confusion.tolist(),
    }

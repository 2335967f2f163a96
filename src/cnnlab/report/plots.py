"""Figures for a run's report: the confusion matrix and the training curves, as PNG files.

Figures are built as :class:`matplotlib.figure.Figure` objects on an explicit Agg canvas and
never go through ``pyplot``: no display is needed, nothing is registered in pyplot's global
list of open figures, plotting from several threads is safe, and the process-wide backend
(which a notebook or GUI importing cnnlab may rely on) is left untouched.
Each PNG is written to a temporary file beside its target and renamed over it, so a reader
never sees a half-written image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnlab.store.run import atomic_target

__all__ = ["plot_confusion_matrix", "plot_curves"]

_DPI = 100
# Above this many classes the cells are too small for numbers; the colours still tell the story.
_MAX_ANNOTATED_CLASSES = 30


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas: no pyplot state, no screen, safe in threads."""
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically (a temporary file renamed into place)."""
    path = Path(path)
    with atomic_target(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return path


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str = ""
) -> Path:
    """Draw a confusion matrix as a heatmap of counts and write it to ``path`` as a PNG.

    Rows are the true class, columns the predicted class (as ``classification_metrics``
    stores it). Counts are written in the cells for up to 30 classes; beyond that only the
    colours are drawn. Returns ``path``.
    """
    matrix = np.asarray(cm, dtype=np.int64)
    n_classes = len(class_names)
    if matrix.shape != (n_classes, n_classes):
        raise ValueError(f"confusion matrix of shape {matrix.shape} for {n_classes} class names")

    # The figure grows with the class count, then is capped; fonts then shrink to fit a cell.
    side = min(max(4.0 + 0.22 * n_classes, 5.0), 24.0)
    fig = new_figure(side + 1.5, side)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="count")

    cell_points = side * 72.0 * 0.75 / max(n_classes, 1)
    tick_size = float(np.clip(cell_points * 0.6, 3.0, 10.0))
    ticks = np.arange(n_classes)
    ax.set_xticks(ticks, [str(name) for name in class_names], rotation=90, fontsize=tick_size)
    ax.set_yticks(ticks, [str(name) for name in class_names], fontsize=tick_size)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(title or f"Confusion matrix ({int(matrix.sum())} samples)")

    if n_classes <= _MAX_ANNOTATED_CLASSES and matrix.size:
        text_size = float(np.clip(cell_points * 0.4, 4.0, 12.0))
        # Light text on dark cells, dark text on light ones.
        threshold = matrix.max() / 2.0
        for (row, col), count in np.ndenumerate(matrix):
            ax.text(
                col,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=text_size,
                color="white" if count > threshold else "black",
            )
    return save_png(fig, path)


def _series(history: Sequence[Mapping[str, float]], key: str) -> tuple[list[float], list[float]]:
    """Epochs and values of one key, leaving out epochs where it is missing or not finite."""
    xs: list[float] = []
    ys: list[float] = []
    for position, row in enumerate(history, start=1):
        value = row.get(key)
        if value is None:
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(value):
            continue
        epoch = row.get("epoch")
        try:
            x = float(epoch) if epoch is not None else float(position)
        except (TypeError, ValueError):
            x = float(position)
        xs.append(x if math.isfinite(x) else float(position))
        ys.append(value)
    return xs, ys


def plot_curves(history: Sequence[Mapping[str, float]], path: Path, title: str = "") -> Path:
    """Draw the training curves and write them to ``path`` as a PNG.

    ``history`` holds one dict per epoch with any of ``epoch``, ``loss``, ``accuracy``,
    ``val_loss``, ``val_accuracy`` and ``lr``; a key that is missing, ``None`` or NaN in a
    row is skipped for that epoch. Three panels: loss (train and val), accuracy (train and
    val) and learning rate on a log scale. The epoch of the lowest ``val_loss`` is marked
    with a vertical line on every panel. Returns ``path``.
    """
    fig = new_figure(15.0, 4.5)
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)

    best: tuple[float, float] | None = None
    val_x, val_y = _series(history, "val_loss")
    if val_y:
        best_index = int(np.argmin(val_y))
        best = (val_x[best_index], val_y[best_index])

    panels = (
        (ax_loss, "loss", (("loss", "train"), ("val_loss", "val"))),
        (ax_acc, "accuracy", (("accuracy", "train"), ("val_accuracy", "val"))),
        (ax_lr, "learning rate", (("lr", "lr"),)),
    )
    for ax, ylabel, keys in panels:
        drawn = False
        for key, label in keys:
            xs, ys = _series(history, key)
            if key == "lr":
                # A log axis cannot show zero or negative rates.
                kept = [(x, y) for x, y in zip(xs, ys) if y > 0]
                xs, ys = [x for x, _ in kept], [y for _, y in kept]
            if ys:
                ax.plot(xs, ys, marker="o" if len(ys) < 30 else None, markersize=3, label=label)
                drawn = True
        if best is not None:
            ax.axvline(
                best[0],
                color="tab:red",
                linestyle="--",
                linewidth=1,
                label=f"best epoch {best[0]:g} (val_loss {best[1]:.4g})",
            )
        if ylabel == "learning rate" and drawn:
            ax.set_yscale("log")
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel)
        ax.grid(True, alpha=0.3)
        if drawn or best is not None:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)

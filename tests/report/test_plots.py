"""The report figures are written as real PNGs, whatever the class count or gaps in history."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from cnnlab.report.plots import plot_confusion_matrix, plot_curves


def _assert_png(path: Path) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 0
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    # Not a blank canvas.
    assert float(image[..., :3].std()) > 0.01
    return image


def _no_temp_files_left(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("k", [3, 40])
def test_confusion_matrix_png(tmp_path: Path, k: int) -> None:
    rng = np.random.default_rng(k)
    cm = rng.integers(0, 50, size=(k, k)).tolist()
    names = [f"class_{i}" for i in range(k)]
    out = plot_confusion_matrix(cm, names, tmp_path / "figs" / "cm.png", title=f"{k} classes")
    assert out == tmp_path / "figs" / "cm.png"
    _assert_png(out)
    assert _no_temp_files_left(out.parent)


def test_confusion_matrix_overwrites_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "cm.png"
    path.write_bytes(b"old")
    plot_confusion_matrix([[3, 1], [0, 4]], ["a", "b"], path)
    _assert_png(path)
    assert _no_temp_files_left(tmp_path)


def test_confusion_matrix_shape_must_match_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        plot_confusion_matrix([[1, 2], [3, 4]], ["a", "b", "c"], tmp_path / "cm.png")
    assert not (tmp_path / "cm.png").exists()


def test_curves_png_with_full_history(tmp_path: Path) -> None:
    history = [
        {"epoch": e, "loss": 2.0 / e, "accuracy": 1 - 1 / (e + 1), "val_loss": 2.2 / e + 0.05 * e,
         "val_accuracy": 1 - 1.2 / (e + 1), "lr": 1e-3 * 0.5 ** e}
        for e in range(1, 11)
    ]
    _assert_png(plot_curves(history, tmp_path / "curves.png", title="run"))
    assert _no_temp_files_left(tmp_path)


def test_curves_png_with_missing_and_nan_values(tmp_path: Path) -> None:
    history = [
        {"epoch": 1, "loss": 1.5, "accuracy": 0.4, "lr": 0.01},
        {"epoch": 2, "loss": 1.1, "val_loss": math.nan, "lr": 0.01},
        {"epoch": 3, "loss": float("nan"), "val_loss": 1.3, "val_accuracy": 0.5},
        {"loss": 0.9, "val_loss": 1.2, "lr": 0.0},
    ]
    _assert_png(plot_curves(history, tmp_path / "curves.png"))


def test_curves_png_with_no_validation_and_empty_history(tmp_path: Path) -> None:
    _assert_png(plot_curves([{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.8}],
                            tmp_path / "train_only.png"))
    path = tmp_path / "empty.png"
    plot_curves([], path)
    assert path.is_file() and mpimg.imread(path).ndim == 3


def test_no_pyplot_figures_left_open(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b"], tmp_path / "cm.png")
    plot_curves([{"epoch": 1, "loss": 1.0, "val_loss": 1.1}], tmp_path / "c.png")
    assert plt.get_fignums() == before

"""A gallery of images with captions (the hardest test images of a report), as one PNG.

Like :mod:`cnnlab.report.plots`, figures never go through pyplot (no display, no global
figure list) and PNGs are written atomically. Small images (8x8 digits, 32x32 CIFAR) are drawn with nearest-neighbour
upscaling so their pixels stay visible.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch

from cnnlab.report.plots import new_figure, save_png

__all__ = ["plot_gallery", "new_figure", "save_png"]



def plot_gallery(images: torch.Tensor, captions: Sequence[str], path: Path, *,
                 wrong: Sequence[bool] | None = None, title: str = "", columns: int = 8) -> Path:
    """Draw uint8 images (N, C, H, W) in a grid with a caption under each; captions of
    ``wrong`` images are red. Returns ``path``."""
    n = int(images.shape[0])
    if n == 0:
        raise ValueError("no images to draw")
    if len(captions) != n:
        raise ValueError(f"{len(captions)} captions for {n} images")
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    fig = new_figure(1.9 * columns, 2.25 * rows + (0.4 if title else 0.0))
    axes = fig.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index >= n:
            continue
        image = images[index]
        if image.shape[0] == 1:
            ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
        color = "tab:red" if wrong is not None and wrong[index] else "black"
        ax.set_title(captions[index], fontsize=7, color=color)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)

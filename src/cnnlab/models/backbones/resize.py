"""Resizing inside the model (``model.input_size``), so stored images stay small."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Resizing(nn.Module):
    """Keras ``Resizing`` (bilinear): resize inside the model, on the training device."""

    keras_type = "Resizing"

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return x
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False,
                             antialias=True)

    def extra_repr(self) -> str:
        return f"size={self.size}"

"""The trained artefact: a network plus the pixel scaling it was trained with.

Keras users put ``Rescaling(1/255)`` inside the model; likewise ``Classifier`` takes raw
0-255 pixel values and applies ``(x - mean) / std`` itself, so saved weights predict
correctly without remembering how the data was normalised.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Classifier(nn.Module):
    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) from pixels (B, C, H, W) on the 0-255 scale (uint8 or float)."""
        x = (pixels.float() - self.mean) / self.std
        return self.net(x)
